//! Golden-output tests: a recorded journey set through every sink
//! (terminal, JSON lines, pcapng, mbuf-trace), compared byte for byte with
//! the files in `tests/golden/`, and each written capture read back.
//! Kernel-free: the journeys come from a file.
//!
//! When a sink's output changes on purpose, rewrite the golden files with
//!
//! ```text
//! UPDATE_GOLDEN=1 cargo test -p pktpath-core --test golden
//! ```
//!
//! and review the change (`git diff --text`; `tshark -r` for the captures).
//! On a mismatch the test names the first difference (a line for text, a
//! block or record for captures) and leaves what it wrote in cargo's
//! target tmp dir, to diff against the golden file.
//!
//! The journey set, `tests/fixtures/journeys.pcapng`, was recorded live
//! (Linux 6.18, network tracepoints through tp_btf) by
//! `tests/fixtures/record.sh`: four namespaces (client, a masquerading
//! router with an nftables drop rule, a bridge, a server with a UDP socket),
//! a ping, three UDP datagrams and a ping with TTL 1, traced with
//!
//! ```text
//! pktpath -w journeys.pcapng --ready-file READY 'net 10.77.0.0/16'
//! ```
//!
//! 14 journeys: ARP (a bridge's flood, learned FDB entries, a failed route
//! lookup), a ping forwarded through the router's NAT and the bridge and
//! consumed by the server, its reply (NO_SOCKET at ping_rcv: not a loss),
//! UDP delivered to a socket, UDP to a closed port (NO_SOCKET, icmp_send)
//! and the ICMP port unreachable it caused (conntrack: related, de-NATed),
//! UDP dropped by an nftables rule (its rule step), the TTL-1 ping dropped
//! at the router (IP_INHDR) with its ICMP time exceeded (`about` the ping)
//! and that ICMP's copy freed unread with ping's raw socket (QUEUE_PURGE).
//!
//! pcapng and not JSON lines: JSON lines do not keep a packet's bytes
//! (`Step::packet` is not serialized), and the pcapng and mbuf-trace sinks
//! write nothing for a journey without a frame. pktpath's pcapng keeps both
//! the journey exactly (as JSON, in a custom option) and its frame.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use pktpath_core::clock::WallClock;
use pktpath_core::formats::mbuf_trace::MbufTrace;
use pktpath_core::formats::pcapng::{Pcapng, PcapngOptions, MAX_SNAPLEN};
use pktpath_core::formats::{self, Replayed};
use pktpath_core::journey::Journey;
use pktpath_core::location::{KernelVersion, SourceLinks};
use pktpath_core::model::Step;
use pktpath_core::sinks::json::Json;
use pktpath_core::sinks::terminal::Terminal;
use pktpath_core::sinks::Sink;

/// The wall clock of the written captures: monotonic time plus a fixed
/// offset (1,780,000,000 s), so that they are the same bytes on every
/// machine, at every run.
const OFFSET_NS: u64 = 1_780_000_000_000_000_000;
const CLOCK: WallClock = WallClock(OFFSET_NS);

const UPDATE: &str = "UPDATE_GOLDEN=1 cargo test -p pktpath-core --test golden";

fn here(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The recorded journeys, each with the frame it was recorded with.
fn fixture() -> Vec<Replayed> {
    let path = here("tests/fixtures/journeys.pcapng");
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let capture = formats::read(&data);
    assert!(capture.damage.is_none(), "{:?}", capture.damage);
    assert_eq!(capture.journeys.len(), 14, "journeys in {}", path.display());
    assert!(
        capture.journeys.iter().all(|r| r.frame.is_some()),
        "every recorded journey has its frame"
    );
    capture.journeys
}

fn journeys() -> Vec<Journey> {
    fixture().into_iter().map(|r| r.journey).collect()
}

/// Every journey through `sink`, as a run hands them out.
fn render<S: Sink>(mut sink: S, journeys: &[Journey]) {
    for j in journeys {
        sink.journey(j).unwrap();
    }
    sink.flush().unwrap();
}

/// A journey as JSON lines keep it: without the packet's bytes.
fn without_bytes(j: &Journey) -> Journey {
    let mut j = j.clone();
    for s in &mut j.steps {
        s.packet = None;
    }
    j
}

// ---------------------------------------------------------------------------
// The golden files

/// Compares `actual` with `tests/golden/NAME` (or writes it, with
/// UPDATE_GOLDEN set).
fn golden(name: &str, actual: &[u8]) {
    let path = here("tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (written by: {UPDATE})", path.display()));
    if expected == actual {
        return;
    }
    let written = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("golden-{name}"));
    std::fs::write(&written, actual).unwrap();
    let first = if name.ends_with(".txt") || name.ends_with(".jsonl") {
        first_line_difference(&expected, actual)
    } else {
        first_byte_difference(name, &expected, actual)
    };
    panic!(
        "{name} is not what the golden file holds: {first}\n  golden file: {}\n  written now: {}\n\
         if the change is intended, rewrite the golden files: {UPDATE}",
        path.display(),
        written.display(),
    );
}

