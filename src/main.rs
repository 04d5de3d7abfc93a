//! `btest`: parse the command line, run the client or the server, turn the result into an exit
//! code (0 done, 1 test failed, 2 usage, 3 authentication rejected).

use std::process::ExitCode;

use btest_rs::app;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    ExitCode::from(app::main_with_args(&args))
}
