//! The Wireshark side (#4): files written by `pktpath demo -w` read by
//! stock tshark without any plugin (the path in the packet comments, the
//! journey id as the packet id), and with wireshark/pktpath.lua (filterable
//! pktpath.* fields, for pcapng and for mbuf-trace DLT_USER0 records); and
//! hand-made hostile DLT_USER0 records, which must give an error item,
//! never a Lua error.
//!
//! Skips, saying why, when tshark is not installed (scripts/setup.sh
//! installs it) or, for the demo files, when not root.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use common::BIN;

const PLUGIN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../wireshark/pktpath.lua");

/// The demo builds fixed namespaces (ppdemo-*): one at a time.
static DEMO: Mutex<()> = Mutex::new(());

/// A scratch directory removed on drop; also tshark's HOME, so that a
/// pktpath.lua installed in the real personal plugin folder is not loaded
/// (twice, or in the "without plugin" runs).
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let d = std::env::temp_dir().join(format!("pktpath-ws-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Scratch(d)
    }
    fn path(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Why tshark cannot be used, if it cannot.
fn no_tshark() -> Option<String> {
    match Command::new("tshark")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => None,
        Ok(s) => Some(format!("tshark --version failed ({s})")),
        Err(e) => Some(format!(
            "tshark is not installed ({e}; run scripts/setup.sh)"
        )),
    }
}

macro_rules! require_tshark {
    () => {
        if let Some(why) = no_tshark() {
            panic!("cannot run here: {why}");
        }
    };
}

/// Runs tshark on `file` (with the plugin when `plugin`), asserts it
/// succeeded without Lua errors, returns stdout.
fn tshark(home: &Scratch, plugin: bool, file: &Path, args: &[&str]) -> String {
    let mut c = Command::new("tshark");
    c.env("HOME", &home.0)
        .env("XDG_CONFIG_HOME", home.path("config"))
        .arg("-n");
    if plugin {
        c.arg("-X").arg(format!("lua_script:{PLUGIN}"));
    }
    let out = c
        .arg("-r")
        .arg(file)
        .args(args)
        .output()
        .expect("tshark runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let cmd = format!(
        "tshark {}-r {} {args:?}",
        if plugin { "(plugin) " } else { "" },
        file.display()
    );
    assert!(
        out.status.success(),
        "{cmd} failed ({}):\n{stderr}\n{stdout}",
        out.status
    );
    for bad in ["Lua: Error", "Lua Error"] {
        assert!(
            !stderr.contains(bad) && !stdout.contains(bad),
            "{cmd}: Lua error:\n{stderr}\n{stdout}"
        );
    }
    stdout
}

/// `tshark -T fields` for `fields` (lists of values joined by '|'), one
/// row per packet.
fn fields(
    home: &Scratch,
    plugin: bool,
    file: &Path,
    filter: &str,
    fields: &[&str],
) -> Vec<Vec<String>> {
    let mut args = vec!["-T", "fields", "-E", "aggregator=|", "-E", "separator=/t"];
    if !filter.is_empty() {
        args.extend(["-Y", filter]);
    }
    for f in fields {
        args.extend(["-e", f]);
    }
    tshark(home, plugin, file, &args)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

fn list(v: &str) -> Vec<&str> {
    if v.is_empty() {
        Vec::new()
    } else {
        v.split('|').collect()
    }
}

/// Runs `pktpath demo -w FILE ARGS`.
fn demo(file: &Path, args: &[&str]) {
    let _one = DEMO.lock().unwrap_or_else(|e| e.into_inner());
    let out = Command::new(BIN)
        .arg("demo")
        .args(["--report", "/dev/null"])
        .arg("-w")
        .arg(file)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pktpath demo failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        std::fs::metadata(file).unwrap().len() > 0,
        "empty {}",
        file.display()
    );
}

#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn demo_pcapng_in_tshark_with_and_without_plugin() {
    require_root!();
    require_tshark!();
    let dir = Scratch::new("pcapng");
    let file = dir.path("demo.pcapng");
    demo(&file, &[]);

    // Without the plugin: the path is in the comments, the journey id is
    // the packet id.
    let plain = fields(
        &dir,
        false,
        &file,
        "",
        &["frame.number", "frame.packet_id", "frame.comment"],
    );
    assert!(plain.len() >= 4, "few packets: {plain:?}");
    let mut drop_frame = None;
    for row in &plain {
        let comments = &row[2];
        let header = comments
            .strip_prefix("pktpath journey #")
            .unwrap_or_else(|| panic!("first comment is not the header: {row:?}"));
        let id = header.split(':').next().unwrap();
        assert_eq!(
            id, row[1],
            "journey id in the header = frame.packet_id: {row:?}"
        );
        // Step lines: tab-separated (tshark shows tabs as \t).
        assert!(
            comments.contains("|0\\t+0.000ms\\t"),
            "no step lines: {row:?}"
        );
        if comments.contains("dropped in netns ppdemo-router: NETFILTER_DROP") {
            assert!(comments.contains("\\tkfree_skb\\t"), "{row:?}");
            assert!(comments.contains("drop: NETFILTER_DROP"), "{row:?}");
            drop_frame = Some((row[0].clone(), row[1].clone()));
        }
    }
    let (drop_frame, drop_id) = drop_frame.expect("the nftables drop journey is in the file");
    eprintln!(
        "without plugin: {} packets; the drop is frame {drop_frame}, journey {drop_id}",
        plain.len()
    );

    // With the plugin.
    let cols = [
        "frame.number",
        "frame.packet_id",
        "pktpath.journey",
        "pktpath.drop_reason",
        "ip.dst",
        "udp.dstport",
        "pktpath.netns",
        "pktpath.site",
        "pktpath.verdict",
        "pktpath.end",
    ];
    let rows = fields(
        &dir,
        true,
        &file,
        r#"pktpath.drop_reason == "NETFILTER_DROP""#,
        &cols,
    );
    assert_eq!(rows.len(), 1, "one NETFILTER_DROP journey: {rows:?}");
    let r = &rows[0];
    assert_eq!(r[0], drop_frame);
    assert_eq!(r[1], drop_id);
    assert_eq!(r[2], drop_id, "pktpath.journey = packet id");
    assert_eq!(r[3], "NETFILTER_DROP");
    assert_eq!(r[4], "10.99.2.2");
    assert_eq!(r[5], "9999");
    assert!(list(&r[6]).contains(&"ppdemo-router"), "netns: {r:?}");
    assert!(list(&r[7]).contains(&"kfree_skb"), "sites: {r:?}");
    assert!(
        list(&r[8])
            .iter()
            .any(|v| v.starts_with("drop: NETFILTER_DROP")),
        "verdict: {r:?}"
    );
    assert!(
        r[9].starts_with("dropped in netns ppdemo-router: NETFILTER_DROP"),
        "end: {r:?}"
    );

    // The display filters of the README select it.
    for filter in [
        r#"pktpath.site == "kfree_skb""#,
        r#"pktpath.netns contains "ppdemo-router""#,
        r#"pktpath.site == "kfree_skb" && pktpath.drop_reason == "NETFILTER_DROP" && pktpath.netns == "ppdemo-router""#,
        r#"pktpath.verdict contains "NETFILTER_DROP""#,
        "pktpath.offset_ms >= 0",
    ] {
        let got = fields(&dir, true, &file, filter, &["frame.number"]);
        assert!(
            got.iter().any(|row| row[0] == drop_frame),
            "{filter} does not select frame {drop_frame}: {got:?}"
        );
    }

    // Every packet: journey = packet id, one step index per step, in order.
    let all = fields(
        &dir,
        true,
        &file,
        "",
        &[
            "frame.packet_id",
            "pktpath.journey",
            "pktpath.steps",
            "pktpath.step.index",
            "pktpath.offset_ms",
        ],
    );
    assert_eq!(all.len(), plain.len());
    for r in &all {
        assert_eq!(r[0], r[1], "{r:?}");
        let idx = list(&r[3]);
        assert_eq!(idx.len().to_string(), r[2], "{r:?}");
        let want: Vec<String> = (0..idx.len()).map(|i| i.to_string()).collect();
        assert_eq!(idx, want, "{r:?}");
        let offs: Vec<f64> = list(&r[4]).iter().map(|v| v.parse().unwrap()).collect();
        assert_eq!(offs.len(), idx.len(), "{r:?}");
        assert!(offs.iter().all(|&o| o >= 0.0), "{r:?}");
    }
    eprintln!(
        "with plugin: {} packets dissected, drop journey {drop_id} found by pktpath.* filters",
        all.len()
    );
}

