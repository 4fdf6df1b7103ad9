//! pcapng files (pcap-file parses the blocks): pktpath's own, with the
//! journey as JSON in a custom option and the path in comments; mbuf_trace
//! records on a DLT_USER0 interface; plain packets from anything else.

use std::collections::HashMap;

use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgParser};

use super::{mbuf_trace, steps, Link, ReadError, Replayed};
use crate::journey::Journey;
use crate::output::pcapng::{EPB_PACKETID, JSON_PREFIX};

fn corrupt(offset: usize, e: impl std::fmt::Display) -> ReadError {
    ReadError::Corrupt {
        offset: offset as u64,
        what: format!("pcapng: {e}"),
    }
}

/// Appends each journey to `out` as it is read: what came before damage stays.
pub fn read(data: &[u8], out: &mut Vec<Replayed>) -> Result<(), ReadError> {
    let (mut rest, mut parser) = PcapNgParser::new(data).map_err(|e| corrupt(0, e))?;
    // Records of one journey (--per-step) share a packet id: keep the first.
    let mut seen: HashMap<u64, usize> = HashMap::new();
    let mut index = 0u64;
    while !rest.is_empty() {
        let at = data.len() - rest.len();
        let (next, block) = parser.next_block(rest).map_err(|e| corrupt(at, e))?;
        rest = next;
        let (iface, ts, orig_len, frame, options) = match block {
            Block::EnhancedPacket(p) => (
                p.interface_id,
                p.timestamp.as_nanos() as u64,
                p.original_len,
                p.data.into_owned(),
                p.options,
            ),
            Block::SimplePacket(p) => (0, 0, p.original_len, p.data.into_owned(), Vec::new()),
            _ => continue,
        };
        let idb = parser
            .interfaces()
            .get(iface as usize)
            .ok_or_else(|| corrupt(at, format!("packet on undeclared interface {iface}")))?;
        let link = Link::from_linktype(u32::from(idb.linktype));
        // pcap-file reads the raw timestamp as ns: scale by if_tsresol.
        let resol = idb.options.iter().find_map(|o| match o {
            InterfaceDescriptionOption::IfTsResol(r) => Some(*r),
            _ => None,
        });
        let ts = scale(ts, resol.unwrap_or(6));
        let mut comments = Vec::new();
        let mut json = None;
        let mut packet_id = None;
        for o in options {
            match o {
                EnhancedPacketOption::Comment(c) => comments.push(c.into_owned()),
                EnhancedPacketOption::CustomUtf8(c) => {
                    if let Some(j) = c.value.strip_prefix(JSON_PREFIX) {
                        json = Some(j.to_string());
                    }
                }
                EnhancedPacketOption::Unknown(u) if u.code == EPB_PACKETID => {
                    packet_id = u
                        .value
                        .get(..8)
                        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
                }
                _ => {}
            }
        }
        index += 1;
        if let Some(id) = packet_id {
            if seen.contains_key(&id) {
                continue;
            }
            seen.insert(id, out.len());
        }
        let id = packet_id.unwrap_or(index);
        let journey = match (json, link) {
            (Some(j), _) => {
                let mut journey: Journey =
                    serde_json::from_str(&j).map_err(|e| corrupt(at, format!("journey: {e}")))?;
                if let Some(s) = journey.steps.first_mut() {
                    s.packet = Some((false, frame.as_slice().into()));
                }
                journey
            }
            (None, Link::MbufTrace) => {
                let rec = mbuf_trace::decode(&frame, at as u64 + 28)?;
                let orig = orig_len.saturating_sub((frame.len() - rec.frame.len()) as u32);
                let j = steps::journey(id, ts, &rec.strings, rec.frame, orig);
                out.push(Replayed {
                    frame: Some(rec.frame.to_vec()),
                    journey: j,
                });
                continue;
            }
            (None, Link::Ethernet) => steps::journey(id, ts, &comments, &frame, orig_len),
            (None, Link::Other(t)) => {
                return Err(corrupt(
                    at,
                    format!("link type {t}: pktpath reads Ethernet and mbuf_trace (147)"),
                ))
            }
        };
        out.push(Replayed {
            journey,
            frame: Some(frame),
        });
    }
    Ok(())
}

/// A timestamp in units of `resol` (pcapng if_tsresol) to ns.
fn scale(raw: u64, resol: u8) -> u64 {
    let exp = (resol & 0x7f) as u32;
    if resol & 0x80 != 0 {
        // Powers of two: raw / 2^exp seconds.
        let secs = raw.checked_shr(exp).unwrap_or(0);
        let frac = raw & (1u64.checked_shl(exp).unwrap_or(0).wrapping_sub(1));
        let frac_ns = (frac as u128 * 1_000_000_000) >> exp.min(127);
        secs.saturating_mul(1_000_000_000)
            .saturating_add(frac_ns as u64)
    } else if exp <= 9 {
        raw.saturating_mul(10u64.pow(9 - exp))
    } else {
        raw / 10u64.saturating_pow(exp - 9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_resolutions() {
        assert_eq!(scale(5, 6), 5_000);
        assert_eq!(scale(5, 9), 5);
        assert_eq!(scale(5_000, 12), 5);
        assert_eq!(scale(3, 0x81), 1_500_000_000);
        assert_eq!(scale(u64::MAX, 0xff), 0);
    }
}
