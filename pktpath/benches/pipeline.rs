//! User-space pipeline throughput: raw ring-buffer records -> `Decoder` ->
//! `Journeys` -> sinks (JSON lines, pcapng), on a synthetic stream, with no
//! kernel needed beyond its BTF when present.
//!
//! The stream imitates what the tracepoint backend emits for UDP datagrams
//! sent from one namespace to another over veth (10 records per packet:
//! route lookup, net_dev_queue, net_dev_start_xmit, netif_rx_entry,
//! netif_rx, net_dev_xmit, netif_receive_skb, route lookup, copy to the
//! socket, consume_skb; one packet in 16 is dropped by kfree_skb instead of
//! being delivered). Each record is made as the ring buffer callback sees it
//! (bytes, then `RawEvent::from_bytes`), so the measured path is the one of
//! `collect::run`: decode, journey, sink, and an `expire` every 4096 records.
//!
//! Run: `cargo bench --bench pipeline -- [--events N] [--only STAGE]`
//! (default 1,000,000 events, every stage).
//! Prints one `RESULT name value` line per figure (bench/run.sh parses
//! them): events per second on one core for each stage added in turn (the
//! median of three passes), and the peak RSS (VmHWM) of the process.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::io::{self, BufWriter};
use std::time::Instant;

use pktpath::abi::{self, RawEvent};
use pktpath::collect::decode::Decoder;
use pktpath::kernel::btf::{ArgKind, Inventory, Param, Tracepoint};
use pktpath::kernel::tracepoint::plan;
use pktpath_core::formats::pcapng::{Pcapng, PcapngOptions};
use pktpath_core::journey::Journeys;
use pktpath_core::sinks::json::Json;
use pktpath_core::sinks::Sink;

/// The tracepoints the stream uses, as the kernel's BTF describes them
/// (used when /sys/kernel/btf/vmlinux is missing).
fn synthetic_inventory() -> Inventory {
    let p = |name: &str, kind: ArgKind| Param {
        name: name.into(),
        kind,
    };
    let skb = || p("skb", ArgKind::Skb);
    let dev = || p("dev", ArgKind::Pointer("net_device".into()));
    let uint = |n: &str| p(n, ArgKind::Int { signed: false });
    let int = |n: &str| p(n, ArgKind::Int { signed: true });
    let tps = [
        ("net_dev_queue", vec![skb()]),
        ("net_dev_start_xmit", vec![skb(), dev()]),
        ("netif_rx_entry", vec![skb()]),
        ("netif_rx", vec![skb()]),
        (
            "net_dev_xmit",
            vec![skb(), int("rc"), dev(), uint("skb_len")],
        ),
        ("netif_receive_skb", vec![skb()]),
        ("skb_copy_datagram_iovec", vec![skb(), int("len")]),
        ("consume_skb", vec![skb(), p("location", ArgKind::Other)]),
        (
            "kfree_skb",
            vec![
                skb(),
                p("location", ArgKind::Other),
                p("reason", ArgKind::Enum("skb_drop_reason".into())),
            ],
        ),
        (
            "fib_table_lookup",
            vec![uint("tb_id"), p("flp", ArgKind::Other)],
        ),
    ];
    let mut inv = Inventory::default();
    for (name, params) in tps {
        inv.tracepoints.insert(
            name.into(),
            Tracepoint {
                name: name.into(),
                params,
            },
        );
    }
    let reasons: BTreeMap<i64, String> = [
        (2, "SKB_DROP_REASON_NOT_SPECIFIED"),
        (3, "SKB_DROP_REASON_NO_SOCKET"),
        (6, "SKB_DROP_REASON_SOCKET_RCVBUFF"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_string()))
    .collect();
    inv.enums.insert("skb_drop_reason".into(), reasons);
    inv
}

/// One kind of record of the stream.
struct Template {
    bytes: Vec<u8>,
}

/// Makes the records of one packet's journey, in order.
struct Stream {
    templates: Vec<Template>,
    drop: Template,
    /// Slot ids, for the record kinds that need one.
    next: u64,
}

const EVENTS_PER_PACKET: u64 = 10;

