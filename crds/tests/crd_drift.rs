//! The committed CRD YAML, and the Helm chart's copy of it, must be exactly
//! what the Rust types generate.

fn assert_current(dir: &str) {
    for (name, generated) in sandrun_crds::crd_yamls().expect("CRDs serialize") {
        let path = format!("{}/{dir}/{name}", env!("CARGO_MANIFEST_DIR"));
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(committed == generated, "{path} is out of date: run `make crds`");
    }
}

#[test]
fn committed_crds_match_the_types() {
    assert_current(".");
}

#[test]
fn the_charts_crds_match_the_types() {
    assert_current("../charts/sandrun/files");
}