/// Text: the first line that differs, around its first differing character.
fn first_line_difference(expected: &[u8], actual: &[u8]) -> String {
    let expected = String::from_utf8_lossy(expected);
    let actual = String::from_utf8_lossy(actual);
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let Some(i) = (0..e.len().max(a.len())).find(|&i| e.get(i) != a.get(i)) else {
        return "the same lines, but not the same line ends".into();
    };
    let (el, al) = (
        e.get(i).copied().unwrap_or(""),
        a.get(i).copied().unwrap_or(""),
    );
    // Long lines (JSON): show where they part, with some context.
    let (ec, ac): (Vec<char>, Vec<char>) = (el.chars().collect(), al.chars().collect());
    let col = (0..ec.len().max(ac.len()))
        .find(|&c| ec.get(c) != ac.get(c))
        .unwrap_or(0);
    let window = |l: &[char]| -> String {
        let (start, end) = (col.saturating_sub(60), (col + 60).min(l.len()));
        let cut = |b: bool| if b { "..." } else { "" };
        let mid: String = l[start.min(end)..end].iter().collect();
        format!("{}{mid}{}", cut(start > 0), cut(end < l.len()))
    };
    let mut out = format!("line {} differs (column {}):", i + 1, col + 1);
    let _ = write!(out, "\n  golden: {:?}", window(&ec));
    let _ = write!(out, "\n  now:    {:?}", window(&ac));
    if e.len() != a.len() {
        let _ = write!(
            out,
            "\n  ({} lines in the golden file, {} now)",
            e.len(),
            a.len()
        );
    }
    out
}

/// Binary: the first byte that differs, and the block (pcapng) or record
/// (pcap) it is in.
fn first_byte_difference(name: &str, expected: &[u8], actual: &[u8]) -> String {
    let at = expected
        .iter()
        .zip(actual)
        .position(|(e, a)| e != a)
        .unwrap_or(expected.len().min(actual.len()));
    let hex = |d: &[u8]| {
        d[at.min(d.len())..(at + 16).min(d.len())]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    format!(
        "byte {at} differs ({}), {} bytes in the golden file, {} now\n  golden: {}\n  now:    {}",
        where_in(name, expected, at),
        expected.len(),
        actual.len(),
        hex(expected),
        hex(actual),
    )
}

/// Which block or record of a capture holds byte `at`.
fn where_in(name: &str, data: &[u8], at: usize) -> String {
    let u32_at = |o: usize| {
        data.get(o..o + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()) as usize)
    };
    if name.ends_with(".pcapng") {
        // Blocks: type, total length, body, total length.
        let mut off = 0;
        let mut n = 0;
        while let (Some(kind), Some(len)) = (u32_at(off), u32_at(off + 4)) {
            if at < off + len || len == 0 {
                let kind = match kind {
                    0x0A0D_0D0A => "section header",
                    1 => "interface description",
                    6 => "enhanced packet",
                    _ => "block",
                };
                let i = at - off;
                let field = match (kind, i) {
                    ("enhanced packet", 12..=19) => " (timestamp)",
                    ("enhanced packet", 20..=27) => " (lengths)",
                    _ => "",
                };
                return format!("{kind} block {n}, its byte {i}{field}");
            }
            off += len;
            n += 1;
        }
    } else {
        // pcap: a 24-byte file header, then records of a 16-byte header
        // (with the length captured at 8) and the data.
        if at < 24 {
            return "the file header".into();
        }
        let (mut off, mut n) = (24, 0);
        while let Some(len) = u32_at(off + 8) {
            if at < off + 16 + len {
                let field = match at - off {
                    0..=7 => " (timestamp)",
                    8..=15 => " (lengths)",
                    _ => "",
                };
                return format!("record {n}, its byte {}{field}", at - off);
            }
            off += 16 + len;
            n += 1;
        }
    }
    "past the end".into()
}

