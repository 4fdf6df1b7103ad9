//! Classic BPF from libpcap.

use super::{FilterError, Layer};
use crate::abi::ReadSetCfg;

/// One classic BPF instruction (struct bpf_insn of libpcap).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CInsn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// Compiles a pcap-filter expression for `layer` with libpcap (optimized).
/// An empty expression compiles to "accept everything", as in tcpdump.
pub fn compile(expr: &str, layer: Layer) -> Result<Vec<CInsn>, FilterError> {
    let prog = program(expr, layer)?;
    prog.get_instructions()
        .iter()
        .map(|i| parse(&i.to_string()))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| FilterError::Syntax("libpcap returned an unreadable program".into()))
}

/// The libpcap program itself, whose `filter()` runs libpcap's own
/// interpreter (used to check the translation).
pub fn program(expr: &str, layer: Layer) -> Result<pcap::BpfProgram, FilterError> {
    let dead = pcap::Capture::dead(pcap::Linktype(layer.dlt()))
        .map_err(|e| FilterError::Syntax(e.to_string()))?;
    dead.compile(expr, true).map_err(|e| match e {
        pcap::Error::PcapError(msg) => FilterError::Syntax(msg),
        other => FilterError::Syntax(other.to_string()),
    })
}

/// The pcap crate keeps instruction fields private but prints them as
/// "code jt jf k"; reading that back avoids transmuting its type.
fn parse(text: &str) -> Option<CInsn> {
    let mut it = text.split_whitespace();
    let insn = CInsn {
        code: it.next()?.parse().ok()?,
        jt: it.next()?.parse().ok()?,
        jf: it.next()?.parse().ok()?,
        k: it.next()?.parse().ok()?,
    };
    it.next().is_none().then_some(insn)
}

/// How many bytes from the start of the packet the program can read:
/// absolute loads up to their end, indexed loads up to their end plus the
/// largest index X can hold (None: X can hold anything, e.g. after TAX).
/// The probes copy only this much for the filter.
pub fn bytes_read(prog: &[CInsn]) -> Option<u64> {
    const LD: u16 = 0x00;
    const LDX: u16 = 0x01;
    const MISC: u16 = 0x07;
    let size = |code: u16| match code & 0x18 {
        0x08 => 2,
        0x10 => 1,
        _ => 4,
    };
    // The largest value X can hold.
    let mut max_x = Some(0u64);
    for i in prog {
        match (i.code & 0x07, i.code & 0xe0) {
            (LDX, 0x00) => max_x = max_x.map(|m| m.max(i.k as u64)),
            // 4 * (P[k] & 0xf): an IPv4 header length.
            (LDX, 0xa0) => max_x = max_x.map(|m| m.max(60)),
            (LDX, _) => max_x = None,
            (MISC, _) if i.code & 0xf8 == 0x00 => max_x = None, // TAX
            _ => {}
        }
    }
    let mut need = 0u64;
    for i in prog {
        let end = i.k as u64 + size(i.code);
        match (i.code & 0x07, i.code & 0xe0) {
            (LD, 0x20) => need = need.max(end),
            (LD, 0x40) => need = need.max(end + max_x?),
            (LDX, 0xa0) => need = need.max(i.k as u64 + 1),
            _ => {}
        }
    }
    Some(need)
}

/// The bytes a filter reads, when they are few and at fixed places: its
/// answer is then a function of those bytes (and of how many of them the
/// packet has), and can be remembered for every packet that has the same
/// ones (every packet of a flow, for `host`, `net`, `port` and protocol
/// filters), not only for one packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadSet {
    /// Bit i: byte i of the packet (i < 64).
    pub abs: u64,
    /// Bit i: byte X + i (i < 32), `X = 4 * (P[msh] & 0xf)`: behind an IPv4
    /// header (ports, TCP flags).
    pub ind: u32,
    /// Where the header-length byte is (ldx msh), when an indexed load needs it.
    pub msh: u8,
}

/// Bytes of the packet a class of packets fixes: (offset, value, mask of
/// the bits fixed).
pub type Fixed = [(u32, u8, u8)];

/// The packet classes read sets are kept for, per layer: IPv4, IPv6 (by
/// the ethertype, or by the IP version), and the rest (nothing fixed).
/// `libpcap` tests these first, so each class reaches only its own part of
/// the program: "host X" reads ARP's addresses only for ARP, where they are
/// an IPv4 packet's TCP sequence number.
pub fn classes(layer: Layer) -> [&'static Fixed; 3] {
    match layer {
        Layer::L2 => [
            &[(12, 0x08, 0xff), (13, 0x00, 0xff)],
            &[(12, 0x86, 0xff), (13, 0xdd, 0xff)],
            &[],
        ],
        Layer::L3 => [&[(0, 0x40, 0xf0)], &[(0, 0x60, 0xf0)], &[]],
    }
}

