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

#[cfg(test)]
mod tests {
    use super::*;

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
