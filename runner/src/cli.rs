//! Command line of the runner. Hand-parsed on purpose: the binary is copied
//! into every sandbox, so it carries no dependency it does not need.

use std::path::PathBuf;
use std::time::Duration;

use crate::run::RunConfig;
use crate::warm::WarmConfig;

pub const USAGE: &str = "usage:
  sandrun-runner install DIR
      copy this binary into DIR (run by the init container)
  sandrun-runner run [--timeout-ms N] [--max-output-bytes N] [--memory-limit-bytes N] [--max-processes N] [--stdin FILE]
                     [--source DIR] [--workdir DIR] [--result-file FILE] -- COMMAND [ARG...]
      run COMMAND and print one result frame (also left in FILE when it fits
      a termination message)
  sandrun-runner warm [--max-processes N] [--max-file-bytes N] [--workdir DIR] [--result-file FILE]
                      [--max-payload-bytes N] [--prestart INTERPRETER]
      read one SANDRUN-PROGRAM-V1 line from stdin (at most N bytes, default
      8 MiB), print SANDRUN-ACCEPTED-V1 UID, run it and print its frame;
      without a program, exit 75 and leave SANDRUN-UNDELIVERED in FILE;
      with --prestart, start the python or node INTERPRETER while waiting";

#[derive(Debug, PartialEq)]
pub enum Command {
    Install { dir: PathBuf },
    Run(RunConfig),
    Warm(WarmConfig),
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CliError {
    #[error("unknown subcommand {0:?}")]
    UnknownSubcommand(String),
    #[error("missing subcommand")]
    MissingSubcommand,
    #[error("flag {0} needs a value")]
    MissingValue(String),
    #[error("flag {flag}: {value:?} is not a whole number")]
    NotANumber { flag: String, value: String },
    #[error("unknown flag {0:?}")]
    UnknownFlag(String),
    #[error("no command after --")]
    MissingCommand,
    #[error("install needs exactly one directory")]
    InstallDir,
    #[error("warm reads its command from stdin, not after --")]
    WarmCommand,
}

pub fn parse(args: &[String]) -> Result<Command, CliError> {
    let (sub, rest) = args.split_first().ok_or(CliError::MissingSubcommand)?;
    match sub.as_str() {
        "install" => match rest {
            [dir] => Ok(Command::Install { dir: dir.into() }),
            _ => Err(CliError::InstallDir),
        },
        "run" => parse_run(rest).map(Command::Run),
        "warm" => parse_warm(rest).map(Command::Warm),
        other => Err(CliError::UnknownSubcommand(other.to_owned())),
    }
}

fn parse_run(args: &[String]) -> Result<RunConfig, CliError> {
    let mut config = RunConfig::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if flag == "--" {
            config.command = it.cloned().collect();
            if config.command.is_empty() {
                return Err(CliError::MissingCommand);
            }
            return Ok(config);
        }
        let value = it.next().ok_or_else(|| CliError::MissingValue(flag.clone()))?;
        match flag.as_str() {
            "--timeout-ms" => config.timeout = Duration::from_millis(number(flag, value)?),
            "--max-output-bytes" => config.max_output_bytes = number(flag, value)? as usize,
            "--memory-limit-bytes" => config.memory_limit_bytes = number(flag, value)?,
            "--max-processes" => config.max_processes = number(flag, value)? as usize,
            "--max-file-bytes" => config.max_file_bytes = number(flag, value)?,
            "--stdin" => config.stdin = Some(value.into()),
            "--source" => config.source = Some(value.into()),
            "--workdir" => config.workdir = Some(value.into()),
            "--result-file" => config.result_file = Some(value.into()),
            _ => return Err(CliError::UnknownFlag(flag.clone())),
        }
    }
    Err(CliError::MissingCommand)
}