/// X as far as the walk tells: a value (when it may come from anything but
/// ldx msh), and whether it may come from ldx msh (4 x a header length).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct XVal {
    val: Val,
    plain: bool,
    msh: bool,
}

impl XVal {
    fn plain(val: Val) -> XVal {
        XVal {
            val,
            plain: true,
            msh: false,
        }
    }

    /// Its value, unknown when it may be a header length.
    fn val_or_unknown(self) -> Val {
        if self.msh {
            Val::UNKNOWN
        } else {
            self.val
        }
    }

    fn join(self, o: XVal) -> XVal {
        let val = match (self.plain, o.plain) {
            (true, true) => self.val.join(o.val),
            (true, false) => self.val,
            _ => o.val,
        };
        XVal {
            val,
            plain: self.plain || o.plain,
            msh: self.msh || o.msh,
        }
    }
}

/// A register as far as the class tells: the bits known, and their values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Val {
    known: u32,
    bits: u32,
}

impl Val {
    const UNKNOWN: Val = Val { known: 0, bits: 0 };

    fn of(v: u32) -> Val {
        Val { known: !0, bits: v }
    }

    fn value(self) -> Option<u32> {
        (self.known == !0).then_some(self.bits)
    }

    /// What two paths agree on.
    fn join(self, o: Val) -> Val {
        let known = self.known & o.known & !(self.bits ^ o.bits);
        Val {
            known,
            bits: self.bits & known,
        }
    }

    fn alu(self, op: u16, o: Val) -> Val {
        if let (Some(a), Some(b)) = (self.value(), o.value()) {
            let v = match op {
                0x00 => a.wrapping_add(b),
                0x10 => a.wrapping_sub(b),
                0x20 => a.wrapping_mul(b),
                0x30 if b != 0 => a / b,
                0x40 => a | b,
                0x50 => a & b,
                0x60 => a.checked_shl(b).unwrap_or(0),
                0x70 => a.checked_shr(b).unwrap_or(0),
                0x80 => a.wrapping_neg(),
                0x90 if b != 0 => a % b,
                0xa0 => a ^ b,
                _ => return Val::UNKNOWN,
            };
            return Val::of(v);
        }
        match (op, o.value()) {
            // Bits an AND clears, or an OR sets, are known whatever A was.
            (0x50, Some(k)) => Val {
                known: self.known | !k,
                bits: self.bits & k,
            },
            (0x40, Some(k)) => Val {
                known: self.known | k,
                bits: self.bits | k,
            },
            (0x70, Some(k)) if k < 32 => Val {
                known: (self.known >> k) | !(!0u32 >> k),
                bits: self.bits >> k,
            },
            _ => Val::UNKNOWN,
        }
    }

    /// Whether a conditional jump is taken: Some when the known bits decide.
    fn test(self, op: u16, o: Val) -> Option<bool> {
        if let (Some(a), Some(b)) = (self.value(), o.value()) {
            return match op {
                0x10 => Some(a == b),
                0x20 => Some(a > b),
                0x30 => Some(a >= b),
                0x40 => Some(a & b != 0),
                _ => None,
            };
        }
        let k = o.value()?;
        match op {
            0x10 if (self.bits ^ k) & self.known != 0 => Some(false),
            0x40 if self.bits & self.known & k != 0 => Some(true),
            0x40 if k & !self.known == 0 => Some(self.bits & k != 0),
            _ => None,
        }
    }
}

