//! The FreeBSD `mbuf_trace` record layout (link type DLT_USER0): a u16
//! count, then count x (u16 length, NUL-terminated string), then the
//! Ethernet frame. Integers are little-endian, as the FreeBSD kernel side
//! writes them on x86 and arm64 (the seed's own dissector read them
//! big-endian, which is wrong for those captures).
//!
//! Written by `--format mbuf-trace` for tools built around FreeBSD's
//! mbuf_trace tap: classic pcap, link type DLT_USER0, each record the path
//! as strings (pktpath's step lines) followed by the Ethernet frame.

use std::io::{self, Write};

use super::frame;
use super::step_line::step_line;
use super::ReadError;
use crate::clock::WallClock;
use crate::journey::Journey;
use crate::sinks::Sink;

/// DLT_USER0 / LINKTYPE_USER0.
pub const LINKTYPE_USER0: u16 = 147;

/// Encodes one record: the trace strings, then the frame.
pub fn encode(strings: &[String], frame: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + frame.len() + strings.len() * 64);
    let n = strings.len().min(u16::MAX as usize);
    out.extend((n as u16).to_le_bytes());
    for s in &strings[..n] {
        // A string's length field counts its NUL; cut what does not fit.
        let bytes = &s.as_bytes()[..s.len().min(u16::MAX as usize - 1)];
        out.extend(((bytes.len() + 1) as u16).to_le_bytes());
        out.extend(bytes);
        out.push(0);
    }
    out.extend(frame);
    out
}

/// A decoded record: the trace strings and the frame after them.
#[derive(Debug, PartialEq)]
pub struct Record<'a> {
    pub strings: Vec<String>,
    pub frame: &'a [u8],
}

/// Decodes one record; `at` is the record's offset in its file, for errors.
pub fn decode(data: &[u8], at: u64) -> Result<Record<'_>, ReadError> {
    let bad = |off: usize, what: &str| ReadError::Corrupt {
        offset: at + off as u64,
        what: format!("mbuf_trace record: {what}"),
    };
    let count = u16::from_le_bytes(
        data.get(..2)
            .ok_or_else(|| bad(0, "no string count"))?
            .try_into()
            .expect("2 bytes"),
    );
    let mut off = 2;
    let mut strings = Vec::with_capacity(count.min(256) as usize);
    for i in 0..count {
        let len = data
            .get(off..off + 2)
            .ok_or_else(|| bad(off, &format!("string {i} of {count} cut short")))?;
        let len = u16::from_le_bytes(len.try_into().expect("2 bytes")) as usize;
        off += 2;
        let bytes = data.get(off..off + len).ok_or_else(|| {
            bad(
                off,
                &format!("string {i} ({len} bytes) runs past the record"),
            )
        })?;
        // The length counts the NUL; tolerate strings written without one.
        let text = bytes.strip_suffix(&[0]).unwrap_or(bytes);
        let text = text.split(|&b| b == 0).next().unwrap_or_default();
        strings.push(String::from_utf8_lossy(text).into_owned());
        off += len;
    }
    Ok(Record {
        strings,
        frame: &data[off..],
    })
}

pub struct MbufTrace<W: Write> {
    out: W,
    snaplen: u32,
    clock: WallClock,
}

impl<W: Write> MbufTrace<W> {
    /// Writes the pcap file header (nanosecond timestamps).
    pub fn new(mut out: W, snaplen: u32) -> io::Result<Self> {
        let mut h = Vec::with_capacity(24);
        h.extend(0xa1b2_3c4du32.to_le_bytes());
        h.extend(2u16.to_le_bytes());
        h.extend(4u16.to_le_bytes());
        h.extend(0i32.to_le_bytes());
        h.extend(0u32.to_le_bytes());
        h.extend(65535u32.to_le_bytes());
        h.extend((LINKTYPE_USER0 as u32).to_le_bytes());
        out.write_all(&h)?;
        out.flush()?;
        Ok(MbufTrace {
            out,
            snaplen,
            clock: WallClock::now(),
        })
    }

    /// Dates records with `clock` instead of the live clocks.
    pub fn with_clock(mut self, clock: WallClock) -> Self {
        self.clock = clock;
        self
    }
}

impl<W: Write> Sink for MbufTrace<W> {
    fn journey(&mut self, j: &Journey) -> io::Result<()> {
        let Some((mut f, orig)) = frame(j) else {
            return Ok(());
        };
        f.truncate(self.snaplen as usize);
        let t0 = j.steps.first().map_or(0, |s| s.ts_ns);
        let lines: Vec<String> = j
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| step_line(i, t0, s))
            .collect();
        let mut rec = encode(&lines, &f);
        rec.truncate(65535);
        let strings_len = (rec.len() - f.len().min(rec.len())) as u32;
        let ts = self.clock.wall_ns(t0);
        self.out
            .write_all(&((ts / 1_000_000_000) as u32).to_le_bytes())?;
        self.out
            .write_all(&((ts % 1_000_000_000) as u32).to_le_bytes())?;
        self.out.write_all(&(rec.len() as u32).to_le_bytes())?;
        self.out.write_all(&(orig + strings_len).to_le_bytes())?;
        self.out.write_all(&rec)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_little_endian() {
        let rec = encode(&["ip_input".into(), "ether_output".into()], &[1, 2, 3]);
        assert_eq!(&rec[..4], &[2, 0, 9, 0]);
        assert_eq!(&rec[4..13], b"ip_input\0");
        let back = decode(&rec, 0).unwrap();
        assert_eq!(back.strings, ["ip_input", "ether_output"]);
        assert_eq!(back.frame, &[1, 2, 3]);
    }

    #[test]
    fn cut_records_name_the_offset() {
        let rec = encode(&["ip_input".into()], &[]);
        for n in 0..rec.len() - 1 {
            let e = decode(&rec[..n], 100).unwrap_err().to_string();
            assert!(e.contains("offset 10"), "{e}");
        }
    }
}
