//! `sandrun run`'s flags and inputs → the gateway's `SubmitRequest`. Pure.

use std::collections::BTreeMap;
use std::path::Path;

use sandrun_api::{FileInput, LimitsInput, SubmitRequest};

use crate::args::RunArgs;
use crate::error::{Error, Result};

/// The language a file's extension stands for.
pub fn language_for(path: &Path) -> Option<&'static str> {
    match path.extension()?.to_str()? {
        "py" => Some("python"),
        "js" | "mjs" | "cjs" => Some("node"),
        "sh" | "bash" => Some("bash"),
        _ => None,
    }
}

/// A name the gateway takes as a file path: letters, digits, `.`, `_`, `-`,
/// not hidden. Others are sent as `code` (the gateway names the file).
pub fn is_portable_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// `--timeout`: whole seconds, optionally with a unit `s`, `m` or `h`.
pub fn parse_timeout(text: &str) -> Result<u32, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let scale = match unit {
        "s" | "sec" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        _ => return Err(format!("{text:?} is not a duration such as 30, 90s, 5m or 1h")),
    };
    let seconds = number
        .parse::<u32>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("{text:?} is not a duration such as 30, 90s, 5m or 1h"))?;
    if seconds == 0 {
        return Err("the timeout must be at least 1s".to_owned());
    }
    Ok(seconds)
}

/// One `--env` item: `K=V`, or a bare `K` whose value comes from `lookup`
/// (this process's environment).
pub fn parse_env(item: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<(String, String)> {
    let (name, value) = match item.split_once('=') {
        Some((name, value)) => (name, Some(value.to_owned())),
        None => (item, None),
    };
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(Error::Usage(format!("--env {item:?}: the name must be letters, digits and '_' (K=V)")));
    }
    let value = match value {
        Some(value) => value,
        None => {
            lookup(name).ok_or_else(|| Error::Usage(format!("--env {name}: not set here; give it as {name}=VALUE")))?
        }
    };
    Ok((name.to_owned(), value))
}

