//! Request → Execution spec, and Execution → view. Pure, table-tested.
//!
//! The API server validates the spec again (schema and CEL); checking here
//! first gives REST clients a precise `field` in the error.

use kube::ResourceExt;
use sandrun_crds::{EnvVar, Execution, ExecutionSpec, Language, Limits, Phase, Source, SourceFile};

use crate::api::{ExecutionView, FileInput, State, SubmitRequest};
use crate::error::ApiError;

pub const MAX_FILES: usize = sandrun_crds::MAX_SOURCE_FILES;
pub const MAX_FILE_BYTES: usize = sandrun_crds::MAX_SOURCE_FILE_BYTES;

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid(field, message)
}

pub fn to_spec(request: &SubmitRequest) -> Result<ExecutionSpec, ApiError> {
    let mut spec = ExecutionSpec {
        stdin: request.stdin.clone(),
        args: request.args.clone(),
        env: request.env.iter().map(|(name, value)| EnvVar { name: name.clone(), value: value.clone() }).collect(),
        ..Default::default()
    };
    for name in request.env.keys() {
        let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(invalid("env", format!("{name:?} is not a valid environment variable name")));
        }
    }
    match (&request.language, &request.image) {
        (Some(language), None) => {
            let language = parse_language(language)?;
            spec.language = Some(language);
            spec.source = Some(source(request, language)?);
        }
        (None, Some(image)) => {
            if request.command.is_empty() {
                return Err(invalid("command", "an image needs a command"));
            }
            if request.code.is_some() || !request.files.is_empty() {
                return Err(invalid("code", "code and files go with a language, not an image"));
            }
            spec.image = Some(image.clone());
            spec.command = Some(request.command.clone());
        }
        (Some(_), Some(_)) => return Err(invalid("image", "give either language or image, not both")),
        (None, None) => return Err(invalid("language", "give a language (python, node, bash) or an image")),
    }
    if let Some(limits) = &request.limits {
        spec.limits = Limits {
            timeout_seconds: limits.timeout_seconds,
            cpu: limits.cpu.clone(),
            memory: limits.memory.clone(),
            max_output_bytes: limits.max_output_bytes,
        };
        if let Some(t) = limits.timeout_seconds.filter(|t| !(1..=sandrun_crds::MAX_TIMEOUT_SECONDS).contains(t)) {
            return Err(invalid(
                "limits.timeoutSeconds",
                format!("{t} is outside 1..={}", sandrun_crds::MAX_TIMEOUT_SECONDS),
            ));
        }
        if let Some(m) = limits.max_output_bytes.filter(|m| *m > sandrun_crds::MAX_OUTPUT_BYTES_CAP) {
            return Err(invalid(
                "limits.maxOutputBytes",
                format!("{m} is above {}", sandrun_crds::MAX_OUTPUT_BYTES_CAP),
            ));
        }
    }
    Ok(spec)
}

fn parse_language(name: &str) -> Result<Language, ApiError> {
    Language::ALL
        .into_iter()
        .find(|l| l.as_str() == name)
        .ok_or_else(|| invalid("language", format!("unknown language {name:?}; known: python, node, bash")))
}

fn default_file(language: Language) -> &'static str {
    match language {
        Language::Python => "main.py",
        Language::Node => "main.js",
        Language::Bash => "main.sh",
    }
}

fn source(request: &SubmitRequest, language: Language) -> Result<Source, ApiError> {
    let files: Vec<FileInput> = match (&request.code, request.files.is_empty()) {
        (Some(code), true) => vec![FileInput { path: default_file(language).to_owned(), content: code.clone() }],
        (None, false) => request.files.clone(),
        (Some(_), false) => return Err(invalid("files", "give code or files, not both")),
        (None, true) => return Err(invalid("code", "a language needs code or files")),
    };
    if files.len() > MAX_FILES {
        return Err(invalid("files", format!("{} files; at most {MAX_FILES}", files.len())));
    }
    for (i, file) in files.iter().enumerate() {
        let path_ok = !file.path.is_empty()
            && file.path.len() <= 255
            && file.path.split('/').all(|seg| {
                !seg.is_empty()
                    && !seg.starts_with('.')
                    && seg.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            });
        if !path_ok {
            return Err(invalid(
                &format!("files[{i}].path"),
                format!(
                    "{:?} must be a relative path of letters, digits, '.', '_', '-' (no hidden or '..' parts)",
                    file.path
                ),
            ));
        }
        if file.content.len() > MAX_FILE_BYTES {
            return Err(invalid(
                &format!("files[{i}].content"),
                format!("{} bytes; at most {MAX_FILE_BYTES}", file.content.len()),
            ));
        }
    }
    if let Some(entry) = request.entry.as_ref().filter(|e| !files.iter().any(|f| &f.path == *e)) {
        return Err(invalid("entry", format!("{entry:?} is not one of the files")));
    }
    Ok(Source {
        files: files.into_iter().map(|f| SourceFile { path: f.path, content: f.content }).collect(),
        entry: request.entry.clone(),
    })
}

pub fn state(phase: Phase) -> State {
    match phase {
        Phase::Pending => State::Queued,
        Phase::Running => State::Running,
        Phase::Succeeded => State::Succeeded,
        Phase::Failed => State::Failed,
        Phase::TimedOut => State::TimedOut,
        Phase::Cancelled => State::Cancelled,
    }
}

