//! A live tracing run: attach, read the ring buffer, decode, group into
//! journeys, hand them to a sink, stop on a signal, a count or a deadline.

pub mod conntrack;
pub mod decode;
pub mod network;
pub mod nftables;

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use libbpf_rs::RingBufferBuilder;

use crate::abi::{RawEvent, CNT_FILTERED, CNT_LOST, CNT_SELECTED};
use crate::collect::decode::Decoder;
use crate::collect::nftables::steps::RuleTracer;
use crate::enrich::Enricher;
use crate::filter::Filter;
use crate::kernel::btf::Inventory;
use crate::kernel::tracepoint::{Flavour, Functions, Selection, Tracer, TracerPlan};
use crate::netns::NetnsRef;
use crate::source::Source;
use pktpath_core::clock::monotonic_ns;
use pktpath_core::diagnosis::End;
use pktpath_core::journey::{Journey, Journeys, NFT_LOSS, RING_LOSS, WHILE_ATTACHING};
use pktpath_core::packet;
use pktpath_core::sinks::{Gate, Sink};

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
    /// Namespaces not traced where tables of killed pktpath runs are
    /// looked for and deleted (the traced ones are swept as they are set up).
    pub nft_sweep: Vec<NetnsRef>,
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
    /// Journeys handed out before their end to bound memory.
    pub evicted: u64,
    /// Journeys not shown because the count (-c) was reached first:
    /// finished after it, still open, or not read yet when tracing stopped.
    #[serde(skip_serializing_if = "is_zero")]
    pub not_shown: u64,
    /// Packets the filter was run on, and how many it selected.
    pub filtered: u64,
    pub selected: u64,
    /// nftables tracing: namespaces traced, messages lost, messages that
    /// matched no journey (None: not used).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nft: Option<(usize, u64, u64)>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Summary {
    pub fn line(&self) -> String {
        let nft = match self.nft {
            Some((ns, lost, unmatched)) => format!(
                "; nftables traced in {ns} namespaces, {lost} trace messages lost, \
                 {unmatched} matched no journey"
            ),
            None => String::new(),
        };
        let lost = match self.lost {
            0 => String::new(),
            _ => " (a larger --ring-size, or a narrower filter, loses fewer)".to_string(),
        };
        let evicted = match self.evicted {
            0 => String::new(),
            n => format!(", {n} handed out before their end (too many open: memory bound)"),
        };
        let not_shown = match self.not_shown {
            0 => String::new(),
            n => format!(", {n} more not shown (the -c count was reached first)"),
        };
        format!(
            "{} journeys{not_shown}, {} events, {} lost in the ring buffer{lost}, {} late{evicted} \
             ({} backend, {} sites; filter run {} times){nft}",
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
    let tracer = Tracer::start(TracerPlan {
        inv,
        filter: &opts.filter,
        selection: &opts.selection,
        flavour: opts.backend,
        ring_bytes: opts.ring_bytes,
        functions: opts.functions.as_ref(),
        progress: &|done, total| {
            if let Some(b) = &bar {
                b.set_length(total as u64);
                b.set_position(done as u64);
            }
        },
    })?;
    let attached_ns = monotonic_ns();
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let summary = Summary {
        backend: match &tracer.functions {
            Some(f) => format!("{} + {}", f.backend.name(), tracer.flavour.name()),
            None => tracer.flavour.name().to_string(),
        },
        sites: tracer.attached(),
        ..Summary::default()
    };
    let mut decoder = Decoder::new(tracer.plan.slots.clone(), inv.clone());
    decoder.symbols.preload();
    decoder.functions = tracer
        .functions
        .as_ref()
        .map(|f| f.sites.clone())
        .unwrap_or_default();
    let mut journeys = Journeys::default();
    journeys.idle_ns = opts.idle.as_nanos() as u64;
    // Rule-level verdicts come over netlink: set up before "ready", and
    // hold finished journeys a moment for their trace messages.
    let mut swept = nftables::session::sweep_everywhere(&opts.nft_sweep);
    let rules = match &opts.nft_trace {
        Some((namespaces, expr)) => match RuleTracer::start(namespaces.clone(), expr) {
            // No namespace with a ruleset: nothing to wait for.
            Ok((r, _)) if r.namespaces() == 0 => {
                swept.extend_from_slice(r.swept());
                None
            }
            Ok((r, warning)) => {
                swept.extend_from_slice(r.swept());
                if let Some(w) = warning {
                    eprintln!("pktpath: warning: {w}");
                }
                // At most: a journey is handed out as soon as the reader has
                // read every message sent before it closed.
                journeys.hold_ns = 2_000_000_000;
                journeys.hold_netns = Some(r.traced_netns());
                Some(r)
            }
            Err(e) => {
                eprintln!("pktpath: warning: no nftables rule detail: {e:#}");
                None
            }
        },
        None => None,
    };
    if !swept.is_empty() {
        let tables: Vec<String> = swept
            .iter()
            .map(|(ns, t)| format!("{t} in netns {ns}"))
            .collect();
        eprintln!(
            "pktpath: deleted {} nftables tracing table(s) left by pktpath runs that were killed: {}",
            swept.len(),
            tables.join(", ")
        );
    }
    // Records are decoded and grouped inside the ring buffer callback: no
    // copy of a whole poll's records is kept.
    let consumer = RefCell::new(Consumer {
        out: Gate::new(sink, opts.drops_only, opts.count),
        tracer: &tracer,
        decoder,
        enrichers: crate::enrich::all(),
        journeys,
        rules,
        summary,
        next_sweep: 0,
        attached_ns,
        losses: Losses::default(),
        icmp_causes: Default::default(),
        batch: 0,
        draining: false,
        last_ts: 0,
        ring_read_ns: 0,
    });
    // Before the ring is mapped (twice its size): the peak stays that of
    // loading, or of tracing, not both.
    give_back_setup_memory();
    let map = tracer.events_map();
    let mut builder = RingBufferBuilder::new();
    builder.add(map, |data: &[u8]| {
        let mut c = consumer.borrow_mut();
        if let Some(raw) = RawEvent::from_bytes(data) {
            c.record(&raw);
        }
        c.batch += 1;
        // Non-zero stops this poll: the output is gone or the count
        // reached, or a batch is done (the loop then ties the nftables
        // steps and hands out the journeys held for them: a poll that ran
        // on through a busy ring held ~100 ms of journeys).
        if c.out.open() && (c.draining || c.batch < BATCH) {
            0
        } else {
            -1
        }
    })?;
    let rb = builder.build()?;
    on_ready(&tracer)?;

    let started = Instant::now();
    loop {
        let stopping =
            stop.load(Ordering::Relaxed) || opts.duration.is_some_and(|d| started.elapsed() >= d);
        if !stopping {
            // Woken when a batch waits (see rb_flags in the BPF program),
            // else after 100 ms: the poll reads nothing then, so consume.
            rb.poll(Duration::from_millis(100)).ok();
        }
        // Everything that is left when stopping.
        consumer.borrow_mut().draining = stopping;
        let before = monotonic_ns();
        rb.consume().ok();
        let mut c = consumer.borrow_mut();
        // Not cut short: the ring was read to its end, after `before`.
        if c.batch < BATCH {
            c.ring_read_ns = before;
        }
        c.tie_rule_steps(stopping);
        c.tick(stopping);
        c.batch = 0;
        if let Some(e) = c.out.take_error() {
            return Err(anyhow::Error::new(e).context("writing output"));
        }
        if stopping || !c.out.open() {
            break;
        }
    }
    // The callback borrows the consumer.
    drop(rb);
    let Consumer {
        mut summary,
        journeys,
        rules,
        out,
        ..
    } = consumer.into_inner();
    summary.journeys = out.shown;
    summary.not_shown = out.not_shown;
    let counters = tracer.counters().unwrap_or_default();
    summary.lost = counters[CNT_LOST as usize];
    summary.filtered = counters[CNT_FILTERED as usize];
    summary.selected = counters[CNT_SELECTED as usize];
    summary.late = journeys.late;
    summary.evicted = journeys.evicted;
    if opts.count.is_some_and(|c| summary.journeys >= c) {
        // Finished after the count, still open, or never read from the
        // ring buffer: every packet selected has a journey.
        summary.not_shown = if opts.drops_only {
            summary.not_shown + journeys.pending() as u64
        } else {
            summary.selected.saturating_sub(summary.journeys)
        };
    }
    summary.nft = rules.map(|r| (r.namespaces(), r.lost(), r.unmatched));
    Ok(summary)
}

/// Records read in one go round the loop at most (~600 UDP datagrams
/// traced at 7 records each).
const BATCH: u32 = 4096;

/// Event time between sweeps for quiet journeys inside one poll, ns: the
/// shortest wait (a datagram's, 10 ms) is not stretched by more than half.
const SWEEP_NS: u64 = 5_000_000;

/// Decodes records, groups them into journeys and hands finished ones to
/// the sink.
struct Consumer<'a> {
    /// The sink, behind the rules of -c, --drops-only and a closed pipe.
    out: Gate<'a>,
    /// For its loss counter.
    tracer: &'a Tracer,
    decoder: Decoder,
    /// Routes and rules behind route lookups, tc filters behind tc drops,
    /// bridges crossed (see `enrich::all`).
    enrichers: Vec<Box<dyn Enricher>>,
    journeys: Journeys,
    /// nftables tracing: trace messages become steps of the journeys.
    rules: Option<RuleTracer>,
    summary: Summary,
    /// Event time of the next sweep for quiet journeys.
    next_sweep: u64,
    /// Records read since the loop last went round.
    batch: u32,
    /// Read all that waits, however many (stopping).
    draining: bool,
    /// Event time of the latest record read.
    last_ts: u64,
    /// Every event stamped before this has been read from the ring.
    ring_read_ns: u64,
    /// Event time when every probe was attached: journeys whose first
    /// step came earlier may lack steps before it.
    attached_ns: u64,
    /// When evidence was lost: journeys in flight then say so.
    losses: Losses,
    /// Journeys with an icmp_send step or a drop, by their packet's line
    /// (and, for IPv4, by line and IP id): the ICMP
    /// error that names that packet (", for ...") is about that journey.
    icmp_causes: std::collections::HashMap<String, u64>,
}

