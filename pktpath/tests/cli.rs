//! What every command owes the person at the terminal: a reader that goes
//! away (`pktpath sites | head -1`) is success, as for `ls | head` (each
//! command here writes into a pipe whose read end was closed before it
//! started, so its first write fails with EPIPE, whatever its speed); bad
//! input is one line and exit 2; missing privileges are named as such.

mod common;

use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};

use common::BIN;

/// The write end of a pipe nobody reads.
fn closed_pipe() -> Stdio {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors we then own.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: the read end is ours and closed once.
    unsafe { libc::close(fds[0]) };
    // SAFETY: the write end is ours, handed over once.
    Stdio::from(unsafe { OwnedFd::from_raw_fd(fds[1]) })
}

fn run_into_closed_pipe(args: &[&str]) {
    let out = Command::new(BIN)
        .args(args)
        .stdout(closed_pipe())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "pktpath {args:?}: {} {err}",
        out.status
    );
    assert!(
        !err.contains("Broken pipe") && !err.contains("panicked"),
        "pktpath {args:?}: {err}"
    );
}

/// A FreeBSD mbuf_trace capture of one frame.
fn capture_file() -> std::path::PathBuf {
    let frame = common::udp_frame(5001);
    let rec = pktpath_core::formats::mbuf_trace::encode(&["ip_input()".to_string()], &frame);
    let file = std::env::temp_dir().join(format!("pktpath-pipe-{}.pcap", std::process::id()));
    std::fs::write(&file, common::mbuf_trace_pcap(&[((0, 0), rec)])).unwrap();
    file
}

#[test]
fn commands_without_privileges_succeed_when_their_reader_goes_away() {
    let file = capture_file();
    let f = file.to_str().unwrap();
    for args in [
        &["--help"][..],
        &["--version"],
        &["sites", "--help"],
        &["-r", f],
        &["-r", f, "--json"],
        &["-r", f, "-w", "-"],
        &["extcap", "--extcap-interfaces"],
        &["extcap", "--extcap-interface", "pktpath", "--extcap-dlts"],
        &["extcap", "--extcap-interface", "pktpath", "--extcap-config"],
        &[
            "extcap",
            "--extcap-interface",
            "pktpath",
            "--extcap-capture-filter",
            "not a filter (",
        ],
    ] {
        run_into_closed_pipe(args);
    }
    std::fs::remove_file(&file).ok();
}

#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn commands_that_read_the_kernel_succeed_when_their_reader_goes_away() {
    require_root!();
    for args in [
        &["sites"][..],
        &["sites", "--json"],
        &["sites", "tcp"],
        &["doctor"],
        &["demo", "--report", "/dev/null"],
    ] {
        run_into_closed_pipe(args);
    }
}

/// `pktpath ARGS` as root: (exit code, stdout, stderr).
fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An invalid --functions or --exclude-functions regex is an error even
/// where no function backend would use it (tracepoints only).
#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn invalid_regexes_exit_2_with_one_line() {
    require_root!();
    for args in [
        &["--functions", "ip_(rcv", "udp"][..],
        &["--backend", "tracepoint", "--functions", "ip_(rcv", "udp"],
        &["--exclude-functions", "[", "udp"],
        &["sites", "ip_(rcv"],
    ] {
        let (code, _, err) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains("regex"), "{args:?}: {err}");
    }
}

/// `pktpath ARGS` as user nobody, without capabilities; None (the test
/// says why it skips) without setpriv.
fn as_nobody(args: &[&str]) -> Option<std::process::Output> {
    if Command::new("setpriv").arg("--help").output().is_err() {
        panic!("setpriv (util-linux) is missing");
    }
    Some(
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
            ])
            .arg(BIN)
            .args(args)
            .output()
            .unwrap(),
    )
}

/// `pktpath doctor` as an ordinary user says that this is the problem, not
/// the kernel, and exits 1.
#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn doctor_without_root_says_so() {
    require_root!();
    let Some(out) = as_nobody(&["doctor"]) else {
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("not running as root"), "{text}");
    assert!(!text.contains("cannot trace on this kernel"), "{text}");
    assert!(!text.contains("missing?"), "{text}");
}

#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn without_privileges_says_what_is_needed() {
    require_root!();
    let Some(out) = as_nobody(&["icmp"]) else {
        return;
    };
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("permission denied") && err.contains("CAP_BPF"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_input_gives_one_line_and_exit_2() {
    let (code, _, err) = run(&["host", "and", "and"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("invalid filter") && err.contains("syntax error"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let (code, _, err) = run(&["--ring-size", "3"]);
    assert_eq!(code, Some(2), "{err}");
    let (code, _, err) = run(&["--mark", "zz"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(!err.contains("panicked"));
    let (code, _, err) = run(&["--netns", "no-such-netns-pktpath"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("unknown network namespace 'no-such-netns-pktpath'"),
        "{err}"
    );
    let (code, _, err) = run(&["-i", "nosuchif0"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("unknown interface 'nosuchif0'"), "{err}");
}