pub fn view(execution: &Execution) -> ExecutionView {
    let status = execution.status.clone().unwrap_or_default();
    ExecutionView {
        language: execution.spec.language.map(|l| l.as_str().to_owned()),
        reason: status.reason,
        message: status.message,
        exit_code: status.exit_code,
        stdout: status.stdout,
        stderr: status.stderr,
        stdout_truncated: status.stdout_truncated,
        stderr_truncated: status.stderr_truncated,
        duration_millis: status.duration_millis,
        peak_memory_bytes: status.peak_memory_bytes,
        created_at: execution.metadata.creation_timestamp.as_ref().map(|t| t.0.to_string()),
        started_at: status.start_time.map(|t| t.0.to_string()),
        completed_at: status.completion_time.map(|t| t.0.to_string()),
        ..ExecutionView::new(&execution.name_any(), state(status.phase))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::LimitsInput;

    fn python(code: &str) -> SubmitRequest {
        SubmitRequest { language: Some("python".into()), code: Some(code.into()), ..Default::default() }
    }

    #[test]
    fn code_becomes_the_entry_file_for_its_language() {
        for (lang, file) in [("python", "main.py"), ("node", "main.js"), ("bash", "main.sh")] {
            let request = SubmitRequest { language: Some(lang.into()), code: Some("x".into()), ..Default::default() };
            let spec = to_spec(&request).unwrap();
            assert_eq!(spec.source.unwrap().files[0].path, file);
        }
    }

    #[test]
    fn everything_else_carries_over() {
        let mut request = python("print(1)");
        request.stdin = Some("in".into());
        request.args = vec!["-v".into()];
        request.env.insert("MODE".into(), "test".into());
        request.limits =
            Some(LimitsInput { timeout_seconds: Some(5), memory: Some("64Mi".into()), ..Default::default() });
        let spec = to_spec(&request).unwrap();
        assert_eq!(spec.stdin.as_deref(), Some("in"));
        assert_eq!(spec.args, ["-v"]);
        assert_eq!(spec.env, [EnvVar { name: "MODE".into(), value: "test".into() }]);
        assert_eq!((spec.limits.timeout_seconds, spec.limits.memory.as_deref()), (Some(5), Some("64Mi")));
    }

    #[test]
    fn table_of_bad_requests_names_the_field() {
        let cases: Vec<(SubmitRequest, &str)> = vec![
            (SubmitRequest::default(), "language"),
            (
                SubmitRequest { language: Some("cobol".into()), code: Some("x".into()), ..Default::default() },
                "language",
            ),
            (SubmitRequest { language: Some("python".into()), ..Default::default() }, "code"),
            (
                SubmitRequest { files: vec![FileInput { path: "a.py".into(), content: String::new() }], ..python("x") },
                "files",
            ),
            (
                SubmitRequest {
                    language: Some("python".into()),
                    files: vec![FileInput { path: "../a.py".into(), content: String::new() }],
                    ..Default::default()
                },
                "files[0].path",
            ),
            (SubmitRequest { entry: Some("other.py".into()), ..python("x") }, "entry"),
            (SubmitRequest { image: Some("busybox".into()), ..Default::default() }, "command"),
            (SubmitRequest { image: Some("busybox".into()), command: vec!["true".into()], ..python("x") }, "image"),
            (
                SubmitRequest {
                    limits: Some(LimitsInput { timeout_seconds: Some(0), ..Default::default() }),
                    ..python("x")
                },
                "limits.timeoutSeconds",
            ),
            (
                SubmitRequest {
                    limits: Some(LimitsInput { max_output_bytes: Some(1 << 30), ..Default::default() }),
                    ..python("x")
                },
                "limits.maxOutputBytes",
            ),
            (SubmitRequest { env: [("1BAD".to_owned(), "x".to_owned())].into(), ..python("x") }, "env"),
        ];
        for (request, field) in cases {
            let err = to_spec(&request).expect_err(field);
            assert_eq!(err.field(), Some(field), "{err:?}");
            assert_eq!(err.status(), axum::http::StatusCode::UNPROCESSABLE_ENTITY);
        }
    }

    #[test]
    fn phases_map_to_states() {
        assert_eq!(state(Phase::Pending), State::Queued);
        assert_eq!(state(Phase::TimedOut), State::TimedOut);
        assert!(state(Phase::Cancelled).is_final());
        assert!(!state(Phase::Running).is_final());
        assert_eq!(State::parse("running"), Some(State::Running));
        assert_eq!(State::parse("bogus"), None);
    }

    #[test]
    fn view_shows_the_result() {
        let mut e = Execution::new("x-1", to_spec(&python("print(1)")).unwrap());
        e.status = Some(sandrun_crds::ExecutionStatus {
            phase: Phase::Failed,
            exit_code: Some(3),
            stdout: Some("out".into()),
            ..Default::default()
        });
        let v = view(&e);
        assert_eq!(
            (v.id.as_str(), v.status, v.exit_code, v.stdout.as_deref()),
            ("x-1", State::Failed, Some(3), Some("out"))
        );
        assert_eq!(v.links.self_, "/v1/executions/x-1");
    }
}
