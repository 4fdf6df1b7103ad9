//! A live tracing run: attach, read the ring buffer, decode, group into
//! journeys, hand them to a sink, stop on a signal, a count or a deadline.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use libbpf_rs::RingBufferBuilder;

use crate::enrich::bridges::Bridges;
use crate::enrich::nft_steps::RuleTracer;
use crate::enrich::nftrace::NetnsRef;
use crate::enrich::routes::Routes;
use crate::event::Decoder;
use crate::filter::Filter;
use crate::journey::{Journey, Journeys};
use crate::kernel::abi::{RawEvent, CNT_FILTERED, CNT_LOST, CNT_SELECTED};
use crate::kernel::btf::Inventory;
use crate::kernel::tracepoint::{Flavour, Functions, Selection, Tracer};
use crate::output::Sink;

/// What to trace and when to stop.
pub struct TraceOptions {
    pub filter: Filter,
    pub selection: Selection,
    pub backend: Option<Flavour>,
    pub ring_bytes: u32,
    /// Stop after this many journeys.
    pub count: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Close a journey after this long without events.
    pub idle: Duration,
    /// Only journeys that ended in a real drop reach the sink.
    pub drops_only: bool,
    /// Function sites to attach, and how (None: tracepoints only).
    pub functions: Option<Functions>,
    /// nftables tracing in these namespaces (rule-level verdicts), for
    /// the packets of this filter expression.
    pub nft_trace: Option<(Vec<NetnsRef>, String)>,
}

/// What a run did, printed at the end.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Summary {
    pub backend: String,
    pub sites: usize,
    pub journeys: u64,
    pub events: u64,
    /// Events the kernel could not write (ring buffer full).
    pub lost: u64,
    /// Events that arrived after their journey was closed.
    pub late: u64,
    /// Packets the filter was run on, and how many it selected.
    pub filtered: u64,
    pub selected: u64,
    /// nftables tracing: namespaces traced, messages lost, messages that
    /// matched no journey (None: not used).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nft: Option<(usize, u64, u64)>,
}

impl Summary {
    pub fn line(&self) -> String {
        let nft = match self.nft {
            Some((ns, lost, _)) => {
                format!("; nftables traced in {ns} namespaces, {lost} trace messages lost")
            }
            None => String::new(),
        };
        format!(
            "{} journeys, {} events, {} lost in the ring buffer, {} late ({} backend, {} sites; \
             filter run {} times){nft}",
            self.journeys,
            self.events,
            self.lost,
            self.late,
            self.backend,
            self.sites,
            self.filtered
        )
    }
}

/// A progress bar on stderr while attaching functions, when it is a terminal.
fn progress_bar(n: usize) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if n == 0 || !std::io::stderr().is_terminal() {
        return None;
    }
    let b = indicatif::ProgressBar::new(n as u64);
    b.set_style(
        indicatif::ProgressStyle::with_template("attaching {bar:40} {pos}/{len} functions")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(b)
}

/// Kernel monotonic time (what bpf_ktime_get_ns returns).
pub fn ktime_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn is_broken_pipe(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::BrokenPipe
}

