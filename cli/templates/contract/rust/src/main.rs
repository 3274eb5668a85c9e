//! `__NAME__ [--host IP] [--port PORT]`: serves the contract's checkers; the first line on
//! stdout is the base URL (port 0 picks a free one). Stops on Ctrl-C or SIGTERM.

fn main() -> std::process::ExitCode {
    shardspace_checker::serve_main(vec![__NAME__::contract()])
}
