//! `btest-server-pro`: the btest server with users, byte budgets and session history.
//! Everything lives in `btest_rs::pro`; this only turns its result into an exit code.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    ExitCode::from(btest_rs::pro::main_with_args(&args))
}
