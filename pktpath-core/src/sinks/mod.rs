//! Sinks: where journeys and steps go. Every sink takes the same journeys,
//! live or replayed. The file formats' sinks (pcapng, mbuf-trace) are in
//! `formats`, with their readers.

pub mod json;
pub mod json_text;
pub mod terminal;

use crate::journey::Journey;
use crate::model::Step;
use crate::network::Network;

/// A destination for journeys (and, with --steps, for live steps).
pub trait Sink {
    fn journey(&mut self, j: &Journey) -> std::io::Result<()>;
    /// The network as it was when tracing began, before any journey:
    /// the file sinks store it (a report drawn later draws it).
    fn network(&mut self, _n: &Network) -> std::io::Result<()> {
        Ok(())
    }
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

/// Keeps every journey when `keep` (for what is made of all of them at the
/// end: a report, expectations' verdicts), and hands each to `next` too.
pub struct Kept {
    pub journeys: Vec<Journey>,
    pub keep: bool,
    pub next: Option<Box<dyn Sink>>,
}

impl Kept {
    pub fn new(keep: bool, next: Option<Box<dyn Sink>>) -> Kept {
        Kept {
            journeys: Vec::new(),
            keep,
            next,
        }
    }
}

impl Sink for Kept {
    fn journey(&mut self, j: &Journey) -> std::io::Result<()> {
        if self.keep {
            self.journeys.push(j.clone());
        }
        match &mut self.next {
            Some(n) => n.journey(j),
            None => Ok(()),
        }
    }

    fn step(&mut self, journey: u64, s: &Step) -> std::io::Result<()> {
        match &mut self.next {
            Some(n) => n.step(journey, s),
            None => Ok(()),
        }
    }

    fn network(&mut self, n: &Network) -> std::io::Result<()> {
        match &mut self.next {
            Some(next) => next.network(n),
            None => Ok(()),
        }
    }

    fn wants_steps(&self) -> bool {
        self.next.as_ref().is_some_and(|n| n.wants_steps())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.next {
            Some(n) => n.flush(),
            None => Ok(()),
        }
    }
}

/// The rules between a run's journeys and its sink, the same live and
/// replayed: with --drops-only only real drops go out; at most `count`
/// journeys (-c; those after it are counted as not shown); and a reader
/// that went away (a closed pipe: `| head`) ends the output, not in error.
pub struct Gate<'a> {
    sink: &'a mut dyn Sink,
    drops_only: bool,
    count: Option<u64>,
    /// Journeys written.
    pub shown: u64,
    /// Journeys turned away because the count was reached.
    pub not_shown: u64,
    open: bool,
    error: Option<std::io::Error>,
}

impl<'a> Gate<'a> {
    pub fn new(sink: &'a mut dyn Sink, drops_only: bool, count: Option<u64>) -> Gate<'a> {
        Gate {
            sink,
            drops_only,
            count,
            shown: 0,
            not_shown: 0,
            open: true,
            error: None,
        }
    }

    /// Whether journey `j` goes out (then `write` it): not what
    /// --drops-only leaves out, nor anything once the output is closed.
    pub fn admits(&mut self, j: &Journey) -> bool {
        if self.drops_only && !j.end.is_real_drop() {
            return false;
        }
        if self.count.is_some_and(|c| self.shown >= c) {
            self.not_shown += 1;
            return false;
        }
        self.open
    }

    /// Writes a journey `admits` let through.
    pub fn write(&mut self, j: &Journey) {
        let r = self.sink.journey(j);
        self.written(r);
        self.shown += 1;
        if self.count.is_some_and(|c| self.shown >= c) {
            self.open = false;
        }
    }

    /// A live step, for the sinks that show steps as they come.
    pub fn step(&mut self, journey: u64, s: &Step) {
        if self.open {
            let r = self.sink.step(journey, s);
            self.written(r);
        }
    }

    pub fn wants_steps(&self) -> bool {
        self.sink.wants_steps()
    }

    pub fn flush(&mut self) {
        let r = self.sink.flush();
        self.written(r);
    }

    /// False once the count is reached, the reader went away or writing
    /// failed: nothing more goes out.
    pub fn open(&self) -> bool {
        self.open
    }

    /// The error writing failed with, if not a closed pipe.
    pub fn take_error(&mut self) -> Option<std::io::Error> {
        self.error.take()
    }

    fn written(&mut self, r: std::io::Result<()>) {
        match r {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => self.open = false,
            Err(e) => {
                self.open = false;
                self.error.get_or_insert(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnosis::End;

    /// Counts journeys, and fails with a closed pipe after `pipe` of them.
    struct Counting {
        written: Vec<u64>,
        pipe: usize,
    }

    impl Sink for Counting {
        fn journey(&mut self, j: &Journey) -> std::io::Result<()> {
            if self.written.len() == self.pipe {
                return Err(std::io::ErrorKind::BrokenPipe.into());
            }
            self.written.push(j.id);
            Ok(())
        }
    }

    fn journey(id: u64, drop: bool) -> Journey {
        let mut j = Journey::from_steps(id, Vec::new(), true);
        j.end = match drop {
            true => End::Recorded {
                text: "dropped".into(),
            },
            false => End::Recorded {
                text: "delivered".into(),
            },
        };
        j
    }

    /// Offers journeys 1..=n (the odd ones drops) as a run does.
    fn run(n: u64, drops_only: bool, count: Option<u64>, pipe: usize) -> (Vec<u64>, u64, bool) {
        let mut sink = Counting {
            written: Vec::new(),
            pipe,
        };
        let mut gate = Gate::new(&mut sink, drops_only, count);
        for id in 1..=n {
            let j = journey(id, id % 2 == 1);
            if gate.admits(&j) {
                gate.write(&j);
            }
        }
        let (not_shown, open) = (gate.not_shown, gate.open());
        assert!(gate.take_error().is_none(), "a closed pipe is no error");
        (sink.written, not_shown, open)
    }

    #[test]
    fn the_gate_keeps_the_count_the_drops_and_stops_at_a_closed_pipe() {
        assert_eq!(run(5, false, None, 99), (vec![1, 2, 3, 4, 5], 0, true));
        assert_eq!(run(5, false, Some(2), 99), (vec![1, 2], 3, false));
        assert_eq!(run(5, true, None, 99), (vec![1, 3, 5], 0, true));
        assert_eq!(run(5, true, Some(2), 99), (vec![1, 3], 1, false));
        assert_eq!(run(5, false, None, 2), (vec![1, 2], 0, false));
    }
}
