//! Checks the API server cannot make (they depend on operator config), plus a
//! second line of defence for the schema rules when the CRD is out of date.

use sandrun_crds::{ExecutionSpec, MAX_SOURCE_FILES};

use crate::config::{OperatorConfig, ENTRY_PLACEHOLDER};
use sandrun_crds::quantity::memory_bytes;

/// What to run: image and full argv, after language defaults are applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    pub image: String,
    pub argv: Vec<String>,
    /// The user's memory limit, which the runner enforces.
    pub memory_limit_bytes: u64,
    /// The container's memory request: the user's limit plus the sandbox overhead.
    pub container_memory_request_bytes: u64,
    /// The container's memory limit: the user's limit plus the headroom.
    pub container_memory_limit_bytes: u64,
    pub runtime_class: String,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    #[error("set exactly one of spec.language or spec.image")]
    LanguageOrImage,
    #[error("spec.image requires a non-empty spec.command")]
    ImageWithoutCommand,
    #[error("language {0} has no runtime configured in this operator")]
    NoRuntime(&'static str),
    #[error("spec.language requires spec.source with at least one file")]
    NoSource,
    #[error("spec.source.entry {0:?} is not one of the files")]
    UnknownEntry(String),
    #[error("spec.source has {0} files; at most {MAX_SOURCE_FILES} are allowed")]
    TooManyFiles(usize),
    #[error("source path {0:?} must be relative, without empty, '.' or '..' segments")]
    BadPath(String),
    #[error("runtimeClassName {0:?} is not allowed by this operator")]
    RuntimeClassNotAllowed(String),
    #[error("memory {0:?} is not a quantity this operator understands (use e.g. 256Mi)")]
    BadMemory(String),
}

pub fn program(spec: &ExecutionSpec, config: &OperatorConfig) -> Result<Program, SpecError> {
    check_source(spec)?;
    let memory_limit_bytes =
        memory_bytes(spec.memory()).ok_or_else(|| SpecError::BadMemory(spec.memory().to_owned()))?;
    let overhead = memory_bytes(&config.sandbox_memory_overhead).unwrap_or(0);
    let headroom = memory_bytes(&config.sandbox_memory_headroom).unwrap_or(0).max(overhead);
    let (image, argv) = match (&spec.language, &spec.image) {
        (Some(language), None) => {
            let runtime = config.runtimes.get(language).ok_or(SpecError::NoRuntime(language.as_str()))?;
            let entry = spec.entry().ok_or(SpecError::NoSource)?;
            let argv = runtime.command.iter().map(|arg| arg.replace(ENTRY_PLACEHOLDER, entry)).collect();
            (runtime.image.clone(), argv)
        }
        (None, Some(image)) => {
            let argv = spec.command.clone().unwrap_or_default();
            if argv.is_empty() {
                return Err(SpecError::ImageWithoutCommand);
            }
            (image.clone(), argv)
        }
        _ => return Err(SpecError::LanguageOrImage),
    };
    Ok(Program {
        runtime_class: runtime_class(spec, config)?,
        image,
        argv: with_args(argv, &spec.args),
        memory_limit_bytes,
        container_memory_request_bytes: memory_limit_bytes.saturating_add(overhead),
        container_memory_limit_bytes: memory_limit_bytes.saturating_add(headroom),
    })
}

fn runtime_class(spec: &ExecutionSpec, config: &OperatorConfig) -> Result<String, SpecError> {
    match &spec.runtime_class_name {
        None => Ok(config.runtime_class_name.clone()),
        Some(asked) if *asked == config.runtime_class_name || config.allowed_runtime_classes.contains(asked) => {
            Ok(asked.clone())
        }
        Some(asked) => Err(SpecError::RuntimeClassNotAllowed(asked.clone())),
    }
}

fn check_source(spec: &ExecutionSpec) -> Result<(), SpecError> {
    let Some(source) = &spec.source else {
        return Ok(());
    };
    if source.files.len() > MAX_SOURCE_FILES {
        return Err(SpecError::TooManyFiles(source.files.len()));
    }
    if let Some(bad) = source.files.iter().find(|f| !safe_path(&f.path)) {
        return Err(SpecError::BadPath(bad.path.clone()));
    }
    match &source.entry {
        Some(entry) if !source.files.iter().any(|f| &f.path == entry) => Err(SpecError::UnknownEntry(entry.clone())),
        _ => Ok(()),
    }
}

