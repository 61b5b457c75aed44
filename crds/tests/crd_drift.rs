//! The committed CRD YAML must be exactly what the Rust types generate.

#[test]
fn committed_crd_matches_the_types() {
    let generated = sandrun_crds::crd_yaml().expect("CRD serializes");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/executions.sandrun.dev.yaml");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "crds/executions.sandrun.dev.yaml is out of date: run `cargo run -p sandrun-crds --bin crdgen > crds/executions.sandrun.dev.yaml`"
    );
}
