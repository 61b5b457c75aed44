//! Placeholder: the REST/WebSocket gateway is its own issue. Until then the
//! binary says so and fails, rather than pretending to serve.

fn main() -> std::process::ExitCode {
    eprintln!("sandrun-gateway: not implemented yet; create Executions with kubectl (see README.md)");
    std::process::ExitCode::from(2)
}