impl Consumer<'_> {
    fn record(&mut self, raw: &RawEvent) {
        if !self.out.open() {
            return;
        }
        let Some(mut step) = self.decoder.decode(raw) else {
            return;
        };
        for e in &mut self.enrichers {
            e.step(raw.journey, &mut step);
        }
        self.summary.events += 1;
        self.out.step(raw.journey, &step);
        if let Some(rules) = self.rules.as_mut() {
            rules.observe(raw.journey, &step);
        }
        let ts = step.ts_ns;
        self.last_ts = self.last_ts.max(ts);
        if let Some(j) = self.journeys.push(raw.journey, step) {
            self.emit(j);
        }
        // A busy ring keeps one poll, and so the tick's expiry, going for
        // long (100 ms of events when the reader was held up): what has
        // ended by this event's time is handed out every few ms of it.
        // (By this event's time, not the clock's: the ring may lag, and
        // what follows a quiet journey may still be in it.)
        if ts >= self.next_sweep {
            self.next_sweep = ts.saturating_add(SWEEP_NS);
            for j in self.journeys.close_quiet(ts) {
                self.emit(j);
            }
        }
        // Memory stays bounded however fast the events come: first what
        // has ended by now, then the quietest of the rest.
        if self.journeys.over_limit() {
            for j in self.journeys.expire(ts) {
                self.emit(j);
            }
        }
        if self.journeys.over_limit() {
            for j in self.journeys.evict() {
                self.emit(j);
            }
        }
    }

    /// Ties the nftables trace messages read so far to their journeys
    /// (when stopping, after waiting a moment for the last ones).
    fn tie_rule_steps(&mut self, stopping: bool) {
        let Some(r) = self.rules.as_mut() else {
            return;
        };
        let stream = self.out.wants_steps();
        let added = if stopping {
            r.catch_up(&mut self.journeys, Duration::from_secs(2))
        } else {
            r.poll(&mut self.journeys, stream, self.ring_read_ns)
        };
        for (journey, step) in added.into_iter().filter(|_| stream) {
            self.out.step(journey, &step);
        }
    }

    /// After each poll: journeys that went quiet (all of them when
    /// stopping), then one write of what the sink buffered.
    fn tick(&mut self, stopping: bool) {
        // A batch cut short left events in the ring: what is quiet by the
        // clock may not be by them (its next steps are still there).
        let now = if self.batch >= BATCH {
            self.last_ts
        } else {
            monotonic_ns()
        };
        let finished = if stopping {
            self.journeys.flush()
        } else {
            self.journeys.expire(now)
        };
        for j in finished {
            self.emit(j);
        }
        self.out.flush();
    }

    fn emit(&mut self, mut j: Journey) {
        if !self.out.admits(&j) {
            return;
        }
        self.check_losses();
        let found = caveats(&j, self.attached_ns, &self.losses);
        j.caveats.extend(found);
        self.link_icmp_error(&mut j);
        for e in &mut self.enrichers {
            e.journey(&mut j);
        }
        self.out.write(&j);
    }

    /// Ties an ICMP or ICMPv6 error to the journey of the packet it is
    /// about (handed out first: that packet's journey has the lower id, and
    /// ends at the icmp_send that made the error, or soon after). A packet
    /// that made one was seen sending it (the icmp_send tracepoint, IPv4
    /// only; icmp6_send at function level) or was dropped: every ICMPv6
    /// error the kernel sends about a packet (hop limit, no route, port or
    /// address unreachable, too big) comes with its drop.
    ///
    /// Keyed by the packet's line and, for IPv4, its IP id, which the error
    /// quotes: packets of one flow that draw errors at once (a burst to a
    /// closed port) have the same line.
    fn link_icmp_error(&mut self, j: &mut Journey) {
        let Some(packet) = j.packet.as_deref() else {
            return;
        };
        let bytes = j.steps.iter().find_map(|s| s.packet.as_ref());
        let with_id = |line: &str, id: Option<u16>| id.map(|id| format!("{line}\0{id}"));
        if let Some((_, cause)) = packet.split_once(", for ") {
            let quoted = bytes.and_then(|(l3, data)| packet::quoted_ipv4_id(data, *l3));
            j.about = with_id(cause, quoted)
                .and_then(|k| self.icmp_causes.get(&k))
                .or_else(|| self.icmp_causes.get(cause))
                .copied();
        }
        let sent = |site: &str| matches!(site, "icmp_send" | "__icmp_send" | "icmp6_send");
        if matches!(j.end, End::Dropped { .. }) || j.steps.iter().any(|s| sent(&s.site)) {
            if self.icmp_causes.len() >= 4096 {
                self.icmp_causes.clear();
            }
            let id = bytes.and_then(|(l3, data)| packet::ipv4_id(data, *l3));
            if let Some(k) = with_id(packet, id) {
                self.icmp_causes.insert(k, j.id);
            }
            self.icmp_causes.insert(packet.to_string(), j.id);
        }
    }

    /// Reads the loss counters, at most every few ms: before a journey is
    /// handed out, so that one in flight during a loss says so (a reader
    /// held up by its output is when the ring overflows: the first journey
    /// after that checks).
    fn check_losses(&mut self) {
        let now = monotonic_ns();
        if now < self.losses.checked_ns + LOSS_CHECK_NS {
            return;
        }
        let ring = self.tracer.counter(CNT_LOST).unwrap_or(0);
        let nft = self.rules.as_ref().map_or(0, |r| r.lost());
        self.losses.check(now, ring, nft);
    }
}

