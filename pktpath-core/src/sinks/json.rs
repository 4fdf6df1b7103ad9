//! JSON lines: one journey per line (schema in docs/json.md).

use std::io::Write;

use super::{json_text, Sink};
use crate::journey::Journey;
use crate::location::SourceLinks;
use crate::model::Step;

pub struct Json<W: Write> {
    out: W,
    steps: bool,
    /// Each step's place in the kernel's source, linked on this release.
    links: Option<SourceLinks>,
    /// One line is made here, then written at once.
    line: Vec<u8>,
}

impl<W: Write> Json<W> {
    /// With `steps`, each step is also written as it arrives
    /// (`{"step": {...}, "journey": N}`).
    pub fn new(out: W, steps: bool) -> Self {
        Json {
            out,
            steps,
            links: None,
            line: Vec::new(),
        }
    }

    /// `new`, each step with its `location` in the kernel's source
    /// (file, line, subsystem, and Elixir links on `links`' release).
    pub fn with_links(out: W, steps: bool, links: SourceLinks) -> Self {
        Json {
            links: Some(links),
            ..Json::new(out, steps)
        }
    }
}

impl<W: Write> Sink for Json<W> {
    /// A line of its own, before the journeys: `{"network": {...}}`.
    fn network(&mut self, n: &crate::network::Network) -> std::io::Result<()> {
        #[derive(serde::Serialize)]
        struct Line<'a> {
            network: &'a crate::network::Network,
        }
        serde_json::to_writer(&mut self.out, &Line { network: n })?;
        self.out.write_all(b"\n")
    }

    fn journey(&mut self, j: &Journey) -> std::io::Result<()> {
        self.line.clear();
        json_text::journey_located(&mut self.line, j, self.links.as_ref());
        // The frame as first seen, in hex, last: a filter can be run on a
        // JSON capture read back (`pktpath -r FILE FILTER`, `expect -r`).
        if let (Some((frame, _)), Some(b'}')) = (j.frame(), self.line.last()) {
            self.line.pop();
            self.line.extend_from_slice(b",\"frame\":\"");
            const HEX: &[u8; 16] = b"0123456789abcdef";
            for b in frame {
                self.line.push(HEX[usize::from(b >> 4)]);
                self.line.push(HEX[usize::from(b & 15)]);
            }
            self.line.extend_from_slice(b"\"}");
        }
        self.line.push(b'\n');
        self.out.write_all(&self.line)
    }

    fn step(&mut self, journey: u64, s: &Step) -> std::io::Result<()> {
        if !self.steps {
            return Ok(());
        }
        self.line.clear();
        self.line.extend_from_slice(b"{\"journey\":");
        self.line
            .extend_from_slice(itoa::Buffer::new().format(journey).as_bytes());
        self.line.extend_from_slice(b",\"step\":");
        json_text::step_located(&mut self.line, s, self.links.as_ref());
        self.line.extend_from_slice(b"}\n");
        self.out.write_all(&self.line)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    fn wants_steps(&self) -> bool {
        self.steps
    }
}