fn udp_frame(l2: bool) -> Vec<u8> {
    let mut f = Vec::new();
    if l2 {
        f.extend([0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00]);
    }
    // IPv4, 10.200.0.1 > 10.200.0.2, UDP 40000 > 5201, 64 bytes of payload.
    let ip_len: u16 = 20 + 8 + 64;
    f.extend([0x45, 0]);
    f.extend(ip_len.to_be_bytes());
    f.extend([0x12, 0x34, 0x40, 0, 64, 17, 0, 0]);
    f.extend([10, 200, 0, 1, 10, 200, 0, 2]);
    f.extend(40000u16.to_be_bytes());
    f.extend(5201u16.to_be_bytes());
    f.extend((8u16 + 64).to_be_bytes());
    f.extend([0, 0]);
    f.extend([0xab; 64]);
    f
}

impl Stream {
    fn new(slots: &[Tracepoint], netns: u32) -> Stream {
        let slot = |name: &str| {
            slots
                .iter()
                .position(|t| t.name == name)
                .unwrap_or_else(|| panic!("no slot for {name}")) as u16
        };
        let (l2, l3) = (udp_frame(true), udp_frame(false));
        let make = |kind: u16, site: &str, dev: &str, data: &[u8], l3: bool, args: &[u64]| {
            let mut e = RawEvent::zeroed();
            e.kind = kind;
            e.site = if kind == abi::EVENT_SKB {
                slot(site)
            } else {
                0
            };
            e.netns = netns;
            e.ifindex = 2;
            e.len = data.len() as u32;
            e.dev[..dev.len()].copy_from_slice(dev.as_bytes());
            e.protocol = 0x0008;
            if kind == abi::EVENT_SKB {
                let n = data.len().min(abi::EVENT_PKT_MAX);
                e.data[..n].copy_from_slice(&data[..n]);
                e.data_len = n as u16;
            } else {
                e.flags |= abi::EVENT_F_CORRELATED;
            }
            if l3 {
                e.flags |= abi::EVENT_F_L3;
            }
            e.args[..args.len()].copy_from_slice(args);
            Template {
                bytes: e.to_bytes(),
            }
        };
        let (dst, src) = (
            u32::from_ne_bytes([10, 200, 0, 2]) as u64,
            u32::from_ne_bytes([10, 200, 0, 1]) as u64,
        );
        // A kernel text address for the free locations: resolved through
        // /proc/kallsyms as in a live run (when it is readable).
        let location = kernel_text_address();
        let skb = abi::EVENT_SKB;
        let templates = vec![
            make(abi::EVENT_FIB4, "", "", &[], false, &[254, 0, dst, src, 0]),
            make(skb, "net_dev_queue", "veth0", &l2, false, &[]),
            make(skb, "net_dev_start_xmit", "veth0", &l2, false, &[]),
            make(skb, "netif_rx_entry", "veth1", &l2, false, &[]),
            make(skb, "netif_rx", "veth1", &l2, false, &[]),
            make(skb, "net_dev_xmit", "veth0", &l2, false, &[0, 0, 0, 106]),
            make(skb, "netif_receive_skb", "veth1", &l3, true, &[]),
            make(abi::EVENT_FIB4, "", "", &[], false, &[255, 0, dst, src, 0]),
            make(skb, "skb_copy_datagram_iovec", "", &l3, true, &[0, 64]),
            make(skb, "consume_skb", "", &l3, true, &[0, location]),
        ];
        let drop = make(skb, "kfree_skb", "veth1", &l3, true, &[0, location, 6]);
        Stream {
            templates,
            drop,
            next: 0,
        }
    }

    /// The next record, as the ring buffer callback gets it.
    fn next(&mut self) -> RawEvent {
        let n = self.next;
        self.next += 1;
        let packet = n / EVENTS_PER_PACKET;
        let i = (n % EVENTS_PER_PACKET) as usize;
        // One packet in 16 is dropped after netif_receive_skb.
        let t = if packet % 16 == 15 && i >= 8 {
            &self.drop
        } else {
            &self.templates[i]
        };
        let mut e = RawEvent::from_bytes(&t.bytes).expect("record size");
        e.ts = 1_000_000_000 + n * 1_000;
        e.journey = packet + 1;
        // skb addresses come back after a free, as the allocator does.
        e.skb = 0xffff_8880_1000_0000 + (packet % 1024) * 0x100;
        e.cpu = (packet % 2) as u16;
        e
    }

    /// Whether record `n` ended its journey early (dropped packets have 9).
    fn skip(&self) -> bool {
        let n = self.next;
        (n / EVENTS_PER_PACKET) % 16 == 15 && n % EVENTS_PER_PACKET == 9
    }
}

