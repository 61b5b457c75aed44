//! Writes the CRD manifests into a directory: `crdgen DIR` (`make crds`).

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: crdgen DIR");
        std::process::exit(64);
    };
    let written = sandrun_crds::crd_yamls().map_err(|e| e.to_string()).and_then(|crds| {
        crds.into_iter()
            .try_for_each(|(name, yaml)| std::fs::write(format!("{dir}/{name}"), yaml))
            .map_err(|e| e.to_string())
    });
    if let Err(err) = written {
        eprintln!("crdgen: {err}");
        std::process::exit(1);
    }
}
