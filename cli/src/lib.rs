//! The `sandrun` command line: run a file in a sandbox through the gateway
//! and behave like the program did (its stdout, stderr and exit code), or
//! list, inspect and cancel executions.
//!
//! `main.rs` only parses the command line and runs [`run`]; pure parts
//! (request building, exit codes, rendering) live in their own modules.

pub mod args;
pub mod client;
pub mod error;
pub mod exit;
pub mod render;
pub mod request;
pub mod stream;
pub mod tls;

use std::cell::RefCell;
use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use std::rc::Rc;

use sandrun_api::State;
use serde::Serialize;

pub use args::Cli;
use args::{Command, GatewayArgs, RunArgs};
use client::Gateway;
pub use error::{Error, Result};

/// Runs the command; answers the process exit status.
pub async fn run(cli: Cli) -> u8 {
    match dispatch(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sandrun: {}", error::report(&e));
            exit::USAGE
        }
    }
}

async fn dispatch(cli: Cli) -> Result<u8> {
    let gateway = Gateway::new(&cli.gateway.url, api_key(&cli.gateway)?)?;
    match cli.command {
        Command::Run(args) => run_file(&gateway, &args).await,
        Command::Get { id, json } => {
            let view = gateway.get(&id).await?;
            if json {
                print_json(&view)?;
            } else {
                write_out(std::io::stdout(), &render::summary(&view))?;
            }
            Ok(0)
        }
        Command::Ls { status, limit, continue_, json } => {
            let list = gateway.list(status.as_deref(), limit, continue_.as_deref()).await?;
            if json {
                print_json(&list)?;
            } else {
                write_out(std::io::stdout(), &render::table(&list.items))?;
                if let Some(next) = &list.next {
                    let filter = status.map(|s| format!(" --status {s}")).unwrap_or_default();
                    eprintln!("more: sandrun ls{filter} --limit {limit} --continue {next}");
                }
            }
            Ok(0)
        }
        Command::Cancel { id } => {
            let view = gateway.cancel(&id).await?;
            if view.status.is_final() {
                println!("{id} had already ended: {}", render::state_name(view.status));
            } else {
                println!("cancelling {id}");
            }
            Ok(0)
        }
    }
}

fn api_key(args: &GatewayArgs) -> Result<Option<String>> {
    if let Some(path) = &args.key_file {
        let key = read_text(path)?.trim().to_owned();
        if key.is_empty() {
            return Err(Error::Usage(format!("the key file {} is empty", path.display())));
        }
        return Ok(Some(key));
    }
    Ok(args.key.clone().filter(|k| !k.is_empty()))
}

async fn run_file(gateway: &Gateway, args: &RunArgs) -> Result<u8> {
    let content = read_text(&args.file)?;
    let stdin = program_stdin(args)?;
    let request = request::build_request(args, content, stdin, |name| std::env::var(name).ok())?;
    if args.no_wait {
        let view = gateway.submit(&request).await?;
        println!("{}", view.id);
        return Ok(0);
    }

    let target = stream::Target::new(gateway.ws_url(), gateway.key().map(str::to_owned), gateway.tls());
    let seen: Rc<RefCell<Option<(String, State)>>> = Rc::default();
    let on_event = {
        let seen = seen.clone();
        let quiet = args.quiet;
        move |event: stream::Event<'_>| match event {
            stream::Event::Update(view) => {
                let mut seen = seen.borrow_mut();
                let changed = seen.as_ref().is_none_or(|(_, state)| *state != view.status);
                if changed && !quiet && !view.status.is_final() {
                    eprintln!("{}", render::progress_line(view));
                }
                *seen = Some((view.id.clone(), view.status));
            }
            stream::Event::Reconnecting { attempt, after } if !quiet => {
                eprintln!(
                    "sandrun: connection lost; reconnecting in {} (try {attempt})",
                    render::duration(i64::try_from(after.as_millis()).unwrap_or(i64::MAX))
                );
            }
            stream::Event::Reconnecting { .. } => {}
        }
    };
    let view = tokio::select! {
        result = stream::execute(&target, request, on_event) => result?,
        _ = tokio::signal::ctrl_c() => {
            let id = seen.borrow().as_ref().map(|(id, _)| id.clone());
            return interrupted(gateway, id).await;
        }
    };

    if args.json {
        print_json(&view)?;
    } else {
        write_out(std::io::stdout(), view.stdout.as_deref().unwrap_or_default())?;
        write_out(std::io::stderr(), view.stderr.as_deref().unwrap_or_default())?;
        if !args.quiet {
            for note in render::final_notes(&view) {
                eprintln!("{note}");
            }
        }
    }
    Ok(exit::exit_code(&view))
}

/// Ctrl-C while waiting: cancel the run rather than leave it behind.
async fn interrupted(gateway: &Gateway, id: Option<String>) -> Result<u8> {
    match id {
        Some(id) => {
            gateway.cancel(&id).await?;
            eprintln!("sandrun: interrupted; cancelled {id}");
        }
        None => eprintln!("sandrun: interrupted before the gateway acknowledged the run; see `sandrun ls`"),
    }
    Ok(exit::CANCELLED)
}

/// The program's standard input: `--stdin-file`, else this process's stdin
/// when it is not a terminal; none with `--no-stdin` or when it is empty.
fn program_stdin(args: &RunArgs) -> Result<Option<String>> {
    if args.no_stdin {
        return Ok(None);
    }
    if let Some(path) = &args.stdin_file {
        return read_text(path).map(Some);
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    stdin.lock().read_to_end(&mut bytes).map_err(Error::ReadStdin)?;
    if bytes.is_empty() {
        return Ok(None);
    }
    String::from_utf8(bytes).map(Some).map_err(|_| Error::NotText("standard input".to_owned()))
}

fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|source| Error::ReadFile { path: path.to_owned(), source })?;
    String::from_utf8(bytes).map_err(|_| Error::NotText(path.display().to_string()))
}

fn write_out(mut out: impl Write, text: &str) -> Result<()> {
    out.write_all(text.as_bytes()).and_then(|()| out.flush()).map_err(Error::Output)
}

fn print_json(value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Output(std::io::Error::other(e)))?;
    write_out(std::io::stdout(), &format!("{text}\n"))
}
