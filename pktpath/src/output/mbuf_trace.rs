//! `--format mbuf-trace`: the FreeBSD mbuf_trace tap's capture format, for
//! tools built around it: classic pcap, link type DLT_USER0, each record the
//! path as strings (pktpath's step lines) followed by the Ethernet frame.

use std::io::{self, Write};

use super::pcapng::{frame, step_line};
use super::Sink;
use crate::capture::mbuf_trace::{encode, LINKTYPE_USER0};
use crate::journey::Journey;

pub struct MbufTrace<W: Write> {
    out: W,
    snaplen: u32,
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
        Ok(MbufTrace { out, snaplen })
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
        let ts = crate::clock::wall_ns(t0);
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
