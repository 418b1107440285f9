//! The `shoplake` binary: tunes the allocator, then everything happens in
//! `shoplake::cli::run`; an error that escapes it is printed once and
//! mapped to its exit code.

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    return_large_buffers_to_the_system();
    match shoplake::cli::run() {
        Ok(code) => code,
        Err(error) => {
            // Not eprintln!: a closed stderr must not turn the exit code into a panic's.
            let _ = writeln!(std::io::stderr(), "shoplake: {error}");
            error.exit_code()
        }
    }
}

/// glibc keeps freed memory for reuse and, after large buffers are freed,
/// raises the size above which it maps them separately (up to 32 MiB), so
/// Arrow buffers of a finished stage linger in the heap. A fixed 4 MiB
/// threshold returns them at once: peak RSS of a 5M-row load fell from
/// about 2.05 to 1.8-1.9 GB (1M-row loads: 7-12% less). The cost is page
/// faults on fresh mappings: ~0.2 s more system time on a 1M-row re-load,
/// within this machine's run-to-run noise in wall time.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn return_large_buffers_to_the_system() {
    const MMAP_THRESHOLD_BYTES: libc::c_int = 4 * 1024 * 1024;
    // SAFETY: mallopt takes the allocator lock and only changes its parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn return_large_buffers_to_the_system() {}