/// The bytes `prog` reads from packets of a class (see ReadSet, classes()),
/// or None when it reads anything else there: the packet length, bytes
/// past 64 (or past X + 32), or through an index that is not the one
/// header-length byte. Only the instructions a packet of the class can
/// reach count: the program is walked with what the class fixes known
/// (cBPF jumps only forward: one pass in order, states joined).
pub fn read_set(prog: &[CInsn], fixed: &Fixed) -> Option<ReadSet> {
    const LD: u16 = 0x00;
    const LDX: u16 = 0x01;
    const ALU: u16 = 0x04;
    const JMP: u16 = 0x05;
    const RET: u16 = 0x06;
    const MISC: u16 = 0x07;
    let size = |code: u16| match code & 0x18 {
        0x08 => 2u32,
        0x10 => 1,
        _ => 4,
    };
    let bits = |from: u32, n: u32, limit: u32| -> Option<u64> {
        (from + n <= limit).then(|| ((1u64 << n) - 1) << from)
    };
    let load = |k: u32, n: u32| -> Val {
        let mut v = Val { known: !0, bits: 0 };
        for off in k..k + n {
            let (b, m) = fixed
                .iter()
                .find(|f| f.0 == off)
                .map_or((0, 0), |f| (f.1, f.2));
            v.known = v.known << 8 | m as u32;
            v.bits = v.bits << 8 | (b & m) as u32;
        }
        if n < 4 {
            v.known |= !0 << (8 * n); // the bytes above a narrow load: 0
        }
        v
    };
    let mut set = ReadSet::default();
    let mut msh: Option<u32> = None;
    // (A, X) on entry to each instruction, None where nothing arrives.
    let mut state: Vec<Option<(Val, XVal)>> = vec![None; prog.len() + 1];
    state[0] = Some((Val::of(0), XVal::plain(Val::of(0))));
    let arrive = |state: &mut Vec<Option<(Val, XVal)>>, to: usize, s: (Val, XVal)| {
        if let Some(slot) = state.get_mut(to) {
            *slot = Some(match *slot {
                Some((a, x)) => (a.join(s.0), x.join(s.1)),
                None => s,
            });
        }
    };
    for (pc, i) in prog.iter().enumerate() {
        let Some((mut a, mut x)) = state[pc] else {
            continue;
        };
        let (class, mode) = (i.code & 0x07, i.code & 0xe0);
        match class {
            LD => match mode {
                0x00 => a = Val::of(i.k),
                0x20 => {
                    set.abs |= bits(i.k, size(i.code), 64)?;
                    a = load(i.k, size(i.code));
                }
                0x40 => {
                    // X + k: behind the header length (ldx msh), or at a
                    // place X holds for sure, or None.
                    if x.msh {
                        set.ind |= bits(i.k, size(i.code), 32)? as u32;
                    }
                    if x.plain {
                        let at = i.k.checked_add(x.val.value()?)?;
                        set.abs |= bits(at, size(i.code), 64)?;
                    }
                    a = Val::UNKNOWN;
                }
                0x60 => a = Val::UNKNOWN,
                _ => return None, // len
            },
            LDX => match mode {
                0xa0 => {
                    if msh.is_some_and(|m| m != i.k) {
                        return None;
                    }
                    msh = Some(i.k);
                    set.abs |= bits(i.k, 1, 64)?;
                    x = XVal {
                        val: Val::UNKNOWN,
                        plain: false,
                        msh: true,
                    };
                }
                0x00 => x = XVal::plain(Val::of(i.k)),
                0x60 => x = XVal::plain(Val::UNKNOWN),
                _ => return None, // len
            },
            ALU => {
                let o = if i.code & 0x08 != 0 {
                    x.val_or_unknown()
                } else {
                    Val::of(i.k)
                };
                a = a.alu(i.code & 0xf0, o);
            }
            JMP => {
                let next = pc + 1;
                if i.code & 0xf0 == 0x00 {
                    arrive(&mut state, next + i.k as usize, (a, x));
                    continue;
                }
                let o = if i.code & 0x08 != 0 {
                    x.val_or_unknown()
                } else {
                    Val::of(i.k)
                };
                let taken = a.test(i.code & 0xf0, o);
                if taken != Some(false) {
                    arrive(&mut state, next + i.jt as usize, (a, x));
                }
                if taken != Some(true) {
                    arrive(&mut state, next + i.jf as usize, (a, x));
                }
                continue;
            }
            RET => continue,
            MISC => {
                if i.code & 0xf8 == 0x00 {
                    x = XVal::plain(a); // tax
                } else {
                    a = x.val_or_unknown(); // txa
                }
            }
            _ => {} // st, stx
        }
        arrive(&mut state, pc + 1, (a, x));
    }
    set.msh = msh.unwrap_or(0) as u8;
    // The bytes that tell the class apart are part of what decides.
    for f in fixed {
        set.abs |= bits(f.0, 1, 64)?;
    }
    Some(set)
}

