//! What one key may run: which images, how large a run, how many at once.
//! Set per key in the keys file; a key that says nothing gets the defaults.
//! Pure and table-tested; the gateway checks it before it creates a run.

use sandrun_crds::quantity::{cpu_millis, memory_bytes};
use sandrun_crds::ExecutionSpec;

use crate::error::ApiError;

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Runs of this key not yet finished (queued or running) at once; one
    /// more is refused with 429 `too_many_active`.
    pub max_active: usize,
    /// Images this key may run with `image`: exact references, or prefixes
    /// ending in `*` (`registry.example/team/*`). Empty, the default: only
    /// languages, whose images the operator's configuration names.
    pub images: Vec<String>,
    /// Caps on a run's limits; absent, the Execution's own bounds apply.
    pub max_timeout_seconds: Option<u32>,
    pub max_memory: Option<String>,
    pub max_cpu: Option<String>,
    pub max_output_bytes: Option<u32>,
    /// WebSockets of this key open at once (on each gateway replica).
    pub max_sockets: usize,
    /// Runs one socket follows at once.
    pub max_subscriptions: usize,
}

pub fn default_max_active() -> usize {
    100
}

pub fn default_max_sockets() -> usize {
    100
}

pub fn default_max_subscriptions() -> usize {
    1000
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            max_active: default_max_active(),
            images: Vec::new(),
            max_timeout_seconds: None,
            max_memory: None,
            max_cpu: None,
            max_output_bytes: None,
            max_sockets: default_max_sockets(),
            max_subscriptions: default_max_subscriptions(),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PolicyError {
    #[error("maxMemory {0:?} is not a memory quantity")]
    BadMemory(String),
    #[error("maxCpu {0:?} is not a CPU quantity")]
    BadCpu(String),
    #[error("maxActive, maxSockets and maxSubscriptions must be at least 1")]
    NoRuns,
}

impl Policy {
    /// Refuses a policy whose caps cannot be compared with a run's.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if let Some(m) = self.max_memory.as_ref().filter(|m| memory_bytes(m).is_none()) {
            return Err(PolicyError::BadMemory(m.clone()));
        }
        if let Some(c) = self.max_cpu.as_ref().filter(|c| cpu_millis(c).is_none()) {
            return Err(PolicyError::BadCpu(c.clone()));
        }
        if self.max_active == 0 || self.max_sockets == 0 || self.max_subscriptions == 0 {
            return Err(PolicyError::NoRuns);
        }
        Ok(())
    }

    /// Whether this key may run `spec`: 403 for an image it may not use,
    /// 422 naming the limit that is over the key's cap.
    pub fn check(&self, spec: &ExecutionSpec) -> Result<(), ApiError> {
        if let Some(image) = &spec.image {
            if !self.images.iter().any(|allowed| image_matches(allowed, image)) {
                return Err(ApiError::Forbidden {
                    field: "image".to_owned(),
                    message: match self.images.is_empty() {
                        true => "this key may not run custom images; give a language".to_owned(),
                        false => format!("this key may not run image {image:?}"),
                    },
                });
            }
        }
        let over = |field: &str, asked: &str, cap: &str| {
            Err(ApiError::invalid(field, format!("{asked} is above this key's limit of {cap}")))
        };
        let limits = &spec.limits;
        if let (Some(asked), Some(cap)) = (limits.timeout_seconds, self.max_timeout_seconds) {
            if asked > cap {
                return over("limits.timeoutSeconds", &asked.to_string(), &cap.to_string());
            }
        }
        if let Some(cap) = self.max_timeout_seconds.filter(|_| limits.timeout_seconds.is_none()) {
            // The Execution's default (30 s) applies when none is given.
            if sandrun_crds::DEFAULT_TIMEOUT_SECONDS > cap {
                return over("limits.timeoutSeconds", "the default", &cap.to_string());
            }
        }
        if let (Some(asked), Some(cap)) = (limits.max_output_bytes, self.max_output_bytes) {
            if asked > cap {
                return over("limits.maxOutputBytes", &asked.to_string(), &cap.to_string());
            }
        }
        if let Some(cap) = &self.max_memory {
            let asked = spec.memory();
            if memory_bytes(asked).zip(memory_bytes(cap)).is_some_and(|(a, c)| a > c) {
                return over("limits.memory", asked, cap);
            }
        }
        if let Some(cap) = &self.max_cpu {
            let asked = spec.cpu();
            if cpu_millis(asked).zip(cpu_millis(cap)).is_some_and(|(a, c)| a > c) {
                return over("limits.cpu", asked, cap);
            }
        }
        Ok(())
    }
}