/// Runs until `stop` is set, the count or the duration is reached.
/// `on_ready` is called once the probes are attached.
pub fn run(
    inv: &Inventory,
    opts: &TraceOptions,
    sink: &mut dyn Sink,
    stop: &AtomicBool,
    on_ready: impl FnOnce(&Tracer) -> Result<()>,
) -> Result<Summary> {
    let bar = progress_bar(opts.functions.as_ref().map_or(0, |f| f.sites.len()));
    let tracer = Tracer::start(
        inv,
        &opts.filter,
        &opts.selection,
        opts.backend,
        opts.ring_bytes,
        opts.functions.as_ref(),
        &|done, total| {
            if let Some(b) = &bar {
                b.set_length(total as u64);
                b.set_position(done as u64);
            }
        },
    )?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let mut summary = Summary {
        backend: match &tracer.functions {
            Some(f) => format!("{} + {}", f.backend.name(), tracer.flavour.name()),
            None => tracer.flavour.name().to_string(),
        },
        sites: tracer.attached(),
        ..Summary::default()
    };
    let mut decoder = Decoder::new(tracer.plan.slots.clone(), inv.clone());
    decoder.functions = tracer
        .functions
        .as_ref()
        .map(|f| f.sites.clone())
        .unwrap_or_default();
    // Routes and rules of the namespaces the FIB lookups happen in.
    let mut routes = Routes::new();
    let mut journeys = Journeys::default();
    journeys.idle_ns = opts.idle.as_nanos() as u64;
    // Rule-level verdicts come over netlink: set up before "ready", and
    // hold finished journeys a moment for their trace messages.
    let mut rules = match &opts.nft_trace {
        Some((namespaces, expr)) => match RuleTracer::start(namespaces.clone(), expr) {
            Ok((r, warning)) => {
                if let Some(w) = warning {
                    eprintln!("pktpath: warning: {w}");
                }
                journeys.hold_ns = 300_000_000;
                Some(r)
            }
            Err(e) => {
                eprintln!("pktpath: warning: no nftables rule detail: {e:#}");
                None
            }
        },
        None => None,
    };
    let pending: RefCell<Vec<RawEvent>> = RefCell::new(Vec::new());
    let map = tracer.events_map()?;
    let mut builder = RingBufferBuilder::new();
    builder.add(&map, |data: &[u8]| {
        if let Some(e) = RawEvent::from_bytes(data) {
            pending.borrow_mut().push(e);
        }
        0
    })?;
    let rb = builder.build()?;
    on_ready(&tracer)?;

    let started = Instant::now();
    let bridges = RefCell::new(Bridges::default());
    let emit = |mut j: Journey, summary: &mut Summary, sink: &mut dyn Sink| -> Result<bool> {
        if opts.drops_only && !j.end.is_real_drop() {
            return Ok(true);
        }
        bridges.borrow_mut().annotate(&mut j);
        if opts.count.is_some_and(|c| summary.journeys >= c) {
            return Ok(false);
        }
        summary.journeys += 1;
        match sink.journey(&j) {
            Err(e) if is_broken_pipe(&e) => return Ok(false),
            r => r.context("writing output")?,
        }
        Ok(opts.count.is_none_or(|c| summary.journeys < c))
    };
    let mut going = true;
    while going {
        let stopping =
            stop.load(Ordering::Relaxed) || opts.duration.is_some_and(|d| started.elapsed() >= d);
        if stopping {
            rb.consume().ok();
        } else {
            rb.poll(Duration::from_millis(100)).ok();
        }
        let batch = std::mem::take(&mut *pending.borrow_mut());
        for raw in batch {
            let Some(mut step) = decoder.decode(&raw) else {
                continue;
            };
            routes.annotate(raw.journey, &mut step);
            summary.events += 1;
            match sink.step(raw.journey, &step) {
                Err(e) if is_broken_pipe(&e) => going = false,
                r => r.context("writing output")?,
            }
            if let Some(j) = journeys.push(raw.journey, step) {
                going &= emit(j, &mut summary, sink)?;
            }
        }
        if let Some(r) = rules.as_mut() {
            r.poll(&mut journeys);
        }
        let finished = if stopping {
            journeys.flush()
        } else {
            journeys.expire(ktime_ns())
        };
        for j in finished {
            if going {
                going &= emit(j, &mut summary, sink)?;
            }
        }
        // One write per batch, not per journey.
        match sink.flush() {
            Err(e) if is_broken_pipe(&e) => going = false,
            r => r.context("writing output")?,
        }
        going &= !stopping;
    }
    let counters = tracer.counters().unwrap_or_default();
    summary.lost = counters[CNT_LOST as usize];
    summary.filtered = counters[CNT_FILTERED as usize];
    summary.selected = counters[CNT_SELECTED as usize];
    summary.late = journeys.late;
    summary.nft = rules.map(|r| (r.namespaces(), r.lost(), r.unmatched));
    Ok(summary)
}
