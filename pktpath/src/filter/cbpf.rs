//! Classic BPF from libpcap.

use super::{FilterError, Layer};

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
}