fn image_matches(allowed: &str, image: &str) -> bool {
    match allowed.strip_suffix('*') {
        Some(prefix) => image.starts_with(prefix),
        None => allowed == image,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sandrun_crds::{Language, Limits};

    fn run(image: Option<&str>, limits: Limits) -> ExecutionSpec {
        ExecutionSpec {
            language: image.is_none().then_some(Language::Python),
            image: image.map(Into::into),
            command: image.map(|_| vec!["true".to_owned()]),
            limits,
            ..Default::default()
        }
    }

    fn limits(timeout: Option<u32>, memory: Option<&str>, cpu: Option<&str>, output: Option<u32>) -> Limits {
        Limits {
            timeout_seconds: timeout,
            memory: memory.map(Into::into),
            cpu: cpu.map(Into::into),
            max_output_bytes: output,
        }
    }

    /// Case, policy, run; then Ok or the refusal's (status, field).
    type Row<'a> = (&'a str, &'a Policy, ExecutionSpec, Result<(), (u16, &'a str)>);

    #[test]
    fn table_of_runs_a_key_may_and_may_not_start() {
        let capped = Policy {
            images: vec!["registry.example/team/*".into(), "busybox:1.36".into()],
            max_timeout_seconds: Some(60),
            max_memory: Some("512Mi".into()),
            max_cpu: Some("1".into()),
            max_output_bytes: Some(65536),
            ..Policy::default()
        };
        let none = Limits::default();
        let open = Policy::default();
        let tight = Policy { max_timeout_seconds: Some(10), ..Policy::default() };
        let cases: Vec<Row> = vec![
            ("a language, no caps", &open, run(None, none.clone()), Ok(())),
            ("any image, by default", &open, run(Some("busybox:1.36"), none.clone()), Err((403, "image"))),
            ("an image under an allowed prefix", &capped, run(Some("registry.example/team/x:1"), none.clone()), Ok(())),
            ("an exact image", &capped, run(Some("busybox:1.36"), none.clone()), Ok(())),
            ("another tag", &capped, run(Some("busybox:latest"), none.clone()), Err((403, "image"))),
            ("a lookalike prefix", &capped, run(Some("registry.example/teamx/y"), none.clone()), Err((403, "image"))),
            ("within every cap", &capped, run(None, limits(Some(60), Some("512Mi"), Some("1"), Some(65536))), Ok(())),
            (
                "timeout over",
                &capped,
                run(None, limits(Some(61), None, None, None)),
                Err((422, "limits.timeoutSeconds")),
            ),
            ("memory over", &capped, run(None, limits(None, Some("1Gi"), None, None)), Err((422, "limits.memory"))),
            ("memory in other units, under", &capped, run(None, limits(None, Some("500M"), None, None)), Ok(())),
            ("cpu over", &capped, run(None, limits(None, None, Some("1500m"), None)), Err((422, "limits.cpu"))),
            (
                "output over",
                &capped,
                run(None, limits(None, None, None, Some(65537))),
                Err((422, "limits.maxOutputBytes")),
            ),
            (
                "the default timeout over a tight cap",
                &tight,
                run(None, none.clone()),
                Err((422, "limits.timeoutSeconds")),
            ),
        ];
        for (case, policy, spec, want) in cases {
            let got = policy.check(&spec).map_err(|e| (e.status().as_u16(), e.field().unwrap_or("").to_owned()));
            assert_eq!(got, want.map_err(|(s, f)| (s, f.to_owned())), "{case}");
        }
    }

    #[test]
    fn policies_that_cannot_be_checked_are_refused() {
        let bad = [
            (Policy { max_memory: Some("lots".into()), ..Policy::default() }, PolicyError::BadMemory("lots".into())),
            (Policy { max_cpu: Some("fast".into()), ..Policy::default() }, PolicyError::BadCpu("fast".into())),
            (Policy { max_active: 0, ..Policy::default() }, PolicyError::NoRuns),
        ];
        for (policy, want) in bad {
            assert_eq!(policy.validate(), Err(want));
        }
        assert_eq!(Policy::default().validate(), Ok(()));
    }
}