fn kernel_text_address() -> u64 {
    std::fs::read_to_string("/proc/kallsyms")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let mut it = l.split_whitespace();
                let addr = u64::from_str_radix(it.next()?, 16).ok()?;
                let _ = it.next()?;
                (it.next()? == "udp_recvmsg" && addr != 0).then_some(addr + 0x42)
            })
        })
        .unwrap_or(0)
}

/// What a pass runs after decoding.
#[derive(Clone, Copy, PartialEq)]
enum Stage {
    /// Records only (making them from bytes): the cost of the stream itself.
    Records,
    Decode,
    Journeys,
    Json,
    Pcapng,
}

fn pass(inv: &Inventory, slots: &[Tracepoint], events: u64, stage: Stage) -> (f64, u64) {
    let netns = pktpath::netns::own_inode().unwrap_or(4026531840);
    let mut decoder = Decoder::new(slots.to_vec(), inv.clone());
    let mut stream = Stream::new(slots, netns);
    let mut journeys = Journeys::default();
    let mut sink: Option<Box<dyn Sink>> = match stage {
        // Buffered as main.rs writes files and stdout: the bytes are copied
        // once, as in a live run, then dropped.
        Stage::Json => Some(Box::new(Json::new(BufWriter::new(io::sink()), false))),
        Stage::Pcapng => Some(Box::new(
            Pcapng::new(BufWriter::new(io::sink()), PcapngOptions::default())
                .expect("pcapng header"),
        )),
        _ => None,
    };
    // One-time costs of a run (the /proc scan for namespace names, reading
    // /proc/kallsyms on the first free location) are paid before the clock.
    let mut warm = Stream::new(slots, netns);
    for _ in 0..2 * EVENTS_PER_PACKET {
        black_box(decoder.decode(&warm.next()));
    }
    let mut done = 0u64;
    let mut finished = 0u64;
    let start = Instant::now();
    while done < events {
        if stream.skip() {
            stream.next += 1;
            continue;
        }
        let raw = stream.next();
        done += 1;
        if stage == Stage::Records {
            black_box(&raw);
            continue;
        }
        let Some(step) = decoder.decode(&raw) else {
            panic!("record {done} did not decode");
        };
        if stage == Stage::Decode {
            black_box(&step);
            continue;
        }
        if let Some(j) = journeys.push(raw.journey, step) {
            finished += 1;
            if let Some(s) = sink.as_mut() {
                s.journey(&j).expect("sink");
            }
        }
        // As collect::run: memory bound per record, quiet journeys per poll.
        let mut due = if journeys.over_limit() {
            journeys.evict()
        } else {
            Vec::new()
        };
        if done % 4096 == 0 {
            due.extend(journeys.expire(raw.ts));
        }
        {
            for j in due {
                finished += 1;
                if let Some(s) = sink.as_mut() {
                    s.journey(&j).expect("sink");
                }
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    (done as f64 / secs, finished)
}

fn vm_hwm_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let events = args
        .iter()
        .position(|a| a == "--events")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.replace('_', "").parse().ok())
        .unwrap_or(1_000_000u64);
    // `--only json`: one stage alone (for perf).
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    // The running kernel's BTF, as a live run has it; synthetic without one.
    let (inv, btf) = match Inventory::load() {
        Ok(inv) if inv.tracepoints.contains_key("net_dev_queue") => (inv, "kernel BTF"),
        _ => (synthetic_inventory(), "synthetic tracepoints"),
    };
    let slots = plan(&inv).slots;
    println!(
        "pipeline: {events} synthetic records ({EVENTS_PER_PACKET} per packet), {} slots from {btf}",
        slots.len()
    );
    for (name, stage) in [
        ("records", Stage::Records),
        ("decode", Stage::Decode),
        ("journeys", Stage::Journeys),
        ("json", Stage::Json),
        ("pcapng", Stage::Pcapng),
    ] {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        // The median of three passes: this machine's neighbours move single
        // passes by tens of percent.
        let mut runs: Vec<(f64, u64)> = (0..3).map(|_| pass(&inv, &slots, events, stage)).collect();
        runs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (rate, journeys) = runs[1];
        println!("RESULT {name}_events_per_s {rate:.0}");
        if journeys > 0 {
            println!("RESULT {name}_journeys {journeys}");
        }
    }
    println!("RESULT vmhwm_kb {}", vm_hwm_kb());
}
