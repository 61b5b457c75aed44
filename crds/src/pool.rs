//! The `SandboxPool` resource (`sandboxpools.sandrun.dev`): sandboxes started
//! ahead, so an Execution that fits starts without waiting for a pod.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::spec::Language;

/// The most warm pods one pool may keep: each reserves its limits on a node.
pub const MAX_POOL_SIZE: u32 = 200;

/// Keeps `size` sandbox pods of one profile started and waiting for a
/// program. Each serves exactly one Execution, then ends; the pool starts
/// another in its place.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "sandrun.dev",
    version = "v1alpha1",
    kind = "SandboxPool",
    plural = "sandboxpools",
    shortname = "pool",
    namespaced,
    status = "SandboxPoolStatus",
    printcolumn = r#"{"name":"Language","type":"string","jsonPath":".spec.language"}"#,
    printcolumn = r#"{"name":"Ready","type":"integer","jsonPath":".status.ready"}"#,
    printcolumn = r#"{"name":"Desired","type":"integer","jsonPath":".spec.size"}"#,
    printcolumn = r#"{"name":"In-Use","type":"integer","jsonPath":".status.inUse"}"#,
    printcolumn = r#"{"name":"Image","type":"string","jsonPath":".spec.image","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(
    validation = Rule::new("has(self.language) != has(self.image)").message("set exactly one of language or image"),
)]
#[serde(rename_all = "camelCase")]
pub struct SandboxPoolSpec {
    /// Warm pods to keep ready. 0 scales the pool to nothing; Executions
    /// then start cold.
    #[schemars(range(max = 200))]
    pub size: u32,

    /// Executions of this language fit the pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<Language>,

    /// Executions with exactly this image fit the pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,

    /// RuntimeClass of the pool's pods; the operator's default when unset.
    /// An Execution fits only with the same class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub runtime_class_name: Option<String>,

    /// What each warm pod reserves, and the most an Execution run in it
    /// may ask for. The runner still holds each run to its own limits.
    #[serde(default)]
    pub limits: PoolLimits,
}

#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PoolLimits {
    /// CPU limit of each pod (default "1").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("isQuantity(self) && quantity(self).isGreaterThan(quantity('0')) && quantity(self).compareTo(quantity('8')) <= 0").message("cpu must be a quantity above 0 and at most 8, such as 500m or 2"))]
    #[schemars(length(min = 1, max = 32))]
    pub cpu: Option<String>,

    /// Memory a program may use in each pod (default "256Mi").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("isQuantity(self) && quantity(self).compareTo(quantity('16Mi')) >= 0 && quantity(self).compareTo(quantity('16Gi')) <= 0").message("memory must be a quantity from 16Mi to 16Gi, such as 256Mi"))]
    #[schemars(length(min = 1, max = 32))]
    pub memory: Option<String>,
}

#[derive(schemars::JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SandboxPoolStatus {
    /// Warm pods waiting for a program.
    pub ready: u32,
    /// Warm pods still starting.
    pub starting: u32,
    /// Pods of this pool running an Execution.
    pub in_use: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Why the pool cannot keep its size, when it cannot (e.g. its pods are refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl SandboxPoolSpec {
    pub fn cpu(&self) -> &str {
        self.limits.cpu.as_deref().unwrap_or(crate::DEFAULT_CPU)
    }

    pub fn memory(&self) -> &str {
        self.limits.memory.as_deref().unwrap_or(crate::DEFAULT_MEMORY)
    }
}