// ---------------------------------------------------------------------------
// The sinks

#[test]
fn terminal() {
    let mut out = Vec::new();
    render(Terminal::new(&mut out, false, false), &journeys());
    golden("terminal.txt", &out);
}

/// Where each step was handled in the kernel's source (issue 23), on the
/// release the journeys were recorded on (6.18.44: no line from the
/// tables, which have upstream 6.18's; the file and the firing function),
/// verbose: each step's link on a line of its own.
#[test]
fn terminal_located() {
    let mut out = Vec::new();
    render(
        Terminal::new(&mut out, false, false).located(recorded_on(), true),
        &journeys(),
    );
    golden("terminal-located.txt", &out);
}

/// The release the fixture was recorded on.
fn recorded_on() -> SourceLinks {
    SourceLinks::new(KernelVersion::parse("6.18.44-fc-v669"))
}

/// The live steps (`--steps`), each journey's as they come, in time order.
#[test]
fn terminal_steps() {
    let mut all: Vec<(u64, Step)> = journeys()
        .into_iter()
        .flat_map(|j| j.steps.into_iter().map(move |s| (j.id, s)))
        .collect();
    all.sort_by_key(|(_, s)| s.ts_ns);
    let mut out = Vec::new();
    let mut t = Terminal::new(&mut out, false, true);
    assert!(t.wants_steps());
    for (id, s) in &all {
        t.step(*id, s).unwrap();
    }
    golden("terminal-steps.txt", &out);
}

#[test]
fn json_lines() {
    let journeys = journeys();
    let mut out = Vec::new();
    render(Json::new(&mut out, false), &journeys);
    golden("journeys.jsonl", &out);
    // Read back: the journeys, all but the steps' bytes; each journey's
    // frame as first seen (what filters run on).
    let back = formats::read(&out);
    assert!(back.damage.is_none(), "{:?}", back.damage);
    assert_eq!(back.journeys.len(), journeys.len());
    for (b, j) in back.journeys.iter().zip(&journeys) {
        assert_eq!(b.journey, without_bytes(j), "journey #{} from JSON", j.id);
        assert_eq!(
            b.frame,
            formats::frame(j).map(|(f, _)| f),
            "journey #{}",
            j.id
        );
    }
}

/// Each step with its `location` (issue 23): additive, read back as the
/// same journeys.
#[test]
fn json_lines_located() {
    let journeys = journeys();
    let mut out = Vec::new();
    render(Json::with_links(&mut out, false, recorded_on()), &journeys);
    golden("journeys-located.jsonl", &out);
    let back = formats::read(&out);
    assert!(back.damage.is_none(), "{:?}", back.damage);
    let back: Vec<Journey> = back.journeys.into_iter().map(|r| r.journey).collect();
    let want: Vec<Journey> = journeys.iter().map(without_bytes).collect();
    assert_eq!(back, want);
}

/// `--json --steps`: each step as a line of its own before its journey;
/// reading skips them.
#[test]
fn json_lines_with_steps() {
    let journeys = journeys();
    let mut out = Vec::new();
    let mut sink = Json::new(&mut out, true);
    for j in &journeys {
        for s in &j.steps {
            sink.step(j.id, s).unwrap();
        }
        sink.journey(j).unwrap();
    }
    sink.flush().unwrap();
    let text = String::from_utf8(out).unwrap();
    let mut lines = text.lines();
    for j in &journeys {
        for s in &without_bytes(j).steps {
            let line: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
            assert_eq!(line["journey"], j.id, "{line}");
            let back: Step = serde_json::from_value(line["step"].clone()).unwrap();
            assert_eq!(&back, s, "a step of journey #{}", j.id);
        }
        let line = lines.next().unwrap();
        assert!(line.starts_with(&format!("{{\"id\":{},", j.id)), "{line}");
    }
    assert_eq!(lines.next(), None);
    let back = formats::read(text.as_bytes());
    assert!(back.damage.is_none(), "{:?}", back.damage);
    let back: Vec<Journey> = back.journeys.into_iter().map(|r| r.journey).collect();
    let want: Vec<Journey> = journeys.iter().map(without_bytes).collect();
    assert_eq!(back, want);
}

/// The pcapng records' timestamps (ns), in order.
fn pcapng_timestamps(data: &[u8]) -> Vec<u64> {
    use pcap_file::pcapng::{Block, PcapNgParser};
    let (mut rest, mut parser) = PcapNgParser::new(data).unwrap();
    let mut ts = Vec::new();
    while !rest.is_empty() {
        let (next, block) = parser.next_block(rest).unwrap();
        rest = next;
        if let Block::EnhancedPacket(p) = block {
            ts.push(p.timestamp.as_nanos() as u64);
        }
    }
    ts
}

