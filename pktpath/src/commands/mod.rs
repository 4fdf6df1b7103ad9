//! The commands: each parses nothing and prints its own output; `main`
//! parses the command line, calls one, and maps its error to an exit code.

pub mod demo;
pub mod expect;
pub mod extcap;
pub mod options;
pub mod replay;
pub mod report;
pub mod sites;
pub mod trace;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;

use crate::kernel;

/// Set by SIGINT, SIGTERM and SIGHUP: the run ends cleanly (links
/// dropped, a summary printed).
pub static STOP: AtomicBool = AtomicBool::new(false);

/// What every command needs of the process: the stop signals caught, and
/// descriptors enough for the function backends.
pub fn prepare_process() {
    raise_nofile();
    ctrlc::set_handler(|| STOP.store(true, Ordering::SeqCst)).ok();
}

/// fentry copies and kprobes take two descriptors per function: raise the
/// soft limit on open files to the hard one.
fn raise_nofile() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid pointer to an rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0 && r.rlim_cur < r.rlim_max {
        r.rlim_cur = r.rlim_max;
        // SAFETY: as above; failure leaves the limit as it was.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) };
    }
}

/// `pktpath doctor`: what this kernel and machine can trace (exit 1 when
/// no backend works).
pub fn doctor() -> Result<ExitCode> {
    let report = kernel::doctor::examine();
    kernel::doctor::print(&report, &mut std::io::stdout())?;
    Ok(if report.any_backend() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Whether an error is a write to a reader that went away (`| head`):
/// what it wanted, it got, so the command succeeded.
pub fn closed_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