/// Why a journey's evidence may be incomplete: it began before every probe
/// was attached (at `attached_ns`), or it was in flight during a loss.
fn caveats(j: &Journey, attached_ns: u64, losses: &Losses) -> Vec<String> {
    let (Some(first), Some(last)) = (j.steps.first(), j.steps.last()) else {
        return Vec::new();
    };
    let open_end = matches!(j.end, End::Unknown { .. });
    (first.ts_ns < attached_ns)
        .then_some(WHILE_ATTACHING)
        .into_iter()
        .chain(losses.caveats(first.ts_ns, last.ts_ns, open_end))
        .map(str::to_string)
        .collect()
}

/// The loss counters are read at most this often, ns.
const LOSS_CHECK_NS: u64 = 5_000_000;

/// How long after its packet's steps a trace message may come (the
/// nftables reader's wait, with room), ns.
const NFT_LAG_NS: u64 = 2_000_000_000;

/// Event-time windows in which evidence was lost (between two checks of
/// the loss counters), and what was lost.
#[derive(Default)]
struct Losses {
    windows: std::collections::VecDeque<(u64, u64, &'static str)>,
    checked_ns: u64,
    ring: u64,
    nft: u64,
}

impl Losses {
    /// Notes the losses since the last check (the counters are totals).
    fn check(&mut self, now: u64, ring: u64, nft: u64) {
        let from = self.checked_ns;
        if ring > self.ring {
            self.windows.push_back((from, now, RING_LOSS));
        }
        if nft > self.nft {
            self.windows
                .push_back((from.saturating_sub(NFT_LAG_NS), now, NFT_LOSS));
        }
        (self.ring, self.nft, self.checked_ns) = (ring, nft, now);
        while self.windows.len() > 256 {
            self.windows.pop_front();
        }
    }

