//! Capture files and Wireshark's extcap protocol (#4), on the host's real
//! kernel: what `-w` writes is read by tcpdump and by `pktpath -r` (the same
//! journeys as live), `--per-step` shows NAT rewrites frame by frame, the
//! FreeBSD mbuf_trace layout round-trips, corrupt files give one line and
//! exit 2, and an extcap capture driven as Wireshark drives it reaches tshark.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Net, Pktpath, BIN};
use serde_json::Value;

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("pktpath-cap-{}-{name}", std::process::id()))
}

/// `pktpath ARGS`, which must succeed; its stdout.
fn pktpath(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "pktpath {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn sites(j: &Value) -> Vec<String> {
    j["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| format!("{} {}", s["netns_name"], s["site"]))
        .collect()
}

fn tcpdump(file: &str) -> String {
    let out = Command::new("tcpdump")
        .args(["-nn", "-r", file])
        .output()
        .expect("tcpdump is installed by scripts/setup.sh");
    assert!(
        out.status.success(),
        "tcpdump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A live run writing pcapng and one printing JSON, on the same traffic:
/// replaying the file gives the journeys the live run printed.
#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn replay_of_pcapng_matches_the_live_journeys() {
    require_root!();
    let net = Net::new(221);
    let file = temp("live.pcapng");
    let f = file.to_str().unwrap();
    let filter = net.only("icmp or udp port 5221");
    let writer = Pktpath::start(&["-w", f, &filter]);
    let live = Pktpath::start(&[&filter]);
    net.ping();
    net.udp(5221);
    let live = live.stop();
    writer.stop();
    let replayed = json_lines(&pktpath(&["-r", f, "--json"]));
    // The two runs close journeys in their own order; a journey whose
    // headers were never captured has no frame to write.
    let key = |j: &Value| {
        (
            j["packet"].to_string(),
            sites(j),
            j["end"]["kind"].to_string(),
        )
    };
    let mut a: Vec<_> = live
        .iter()
        .filter(|j| !j["packet"].is_null())
        .map(key)
        .collect();
    let mut b: Vec<_> = replayed.iter().map(key).collect();
    a.sort();
    b.sort();
    assert!(a.len() >= 3, "{live:#?}");
    assert_eq!(a, b);
    // Through JSON lines and back: the same terminal text.
    let json = temp("live.json");
    std::fs::write(&json, pktpath(&["-r", f, "--json"])).unwrap();
    assert_eq!(
        pktpath(&["-r", f, "--color", "never"]),
        pktpath(&["-r", json.to_str().unwrap(), "--color", "never"])
    );
    // A filter selects among recorded packets.
    let udp = json_lines(&pktpath(&["-r", f, "--json", "udp"]));
    assert_eq!(udp.len(), 1);
    assert!(udp[0]["packet"].as_str().unwrap().contains("UDP"));
    std::fs::remove_file(&file).ok();
    std::fs::remove_file(&json).ok();
}

/// With a masquerading router, --per-step records show the source address
/// before and after the rewrite, one record per step.
#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn per_step_records_show_the_nat_rewrite() {
    require_root!();
    let net = Net::new(222);
    net.lab
        .nft(
            &net.router,
            "table ip ptnat { chain post { type nat hook postrouting priority srcnat; \
             oifname \"out0\" masquerade; }; }",
        )
        .unwrap();
    let file = temp("steps.pcapng");
    let f = file.to_str().unwrap();
    let p = Pktpath::start(&["-w", f, "--per-step", &net.only("udp port 5222")]);
    net.udp(5222);
    p.stop();
    let text = tcpdump(f);
    let journeys = json_lines(&pktpath(&["-r", f, "--json"]));
    assert_eq!(journeys.len(), 1, "{text}");
    let steps = journeys[0]["steps"].as_array().unwrap().len();
    assert_eq!(text.lines().count(), steps, "one record per step: {text}");
    assert!(
        text.contains("10.222.1.2.") && text.contains("10.222.2.1."),
        "{text}"
    );
    std::fs::remove_file(&file).ok();
}

/// --format mbuf-trace writes the FreeBSD layout (DLT_USER0); tcpdump reads
/// the file and pktpath replays the path from it.
#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn mbuf_trace_is_written_and_read_back() {
    require_root!();
    let net = Net::new(223);
    net.lab
        .nft(
            &net.router,
            "table inet ptdrop { chain f { type filter hook forward priority 0; \
             udp dport 5223 drop; }; }",
        )
        .unwrap();
    let file = temp("trace.pcap");
    let f = file.to_str().unwrap();
    let p = Pktpath::start(&[
        "-w",
        f,
        "--format",
        "mbuf-trace",
        &net.only("udp port 5223"),
    ]);
    net.udp(5223);
    p.stop();
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(&bytes[20..24], &147u32.to_le_bytes(), "DLT_USER0");
    // tcpdump has no decoder for DLT_USER0: one line and a hex dump.
    let dump = tcpdump(f);
    assert_eq!(
        dump.lines().filter(|l| !l.starts_with('\t')).count(),
        1,
        "{dump}"
    );
    let back = pktpath(&["-r", f, "--color", "never"]);
    assert!(back.contains("kfree_skb"), "{back}");
    assert!(back.contains("drop: NETFILTER_DROP"), "{back}");
    assert!(back.contains(&net.router), "{back}");
    std::fs::remove_file(&file).ok();
}