/// Builds the request for `file`, whose text is `content`.
pub fn build_request(
    args: &RunArgs,
    content: String,
    stdin: Option<String>,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<SubmitRequest> {
    let language = match &args.lang {
        Some(lang) => lang.clone(),
        None => language_for(&args.file).map(str::to_owned).ok_or_else(|| {
            Error::Usage(format!(
                "cannot tell the language of {} from its extension (.py, .js, .mjs, .sh); pass --lang",
                args.file.display()
            ))
        })?,
    };
    let name = args.file.file_name().and_then(|n| n.to_str()).filter(|n| is_portable_name(n));
    let (code, files, entry) = match name {
        // Keeps the file's own name, so tracebacks and `$0` show it.
        Some(name) => (None, vec![FileInput { path: name.to_owned(), content }], Some(name.to_owned())),
        None => (Some(content), Vec::new(), None),
    };
    let env = args.env.iter().map(|item| parse_env(item, &lookup)).collect::<Result<BTreeMap<_, _>>>()?;
    let limits = LimitsInput {
        timeout_seconds: args.timeout,
        cpu: args.cpu.clone(),
        memory: args.memory.clone(),
        max_output_bytes: args.max_output,
    };
    Ok(SubmitRequest {
        language: Some(language),
        code,
        files,
        entry,
        stdin,
        args: args.args.clone(),
        env,
        limits: (limits != LimitsInput::default()).then_some(limits),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn run(file: &str) -> RunArgs {
        RunArgs { file: PathBuf::from(file), ..Default::default() }
    }

    #[test]
    fn extensions_name_languages() {
        let cases = [
            ("hello.py", Some("python")),
            ("dir/x.js", Some("node")),
            ("x.mjs", Some("node")),
            ("x.cjs", Some("node")),
            ("x.sh", Some("bash")),
            ("x.bash", Some("bash")),
            ("x.rb", None),
            ("Makefile", None),
            (".py", None),
            ("x.PY", None),
        ];
        for (file, want) in cases {
            assert_eq!(language_for(Path::new(file)), want, "{file}");
        }
    }

    #[test]
    fn timeouts_parse_with_units() {
        let cases = [
            ("30", Ok(30)),
            ("90s", Ok(90)),
            ("5m", Ok(300)),
            ("1h", Ok(3600)),
            ("2min", Ok(120)),
            ("0", Err(())),
            ("", Err(())),
            ("1.5s", Err(())),
            ("-3", Err(())),
            ("10d", Err(())),
            ("99999999h", Err(())),
        ];
        for (text, want) in cases {
            assert_eq!(parse_timeout(text).map_err(|_| ()), want, "{text:?}");
        }
    }

    #[test]
    fn env_items_parse() {
        let lookup = |name: &str| (name == "HOME_DIR").then(|| "/home/me".to_owned());
        let cases = [
            ("A=1", Some(("A", "1"))),
            ("A=", Some(("A", ""))),
            ("URL=a=b", Some(("URL", "a=b"))),
            ("_X1=y", Some(("_X1", "y"))),
            ("HOME_DIR", Some(("HOME_DIR", "/home/me"))),
            ("UNSET", None),
            ("=1", None),
            ("1A=x", None),
            ("A-B=x", None),
            ("", None),
        ];
        for (item, want) in cases {
            let got = parse_env(item, lookup).ok();
            assert_eq!(got, want.map(|(k, v)| (k.to_owned(), v.to_owned())), "{item:?}");
        }
    }

    #[test]
    fn a_file_becomes_a_named_file_with_its_entry() {
        let mut args = run("/tmp/work/hello.py");
        args.args = vec!["a".into(), "b c".into()];
        args.env = vec!["MODE=test".into()];
        let request = build_request(&args, "print(1)".into(), Some("in".into()), no_env).unwrap();
        assert_eq!(
            request,
            SubmitRequest {
                language: Some("python".into()),
                files: vec![FileInput { path: "hello.py".into(), content: "print(1)".into() }],
                entry: Some("hello.py".into()),
                stdin: Some("in".into()),
                args: vec!["a".into(), "b c".into()],
                env: BTreeMap::from([("MODE".into(), "test".into())]),
                ..Default::default()
            }
        );
    }

    #[test]
    fn names_the_gateway_would_refuse_go_as_code() {
        for file in ["my script.sh", "naïve.sh"] {
            let request = build_request(&run(file), "echo".into(), None, no_env).unwrap();
            assert_eq!(
                (request.code.as_deref(), request.files.len(), request.entry),
                (Some("echo"), 0, None),
                "{file}"
            );
        }
    }

    #[test]
    fn lang_overrides_the_extension_and_limits_are_sent_only_when_given() {
        let mut args = run("script");
        assert!(matches!(build_request(&args, String::new(), None, no_env), Err(Error::Usage(_))));
        args.lang = Some("bash".into());
        let request = build_request(&args, String::new(), None, no_env).unwrap();
        assert_eq!((request.language.as_deref(), request.limits), (Some("bash"), None));

        args.timeout = Some(5);
        args.memory = Some("64Mi".into());
        let request = build_request(&args, String::new(), None, no_env).unwrap();
        assert_eq!(
            request.limits,
            Some(LimitsInput { timeout_seconds: Some(5), memory: Some("64Mi".into()), ..Default::default() })
        );
    }

    #[test]
    fn a_bad_env_item_fails_the_request() {
        let mut args = run("a.py");
        args.env = vec!["OK=1".into(), "NOPE".into()];
        assert!(
            matches!(build_request(&args, String::new(), None, no_env), Err(Error::Usage(m)) if m.contains("NOPE"))
        );
    }

    #[test]
    fn the_request_serializes_as_the_gateway_expects() {
        let mut args = run("x.js");
        args.timeout = Some(3);
        let request = build_request(&args, "1".into(), None, no_env).unwrap();
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            serde_json::json!({"language": "node", "files": [{"path": "x.js", "content": "1"}], "entry": "x.js",
                "limits": {"timeoutSeconds": 3}})
        );
    }
}