fn parse_warm(args: &[String]) -> Result<WarmConfig, CliError> {
    let mut config = WarmConfig::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if flag == "--" {
            return Err(CliError::WarmCommand);
        }
        let value = it.next().ok_or_else(|| CliError::MissingValue(flag.clone()))?;
        match flag.as_str() {
            "--max-processes" => config.max_processes = number(flag, value)? as usize,
            "--max-file-bytes" => config.max_file_bytes = number(flag, value)?,
            "--workdir" => config.workdir = Some(value.into()),
            "--result-file" => config.result_file = Some(value.into()),
            "--max-payload-bytes" => config.max_payload_bytes = number(flag, value)? as usize,
            "--prestart" => config.prestart = Some(value.clone()),
            _ => return Err(CliError::UnknownFlag(flag.clone())),
        }
    }
    Ok(config)
}

fn number(flag: &str, value: &str) -> Result<u64, CliError> {
    value.parse().map_err(|_| CliError::NotANumber { flag: flag.to_owned(), value: value.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn parses_a_full_run() {
        let cmd = parse(&args(
            "run --timeout-ms 2000 --max-output-bytes 10 --memory-limit-bytes 99 --max-processes 5 --max-file-bytes 7 --stdin /in --source /src --workdir /w --result-file /dev/termination-log -- python3 main.py -v",
        ))
        .unwrap();
        let Command::Run(c) = cmd else { panic!("not run") };
        assert_eq!(c.timeout, Duration::from_secs(2));
        assert_eq!(c.max_output_bytes, 10);
        assert_eq!(c.memory_limit_bytes, 99);
        assert_eq!(c.max_processes, 5);
        assert_eq!(c.max_file_bytes, 7);
        assert_eq!(c.stdin, Some("/in".into()));
        assert_eq!(c.source, Some("/src".into()));
        assert_eq!(c.workdir, Some("/w".into()));
        assert_eq!(c.result_file, Some("/dev/termination-log".into()));
        assert_eq!(c.command, args("python3 main.py -v"));
    }

    #[test]
    fn table_of_bad_command_lines() {
        let cases = [
            ("", CliError::MissingSubcommand),
            ("explode", CliError::UnknownSubcommand("explode".into())),
            ("install", CliError::InstallDir),
            ("run --timeout-ms", CliError::MissingValue("--timeout-ms".into())),
            ("run --timeout-ms soon -- x", CliError::NotANumber { flag: "--timeout-ms".into(), value: "soon".into() }),
            ("run --color red -- x", CliError::UnknownFlag("--color".into())),
            ("run --", CliError::MissingCommand),
            ("run --stdin /x", CliError::MissingCommand),
            ("warm --max-payload-bytes", CliError::MissingValue("--max-payload-bytes".into())),
            (
                "warm --max-processes many",
                CliError::NotANumber { flag: "--max-processes".into(), value: "many".into() },
            ),
            // Per-run settings travel with the program, not on the command line.
            ("warm --timeout-ms 5", CliError::UnknownFlag("--timeout-ms".into())),
            ("warm --stdin /in", CliError::UnknownFlag("--stdin".into())),
            ("warm -- python3 main.py", CliError::WarmCommand),
        ];
        for (line, want) in cases {
            assert_eq!(parse(&args(line)), Err(want), "for {line:?}");
        }
    }

    #[test]
    fn table_of_warm_command_lines() {
        let defaults = WarmConfig::default();
        let cases = [
            ("warm", defaults.clone()),
            (
                "warm --max-processes 128 --max-file-bytes 7 --workdir /w --result-file /dev/termination-log --max-payload-bytes 1024",
                WarmConfig {
                    max_processes: 128,
                    max_file_bytes: 7,
                    workdir: Some("/w".into()),
                    result_file: Some("/dev/termination-log".into()),
                    max_payload_bytes: 1024,
                    prestart: None,
                },
            ),
            ("warm --prestart python3", WarmConfig { prestart: Some("python3".into()), ..defaults.clone() }),
            ("warm --workdir /a --workdir /b", WarmConfig { workdir: Some("/b".into()), ..defaults.clone() }),
        ];
        for (line, want) in cases {
            assert_eq!(parse(&args(line)), Ok(Command::Warm(want)), "for {line:?}");
        }
        assert_eq!(defaults.max_payload_bytes, 8 * 1024 * 1024);
    }

    #[test]
    fn install_takes_a_directory() {
        assert_eq!(parse(&args("install /sandrun/bin")), Ok(Command::Install { dir: "/sandrun/bin".into() }));
    }
}
