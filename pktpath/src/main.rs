//! The pktpath command: parses the command line, runs one command
//! (`pktpath::commands`), maps its error to an exit code.

use std::process::ExitCode;

use clap::Parser;

use pktpath::cli::{Cli, Cmd};
use pktpath::commands::{self, closed_pipe};
use pktpath::UsageError;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    let cli = if pktpath::extcap::is_extcap_call(&argv) {
        match commands::extcap::command(&argv) {
            Ok(Some(cli)) => cli,
            Ok(None) => return ExitCode::SUCCESS,
            Err(e) if closed_pipe(&e) => return ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("pktpath extcap: {e:#}");
                return ExitCode::from(2);
            }
        }
    } else {
        Cli::parse()
    };
    commands::prepare_process();
    let result = match cli.cmd {
        Some(Cmd::Doctor) => commands::doctor(),
        Some(Cmd::Demo(out)) => commands::demo::run(&out),
        Some(Cmd::Expect(args)) => commands::expect::run(&args),
        Some(Cmd::Report(args)) => commands::report::run(&args),
        Some(Cmd::Sites { regex, json }) => commands::sites::list(regex.as_deref(), json),
        None => commands::trace::run(&cli.trace),
    };
    match result {
        Ok(code) => code,
        // The reader went away (`| head`): what it wanted, it got.
        Err(e) if closed_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pktpath: {e:#}");
            if e.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}
