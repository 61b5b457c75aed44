//! The command line, as clap parses it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub const DEFAULT_URL: &str = "http://127.0.0.1:8090";

#[derive(Parser, Debug)]
#[command(name = "sandrun", version, about = "Run code in a sandrun sandbox and get its output and exit code.")]
pub struct Cli {
    #[command(flatten)]
    pub gateway: GatewayArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct GatewayArgs {
    /// The gateway's base URL (http or https).
    #[arg(long, env = "SANDRUN_URL", default_value = DEFAULT_URL, global = true)]
    pub url: String,
    /// API key, sent as a bearer token.
    #[arg(long, env = "SANDRUN_KEY", hide_env_values = true, global = true)]
    pub key: Option<String>,
    /// Read the API key from this file (wins over --key).
    #[arg(long, env = "SANDRUN_KEY_FILE", value_name = "PATH", global = true)]
    pub key_file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a file; print its stdout and stderr and exit with its exit code.
    Run(RunArgs),
    /// Show one execution.
    Get {
        id: String,
        /// Print the execution as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List executions, newest first.
    Ls {
        /// Only these: queued, running, succeeded, failed, timed_out, cancelled.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Page token printed after a full page.
        #[arg(long = "continue", value_name = "TOKEN")]
        continue_: Option<String>,
        /// Print the list as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop a queued or running execution; it ends as cancelled.
    Cancel { id: String },
}

#[derive(Args, Debug, Default, Clone)]
pub struct RunArgs {
    /// The program: .py (python), .js or .mjs (node), .sh (bash); others need --lang.
    pub file: PathBuf,
    /// Language, when the extension does not tell: python, node or bash.
    #[arg(long, value_name = "LANGUAGE")]
    pub lang: Option<String>,
    /// Standard input for the program from this file (default: the CLI's stdin when it is not a terminal).
    #[arg(long, value_name = "PATH", conflicts_with = "no_stdin")]
    pub stdin_file: Option<PathBuf>,
    /// Give the program no standard input, even when the CLI's stdin is a pipe.
    #[arg(long)]
    pub no_stdin: bool,
    /// Wall-clock limit: seconds, or with a unit (90s, 5m, 1h).
    #[arg(long, value_name = "DURATION", value_parser = crate::request::parse_timeout)]
    pub timeout: Option<u32>,
    /// Memory limit as a Kubernetes quantity, e.g. 256Mi.
    #[arg(long)]
    pub memory: Option<String>,
    /// CPU limit as a Kubernetes quantity, e.g. 500m or 1.
    #[arg(long)]
    pub cpu: Option<String>,
    /// Bytes of stdout and of stderr kept, each.
    #[arg(long, value_name = "BYTES")]
    pub max_output: Option<u32>,
    /// Environment variable for the program, K=V; a bare K passes this shell's value on. Repeatable.
    #[arg(short = 'e', long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Print the final execution as JSON instead of the program's output.
    #[arg(long)]
    pub json: bool,
    /// Submit, print the id and return at once.
    #[arg(long, conflicts_with = "json")]
    pub no_wait: bool,
    /// No progress lines on stderr; only the program's own output.
    #[arg(short, long)]
    pub quiet: bool,
    /// Arguments for the program, after `--`.
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_takes_flags_and_program_arguments() {
        let cli = Cli::try_parse_from([
            "sandrun",
            "--url",
            "http://gw:1",
            "run",
            "a.py",
            "-e",
            "A=1",
            "--env",
            "B=2",
            "--timeout",
            "5m",
            "-q",
            "--",
            "x",
            "--y",
        ])
        .unwrap();
        assert_eq!(cli.gateway.url, "http://gw:1");
        let Command::Run(run) = cli.command else { panic!("not run: {:?}", cli.command) };
        assert_eq!(run.file, PathBuf::from("a.py"));
        assert_eq!(run.env, ["A=1", "B=2"]);
        assert_eq!(run.timeout, Some(300));
        assert!(run.quiet);
        assert_eq!(run.args, ["x", "--y"]);
    }

    #[test]
    fn conflicting_flags_are_refused() {
        for line in [
            &["sandrun", "run", "a.py", "--json", "--no-wait"][..],
            &["sandrun", "run", "a.py", "--stdin-file", "in", "--no-stdin"],
            &["sandrun", "run", "a.py", "--timeout", "soon"],
            &["sandrun", "get"],
        ] {
            assert!(Cli::try_parse_from(line).is_err(), "{line:?} was accepted");
        }
    }
}