#[test]
fn pcapng() {
    let recorded = fixture();
    let journeys: Vec<Journey> = recorded.iter().map(|r| r.journey.clone()).collect();
    let mut out = Vec::new();
    let sink = Pcapng::new(&mut out, PcapngOptions::default())
        .unwrap()
        .with_clock(CLOCK);
    render(sink, &journeys);
    golden("journeys.pcapng", &out);
    // Read back: the journeys exactly, each with its frame, each record
    // dated at its journey's first step.
    let back = read_back_exactly(&out, &recorded);
    let dates: Vec<u64> = journeys
        .iter()
        .map(|j| j.steps[0].ts_ns + OFFSET_NS)
        .collect();
    assert_eq!(pcapng_timestamps(&out), dates);
    // What a sink writing them again dates them by.
    assert!(back
        .journeys
        .iter()
        .all(|r| r.wall_offset_ns == Some(OFFSET_NS)));
}

/// Reads pktpath's pcapng back: the recorded journeys exactly, each with
/// its frame, and no damage.
fn read_back_exactly(out: &[u8], recorded: &[Replayed]) -> formats::Capture {
    let back = formats::read(out);
    assert!(back.damage.is_none(), "{:?}", back.damage);
    assert_eq!(back.journeys.len(), recorded.len());
    for (b, r) in back.journeys.iter().zip(recorded) {
        assert_eq!(
            b.journey, r.journey,
            "journey #{} from pcapng",
            r.journey.id
        );
        assert_eq!(b.frame, r.frame, "frame of journey #{}", r.journey.id);
    }
    back
}

/// `--per-step`: a record per step, the journey's JSON in the first; read
/// back, one journey per packet id.
#[test]
fn pcapng_per_step() {
    let recorded = fixture();
    let journeys: Vec<Journey> = recorded.iter().map(|r| r.journey.clone()).collect();
    let mut out = Vec::new();
    let opts = PcapngOptions {
        per_step: true,
        snaplen: MAX_SNAPLEN,
    };
    let sink = Pcapng::new(&mut out, opts).unwrap().with_clock(CLOCK);
    render(sink, &journeys);
    golden("journeys-per-step.pcapng", &out);
    read_back_exactly(&out, &recorded);
    let dates: Vec<u64> = journeys
        .iter()
        .flat_map(|j| j.steps.iter().map(|s| s.ts_ns + OFFSET_NS))
        .collect();
    assert_eq!(pcapng_timestamps(&out), dates);
}

/// Microseconds, rounded: what a step line keeps of a time offset.
fn us(ns: u64) -> u64 {
    (ns + 500) / 1000
}

