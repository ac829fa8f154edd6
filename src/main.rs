//! The `tiering` binary: parse arguments, run, map the error to an exit code.

use clap::Parser;

#[cfg(target_os = "linux")]
#[global_allocator]
static ALLOC: tiering::alloc::LargeMapped = tiering::alloc::LargeMapped;

fn main() {
    limit_malloc_arenas();
    tiering::alloc::adapt_to_host();
    let cli = tiering::cli::Cli::parse();
    if let Err(err) = tiering::cli::execute(cli) {
        eprintln!("error: {err}");
        std::process::exit(err.exit_code());
    }
}

/// glibc gives each thread its own malloc arena and keeps what polars'
/// worker threads free there: at 10^7 transactions two arenas cut the peak
/// resident memory from ~2.9 to ~1.9 GB at the same speed (benches/).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    const M_ARENA_MAX: std::ffi::c_int = -8;
    unsafe extern "C" {
        fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
    }
    // SAFETY: called first thing in main, before any other thread exists;
    // mallopt only sets an allocator parameter.
    unsafe {
        mallopt(M_ARENA_MAX, 2);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}
