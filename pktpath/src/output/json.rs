//! JSON lines: one journey per line (schema in docs/json.md).

use std::io::Write;

use super::Sink;
use crate::event::Step;
use crate::journey::Journey;

pub struct Json<W: Write> {
    out: W,
    steps: bool,
}

impl<W: Write> Json<W> {
    /// With `steps`, each step is also written as it arrives
    /// (`{"step": {...}, "journey": N}`).
    pub fn new(out: W, steps: bool) -> Self {
        Json { out, steps }
    }
}

impl<W: Write> Sink for Json<W> {
    fn journey(&mut self, j: &Journey) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.out, j)?;
        self.out.write_all(b"\n")
    }

    fn step(&mut self, journey: u64, s: &Step) -> std::io::Result<()> {
        if !self.steps {
            return Ok(());
        }
        let v = serde_json::json!({ "journey": journey, "step": s });
        serde_json::to_writer(&mut self.out, &v)?;
        self.out.write_all(b"\n")
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    fn wants_steps(&self) -> bool {
        self.steps
    }
}