#[test]
fn mbuf_trace() {
    let recorded = fixture();
    let journeys: Vec<Journey> = recorded.iter().map(|r| r.journey.clone()).collect();
    let mut out = Vec::new();
    let sink = MbufTrace::new(&mut out, MAX_SNAPLEN)
        .unwrap()
        .with_clock(CLOCK);
    render(sink, &journeys);
    golden("journeys.mbuf-trace.pcap", &out);
    // Read back: a record keeps the frame and each step as a line (where,
    // which site, what it said, its time offset to the microsecond); not
    // the journey's id, how it ended, or the steps' details as data.
    let back = formats::read(&out);
    assert!(back.damage.is_none(), "{:?}", back.damage);
    assert_eq!(back.journeys.len(), recorded.len());
    for (b, r) in back.journeys.iter().zip(&recorded) {
        let (j, id) = (&r.journey, r.journey.id);
        assert_eq!(b.frame, r.frame, "frame of journey #{id}");
        assert_eq!(b.journey.packet, j.packet, "journey #{id}");
        assert_eq!(b.journey.len, j.len, "journey #{id}");
        assert_eq!(b.journey.steps.len(), j.steps.len(), "journey #{id}");
        let t0 = j.steps[0].ts_ns;
        assert_eq!(b.journey.steps[0].ts_ns, t0 + OFFSET_NS, "journey #{id}");
        for (i, (bs, s)) in b.journey.steps.iter().zip(&j.steps).enumerate() {
            let at = format!("step {i} of journey #{id}");
            assert_eq!(bs.site, s.site, "{at}");
            assert_eq!(bs.subsystem, s.subsystem, "{at}");
            assert_eq!(bs.netns_name, s.netns_name, "{at}");
            assert_eq!(bs.dev, s.dev, "{at}");
            assert_eq!(bs.source, s.source, "{at}");
            assert_eq!(bs.describe(), s.describe(), "{at}");
            assert_eq!(
                us(bs.ts_ns - b.journey.steps[0].ts_ns),
                us(s.ts_ns - t0),
                "{at}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// The subsystems of each journey (issue 23: `--view subsystems`)

/// Each recorded journey collapsed into its subsystems: where each part
/// of the stack came into play, the free's function (icmp_rcv, arp_process,
/// ping_rcv) saying where the packet ended. Tracepoints only: the core's
/// receive and transmit between namespaces, no function in between.
#[test]
fn subsystems_of_the_recorded_journeys() {
    use pktpath_core::location::{stages, stages_text};
    // The ping through the router's NAT and the bridge, its reply, UDP
    // delivered, UDP to a closed port and its ICMP error, UDP dropped by
    // the forward chain's rule, the TTL-1 ping and its ICMP error.
    let forward = "routing → core → routing → netfilter(forward) → netfilter(postrouting) \
                   → core → bridge → core → routing";
    let expected = [
        (1, "core → routing → arp".to_string()),
        (2, "core → arp".into()),
        (3, format!("{forward} → icmp")),
        (
            4,
            "core → neighbour → core → bridge → core → routing → arp".into(),
        ),
        (5, "core → routing → arp".into()),
        (6, "core → bridge → core → arp".into()),
        (
            7,
            "routing → neighbour → core → bridge → core → routing → netfilter(forward) \
             → core → routing → icmp"
                .into(),
        ),
        (8, format!("{forward} → socket")),
        (9, format!("{forward} → icmp → udp")),
        (
            10,
            "routing → core → bridge → core → routing → netfilter(forward) → core → routing → icmp"
                .into(),
        ),
        (11, "routing → core → routing → netfilter(forward)".into()),
        (12, "routing → core → routing → icmp → ipv4".into()),
        (13, "core → routing → icmp".into()),
        (14, "ipv4".into()),
    ];
    let mut journeys = journeys();
    journeys.sort_by_key(|j| j.id);
    assert_eq!(journeys.len(), expected.len());
    for (j, (id, text)) in journeys.iter().zip(expected) {
        assert_eq!(j.id, id);
        let s = stages(j);
        assert_eq!(stages_text(&s), text, "journey {id}");
        assert_eq!(s.iter().map(|s| s.steps).sum::<usize>(), j.steps.len());
        assert!(s.windows(2).all(|w| w[0] != w[1]), "journey {id}: {s:?}");
    }
}

/// The text graphs of the report: the forwarded, NATed, bridged ping (#3)
/// and the drop by a rule (#11) as DOT and Mermaid, and the transition
/// graph of all journeys.
#[test]
fn graphs() {
    use pktpath_core::report::{graph, paths};
    let all = journeys();
    let one = |id: u64| all.iter().find(|j| j.id == id).unwrap();
    let mut dot = String::new();
    let mut mermaid = String::new();
    for id in [3, 11] {
        dot.push_str(&graph::journey_dot(one(id)));
        mermaid.push_str(&graph::journey_mermaid(one(id)));
    }
    let subsystems = paths::transitions(&all, |s| {
        pktpath_core::location::Location::of(s, None).subsystem
    });
    dot.push_str(&graph::transitions_dot(&subsystems));
    mermaid.push_str(&graph::transitions_mermaid(&subsystems));
    golden("graphs.dot", dot.as_bytes());
    golden("graphs.mmd", mermaid.as_bytes());
}

/// The distinct paths of the journey set, with their counts and ends.
#[test]
fn distinct_paths() {
    let all = journeys();
    let mut out = String::new();
    for p in pktpath_core::report::paths::distinct(&all) {
        let places: Vec<String> = p
            .places
            .iter()
            .map(|(ns, subs)| format!("{ns}: {}", subs.join(", ")))
            .collect();
        let ends: Vec<String> = p.ends.iter().map(|(e, n)| format!("{n} {e}")).collect();
        let _ = writeln!(
            out,
            "{} x {} => {} (journeys {:?})",
            p.count,
            places.join(" -> "),
            ends.join("; "),
            p.journeys
        );
    }
    golden("distinct-paths.txt", out.as_bytes());
}