impl ReadSet {
    /// The masks of `set` (None: off, the filter reads other bytes too).
    pub fn config(set: Option<ReadSet>) -> ReadSetCfg {
        let Some(set) = set else {
            return ReadSetCfg::default();
        };
        let mut c = ReadSetCfg {
            on: 1,
            msh: set.msh,
            ..ReadSetCfg::default()
        };
        for i in 0..64 {
            if set.abs >> i & 1 == 1 {
                c.abs[i / 8] |= 0xff << (8 * (i % 8));
            }
        }
        for i in 0..32 {
            if set.ind >> i & 1 == 1 {
                c.ind[i / 8] |= 0xff << (8 * (i % 8));
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_covers_every_load() {
        let read = |e: &str, l| bytes_read(&compile(e, l).unwrap());
        // Ethernet: ethertype at 12, IPv4 addresses end at 34, ARP's at 42.
        assert_eq!(read("ip host 10.0.0.1", Layer::L2), Some(34));
        assert_eq!(read("host 10.0.0.1", Layer::L2), Some(42));
        assert_eq!(read("icmp", Layer::L3), Some(10));
        // Ports behind a variable IPv4 header: up to 60 bytes of it.
        let ports = read("tcp port 80", Layer::L2).unwrap();
        assert!((14 + 60 + 4..=14 + 60 + 40 + 4).contains(&ports), "{ports}");
        assert_eq!(read("", Layer::L2), Some(0));
    }

    #[test]
    fn compiles_both_layers() {
        let l2 = compile("icmp", Layer::L2).unwrap();
        let l3 = compile("icmp", Layer::L3).unwrap();
        assert!(l2.len() > 2 && l3.len() > 2);
        assert_ne!(l2, l3, "L2 reads the ethertype, L3 the IP version");
    }

    #[test]
    fn libpcap_message_on_syntax_error() {
        let err = compile("host and and", Layer::L2).unwrap_err();
        assert!(err.to_string().contains("syntax error"), "{err}");
    }

    #[test]
    fn read_set_of_flow_filters() {
        let set = |e: &str, l| read_set(&compile(e, l).unwrap(), &[]);
        // Ethernet, IPv4 host: the ethertype and both addresses (and ARP's
        // and RARP's, for plain "host").
        let s = set("ip host 10.0.0.1", Layer::L2).unwrap();
        assert_eq!(s.abs, (0b11 << 12) | (0xff << 26), "{:#x}", s.abs);
        assert_eq!(s.ind, 0);
        // Ports: behind the IPv4 header, found through its length byte.
        let s = set("tcp port 80", Layer::L2).unwrap();
        assert_eq!(s.msh, 14);
        assert_eq!(s.ind & 0b1111 << 14, 0b1111 << 14, "{:#x}", s.ind);
        let s = set("tcp[13] & 2 != 0", Layer::L2).unwrap();
        assert!(s.ind & 1 << (14 + 13) != 0, "{:#x}", s.ind);
        assert!(s.abs & (1 << 23) != 0, "IPv4 protocol byte");
        let s = set("udp and port 53", Layer::L3).unwrap();
        assert_eq!(s.msh, 0);
        // No bytes at all.
        assert_eq!(set("", Layer::L2), Some(ReadSet::default()));
        // "host": IPv4 packets do not reach the ARP part.
        let ipv4 = read_set(
            &compile("host 10.0.0.1", Layer::L2).unwrap(),
            classes(Layer::L2)[0],
        );
        assert_eq!(ipv4.unwrap().abs, (0b11 << 12) | (0xff << 26));
        let ipv6 = read_set(
            &compile("host 10.0.0.1", Layer::L2).unwrap(),
            classes(Layer::L2)[1],
        );
        assert_eq!(ipv6.unwrap().abs, 0b11 << 12, "IPv6: the ethertype says no");
        let v4 = read_set(
            &compile("tcp port 80", Layer::L3).unwrap(),
            classes(Layer::L3)[0],
        )
        .unwrap();
        assert_eq!(v4.msh, 0);
        assert!(v4.abs >> 40 == 0, "no IPv6 bytes for IPv4: {:#x}", v4.abs);
        // The length, or bytes past 64: not a function of fixed bytes.
        assert_eq!(set("len > 100", Layer::L2), None);
        assert_eq!(set("ip[80] = 1", Layer::L3), None);
    }

    #[test]
    fn read_set_bytes_are_every_byte_read() {
        // Every byte bytes_read() allows is in the set, for filters with one.
        for e in [
            "icmp",
            "ip6 host ::1",
            "tcp[13] & 2 != 0",
            "vlan and ip",
            "arp",
        ] {
            for l in [Layer::L2, Layer::L3] {
                let Ok(p) = compile(e, l) else { continue };
                if let Some(s) = read_set(&p, &[]) {
                    let top = 64 - s.abs.leading_zeros() as u64;
                    let xtop = 32 - s.ind.leading_zeros() as u64;
                    let need = bytes_read(&p).unwrap();
                    assert!(
                        need <= top.max(if s.ind != 0 { 60 + xtop } else { 0 }),
                        "{e} {l:?}: reads {need}, set {s:?}"
                    );
                }
            }
        }
    }
}
