//! Prints the Execution CRD as YAML. `cargo run -p sandrun-crds --bin crdgen > crds/executions.sandrun.dev.yaml`

fn main() {
    match sandrun_crds::crd_yaml() {
        Ok(yaml) => print!("{yaml}"),
        Err(err) => {
            eprintln!("crdgen: {err}");
            std::process::exit(1);
        }
    }
}