#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn demo_mbuf_trace_in_tshark_with_plugin() {
    require_root!();
    require_tshark!();
    let dir = Scratch::new("mbuf");
    let file = dir.path("demo.pcap");
    demo(&file, &["--format", "mbuf-trace"]);

    let cols = [
        "frame.number",
        "mbuf_trace.count",
        "pktpath.steps",
        "pktpath.step.index",
        "pktpath.site",
        "pktpath.netns",
        "frame.protocols",
        "ip.dst",
        "pktpath.drop_reason",
        "udp.dstport",
    ];
    let all = fields(&dir, true, &file, "", &cols);
    assert!(all.len() >= 4, "few packets: {all:?}");
    for r in &all {
        let count: usize = r[1].parse().unwrap_or_else(|_| panic!("no count: {r:?}"));
        assert!(count > 0, "{r:?}");
        assert_eq!(list(&r[3]).len(), count, "one step per string: {r:?}");
        assert_eq!(list(&r[4]).len(), count, "one site per string: {r:?}");
        assert_eq!(r[2], count.to_string(), "{r:?}");
        assert!(
            r[6].starts_with("mbuf_trace:eth:ethertype:ip"),
            "frame decodes: {r:?}"
        );
    }
    let drops: Vec<_> = all.iter().filter(|r| r[8] == "NETFILTER_DROP").collect();
    assert_eq!(drops.len(), 1, "{all:?}");
    let r = drops[0];
    assert_eq!(r[7], "10.99.2.2");
    assert_eq!(r[9], "9999");
    assert!(list(&r[4]).contains(&"kfree_skb"), "{r:?}");
    assert!(list(&r[5]).contains(&"ppdemo-router"), "{r:?}");

    let got = fields(
        &dir,
        true,
        &file,
        r#"pktpath.site == "kfree_skb" && pktpath.drop_reason == "NETFILTER_DROP" && pktpath.netns == "ppdemo-router""#,
        &["frame.number"],
    );
    assert_eq!(got, vec![vec![r[0].clone()]]);
    // Nothing in pktpath's own records is malformed.
    assert!(fields(&dir, true, &file, "mbuf_trace.malformed", &["frame.number"]).is_empty());
    eprintln!(
        "mbuf-trace: {} records dissected, counts match, drop in frame {}",
        all.len(),
        r[0]
    );
}

