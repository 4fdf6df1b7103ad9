//! Capture formats, each read and written in one module: pcapng (pktpath's
//! own, with the journey as JSON and the path as comments; Wireshark reads
//! it), FreeBSD's mbuf_trace records (DLT_USER0, in pcap or pcapng), classic
//! pcap (read), the step line both carry, and JSON lines (read; the JSON
//! sink is in `crate::sinks`).
//!
//! Reading (`pktpath -r`): pcapng written by pktpath (exactly, from the
//! journey each record carries), classic pcap or pcapng holding mbuf_trace
//! records, any other pcap/pcapng (one step per packet: there is no path in
//! it), and JSON lines. Files are hostile input: every length is checked
//! against what is left, and errors name the file offset where reading
//! stopped.

pub mod mbuf_trace;
mod pcap;
pub mod pcapng;
pub mod step_line;

use crate::journey::Journey;
use crate::model::Step;

/// What went wrong reading a capture.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("at offset {offset}: {what}")]
    Corrupt { offset: u64, what: String },
    #[error("not a capture pktpath reads (pcapng, pcap or JSON lines): starts with {0:02x?}")]
    UnknownFormat(Vec<u8>),
    #[error("empty: no capture header")]
    Empty,
}

/// What a capture held: every journey read before the first damage (as
/// tcpdump prints the intact packets of a cut file), and the damage.
#[derive(Debug)]
pub struct Capture {
    pub journeys: Vec<Replayed>,
    pub damage: Option<ReadError>,
    /// The network as it was when the trace began, when the capture
    /// stored it (pktpath's pcapng and JSON lines since 2026-12-08).
    pub network: Option<crate::network::Network>,
}

/// Link-layer types of records whose frame bytes we can filter and show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    Ethernet,
    MbufTrace,
    Other(u32),
}

impl Link {
    fn from_linktype(t: u32) -> Link {
        match t {
            1 => Link::Ethernet,
            t if t == mbuf_trace::LINKTYPE_USER0 as u32 => Link::MbufTrace,
            t => Link::Other(t),
        }
    }
}

/// One journey read back, with the frame it was recorded with (Ethernet),
/// for filters and for writing it again.
#[derive(Debug)]
pub struct Replayed {
    pub journey: Journey,
    pub frame: Option<Vec<u8>>,
    /// Wall-clock time minus the steps' time, ns, where the capture dates
    /// its records: what a file sink writing the journey again dates it by
    /// (steps carry the monotonic clock of the boot they were traced in, or
    /// wall-clock time already when read from comments or mbuf_trace
    /// records: 0). None for JSON lines, which hold no wall-clock time.
    pub wall_offset_ns: Option<u64>,
}

/// Reads every journey in `data` (a whole file), up to the first damage.
pub fn read(data: &[u8]) -> Capture {
    let mut journeys = Vec::new();
    let mut network = None;
    let done = match data.get(..4) {
        Some([0x0a, 0x0d, 0x0d, 0x0a]) => pcapng::read(data, &mut journeys, &mut network),
        Some(m) if pcap::is_magic(m) => pcap::read(data, &mut journeys),
        _ if data.trim_ascii_start().starts_with(b"{") => {
            read_json_lines(data, &mut journeys, &mut network)
        }
        _ if data.is_empty() => Err(ReadError::Empty),
        _ => Err(ReadError::UnknownFormat(data[..data.len().min(4)].to_vec())),
    };
    Capture {
        journeys,
        damage: done.err(),
        network,
    }
}

/// JSON lines as `--json` writes them: one journey per line; step lines of
/// `--steps` (`{"journey": N, "step": ...}`) are skipped; the network, a
/// line of its own (`{"network": ...}`), is kept.
fn read_json_lines(
    data: &[u8],
    out: &mut Vec<Replayed>,
    network: &mut Option<crate::network::Network>,
) -> Result<(), ReadError> {
    let mut offset = 0u64;
    for line in data.split(|&b| b == b'\n') {
        let at = offset;
        offset += line.len() as u64 + 1;
        if line.trim_ascii().is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_slice(line).map_err(|e| ReadError::Corrupt {
                offset: at,
                what: format!("not JSON: {e}"),
            })?;
        if v.get("step").is_some() {
            continue;
        }
        if let Some(n) = v.get("network") {
            *network = Some(
                serde_json::from_value(n.clone()).map_err(|e| ReadError::Corrupt {
                    offset: at,
                    what: format!("not a pktpath network: {e}"),
                })?,
            );
            continue;
        }
        // The frame as first seen, where the line has it (hex).
        let frame = match v.get("frame").and_then(|f| f.as_str()) {
            Some(hex) => Some(unhex(hex).ok_or_else(|| ReadError::Corrupt {
                offset: at,
                what: "a journey's frame is not hex".into(),
            })?),
            None => None,
        };
        let journey = serde_json::from_value(v).map_err(|e| ReadError::Corrupt {
            offset: at,
            what: format!("not a pktpath journey: {e}"),
        })?;
        out.push(Replayed {
            journey,
            frame,
            wall_offset_ns: None,
        });
    }
    Ok(())
}

/// Bytes from hex digits (two a byte).
fn unhex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() % 2 != 0 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A step's bytes as an Ethernet frame, and the original length
/// (`Step::frame`).
pub fn step_frame(s: &Step, ip_len: u32) -> Option<(Vec<u8>, u32)> {
    s.frame(ip_len)
}

/// The frame of a journey as first seen (`Journey::frame`).
pub fn frame(j: &Journey) -> Option<(Vec<u8>, u32)> {
    j.frame()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn damage(data: &[u8]) -> String {
        let c = read(data);
        assert!(c.journeys.is_empty());
        c.damage.expect("damaged").to_string()
    }

    #[test]
    fn unknown_and_empty_inputs() {
        assert_eq!(damage(b""), "empty: no capture header");
        let e = damage(b"hello world");
        assert!(
            e.contains("68 65 6c 6c") || e.contains("68, 65, 6c, 6c"),
            "{e}"
        );
        let e = damage(b"{\"id\": 1}\n");
        assert!(e.starts_with("at offset 0: not a pktpath journey"), "{e}");
    }
}