fn with_args(mut argv: Vec<String>, args: &[String]) -> Vec<String> {
    argv.extend(args.iter().cloned());
    argv
}

fn safe_path(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && path.split('/').all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

#[cfg(test)]
mod tests {
    use super::*;
    use sandrun_crds::{Language, Source, SourceFile};

    fn file(path: &str) -> SourceFile {
        SourceFile { path: path.into(), content: "x".into() }
    }

    fn python(files: Vec<SourceFile>, entry: Option<&str>) -> ExecutionSpec {
        ExecutionSpec {
            language: Some(Language::Python),
            source: Some(Source { files, entry: entry.map(Into::into) }),
            args: vec!["--flag".into()],
            ..Default::default()
        }
    }

    #[test]
    fn language_maps_to_runtime_image_and_entry() {
        let p = program(&python(vec![file("lib.py"), file("main.py")], Some("main.py")), &OperatorConfig::default())
            .unwrap();
        assert_eq!(p.image, "localhost/sandrun-python:bookworm");
        assert_eq!(p.argv, ["python3", "main.py", "--flag"]);
        assert_eq!(p.memory_limit_bytes, 256 << 20);
        assert_eq!(p.container_memory_request_bytes, (256 + 64) << 20);
        assert_eq!(p.container_memory_limit_bytes, (256 + 256) << 20);
    }

    #[test]
    fn entry_defaults_to_the_first_file() {
        let p = program(&python(vec![file("a.py"), file("b.py")], None), &OperatorConfig::default()).unwrap();
        assert_eq!(p.argv[1], "a.py");
    }

    #[test]
    fn image_and_command_pass_through() {
        let spec = ExecutionSpec {
            image: Some("busybox:1".into()),
            command: Some(vec!["echo".into(), "hi".into()]),
            ..Default::default()
        };
        let p = program(&spec, &OperatorConfig::default()).unwrap();
        assert_eq!((p.image.as_str(), p.argv), ("busybox:1", vec!["echo".to_owned(), "hi".to_owned()]));
    }

    #[test]
    fn table_of_invalid_specs() {
        let mut no_runtime = OperatorConfig::default();
        no_runtime.runtimes.remove(&Language::Node);
        let node = ExecutionSpec {
            language: Some(Language::Node),
            source: python(vec![file("m.js")], None).source,
            ..Default::default()
        };
        let cases: Vec<(ExecutionSpec, OperatorConfig, SpecError)> = vec![
            (ExecutionSpec::default(), OperatorConfig::default(), SpecError::LanguageOrImage),
            (
                ExecutionSpec { language: Some(Language::Bash), image: Some("x".into()), ..Default::default() },
                OperatorConfig::default(),
                SpecError::LanguageOrImage,
            ),
            (
                ExecutionSpec { image: Some("x".into()), ..Default::default() },
                OperatorConfig::default(),
                SpecError::ImageWithoutCommand,
            ),
            (
                ExecutionSpec { language: Some(Language::Python), ..Default::default() },
                OperatorConfig::default(),
                SpecError::NoSource,
            ),
            (
                python(vec![file("a.py")], Some("b.py")),
                OperatorConfig::default(),
                SpecError::UnknownEntry("b.py".into()),
            ),
            (
                python(vec![file("../etc/passwd")], None),
                OperatorConfig::default(),
                SpecError::BadPath("../etc/passwd".into()),
            ),
            (python(vec![file("/abs.py")], None), OperatorConfig::default(), SpecError::BadPath("/abs.py".into())),
            (python(vec![file("a//b.py")], None), OperatorConfig::default(), SpecError::BadPath("a//b.py".into())),
            (
                python((0..33).map(|i| file(&format!("f{i}.py"))).collect(), None),
                OperatorConfig::default(),
                SpecError::TooManyFiles(33),
            ),
            (node, no_runtime, SpecError::NoRuntime("node")),
            (
                ExecutionSpec {
                    limits: sandrun_crds::Limits { memory: Some("1e9".into()), ..Default::default() },
                    ..python(vec![file("a.py")], None)
                },
                OperatorConfig::default(),
                SpecError::BadMemory("1e9".into()),
            ),
        ];
        for (spec, config, want) in cases {
            assert_eq!(program(&spec, &config), Err(want.clone()), "want {want}");
        }
    }
}
