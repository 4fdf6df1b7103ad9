//! pcapng: one Enhanced Packet Block per journey (or per step with
//! `--per-step`), written when the journey ends, so that tcpdump, tshark and
//! Wireshark open it without any plugin: the frame as first seen, the
//! journey id as `epb_packetid`, and the whole path as the packet's comments
//! (one line per step, tab-separated fields: see [`step_line`]). The journey
//! as JSON rides in a custom option so that `pktpath -r` replays it exactly.
//!
//! Written by hand: the format is small (section header, one interface,
//! packet blocks with options) and the options we need are plain
//! type-length-value records.
//!
//! Read back (`pktpath -r`) with pcap-file parsing the blocks: pktpath's
//! own files exactly, from the journey in the custom option; mbuf_trace
//! records on a DLT_USER0 interface; plain packets from anything else.

use std::collections::HashMap;
use std::io::{self, Write};

use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::blocks::section_header::SectionHeaderOption;
use pcap_file::pcapng::{Block, PcapNgParser};

use super::step_line::{self as lines, header_line, step_line, write_step_line};
use super::{frame, mbuf_trace, step_frame, Link, ReadError, Replayed};
use crate::clock::WallClock;
use crate::journey::Journey;
use crate::sinks::Sink;

pub const LINKTYPE_ETHERNET: u16 = 1;
/// Bytes of each packet the BPF side captures, and so the most a frame
/// (Ethernet header included) can hold.
pub const MAX_SNAPLEN: u32 = 128 + 14;

