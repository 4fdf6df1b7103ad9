//! Packet selection with tcpdump syntax.
//!
//! A pcap-filter expression is compiled by libpcap (the field's own compiler)
//! to classic BPF twice: once for frames that start at the Ethernet header
//! (sites after the MAC header is set) and once for raw IP (sites where only
//! the network header is known). `ebpf` translates each to eBPF instructions
//! and `splice` writes them into the placeholders of the BPF programs.

pub mod cbpf;
pub mod ebpf;
pub mod splice;

use thiserror::Error;

/// Why a filter could not be built.
#[derive(Debug, Error)]
pub enum FilterError {
    /// libpcap rejected the expression; the message is libpcap's.
    #[error("invalid filter: {0}")]
    Syntax(String),
    #[error("filter too large: {0} eBPF instructions, at most {1} fit")]
    TooLarge(usize, usize),
    #[error("cannot translate cBPF instruction {index} (code {code:#06x})")]
    Unsupported { index: usize, code: u16 },
}

/// The link layer a filter variant is compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    /// Ethernet frames (DLT_EN10MB).
    L2,
    /// Raw IPv4/IPv6 packets (DLT_RAW).
    L3,
}

impl Layer {
    pub fn dlt(self) -> i32 {
        match self {
            Layer::L2 => 1,
            Layer::L3 => 12,
        }
    }
}

/// A user filter translated for both layers, ready to splice.
#[derive(Clone, Debug)]
pub struct Filter {
    /// The expression as given ("" selects every packet).
    pub expr: String,
    pub l2: Vec<ebpf::Insn>,
    pub l3: Vec<ebpf::Insn>,
    /// Bytes of a packet the filter can read (at most FILTER_PKT_MAX):
    /// what the probes copy for it.
    pub bytes: u16,
    /// The bytes each variant reads from each class of packets (Ethernet,
    /// IP; cbpf::classes), when few and fixed (cbpf::read_set).
    pub reads: [[Option<cbpf::ReadSet>; 3]; 2],
}

impl Filter {
    /// Compiles `expr` (pcap-filter syntax) for both layers.
    pub fn new(expr: &str) -> Result<Filter, FilterError> {
        let (c2, c3) = (
            cbpf::compile(expr, Layer::L2)?,
            cbpf::compile(expr, Layer::L3)?,
        );
        let max = crate::abi::FILTER_PKT_MAX as u64;
        let bytes = match (cbpf::bytes_read(&c2), cbpf::bytes_read(&c3)) {
            // At least what the probes look at to call a packet well formed
            // and to tell an IP fragment's datagram: Ethernet, the IPv6
            // header and a fragment header after it (62 bytes).
            (Some(a), Some(b)) => a.max(b).clamp(62, max),
            _ => max,
        };
        let l2 = ebpf::translate(&c2)?;
        let l3 = ebpf::translate(&c3)?;
        for prog in [&l2, &l3] {
            if prog.len() > splice::FILTER_ROOM {
                return Err(FilterError::TooLarge(prog.len(), splice::FILTER_ROOM));
            }
        }
        Ok(Filter {
            expr: expr.to_string(),
            l2,
            l3,
            bytes: bytes as u16,
            reads: [(&c2, Layer::L2), (&c3, Layer::L3)]
                .map(|(c, l)| cbpf::classes(l).map(|f| cbpf::read_set(c, f))),
        })
    }
}
