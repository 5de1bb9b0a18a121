//! The `kmsharness` command line: parse → Config → run → exit status.

fn main() -> std::process::ExitCode {
    eprintln!("kmsharness: the command line arrives with the client and host (issue 3)");
    std::process::ExitCode::from(2)
}