pub const SHB: u32 = 0x0A0D_0D0A;
pub const IDB: u32 = 0x0000_0001;
pub const EPB: u32 = 0x0000_0006;
const OPT_END: u16 = 0;
pub const OPT_COMMENT: u16 = 1;
/// Custom option, UTF-8 string, copiable (pcapng spec section 3.5.1).
pub const OPT_CUSTOM_UTF8: u16 = 2988;
const IF_NAME: u16 = 2;
const IF_TSRESOL: u16 = 9;
pub const EPB_PACKETID: u16 = 5;
const SHB_USERAPPL: u16 = 4;
/// Private Enterprise Number of custom options. pktpath has none
/// registered: 0 (reserved) plus the "pktpath:" prefix of the value make
/// the option ours, and tools that do not know it skip it.
pub const PEN: u32 = 0;
/// Prefix of the custom option holding the journey as JSON.
pub const JSON_PREFIX: &str = "pktpath:journey:";
/// Prefix of the section header's custom options holding the network as
/// JSON (in pieces: an option holds at most 64 kB; read in order). In the
/// section header, not a block of its own: Wireshark lists a custom block
/// as a frame.
pub const NETWORK_PREFIX: &str = "pktpath:network:";
/// Appends one option (type, length, value, padding to 32 bits).
fn option(buf: &mut Vec<u8>, code: u16, value: &[u8]) {
    // An option's length is 16 bits: longer values are cut.
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

/// How packets are written.
#[derive(Clone, Copy, Debug)]
pub struct PcapngOptions {
    /// One record per step instead of one per journey.
    pub per_step: bool,
    /// Bytes of each frame kept.
    pub snaplen: u32,
}

impl Default for PcapngOptions {
    fn default() -> Self {
        PcapngOptions {
            per_step: false,
            snaplen: MAX_SNAPLEN,
        }
    }
}

/// Writes journeys as pcapng packets.
pub struct Pcapng<W: Write> {
    out: W,
    opts: PcapngOptions,
    /// Buffers kept from one journey to the next: the journey's JSON, its
    /// comment lines and the packet block being made.
    json: Vec<u8>,
    text: String,
    epb: Vec<u8>,
    clock: WallClock,
    /// The section header and interface are written (with the network,
    /// when it is given before the first journey).
    headed: bool,
}

impl<W: Write> Pcapng<W> {
    /// A writer; the section header and the one interface go out with the
    /// network (`Sink::network`), or before the first journey or flush.
    pub fn new(out: W, opts: PcapngOptions) -> io::Result<Self> {
        Ok(Pcapng {
            out,
            opts,
            json: Vec::new(),
            text: String::new(),
            epb: Vec::new(),
            clock: WallClock::now(),
            headed: false,
        })
    }

    /// Writes the section header (with the network, when given) and the
    /// interface, once.
    fn head(&mut self, network: Option<&crate::network::Network>) -> io::Result<()> {
        if self.headed {
            return Ok(());
        }
        self.headed = true;
        let mut shb = Vec::new();
        shb.extend(0x1A2B_3C4Du32.to_le_bytes()); // byte-order magic
        shb.extend(1u16.to_le_bytes());
        shb.extend(0u16.to_le_bytes());
        shb.extend((-1i64).to_le_bytes()); // section length unknown
        option(&mut shb, SHB_USERAPPL, b"pktpath");
        if let Some(n) = network {
            let json = serde_json::to_string(n)?;
            let mut rest = json.as_str();
            while !rest.is_empty() {
                // Pieces end on a character: each option is UTF-8.
                let mut cut = rest.len().min(0xff00 - NETWORK_PREFIX.len());
                while !rest.is_char_boundary(cut) {
                    cut -= 1;
                }
                let mut value = PEN.to_le_bytes().to_vec();
                value.extend(NETWORK_PREFIX.as_bytes());
                value.extend(&rest.as_bytes()[..cut]);
                option(&mut shb, OPT_CUSTOM_UTF8, &value);
                rest = &rest[cut..];
            }
        }
        option(&mut shb, OPT_END, &[]);
        block(&mut self.out, SHB, &shb)?;
        let mut idb = Vec::new();
        idb.extend(LINKTYPE_ETHERNET.to_le_bytes());
        idb.extend(0u16.to_le_bytes());
        idb.extend(self.opts.snaplen.to_le_bytes());
        option(&mut idb, IF_NAME, b"pktpath");
        option(&mut idb, IF_TSRESOL, &[9]); // nanoseconds
        option(&mut idb, OPT_END, &[]);
        block(&mut self.out, IDB, &idb)?;
        self.out.flush()
    }

    /// Dates records with `clock` instead of the live clocks.
    pub fn with_clock(mut self, clock: WallClock) -> Self {
        self.clock = clock;
        self
    }

    /// One record per step, each with the bytes seen there (the last
    /// captured ones where a step captured none).
    fn per_step(&mut self, j: &Journey, first: (Vec<u8>, u32), json: &[u8]) -> io::Result<()> {
        let t0 = j.steps.first().map_or(0, |s| s.ts_ns);
        let header = header_line(j);
        let mut last = first;
        for (i, s) in j.steps.iter().enumerate() {
            if let Some(f) = step_frame(s, j.len) {
                last = f;
            }
            let line = step_line(i, t0, s);
            let json = (i == 0).then_some(json);
            self.record(s.ts_ns, last.clone(), j.id, [&*header, &*line], json)?;
        }
        Ok(())
    }

    /// Writes one packet block; `json` is the journey's JSON text.
    fn record<'a>(
        &mut self,
        ts_mono: u64,
        (mut frame, orig): (Vec<u8>, u32),
        id: u64,
        comments: impl IntoIterator<Item = &'a str>,
        json: Option<&[u8]>,
    ) -> io::Result<()> {
        frame.truncate(self.opts.snaplen as usize);
        let ts = self.clock.wall_ns(ts_mono);
        let epb = &mut self.epb;
        epb.clear();
        epb.extend(0u32.to_le_bytes()); // interface 0
        epb.extend(((ts >> 32) as u32).to_le_bytes());
        epb.extend((ts as u32).to_le_bytes());
        epb.extend((frame.len() as u32).to_le_bytes());
        epb.extend(orig.to_le_bytes());
        epb.extend(&frame);
        epb.resize(epb.len().next_multiple_of(4), 0);
        option(epb, EPB_PACKETID, &id.to_le_bytes());
        for c in comments {
            option(epb, OPT_COMMENT, c.as_bytes());
        }
        // Too long for one option (journeys of thousands of steps): the
        // comments still carry the path.
        let custom_len = 4 + JSON_PREFIX.len() + json.map_or(0, <[u8]>::len);
        if let Some(json) = json.filter(|_| custom_len <= 0xfff0) {
            epb.extend(OPT_CUSTOM_UTF8.to_le_bytes());
            epb.extend((custom_len as u16).to_le_bytes());
            epb.extend(PEN.to_le_bytes());
            epb.extend(JSON_PREFIX.as_bytes());
            epb.extend(json);
            epb.resize(epb.len().next_multiple_of(4), 0);
        }
        option(epb, OPT_END, &[]);
        block(&mut self.out, EPB, epb)
    }
}