/// A capture from FreeBSD's mbuf_trace: free-form strings, shown as given,
/// in classic pcap and in pcapng.
#[test]
fn freebsd_mbuf_trace_captures_are_read() {
    let strings = [
        "ether_input() at net/if_ethersubr.c:601",
        "ip_input() at netinet/ip_input.c:467",
    ];
    let frame = common::udp_frame(5001);
    let rec = pktpath_core::formats::mbuf_trace::encode(&strings.map(String::from), &frame);
    let pcap = common::mbuf_trace_pcap(&[((1_700_000_000, 5), rec)]);
    let file = temp("freebsd.pcap");
    std::fs::write(&file, &pcap).unwrap();
    let text = pktpath(&["-r", file.to_str().unwrap(), "--color", "never"]);
    for s in strings {
        assert!(text.contains(s), "{s} in {text}");
    }
    assert!(
        text.contains("trace ends at ip_input() at netinet/ip_input.c:467"),
        "{text}"
    );
    assert!(
        text.contains("192.0.2.1 > 192.0.2.2 UDP 5000 > 5001"),
        "{text}"
    );
    std::fs::remove_file(&file).ok();
}

/// Truncated or corrupt files: one line naming the file and offset, exit 2.
#[test]
fn corrupt_captures_give_one_line_and_exit_2() {
    let good = {
        let mut rec = pktpath_core::formats::mbuf_trace::encode(&["a".into()], &[0u8; 20]);
        // The string's length runs past the record.
        rec[2] = 0xff;
        common::mbuf_trace_pcap(&[((0, 0), rec)])
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("bad-len.pcap", good.clone()),
        ("cut.pcap", good[..30].to_vec()),
        (
            "cut.pcapng",
            vec![0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 0x4d, 0x3c],
        ),
        ("junk.bin", b"\x7fELF garbage".to_vec()),
        ("bad.json", b"{\"id\": 1, \"steps\": 3}\n".to_vec()),
    ];
    for (name, bytes) in cases {
        let file = temp(name);
        std::fs::write(&file, bytes).unwrap();
        let out = Command::new(BIN)
            .args(["-r", file.to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert_eq!(err.lines().count(), 1, "{name}: {err}");
        assert!(err.contains(file.to_str().unwrap()), "{name}: {err}");
        if name != "junk.bin" {
            assert!(err.contains("offset"), "{name}: {err}");
        }
        assert!(!err.contains("panicked"), "{name}: {err}");
        std::fs::remove_file(&file).ok();
    }
    let out = Command::new(BIN)
        .args(["-r", "/nonexistent/capture.pcapng"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// A classic pcap of three FreeBSD mbuf_trace records (UDP ports 5001..5003).
fn three_records() -> Vec<u8> {
    let records: Vec<_> = [5001, 5002, 5003]
        .map(|port| {
            let frame = common::udp_frame(port);
            let rec = pktpath_core::formats::mbuf_trace::encode(&["ip_input()".into()], &frame);
            ((1_700_000_000, 0), rec)
        })
        .into();
    common::mbuf_trace_pcap(&records)
}

/// A file cut inside its last record, in each format pktpath reads: the
/// intact journeys are printed (as tcpdump prints the intact packets), then
/// one line naming the file and the offset, and the exit code is 2.
#[test]
fn damaged_captures_give_their_intact_journeys_then_one_line() {
    let pcap = temp("three.pcap");
    std::fs::write(&pcap, three_records()).unwrap();
    let pcapng = temp("three.pcapng");
    pktpath(&["-r", pcap.to_str().unwrap(), "-w", pcapng.to_str().unwrap()]);
    let json = temp("three.json");
    std::fs::write(&json, pktpath(&["-r", pcap.to_str().unwrap(), "--json"])).unwrap();
    for whole in [&pcap, &pcapng, &json] {
        let bytes = std::fs::read(whole).unwrap();
        assert_eq!(
            json_lines(&pktpath(&["-r", whole.to_str().unwrap(), "--json"])).len(),
            3,
            "{}",
            whole.display()
        );
        let cut = temp("cut");
        std::fs::write(&cut, &bytes[..bytes.len() - 12]).unwrap();
        let out = Command::new(BIN)
            .args(["-r", cut.to_str().unwrap(), "--json"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let shown = json_lines(&String::from_utf8_lossy(&out.stdout));
        assert_eq!(out.status.code(), Some(2), "{}: {err}", whole.display());
        assert_eq!(
            shown.len(),
            2,
            "{}: intact journeys {shown:?}",
            whole.display()
        );
        assert!(
            shown[1]["packet"].as_str().unwrap().contains("5002"),
            "{shown:?}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains(cut.to_str().unwrap()) && err.contains("offset"),
            "{err}"
        );
        // -c 2 stops before the damage: nothing to report.
        let out = Command::new(BIN)
            .args(["-r", cut.to_str().unwrap(), "-c", "2"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::remove_file(&cut).ok();
    }
    for f in [pcap, pcapng, json] {
        std::fs::remove_file(f).ok();
    }
}

/// An empty file, or nothing on stdin, is an error, not an empty capture.
#[test]
fn empty_captures_are_an_error() {
    let empty = temp("empty.pcapng");
    std::fs::write(&empty, b"").unwrap();
    let out = Command::new(BIN)
        .args(["-r", empty.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(empty.to_str().unwrap()) && err.contains("empty"),
        "{err}"
    );
    let out = Command::new(BIN)
        .args(["-r", "-"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    std::fs::remove_file(&empty).ok();
}

/// Wireshark's extcap calls, in Wireshark's order: interfaces, link types,
/// options, a filter check, then a capture into a FIFO read by tshark as a
/// pipe interface, stopped with SIGTERM.
#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn extcap_capture_into_a_fifo_reaches_tshark() {
    let listed = pktpath(&["--extcap-interfaces", "--extcap-version=4.0"]);
    assert!(listed.contains("interface {value=pktpath}"), "{listed}");
    let dlts = pktpath(&["--extcap-interface", "pktpath", "--extcap-dlts"]);
    assert!(dlts.contains("{number=1}"), "{dlts}");
    let config = pktpath(&["--extcap-interface", "pktpath", "--extcap-config"]);
    assert!(config.contains("{call=--backend}") && config.contains("{call=--netns}"));
    let bad = pktpath(&[
        "--extcap-interface",
        "pktpath",
        "--extcap-capture-filter",
        "udp and",
    ]);
    assert!(bad.contains("syntax error"), "{bad}");
    let good = pktpath(&[
        "--extcap-interface",
        "pktpath",
        "--extcap-capture-filter",
        "udp",
    ]);
    assert_eq!(good, "");
    require_root!();
    assert!(
        have("tshark"),
        "tshark is not installed (scripts/setup.sh installs it)"
    );
    let net = Net::new(224);
    let fifo = temp("extcap.fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    let tshark = Command::new("tshark")
        .args([
            "-i",
            fifo.to_str().unwrap(),
            "-l",
            "-T",
            "fields",
            "-e",
            "ip.dst",
            "-e",
            "frame.comment",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut capture = Command::new(BIN)
        .args(["--capture", "--extcap-interface", "pktpath", "--fifo"])
        .arg(&fifo)
        .args(["--extcap-capture-filter", &net.only("udp port 5224")])
        .args(["--backend", "tracepoint"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Ready once the probes are attached (stderr says so).
    let mut err = BufReader::new(capture.stderr.take().unwrap());
    let t = Instant::now();
    let mut line = String::new();
    while !line.contains("attached") {
        line.clear();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "extcap capture exited"
        );
        assert!(t.elapsed() < Duration::from_secs(60));
    }
    net.udp(5224);
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: signalling our own child, as Wireshark stops a capture.
    unsafe { libc::kill(capture.id() as i32, libc::SIGTERM) };
    assert!(capture.wait().unwrap().success());
    let out = tshark.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("10.224.2.2"),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("pktpath journey #1"), "{text}");
    std::fs::remove_file(&fifo).ok();
}

/// The fuzz corpus (seeds and inputs the fuzzers found interesting) reads
/// without a panic: an error or journeys that render.
#[test]
fn fuzz_corpus_never_panics() {
    use pktpath_core::sinks::{terminal::Terminal, Sink};
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/read_capture");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let mut t = Terminal::new(std::io::sink(), false, false);
        for r in &pktpath_core::formats::read(&data).journeys {
            t.journey(&r.journey).unwrap();
        }
        n += 1;
    }
    assert!(n >= 6, "corpus seeds missing from {dir}");
}

/// A capture written again (`-r FILE -w OUT`) keeps its dates: its steps'
/// clock is that of the boot they were traced in, so the records are dated
/// as the file dated them, not mapped through this boot's clock. Through
/// pcapng and through the mbuf_trace layout. Needs no root.
#[test]
fn a_capture_written_again_keeps_its_dates() {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../pktpath-core/tests/fixtures/journeys.pcapng"
    );
    let read = |path: &str| pktpath_core::formats::read(&std::fs::read(path).unwrap());
    let dates = |c: &pktpath_core::formats::Capture| -> Vec<u64> {
        c.journeys
            .iter()
            .map(|r| r.journey.steps[0].ts_ns + r.wall_offset_ns.unwrap())
            .collect()
    };
    let original = read(fixture);
    assert!(!original.journeys.is_empty());
    let again = temp("again.pcapng");
    let again = again.to_str().unwrap();
    pktpath(&["-r", fixture, "-w", again]);
    assert_eq!(dates(&read(again)), dates(&original));
    let mbuf = temp("again.mbuf.pcap");
    let mbuf = mbuf.to_str().unwrap();
    pktpath(&["-r", fixture, "-w", mbuf, "--format", "mbuf-trace"]);
    let back = temp("again-from-mbuf.pcapng");
    let back = back.to_str().unwrap();
    pktpath(&["-r", mbuf, "-w", back]);
    // mbuf_trace keeps microseconds.
    let micro = |d: Vec<u64>| d.into_iter().map(|t| t / 1000).collect::<Vec<_>>();
    assert_eq!(micro(dates(&read(mbuf))), micro(dates(&original)));
    assert_eq!(micro(dates(&read(back))), micro(dates(&original)));
    for f in [again, mbuf, back] {
        std::fs::remove_file(f).ok();
    }
}
