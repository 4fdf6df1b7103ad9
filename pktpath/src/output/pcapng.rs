//! pcapng: one Enhanced Packet Block per journey, written when the journey
//! ends, so that tcpdump, tshark and Wireshark open it without any plugin:
//! the frame as first seen, the journey id as `epb_packetid`, and the whole
//! path as the packet's comments (one line per step).
//!
//! Written by hand: the format is small (section header, one interface,
//! packet blocks with options) and the options we need (`epb_packetid`,
//! comments) are plain type-length-value records.

use std::io::{self, Write};

use super::Sink;
use crate::journey::Journey;

const LINKTYPE_ETHERNET: u16 = 1;
/// Bytes of each frame kept (the BPF side captures up to 128).
pub const SNAPLEN: u32 = 262_144;

const SHB: u32 = 0x0A0D_0D0A;
const IDB: u32 = 0x0000_0001;
const EPB: u32 = 0x0000_0006;
const OPT_END: u16 = 0;
const OPT_COMMENT: u16 = 1;
const IF_NAME: u16 = 2;
const IF_TSRESOL: u16 = 9;
const EPB_PACKETID: u16 = 5;
const SHB_USERAPPL: u16 = 4;

/// Appends one option (type, length, value, padding to 32 bits).
fn option(buf: &mut Vec<u8>, code: u16, value: &[u8]) {
    // An option's length is 16 bits: longer comments are cut.
    let value = &value[..value.len().min(0xfff0)];
    buf.extend(code.to_le_bytes());
    buf.extend((value.len() as u16).to_le_bytes());
    buf.extend(value);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

/// Writes a block: type, total length, body (padded), total length.
fn block(out: &mut impl Write, kind: u32, body: &[u8]) -> io::Result<()> {
    let padded = body.len().next_multiple_of(4);
    let total = (12 + padded) as u32;
    out.write_all(&kind.to_le_bytes())?;
    out.write_all(&total.to_le_bytes())?;
    out.write_all(body)?;
    out.write_all(&vec![0u8; padded - body.len()])?;
    out.write_all(&total.to_le_bytes())
}

/// The frame of a journey as first seen, with an Ethernet header made up
/// when the capture started at the IP header (one link type per file).
pub fn frame(j: &Journey) -> Option<(Vec<u8>, u32)> {
    let s = j.steps.iter().find(|s| s.packet.is_some())?;
    let (l3, data) = s.packet.as_ref()?;
    if !*l3 {
        let orig = (j.len + 14).max(data.len() as u32);
        return Some((data.clone(), orig));
    }
    let ethertype: u16 = match data.first().map(|b| b >> 4) {
        Some(6) => 0x86dd,
        _ => 0x0800,
    };
    let mut f = vec![0u8; 12];
    f.extend(ethertype.to_be_bytes());
    f.extend(data);
    let orig = (j.len + 14).max(f.len() as u32);
    Some((f, orig))
}

/// The path as comment lines.
pub fn comments(j: &Journey) -> Vec<String> {
    let t0 = j.steps.first().map_or(0, |s| s.ts_ns);
    let mut v = vec![format!("pktpath journey #{}: {}", j.id, j.end.line())];
    for (i, s) in j.steps.iter().enumerate() {
        v.push(format!(
            "{i} +{:.3}ms {} {} {} {} {}",
            s.ts_ns.saturating_sub(t0) as f64 / 1e6,
            s.netns_name,
            s.dev.as_deref().unwrap_or("-"),
            s.subsystem,
            s.site,
            s.describe()
        ));
    }
    v
}

/// Writes journeys as pcapng packets.
pub struct Pcapng<W: Write> {
    out: W,
}

impl<W: Write> Pcapng<W> {
    /// Writes the section header and the one interface.
    pub fn new(mut out: W) -> io::Result<Self> {
        let mut shb = Vec::new();
        shb.extend(0x1A2B_3C4Du32.to_le_bytes()); // byte-order magic
        shb.extend(1u16.to_le_bytes());
        shb.extend(0u16.to_le_bytes());
        shb.extend((-1i64).to_le_bytes()); // section length unknown
        option(&mut shb, SHB_USERAPPL, b"pktpath");
        option(&mut shb, OPT_END, &[]);
        block(&mut out, SHB, &shb)?;
        let mut idb = Vec::new();
        idb.extend(LINKTYPE_ETHERNET.to_le_bytes());
        idb.extend(0u16.to_le_bytes());
        idb.extend(SNAPLEN.to_le_bytes());
        option(&mut idb, IF_NAME, b"pktpath");
        option(&mut idb, IF_TSRESOL, &[9]); // nanoseconds
        option(&mut idb, OPT_END, &[]);
        block(&mut out, IDB, &idb)?;
        out.flush()?;
        Ok(Pcapng { out })
    }
}

/// Kernel monotonic ns to wall-clock ns, so timestamps read as dates.
fn wall_ns(mono: u64) -> u64 {
    let now_wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let now_mono = crate::trace::ktime_ns();
    now_wall.saturating_sub(now_mono.saturating_sub(mono))
}

impl<W: Write> Sink for Pcapng<W> {
    fn journey(&mut self, j: &Journey) -> io::Result<()> {
        let Some((frame, orig)) = frame(j) else {
            return Ok(());
        };
        let ts = wall_ns(j.steps.first().map_or(0, |s| s.ts_ns));
        let mut epb = Vec::new();
        epb.extend(0u32.to_le_bytes()); // interface 0
        epb.extend(((ts >> 32) as u32).to_le_bytes());
        epb.extend((ts as u32).to_le_bytes());
        epb.extend((frame.len() as u32).to_le_bytes());
        epb.extend(orig.to_le_bytes());
        epb.extend(&frame);
        epb.resize(epb.len().next_multiple_of(4), 0);
        option(&mut epb, EPB_PACKETID, &j.id.to_le_bytes());
        for c in comments(j) {
            option(&mut epb, OPT_COMMENT, c.as_bytes());
        }
        option(&mut epb, OPT_END, &[]);
        block(&mut self.out, EPB, &epb)?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{test_step, Detail, Step};
    use crate::journey::Journey;

    fn journey() -> Journey {
        let mut pkt = vec![
            0x45, 0, 0, 28, 0, 1, 0, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        pkt.extend([8, 0, 0, 0, 0, 7, 0, 1]);
        let step = |ts, site: &str, detail| Step {
            len: 28,
            subsystem: "receive".into(),
            packet: Some((true, pkt.clone())),
            ..test_step(ts, site, "b", detail)
        };
        Journey::from_steps(
            7,
            vec![
                step(1000, "netif_receive_skb", Detail::None),
                step(2000, "consume_skb", Detail::Free { location: None }),
            ],
            true,
        )
    }

    #[test]
    fn blocks_are_well_formed() {
        let mut buf = Vec::new();
        let mut w = Pcapng::new(&mut buf).unwrap();
        w.journey(&journey()).unwrap();
        // Walk the blocks: each length is at both ends and a multiple of 4.
        let mut off = 0;
        let mut kinds = Vec::new();
        while off < buf.len() {
            let kind = u32::from_le_bytes(buf[off..off + 4].try_into().unwrap());
            let len = u32::from_le_bytes(buf[off + 4..off + 8].try_into().unwrap()) as usize;
            assert_eq!(len % 4, 0);
            let tail = u32::from_le_bytes(buf[off + len - 4..off + len].try_into().unwrap());
            assert_eq!(tail as usize, len);
            kinds.push(kind);
            off += len;
        }
        assert_eq!(kinds, [SHB, IDB, EPB]);
        let text = String::from_utf8_lossy(&buf);
        assert!(
            text.contains("1 +0.001ms b eth0 receive consume_skb"),
            "{text}"
        );
    }

    #[test]
    fn l3_frames_get_an_ethernet_header() {
        let (f, orig) = frame(&journey()).unwrap();
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        assert_eq!(f[14], 0x45);
        assert_eq!(orig, 28 + 14);
    }
}
