//! The eBPF translation of a filter must give libpcap's own verdict.
//!
//! Many generated packets (Ethernet, VLAN, ARP, IPv4 with options and
//! fragments, IPv6 with extension headers, TCP/UDP/ICMP, truncated ones) are
//! run through libpcap's interpreter (`pcap_offline_filter`) and through our
//! eBPF in the rbpf interpreter, with the memory layout and register contract
//! of the kernel side. No kernel and no privileges are needed.

use pktpath::abi::{FILTER_PKT_MAX, SCRATCH_WIRELEN_OFF};
use pktpath::filter::ebpf::{translate, Insn};
use pktpath::filter::{cbpf, Layer};

const FILTERS: &[&str] = &[
    "",
    "icmp",
    "host 10.0.0.1",
    "src host 10.0.0.2 and dst host 10.0.0.1",
    "tcp port 80",
    "udp and port 53",
    "tcp[tcpflags] & tcp-syn != 0",
    "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-ack",
    "ip6",
    "ip6 and tcp",
    "icmp6",
    "icmp6 and ip6[40] == 128",
    "vlan",
    "vlan and host 10.0.0.1",
    "vlan 100 and tcp",
    "arp",
    "net 10.0.0.0/8",
    "not ip",
    "ip[6:2] & 0x1fff != 0",
    "ip and len > 100",
    "less 80",
    "greater 200",
    "portrange 20-100",
    "tcp dst port 443 or udp src port 53",
    "icmp[icmptype] == icmp-echo",
    "icmp[icmptype] == icmp-echoreply and src host 10.0.0.2",
    "ip6 host fe80::1",
    "ip6 net 2001:db8::/32 and udp",
    "ether host 02:00:00:00:00:01",
    "ether broadcast",
    "ip proto 47",
    "tcp[13] = 2",
    "ip[2:2] / 4 > 10",
    "ip[2:2] % 7 = 3",
    "ip[8] * 2 + 1 >= 100",
    "ip[0] & 0xf << 2 = 20",
    "(ip[0] & 0xf) << 2 > 20",
    "ip[8] >> 1 = 32",
    "ip[8] - 3 = 61 or ip[8] ^ 0xff = 0",
    "udp[8:4] = 0x01020304",
    "tcp[(tcp[12] >> 4) * 4] = 0x47",
    "ip[1] & 0xfc == 0xb8",
    "ip[ip[0] & 1] = 0x45",
    "ip multicast",
    "udp port 53 and not src net 192.168.0.0/16",
    "ip6 proto 44",
    "ip6 and ip6[6] == 17",
    "ip[0] & 0xf = 6 and ip[20] = 148",
    "ip[0] = 0x46 and ip[20] = 148",
    "ip[0] & 0xf != 5 or udp",
    "ip[ip[8] % 3] = 69",
    "ip[(ip[9] * 0) / (ip[8] - ip[8])] = 1",
];

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[(self.next() % v.len() as u64) as usize]
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const V4: &[[u8; 4]] = &[
    [10, 0, 0, 1],
    [10, 0, 0, 2],
    [192, 168, 1, 1],
    [224, 0, 0, 5],
    [8, 8, 8, 8],
];
const V6: &[[u8; 16]] = &[
    [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
    [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
    [0x20, 0x01, 0x0d, 0xb9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3],
];
const PORTS: &[u16] = &[22, 53, 80, 443, 1234, 5000];

fn l4(r: &mut Rng, proto: u8) -> Vec<u8> {
    let mut p = Vec::new();
    match proto {
        6 => {
            p.extend(r.pick(PORTS).to_be_bytes());
            p.extend(r.pick(PORTS).to_be_bytes());
            p.extend((0..8).map(|_| r.byte()));
            let doff = r.pick(&[5u8, 6, 8]);
            p.push(doff << 4);
            let any = r.byte();
            p.push(r.pick(&[0x02, 0x10, 0x12, 0x18, 0x11, 0x04, any]));
            p.extend((0..6).map(|_| r.byte()));
            p.extend((0..(doff as usize - 5) * 4).map(|_| r.byte()));
        }
        17 => {
            p.extend(r.pick(PORTS).to_be_bytes());
            p.extend(r.pick(PORTS).to_be_bytes());
            p.extend([0, 8, 0, 0]);
        }
        1 | 58 => {
            p.push(r.pick(&[0, 3, 8, 11, 128, 129, 135]));
            p.extend((0..7).map(|_| r.byte()));
        }
        _ => {}
    }
    let n = (r.next() % 120) as usize;
    p.extend((0..n).map(|i| if i == 0 { 0x47 } else { r.byte() }));
    p.extend(if r.chance(20) {
        vec![1, 2, 3, 4]
    } else {
        vec![]
    });
    p
}

fn ipv4(r: &mut Rng) -> Vec<u8> {
    let proto = r.pick(&[1u8, 6, 17, 47, 6, 17]);
    let ihl = if r.chance(20) { 6 } else { 5 };
    let payload = l4(r, proto);
    let total = ihl * 4 + payload.len();
    let any = r.byte();
    let mut p = vec![0x40 | ihl as u8, r.pick(&[0, 0xb8, any])];
    p.extend((total as u16).to_be_bytes());
    p.extend([r.byte(), r.byte()]);
    let frag: u16 = if r.chance(15) {
        (r.next() % 0x2000) as u16 | 0x2000
    } else {
        0x4000
    };
    p.extend(frag.to_be_bytes());
    let any = r.byte();
    p.push(r.pick(&[1, 64, 128, 255, any]));
    p.push(proto);
    p.extend([0, 0]);
    p.extend(r.pick(V4));
    p.extend(r.pick(V4));
    if ihl == 6 {
        p.extend([1, 1, 1, 0]);
    }
    p.extend(payload);
    p
}

fn ipv6(r: &mut Rng) -> Vec<u8> {
    let proto = r.pick(&[58u8, 6, 17, 44, 0]);
    let mut ext = Vec::new();
    let mut next = proto;
    if proto == 44 || proto == 0 {
        next = r.pick(&[6u8, 17, 58]);
        ext.extend([next, 0]);
        ext.extend((0..6).map(|_| r.byte()));
    }
    let payload = l4(r, next);
    let mut p = vec![0x60, 0, 0, 0];
    p.extend(((ext.len() + payload.len()) as u16).to_be_bytes());
    p.push(proto);
    p.push(64);
    p.extend(r.pick(V6));
    p.extend(r.pick(V6));
    p.extend(ext);
    p.extend(payload);
    p
}

fn ether(r: &mut Rng) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend(r.pick(&[[0xffu8; 6], [2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]]));
    p.extend(r.pick(&[[2u8, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 3]]));
    if r.chance(20) {
        p.extend([0x81, 0x00]);
        p.extend(r.pick(&[100u16, 200, 4095]).to_be_bytes());
    }
    match r.next() % 10 {
        0 => {
            p.extend([0x08, 0x06]);
            p.extend((0..28).map(|_| r.byte()));
        }
        1 => {
            p.extend([0x88, 0xcc]);
            p.extend((0..30).map(|_| r.byte()));
        }
        2..=4 => {
            p.extend([0x86, 0xdd]);
            p.extend(ipv6(r));
        }
        _ => {
            p.extend([0x08, 0x00]);
            p.extend(ipv4(r));
        }
    }
    p
}

/// Runs our eBPF on `pkt` as the kernel side would: scratch map value in r1,
/// captured length in r2, verdict in r0.
fn run_ebpf(prog: &[Insn], pkt: &[u8]) -> u64 {
    let caplen = pkt.len().min(FILTER_PKT_MAX);
    let mut code = Vec::new();
    // mov r2, caplen
    code.extend(Insn::new(0xb7, 2, 0, 0, caplen as i32).to_bytes());
    for i in prog {
        code.extend(i.to_bytes());
    }
    code.extend(Insn::new(0x95, 0, 0, 0, 0).to_bytes());
    let mut mem = vec![0u8; SCRATCH_WIRELEN_OFF as usize + 8];
    mem[..caplen].copy_from_slice(&pkt[..caplen]);
    let off = SCRATCH_WIRELEN_OFF as usize;
    mem[off..off + 4].copy_from_slice(&(pkt.len() as u32).to_ne_bytes());
    let vm = rbpf::EbpfVmRaw::new(Some(&code)).expect("rbpf accepts the program");
    vm.execute_program(&mut mem).expect("program runs")
}

#[test]
fn ebpf_translation_matches_libpcap() {
    let mut r = Rng(0x9e3779b97f4a7c15);
    let mut packets: Vec<Vec<u8>> = (0..1500).map(|_| ether(&mut r)).collect();
    // Truncated copies: loads past the end must fail the same way.
    for i in 0..300 {
        let mut p = packets[i].clone();
        let cut = (r.next() % p.len() as u64) as usize;
        p.truncate(cut);
        packets.push(p);
    }
    packets.retain(|p| p.len() <= FILTER_PKT_MAX);
    let raw: Vec<Vec<u8>> = packets
        .iter()
        .filter(|p| p.len() > 14 && p[12..14] != [0x81, 0x00])
        .map(|p| p[14..].to_vec())
        .collect();
    let mut checked = 0;
    let mut matched = 0;
    for expr in FILTERS {
        for (layer, set) in [(Layer::L2, &packets), (Layer::L3, &raw)] {
            let Ok(prog) = cbpf::program(expr, layer) else {
                // e.g. "vlan" or "ether host" have no meaning on raw IP.
                assert_eq!(layer, Layer::L3, "{expr} must compile for Ethernet");
                continue;
            };
            let ebpf = translate(&cbpf::compile(expr, layer).unwrap()).unwrap();
            for pkt in set.iter() {
                let want = prog.filter(pkt);
                let got = run_ebpf(&ebpf, pkt) != 0;
                assert_eq!(
                    got, want,
                    "filter {expr:?} ({layer:?}) on packet {pkt:02x?}: eBPF says {got}, libpcap {want}"
                );
                checked += 1;
                matched += want as usize;
            }
        }
    }
    // The generator must exercise both verdicts, or the test proves nothing.
    assert!(checked > 50_000, "{checked} checks");
    assert!(
        matched > checked / 20 && matched < checked * 19 / 20,
        "{matched}/{checked} matched"
    );
}

/// The class of a packet the probes pick a read set by (cbpf::classes;
/// read_set_of() in the BPF program): 0 IPv4, 1 IPv6, 2 other.
fn class_of(layer: Layer, pkt: &[u8], n: usize) -> usize {
    let byte = |i: usize| if i < n { pkt[i] } else { 0 };
    match layer {
        Layer::L2 if n >= 14 => match [byte(12), byte(13)] {
            [0x08, 0x00] => 0,
            [0x86, 0xdd] => 1,
            _ => 2,
        },
        Layer::L3 if n >= 1 => match byte(0) >> 4 {
            4 => 0,
            6 => 1,
            _ => 2,
        },
        _ => 2,
    }
}

/// What the probes remember a turned-down packet by, when the filter reads
/// few fixed bytes of its class (cbpf::read_set): those bytes of the packet
/// (0 past its first n), and n. Mirrors flow_word() in the BPF program.
fn read_set_key(set: &cbpf::ReadSet, pkt: &[u8], n: usize) -> (Vec<u8>, usize) {
    let byte = |i: usize| if i < n { pkt[i] } else { 0 };
    let x = 4 * (byte(set.msh as usize) & 0xf) as usize;
    let mut key: Vec<u8> = (0..64)
        .map(|i| if set.abs >> i & 1 == 1 { byte(i) } else { 0 })
        .collect();
    key.extend((0..32).map(|i| {
        if set.ind >> i & 1 == 1 {
            byte(x + i)
        } else {
            0
        }
    }));
    (key, n)
}

#[test]
fn the_bytes_of_a_read_set_decide_the_verdict() {
    let mut r = Rng(0x2545f4914f6cdd1d);
    let packets: Vec<Vec<u8>> = (0..1500).map(|_| ether(&mut r)).collect();
    let raw: Vec<Vec<u8>> = packets
        .iter()
        .filter(|p| p.len() > 14 && p[12..14] != [0x81, 0x00])
        .map(|p| p[14..].to_vec())
        .collect();
    let (mut sets, mut checked) = (0, 0);
    for expr in FILTERS {
        let Ok(filter) = pktpath::filter::Filter::new(expr) else {
            continue;
        };
        for (li, layer, pkts) in [(0, Layer::L2, &packets), (1, Layer::L3, &raw)] {
            let Ok(prog) = cbpf::program(expr, layer) else {
                continue;
            };
            sets += filter.reads[li].iter().flatten().count();
            let mut seen = std::collections::HashMap::new();
            for pkt in pkts.iter() {
                let n = pkt.len().min(filter.bytes as usize);
                let class = class_of(layer, pkt, n);
                let Some(set) = filter.reads[li][class] else {
                    continue;
                };
                let want = prog.filter(pkt);
                // Every byte outside the set changed: the same verdict.
                let (key, _) = read_set_key(&set, pkt, n);
                let x = 4 * (pkt.get(set.msh as usize).copied().unwrap_or(0) & 0xf) as usize;
                let mut other = pkt.clone();
                for (i, b) in other.iter_mut().enumerate() {
                    // The bytes that pick the class stay too.
                    let class_byte = match layer {
                        Layer::L2 => i == 12 || i == 13,
                        Layer::L3 => i == 0,
                    };
                    let kept = class_byte
                        || (i < 64 && set.abs >> i & 1 == 1)
                        || (i >= x && i - x < 32 && set.ind >> (i - x) & 1 == 1);
                    if !kept {
                        *b = r.next() as u8;
                    }
                }
                assert_eq!(
                    class_of(layer, &other, n),
                    class,
                    "{expr:?}: class bytes kept"
                );
                assert_eq!(read_set_key(&set, &other, n).0, key);
                assert_eq!(
                    prog.filter(&other),
                    want,
                    "filter {expr:?} ({layer:?}, class {class}, {set:?}): {pkt:02x?} and {other:02x?}"
                );
                // Packets with the same class and key: the same verdict.
                let k = (class, read_set_key(&set, pkt, n));
                assert_eq!(
                    *seen.entry(k).or_insert(want),
                    want,
                    "filter {expr:?} ({layer:?})"
                );
                checked += 1;
            }
        }
    }
    assert!(
        sets > 150 && checked > 40_000,
        "{sets} read sets, {checked} checks"
    );
}
