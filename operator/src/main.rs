use clap::Parser;
use sandrun_operator::startup::{run, Args};
use sandrun_telemetry::init_logging;

/// jemalloc, not glibc's malloc: at ten thousand runs in flight the
/// stores' long-lived objects sit between watch events' short-lived ones,
/// and glibc held RSS far above the live heap even when trimmed every few
/// seconds. jemalloc keeps objects of one size together and hands freed
/// pages back on a timer (see `_rjem_malloc_conf` below).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Freed pages go back to the system after a second, from jemalloc's own
/// thread rather than on some unlucky allocation; two arenas are plenty
/// for a handful of threads.
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: Option<&u8> = Some(&MALLOC_CONF[0]);
/// Read by jemalloc as a C string (`const char *`) before `main`.
const MALLOC_CONF: &[u8] = b"background_thread:true,narenas:2,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    init_logging(args.log_json);
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "sandrun-operator failed");
            std::process::ExitCode::FAILURE
        }
    }
}