impl<W: Write> Sink for Pcapng<W> {
    /// In the section header: given after the first journey, too late.
    fn network(&mut self, n: &crate::network::Network) -> io::Result<()> {
        self.head(Some(n))
    }

    fn journey(&mut self, j: &Journey) -> io::Result<()> {
        self.head(None)?;
        let Some(first) = frame(j) else {
            return Ok(());
        };
        // The buffers are taken out of self while record() borrows it.
        let mut json = std::mem::take(&mut self.json);
        json.clear();
        crate::sinks::json_text::journey(&mut json, j);
        let done = if self.opts.per_step {
            self.per_step(j, first, &json)
        } else {
            // All lines in one buffer, kept from journey to journey.
            let mut text = std::mem::take(&mut self.text);
            text.clear();
            text.push_str(&header_line(j));
            let t0 = j.steps.first().map_or(0, |s| s.ts_ns);
            let mut ends = Vec::with_capacity(j.steps.len() + 1);
            ends.push(text.len());
            for (i, s) in j.steps.iter().enumerate() {
                write_step_line(&mut text, i, t0, s);
                ends.push(text.len());
            }
            let lines = ends.iter().scan(0, |start, &end| {
                Some(&text[std::mem::replace(start, end)..end])
            });
            let done = self.record(t0, first, j.id, lines, Some(&json));
            self.text = text;
            done
        };
        self.json = json;
        done
    }

    fn flush(&mut self) -> io::Result<()> {
        self.head(None)?;
        self.out.flush()
    }
}

impl<W: Write> Drop for Pcapng<W> {
    /// A run that wrote nothing still leaves a valid (empty) capture.
    fn drop(&mut self) {
        if self.head(None).is_ok() {
            let _ = self.out.flush();
        }
    }
}

// ---------------------------------------------------------------------------
// Reading

fn corrupt(offset: usize, e: impl std::fmt::Display) -> ReadError {
    ReadError::Corrupt {
        offset: offset as u64,
        what: format!("pcapng: {e}"),
    }
}