/// A classic pcap, DLT_USER0, nanosecond timestamps.
fn user0_pcap(records: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend(0xa1b2_3c4du32.to_le_bytes());
    out.extend(2u16.to_le_bytes());
    out.extend(4u16.to_le_bytes());
    out.extend(0i32.to_le_bytes());
    out.extend(0u32.to_le_bytes());
    out.extend(65535u32.to_le_bytes());
    out.extend(147u32.to_le_bytes());
    for (i, r) in records.iter().enumerate() {
        out.extend((1_700_000_000 + i as u32).to_le_bytes());
        out.extend(0u32.to_le_bytes());
        out.extend((r.len() as u32).to_le_bytes());
        out.extend((r.len() as u32).to_le_bytes());
        out.extend(r);
    }
    out
}

fn string(s: &str) -> Vec<u8> {
    let mut v = ((s.len() + 1) as u16).to_le_bytes().to_vec();
    v.extend(s.as_bytes());
    v.push(0);
    v
}

/// Ethernet + IPv4 10.99.1.2 > 10.99.2.2 + UDP 1234 > 9999.
fn frame() -> Vec<u8> {
    let mut f = vec![0u8; 12];
    f.extend([0x08, 0x00]);
    f.extend([
        0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 99, 1, 2, 10, 99, 2, 2,
    ]);
    f.extend([0x04, 0xd2, 0x27, 0x0f, 0, 8, 0, 0]);
    f
}

#[test]
#[ignore = "needs tshark: scripts/test.sh runs it with --include-ignored"]
fn hostile_mbuf_trace_records_give_error_items_not_lua_errors() {
    require_tshark!();
    let dir = Scratch::new("hostile");
    let file = dir.path("hostile.pcap");
    let le = |n: u16| n.to_le_bytes().to_vec();
    let cat = |parts: &[Vec<u8>]| parts.concat();
    let records = vec![
        // 1: FreeBSD's free-form strings, then a frame: shown as given.
        cat(&[le(2), string("ip_input"), string("ether_output"), frame()]),
        // 2: the second string's length runs past the record.
        cat(&[
            le(2),
            string("ip_input"),
            le(400),
            b"abc\0".to_vec(),
            frame()[..4].to_vec(),
        ]),
        // 3..6: empty, no count, count without strings, cut length.
        vec![],
        vec![5],
        le(3),
        cat(&[le(1), vec![5]]),
        // 7: a count far beyond the strings present.
        cat(&[le(65535), string("x"), string("y")]),
        // 8: a string without its NUL, and an empty one, then a frame.
        cat(&[le(2), le(3), b"abc".to_vec(), le(0), frame()]),
    ];
    std::fs::write(&file, user0_pcap(&records)).unwrap();

    let verbose = tshark(&dir, true, &file, &["-V"]);
    assert!(verbose.contains("runs past the record"), "{verbose}");
    let malformed = fields(&dir, true, &file, "mbuf_trace.malformed", &["frame.number"]);
    let numbers: Vec<&str> = malformed.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(
        numbers,
        ["2", "3", "4", "5", "6", "7"],
        "malformed records flagged"
    );

    let rows = fields(
        &dir,
        true,
        &file,
        "",
        &[
            "frame.number",
            "mbuf_trace.count",
            "pktpath.site",
            "ip.dst",
            "udp.dstport",
        ],
    );
    assert_eq!(rows.len(), records.len(), "{rows:?}");
    assert_eq!(
        rows[0][1..],
        ["2", "ip_input|ether_output", "10.99.2.2", "9999"],
        "{rows:?}"
    );
    assert_eq!(
        rows[1][2], "ip_input",
        "the good string before the bad one: {rows:?}"
    );
    assert_eq!(rows[6][2], "x|y", "{rows:?}");
    assert_eq!(rows[7][3], "10.99.2.2", "{rows:?}");
    assert!(rows[7][2].starts_with("abc"), "{rows:?}");
    eprintln!(
        "hostile: {} records, {} flagged malformed, no Lua error",
        rows.len(),
        numbers.len()
    );
}
