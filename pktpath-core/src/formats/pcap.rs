//! Classic pcap files (pcap-file parses them): FreeBSD mbuf_trace captures
//! (`tcpdump -i mbuf_trace -w`, DLT_USER0), pktpath's `--format mbuf-trace`,
//! and plain Ethernet captures (packets without a path).

use pcap_file::pcap::PcapParser;

use super::{mbuf_trace, step_line as steps, Link, ReadError, Replayed};

pub fn is_magic(m: &[u8]) -> bool {
    matches!(
        m,
        [0xd4, 0xc3, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0xc3, 0xd4]
            | [0x4d, 0x3c, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0x3c, 0x4d]
    )
}

fn corrupt(offset: usize, e: impl std::fmt::Display) -> ReadError {
    ReadError::Corrupt {
        offset: offset as u64,
        what: format!("pcap: {e}"),
    }
}

/// Appends each journey to `out` as it is read: what came before damage stays.
pub fn read(data: &[u8], out: &mut Vec<Replayed>) -> Result<(), ReadError> {
    let (mut rest, parser) = PcapParser::new(data).map_err(|e| corrupt(0, e))?;
    let header = parser.header();
    let link = Link::from_linktype(u32::from(header.datalink));
    if let Link::Other(t) = link {
        return Err(corrupt(
            0,
            format!("link type {t}: pktpath reads Ethernet and mbuf_trace (147)"),
        ));
    }
    let mut id = 0;
    while !rest.is_empty() {
        let at = data.len() - rest.len();
        let (next, p) = parser.next_packet(rest).map_err(|e| corrupt(at, e))?;
        rest = next;
        id += 1;
        let ts = p.timestamp.as_nanos() as u64;
        let (journey, frame) = match link {
            Link::MbufTrace => {
                let rec = mbuf_trace::decode(&p.data, at as u64 + 16)?;
                let frame = rec.frame.to_vec();
                let orig = p
                    .orig_len
                    .saturating_sub((p.data.len() - frame.len()) as u32);
                (steps::journey(id, ts, &rec.strings, &frame, orig), frame)
            }
            _ => (
                steps::journey(id, ts, &[], &p.data, p.orig_len),
                p.data.into_owned(),
            ),
        };
        out.push(Replayed {
            journey,
            frame: Some(frame),
            // The steps are dated from the record's time.
            wall_offset_ns: Some(0),
        });
    }
    Ok(())
}
