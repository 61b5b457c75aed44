use clap::Parser;
use sandrun_operator::startup::{run, Args};
use sandrun_telemetry::init_logging;

/// How often freed heap memory is handed back to the system.
const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    init_logging(args.log_json);
    tune_heap();
    tokio::spawn(trim_heap());
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "sandrun-operator failed");
            std::process::ExitCode::FAILURE
        }
    }
}

/// glibc gives each thread that allocates its own arena, up to eight per
/// core, and each fragments on its own; two are plenty for a handful of
/// threads. Its mmap threshold also rises after every large free, until
/// multi-megabyte list responses land in the heap and pin pages there; a
/// fixed threshold (which turns the rise off) keeps them in mappings that
/// go back to the system when freed.
fn tune_heap() {
    const ARENAS: i32 = 2;
    const MMAP_THRESHOLD: i32 = 256 * 1024;
    // SAFETY: mallopt only sets glibc's allocator parameters, called
    // before the runtime's threads allocate much.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

/// glibc's malloc returns freed memory to the system only from the top of
/// its heap. The stores' long-lived objects sit between the watch events'
/// short-lived ones, so at ten thousand runs most of the freed memory was
/// below the top: RSS stayed far above the live heap. `malloc_trim` also
/// releases free pages in the middle.
async fn trim_heap() {
    let mut ticks = tokio::time::interval(TRIM_EVERY);
    loop {
        ticks.tick().await;
        // SAFETY: malloc_trim only walks and shrinks glibc's own free lists;
        // it takes no pointers and is safe to call from any thread.
        unsafe { libc::malloc_trim(0) };
    }
}