/// Appends each journey to `out` as it is read: what came before damage stays.
pub fn read(
    data: &[u8],
    out: &mut Vec<Replayed>,
    network: &mut Option<crate::network::Network>,
) -> Result<(), ReadError> {
    let (mut rest, mut parser) = PcapNgParser::new(data).map_err(|e| corrupt(0, e))?;
    // The network, in the section header's custom options.
    let pieces: String = parser
        .section()
        .options
        .iter()
        .filter_map(|o| match o {
            SectionHeaderOption::CustomUtf8(c) => c.value.strip_prefix(NETWORK_PREFIX),
            _ => None,
        })
        .collect();
    if !pieces.is_empty() {
        *network = Some(
            serde_json::from_str(&pieces)
                .map_err(|e| corrupt(0, format!("pktpath network: {e}")))?,
        );
    }
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
        // The steps of a journey read from comments are dated from the
        // record's time; those of a journey read whole keep the kernel's
        // clock, and the record is dated at its first step.
        let mut wall_offset_ns = Some(0);
        let journey = match (json, link) {
            (Some(j), _) => {
                let mut journey: Journey =
                    serde_json::from_str(&j).map_err(|e| corrupt(at, format!("journey: {e}")))?;
                if let Some(s) = journey.steps.first_mut() {
                    s.packet = Some((false, frame.as_slice().into()));
                    wall_offset_ns = ts.checked_sub(s.ts_ns);
                }
                journey
            }
            (None, Link::MbufTrace) => {
                let rec = mbuf_trace::decode(&frame, at as u64 + 28)?;
                let orig = orig_len.saturating_sub((frame.len() - rec.frame.len()) as u32);
                let j = lines::journey(id, ts, &rec.strings, rec.frame, orig);
                out.push(Replayed {
                    frame: Some(rec.frame.to_vec()),
                    journey: j,
                    wall_offset_ns: Some(0),
                });
                continue;
            }
            (None, Link::Ethernet) => lines::journey(id, ts, &comments, &frame, orig_len),
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
            wall_offset_ns,
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
    use crate::journey::Journey;
    use crate::model::{test_step, Detail, Step};

    fn journey() -> Journey {
        let mut pkt = vec![
            0x45, 0, 0, 28, 0, 1, 0, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        pkt.extend([8, 0, 0, 0, 0, 7, 0, 1]);
        let step = |ts, site: &str, detail| Step {
            len: 28,
            subsystem: "receive".into(),
            packet: Some((true, pkt.clone().into())),
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
        let mut w = Pcapng::new(&mut buf, PcapngOptions::default()).unwrap();
        w.journey(&journey()).unwrap();
        drop(w);
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
            text.contains("1\t+0.001ms\tb\teth0\treceive\tconsume_skb\t-\tfreed"),
            "{text}"
        );
    }

    /// The network rides in the section header, in pieces when it is
    /// larger than an option (here 200 namespaces, ~120 kB of JSON), and
    /// reads back whole; Wireshark sees no extra block.
    #[test]
    fn the_network_is_stored_in_the_section_header() {
        use crate::network::{Device, Namespace, Network};
        let network = Network {
            namespaces: (0..200)
                .map(|i| Namespace {
                    name: format!("ns-é{i}"),
                    devices: (0..8)
                        .map(|d| Device {
                            name: format!("veth{d}"),
                            kind: Some("veth".into()),
                            addrs: vec![format!("10.{i}.{d}.1/24")],
                            ..Device::default()
                        })
                        .collect(),
                    routes: vec!["default via 10.0.0.1 dev veth0".into()],
                })
                .collect(),
        };
        assert!(serde_json::to_string(&network).unwrap().len() > 100_000);
        let mut buf = Vec::new();
        let mut w = Pcapng::new(&mut buf, PcapngOptions::default()).unwrap();
        w.network(&network).unwrap();
        w.journey(&journey()).unwrap();
        drop(w);
        let back = crate::formats::read(&buf);
        assert!(back.damage.is_none(), "{:?}", back.damage);
        assert_eq!(back.journeys.len(), 1);
        assert_eq!(back.network.as_ref(), Some(&network));
        // Nothing but the header, the interface and the packet.
        let mut blocks = 0;
        let mut off = 0;
        while off < buf.len() {
            off += u32::from_le_bytes(buf[off + 4..off + 8].try_into().unwrap()) as usize;
            blocks += 1;
        }
        assert_eq!(blocks, 3);
        // A run that wrote nothing leaves a valid capture.
        let mut empty = Vec::new();
        drop(Pcapng::new(&mut empty, PcapngOptions::default()).unwrap());
        let back = crate::formats::read(&empty);
        assert!(back.damage.is_none() && back.journeys.is_empty());
    }

    #[test]
    fn l3_frames_get_an_ethernet_header() {
        let (f, orig) = frame(&journey()).unwrap();
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        assert_eq!(f[14], 0x45);
        assert_eq!(orig, 28 + 14);
    }

    // Reading

    #[test]
    fn timestamp_resolutions() {
        assert_eq!(scale(5, 6), 5_000);
        assert_eq!(scale(5, 9), 5);
        assert_eq!(scale(5_000, 12), 5);
        assert_eq!(scale(3, 0x81), 1_500_000_000);
        assert_eq!(scale(u64::MAX, 0xff), 0);
    }
}
