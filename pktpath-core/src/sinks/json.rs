//! JSON lines: one journey per line (schema in docs/json.md).

use std::io::Write;

use super::{json_text, Sink};
use crate::journey::Journey;
use crate::model::Step;

pub struct Json<W: Write> {
    out: W,
    steps: bool,
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
            line: Vec::new(),
        }
    }
}

impl<W: Write> Sink for Json<W> {
    fn journey(&mut self, j: &Journey) -> std::io::Result<()> {
        self.line.clear();
        json_text::journey(&mut self.line, j);
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
        json_text::step(&mut self.line, s);
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
