//! A reader that goes away (`pktpath sites | head -1`) is success for every
//! command: exit 0 and nothing on stderr, as for `ls | head`. Each command
//! here writes into a pipe whose read end was closed before it started, so
//! its first write fails with EPIPE, whatever the command's speed.

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

/// A FreeBSD mbuf_trace capture of one frame (classic pcap, DLT_USER0).
fn capture_file() -> std::path::PathBuf {
    let mut frame = vec![0u8; 12];
    frame.extend([0x08, 0x00, 0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0]);
    frame.extend([
        192, 0, 2, 1, 192, 0, 2, 2, 0x13, 0x88, 0x13, 0x89, 0, 8, 0, 0,
    ]);
    let rec = pktpath::capture::mbuf_trace::encode(&["ip_input()".to_string()], &frame);
    let mut pcap = Vec::new();
    pcap.extend(0xa1b2c3d4u32.to_le_bytes());
    pcap.extend(2u16.to_le_bytes());
    pcap.extend(4u16.to_le_bytes());
    pcap.extend([0u8; 8]);
    pcap.extend(65535u32.to_le_bytes());
    pcap.extend(147u32.to_le_bytes());
    pcap.extend([0u8; 8]);
    pcap.extend((rec.len() as u32).to_le_bytes());
    pcap.extend((rec.len() as u32).to_le_bytes());
    pcap.extend(&rec);
    let file = std::env::temp_dir().join(format!("pktpath-pipe-{}.pcap", std::process::id()));
    std::fs::write(&file, pcap).unwrap();
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
fn commands_that_read_the_kernel_succeed_when_their_reader_goes_away() {
    require_root!();
    for args in [
        &["sites"][..],
        &["sites", "--json"],
        &["sites", "tcp"],
        &["doctor"],
        &["demo"],
    ] {
        run_into_closed_pipe(args);
    }
}