    /// The caveats of a journey seen from `first` to `last`: it began
    /// before a loss ended, and it was still going when the loss began
    /// (or its end was not seen, and the loss may have taken it).
    fn caveats(&self, first: u64, last: u64, open_end: bool) -> impl Iterator<Item = &'static str> {
        let mut found: Vec<&'static str> = self
            .windows
            .iter()
            .filter(|(from, to, _)| first <= *to && (last >= *from || open_end))
            .map(|w| w.2)
            .collect();
        found.sort_unstable();
        found.dedup();
        found.into_iter()
    }
}

/// Hands back to the system the heap that setting up used and freed (BTF,
/// object files, reading kallsyms: ~6 MB that glibc would keep): an armed
/// tracer that selects nothing stays at what it holds.
fn give_back_setup_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory of the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loss marks the journeys in flight during it, not those that
    /// ended before it or began after it; an unseen end may be the loss.
    #[test]
    fn losses_mark_the_journeys_in_flight() {
        let mut l = Losses::default();
        l.check(100, 0, 0);
        l.check(200, 3, 0);
        let of = |l: &Losses, first, last, open| l.caveats(first, last, open).collect::<Vec<_>>();
        assert_eq!(of(&l, 150, 250, false), [RING_LOSS]);
        assert_eq!(of(&l, 50, 120, false), [RING_LOSS]);
        assert!(of(&l, 10, 90, false).is_empty());
        assert_eq!(of(&l, 10, 90, true), [RING_LOSS]);
        assert!(of(&l, 210, 300, true).is_empty());
        // Began before every probe was attached, and in flight at a loss.
        let j = Journey::from_steps(
            1,
            vec![
                pktpath_core::model::test_step(
                    50,
                    "netif_receive_skb",
                    "a",
                    pktpath_core::model::Detail::None,
                ),
                pktpath_core::model::test_step(
                    150,
                    "netif_receive_skb",
                    "b",
                    pktpath_core::model::Detail::None,
                ),
            ],
            false,
        );
        assert_eq!(caveats(&j, 60, &l), [WHILE_ATTACHING, RING_LOSS]);
        assert_eq!(caveats(&j, 40, &l), [RING_LOSS]);
        // Trace messages come late: a packet shortly before the loss.
        l.check(300, 3, 1);
        assert_eq!(of(&l, 10, 90, false), [NFT_LOSS]);
        assert_eq!(of(&l, 150, 250, false), [RING_LOSS, NFT_LOSS]);
    }
}
