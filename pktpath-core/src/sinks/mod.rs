//! Sinks: where journeys and steps go. Every sink takes the same journeys,
//! live or replayed. The file formats' sinks (pcapng, mbuf-trace) are in
//! `formats`, with their readers.

pub mod json;
pub mod json_text;
pub mod terminal;

use crate::journey::Journey;
use crate::model::Step;

/// A destination for journeys (and, with --steps, for live steps).
pub trait Sink {
    fn journey(&mut self, j: &Journey) -> std::io::Result<()>;
    fn step(&mut self, _journey: u64, _s: &Step) -> std::io::Result<()> {
        Ok(())
    }
    /// Whether `step` shows anything (then steps that join a journey
    /// later, like nftables verdicts, are passed to it too).
    fn wants_steps(&self) -> bool {
        false
    }
    /// Writes out what is buffered: called after each batch of events
    /// (not per journey: one write per batch when the output is busy).
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
