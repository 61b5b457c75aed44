//! Bad manifests are refused by the API server itself (schema and CEL), with
//! a message a `kubectl apply` user can act on.

use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use sandrun_crds::Execution;
use sandrun_e2e::{python, TestNamespace};
use serde_json::json;

fn dynamic(ns: &TestNamespace) -> Api<DynamicObject> {
    let resource =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("sandrun.dev", "v1alpha1", "Execution"), "executions");
    Api::namespaced_with(ns.client.clone(), &ns.name, &resource)
}

async fn rejection(ns: &TestNamespace, spec: serde_json::Value) -> String {
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "sandrun.dev/v1alpha1",
        "kind": "Execution",
        "metadata": {"name": "bad"},
        "spec": spec,
    }))
    .unwrap();
    match dynamic(ns).create(&PostParams::default(), &object).await {
        Ok(_) => panic!("the API server accepted an invalid Execution: {spec}"),
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{status:?}");
            status.message
        }
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fn source() -> serde_json::Value {
    json!({"files": [{"path": "main.py", "content": "print(1)"}]})
}

#[tokio::test]
async fn table_of_rejected_manifests() {
    let ns = TestNamespace::new("validation").await;
    let cases = [
        ("unknown language", json!({"language": "cobol", "source": source()}), "Unsupported value: \"cobol\""),
        (
            "negative timeout",
            json!({"language": "python", "source": source(), "limits": {"timeoutSeconds": -1}}),
            "spec.limits.timeoutSeconds",
        ),
        (
            "timeout too long",
            json!({"language": "python", "source": source(), "limits": {"timeoutSeconds": 86400}}),
            "spec.limits.timeoutSeconds",
        ),
        (
            "language and image",
            json!({"language": "python", "image": "x", "command": ["y"], "source": source()}),
            "set exactly one of language or image",
        ),
        ("image without command", json!({"image": "busybox:1"}), "image requires a non-empty command"),
        ("language without source", json!({"language": "python"}), "language requires source"),
        (
            "path escapes",
            json!({"language": "python", "source": {"files": [{"path": "../x.py", "content": ""}]}}),
            "spec.source.files[0].path",
        ),
        (
            "entry not a file",
            json!({"language": "python", "source": {"files": [{"path": "a.py", "content": ""}], "entry": "b.py"}}),
            "entry must name one of the files",
        ),
        (
            "memory not a quantity",
            json!({"language": "python", "source": source(), "limits": {"memory": "lots"}}),
            "memory must be a quantity",
        ),
        (
            "wrong type",
            json!({"language": "python", "source": source(), "limits": {"timeoutSeconds": "ten"}}),
            "spec.limits.timeoutSeconds: Invalid value: \"string\"",
        ),
        (
            "oversized source file",
            json!({"language": "python", "source": {"files": [{"path": "big.py", "content": "#".repeat(300_000)}]}}),
            "spec.source.files[0].content: Too long",
        ),
        (
            "output cap too big",
            json!({"language": "python", "source": source(), "limits": {"maxOutputBytes": 10485760}}),
            "spec.limits.maxOutputBytes",
        ),
    ];
    for (name, spec, want) in cases {
        let message = rejection(&ns, spec).await;
        assert!(message.contains(want), "{name}: message {message:?} lacks {want:?}");
    }
}

/// What a `kubectl apply` user sees for a misspelt field: kubectl asks the
/// API server for strict field validation.
#[tokio::test]
async fn kubectl_apply_names_an_unknown_field() {
    let ns = TestNamespace::new("unknown-field").await;
    let manifest = "apiVersion: sandrun.dev/v1alpha1\nkind: Execution\nmetadata: {name: typo}\nspec:\n  language: python\n  source: {files: [{path: main.py, content: 'print(1)'}]}\n  timeoutSecnds: 5\n";
    let mut child = std::process::Command::new("kubectl")
        .args(["apply", "-n", &ns.name, "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), manifest.as_bytes()).expect("write manifest");
    let out = child.wait_with_output().expect("kubectl ran");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "kubectl accepted a misspelt field");
    assert!(stderr.contains("unknown field \"spec.timeoutSecnds\""), "{stderr}");
}

#[tokio::test]
async fn the_spec_cannot_change_after_creation() {
    let ns = TestNamespace::new("immutable").await;
    let api: Api<Execution> = ns.executions();
    api.create(&PostParams::default(), &Execution::new("fixed", python("print(1)"))).await.expect("create");
    let patch = json!({"spec": {"stdin": "changed"}});
    match api.patch("fixed", &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => panic!("spec change was accepted"),
        Err(kube::Error::Api(status)) => assert!(status.message.contains("spec is immutable"), "{}", status.message),
        Err(e) => panic!("unexpected error: {e}"),
    }
}
