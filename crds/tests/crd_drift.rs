//! The committed CRD YAML, and the Helm chart's copy of it, must be exactly
//! what the Rust types generate.

fn assert_current(relative: &str) {
    let generated = sandrun_crds::crd_yaml().expect("CRD serializes");
    let path = format!("{}/{relative}", env!("CARGO_MANIFEST_DIR"));
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(committed == generated, "{path} is out of date: run `make crds`");
}

#[test]
fn committed_crd_matches_the_types() {
    assert_current("executions.sandrun.dev.yaml");
}

#[test]
fn the_charts_crd_matches_the_types() {
    assert_current("../charts/sandrun/files/crd.yaml");
}
