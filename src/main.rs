//! The `shoplake` binary: everything happens in `shoplake::cli::run`; an
//! error that escapes it is printed once and mapped to its exit code.

use std::process::ExitCode;

fn main() -> ExitCode {
    match shoplake::cli::run() {
        Ok(code) => code,
        Err(error) => {
            eprintln!("shoplake: {error}");
            error.exit_code()
        }
    }
}
