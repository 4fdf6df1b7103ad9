//! nftables trace messages as journey steps: which journey a message
//! belongs to, and where in it.
//!
//! A message carries no skb address (see the module above), so it is tied to the
//! journey with a step in the same namespace, on the message's input or
//! output interface, whose headers agree on what the path does not change
//! (IP id and length, protocol, ports, TCP sequence; not the addresses, NAT
//! rewrites them). The other messages of the same chain evaluation (same
//! namespace and trace id) follow the first. Messages can arrive before the
//! ring buffer delivered the packet's steps: those wait until the ring has
//! been read past them, and are tried again. Every wait is measured in
//! kernel time against what was read, not by the clock: the reader of
//! either side can be held up for seconds (the VM suite's emulated
//! machine) without a message losing its packet.
//!
//! The step is placed by the hook that ran the chain: prerouting after the
//! packet's receive in that namespace, input and forward after its route
//! lookup, output and postrouting just before its transmit.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::message::{NftTrace, TraceKind};
use super::ruleset::RulesetCache;
use super::session::{NftraceSession, SessionPlan};
use super::translate::translate_filter;
use crate::netns::{run_in, NetnsRef};
use crate::source::Source;
use pktpath_core::journey::{Attached, Journeys};
use pktpath_core::model::{Detail, SiteKind, Step};
use pktpath_core::packet::be16;

/// A message waits for its packet's steps until the ring buffer has been
/// read this far past the message's reading, ns: the steps before its
/// hook are older than the message.
const WAIT_NS: u64 = 200_000_000;
/// Messages waiting at most (a bound on memory when journeys cannot be
/// found, e.g. when the filter could not be translated to nftables).
const WAIT_MAX: usize = 16_384;
/// Messages taken from the reader's queue at a time.
const DRAIN_BATCH: usize = 512;
/// A message is placed with the steps that are there once the ring buffer
/// has been read this far past it (the step its hook comes after is not
/// coming), ns.
const SETTLE_NS: u64 = 100_000_000;
/// The messages of one evaluation come together: a group is forgotten
/// this long after its last message.
const GROUP_AGE: Duration = Duration::from_millis(250);

/// What identifies one packet along its path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Ident {
    /// IPv4 id (0 for IPv6) and IP total length.
    ip_id: u16,
    len: u16,
    proto: u8,
    /// TCP, UDP or SCTP ports; ICMP and ICMPv6 type and code.
    ports: Option<(u16, u16)>,
    /// What tells apart the packets of one flow that the fields above may
    /// not: the TCP sequence; the ICMP echo sequence; for IPv6 UDP (no IP
    /// id) the checksum. An echo request and its reply, or two IPv6
    /// datagrams of one length, were otherwise one identity and traded
    /// their rule steps.
    seq: Option<u32>,
}

/// The identity of the packet whose IP header starts `l3`.
fn ident(l3: &[u8]) -> Option<Ident> {
    let (ip_id, len, proto, l4) = match l3.first()? >> 4 {
        4 => {
            let ihl = ((l3[0] & 0xf) as usize) * 4;
            (be16(l3, 4)?, be16(l3, 2)?, *l3.get(9)?, l3.get(ihl..))
        }
        6 => (0, be16(l3, 4)?.wrapping_add(40), *l3.get(6)?, l3.get(40..)),
        _ => return None,
    };
    let l4 = l4.unwrap_or_default();
    let v6 = l3[0] >> 4 == 6;
    let ports = match proto {
        6 | 17 | 132 => Some((be16(l4, 0)?, be16(l4, 2)?)),
        1 | 58 => Some((*l4.first()? as u16, *l4.get(1)? as u16)),
        _ => None,
    };
    let seq = match proto {
        6 => l4
            .get(4..8)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        // Echo request and reply (the id may be rewritten by NAT).
        1 if matches!(l4.first(), Some(0 | 8)) => be16(l4, 6).map(u32::from),
        58 if matches!(l4.first(), Some(128 | 129)) => be16(l4, 6).map(u32::from),
        17 if v6 => be16(l4, 6).map(u32::from),
        _ => None,
    };
    Some(Ident {
        ip_id,
        len,
        proto,
        ports,
        seq,
    })
}

/// The identity of the packet a step captured (from Ethernet or IP).
fn step_ident(s: &Step) -> Option<Ident> {
    let (l3, data) = s.packet.as_ref()?;
    if *l3 {
        return ident(data);
    }
    let mut off = 12;
    while matches!(be16(data, off)?, 0x8100 | 0x88a8) {
        off += 4;
    }
    match be16(data, off)? {
        0x0800 | 0x86dd => ident(data.get(off + 2..)?),
        _ => None,
    }
}

impl Ident {
    /// Without ports and TCP sequence: for headers captured too short
    /// on one side to have them.
    fn loose(self) -> Ident {
        Ident {
            ports: None,
            seq: None,
            ..self
        }
    }
}

/// Where a packet was seen: namespace, interface, identity.
type SeenAt = (u32, u32, Ident);

/// How long (kernel time) one generation of the index of seen packets
/// lasts at least.
const INDEX_AGE_NS: u64 = 1_500_000_000;
/// How far apart in time a packet's step and the reading of a message
/// about it can be: a message is read within milliseconds of its packet's
/// steps, unless the reader was held up (seconds, in the VM suite's
/// emulated machine), while a later packet of the same identity (the IPv4
/// id wraps after 65,536 packets: 3.3 s at 20,000/s) comes later.
const SEEN_WINDOW_NS: u64 = 3_000_000_000;
/// Entries of one generation at most, whatever its age: 7/8 of a table
/// of 65,536 slots of 24 bytes, allocated once (~1.6 MB).
const INDEX_MAX: usize = 57_344;

/// Journeys by where their packets were seen, so that a trace message
/// finds its journey with a lookup, not a search of every open journey.
/// Two generations: when the newer is full, or old and the older is of no
/// more use (every message read by its time has been handled), the older
/// is dropped. Ages are kernel times, not the clock's: a reader held up
/// for seconds finds what was seen while it waited. Keyed by a 64-bit
/// hash of where (a 32-byte key took four times the memory at 20,000
/// packets/s).
#[derive(Default)]
struct SeenIndex {
    /// The journey, and the time of the step that saw it there.
    new: HashMap<u64, (u64, u64)>,
    old: HashMap<u64, (u64, u64)>,
    /// The first step time of `new`, the last of `old`.
    new_from_ns: u64,
    old_to_ns: u64,
    new_to_ns: u64,
    /// Every message read before this has been handled (tied, given up, or
    /// none waits that was read before it).
    handled_ns: u64,
}

fn seen_key(at: &SeenAt) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(at)
}

impl SeenIndex {
    fn insert(&mut self, at: SeenAt, journey: u64, ts_ns: u64) {
        let full = self.new.len() >= INDEX_MAX;
        let aged = ts_ns > self.new_from_ns.saturating_add(INDEX_AGE_NS)
            && self.old_to_ns.saturating_add(SEEN_WINDOW_NS) < self.handled_ns;
        if self.new.is_empty() {
            self.new_from_ns = ts_ns;
        } else if full || aged {
            let fresh = HashMap::with_capacity(INDEX_MAX);
            self.old = std::mem::replace(&mut self.new, fresh);
            (self.old_to_ns, self.new_from_ns) = (self.new_to_ns, ts_ns);
        }
        self.new_to_ns = self.new_to_ns.max(ts_ns);
        self.new.insert(seen_key(&at), (journey, ts_ns));
    }

    /// The journey last seen at `at` within SEEN_WINDOW_NS of `ts_ns`: an
    /// older one is an earlier packet of the same identity, and the
    /// message's own packet has not been read from the ring buffer yet.
    fn get(&self, at: &SeenAt, ts_ns: u64) -> Option<u64> {
        let key = seen_key(at);
        let (journey, seen) = *self.new.get(&key).or_else(|| self.old.get(&key))?;
        (seen.abs_diff(ts_ns) < SEEN_WINDOW_NS).then_some(journey)
    }

    /// The journey of the packet a trace message describes: seen in the
    /// message's namespace on its input or output interface.
    fn find(&self, t: &NftTrace, id: Ident) -> Option<u64> {
        [id, id.loose()].into_iter().find_map(|id| {
            [t.iif, t.oif]
                .into_iter()
                .flatten()
                .find_map(|dev| self.get(&(t.netns_ino, dev, id), t.received_ns))
        })
    }
}

/// Kernel time for a step of `hook` in the journey `steps`; `seq` keeps
/// the messages of one evaluation in order. None while the step the hook
/// comes after has not arrived yet (the ring buffer can lag the netlink
/// messages), unless `settle` says to place it with what is there.
fn place(steps: &[Step], t: &NftTrace, hook: Option<&str>, seq: u64, settle: bool) -> Option<u64> {
    let here = || steps.iter().filter(|s| s.netns == t.netns_ino);
    let received = here()
        .filter(|s| !s.correlated && Some(s.ifindex) == t.iif)
        .map(|s| s.ts_ns)
        .min();
    let sending = here()
        .filter(|s| !s.correlated && Some(s.ifindex) == t.oif && &*s.subsystem != "receive")
        .map(|s| s.ts_ns)
        .min();
    // The input or forward hook runs once the routing decision is made:
    // after the last lookup of the run that follows the receive (IPv6
    // looks up the local table, then main), before the packet's next own
    // step after the lookups (functions such as ip_rcv come before them).
    let is_lookup = |s: &Step| s.correlated && &*s.subsystem == "routing";
    let routed = received.and_then(|r| {
        let first = here()
            .filter(|s| is_lookup(s) && s.ts_ns >= r)
            .map(|s| s.ts_ns)
            .min()?;
        let next = here()
            .filter(|s| !s.correlated && s.ts_ns > first)
            .map(|s| s.ts_ns)
            .min()
            .unwrap_or(u64::MAX);
        here()
            .filter(|s| is_lookup(s) && s.ts_ns >= first && s.ts_ns < next)
            .map(|s| s.ts_ns)
            .max()
    });
    let last = || {
        here()
            .filter(|s| s.ts_ns <= t.received_ns)
            .map(|s| s.ts_ns)
            .max()
    };
    let ts = match hook {
        Some("prerouting") => received,
        Some("input" | "forward") if settle => routed.or(received),
        Some("input" | "forward") => Some(routed?),
        Some("output") => sending.map(|s| s.saturating_sub(2000)),
        Some("postrouting") => sending.map(|s| s.saturating_sub(1000)),
        _ => None,
    };
    if ts.is_none() && !settle {
        return None;
    }
    Some(ts.or_else(last)? + seq)
}

/// The chain evaluations of one packet in one namespace, which share the
/// kernel's trace id. Only the first message of each evaluation carries
/// the packet's headers (the reader copies them into the rest); a later
/// packet in the same recycled skb has the same trace id.
struct Group {
    journey: Option<u64>,
    /// The first message of an evaluation waits for its journey: the
    /// rest wait behind it rather than join the group's previous packet.
    pending: bool,
    /// The hook of the current evaluation.
    hook: Option<&'static str>,
    /// Orders the messages of the packet's evaluations in that namespace.
    seq: u64,
    seen: Instant,
}

/// A netfilter hook's name, shared.
fn hook_name(hook: &str) -> Option<&'static str> {
    [
        "prerouting",
        "input",
        "forward",
        "output",
        "postrouting",
        "ingress",
        "egress",
    ]
    .into_iter()
    .find(|h| *h == hook)
}

/// nftables tracing during a run: the session, the rule texts, and the
/// messages not yet tied to a journey.
pub struct RuleTracer {
    session: NftraceSession,
    rules: RulesetCache,
    namespaces: HashMap<u32, NetnsRef>,
    // Boxed as they come from the queue: kept waiting without a copy, and
    // a long wait list grows by pointers.
    #[allow(clippy::vec_box)]
    waiting: Vec<Box<NftTrace>>,
    groups: HashMap<(u32, u32), Group>,
    seen: SeenIndex,
    /// Messages never tied to a journey.
    pub unmatched: u64,
    /// iptables-nft rules by where they are.
    iptables: HashMap<RuleAt, Option<(u32, String)>>,
}

/// A rule's place: netns, family, table, chain, handle.
type RuleAt = (u32, Arc<str>, Arc<str>, Arc<str>, u64);

/// Tables iptables-nft (and ip6tables-nft) make.
fn is_iptables_table(family: &str, table: &str) -> bool {
    matches!(family, "ip" | "ip6")
        && matches!(table, "filter" | "nat" | "mangle" | "raw" | "security")
}

impl RuleTracer {
    /// Starts tracing in `namespaces` for the packets of `filter`. The
    /// second value is a warning when the filter could not be translated
    /// (every packet is then marked for tracing).
    pub fn start(
        namespaces: Vec<NetnsRef>,
        filter: &str,
    ) -> anyhow::Result<(Self, Option<String>)> {
        let matches = if filter.trim().is_empty() {
            None
        } else {
            translate_filter(filter)
        };
        let warning = (!filter.trim().is_empty() && matches.is_none()).then(|| {
            format!(
                "nftables tracing cannot express '{filter}': it marks every packet, and \
                 pktpath keeps the traces of the selected ones"
            )
        });
        let session = NftraceSession::start(SessionPlan {
            namespaces: &namespaces,
            matches,
        })?;
        // Those with a ruleset: the others send no trace messages.
        let traced = session
            .namespaces()
            .iter()
            .map(|n| (n.inode, n.clone()))
            .collect();
        Ok((
            RuleTracer {
                session,
                rules: RulesetCache::new(),
                namespaces: traced,
                waiting: Vec::new(),
                groups: HashMap::new(),
                seen: SeenIndex::default(),
                unmatched: 0,
                iptables: HashMap::new(),
            },
            warning,
        ))
    }

    /// Tables of dead pktpath runs deleted while setting up: (netns, table).
    pub fn swept(&self) -> &[(String, String)] {
        self.session.swept()
    }

    /// Namespaces tracing was set up in.
    pub fn namespaces(&self) -> usize {
        self.namespaces.len()
    }

    /// Inodes of the namespaces traced.
    pub fn traced_netns(&self) -> std::collections::HashSet<u32> {
        self.namespaces.keys().copied().collect()
    }

    /// Messages lost by the netlink socket or the reader's queue.
    pub fn lost(&self) -> u64 {
        self.session.lost()
    }

    /// Notes where journey `journey`'s packet was seen (every step of the
    /// ring buffer goes by here), for the messages that will name it.
    pub fn observe(&mut self, journey: u64, s: &Step) {
        if s.correlated || !self.namespaces.contains_key(&s.netns) {
            return;
        }
        let Some(id) = step_ident(s) else {
            return;
        };
        self.seen.insert((s.netns, s.ifindex, id), journey, s.ts_ns);
        if id.loose() != id {
            self.seen
                .insert((s.netns, s.ifindex, id.loose()), journey, s.ts_ns);
        }
    }

    /// Ties what arrived to journeys (open or held in `journeys`); with
    /// `stream`, returns the steps added (for sinks that show steps live).
    /// `ring_read_ns`: every event of the ring buffer stamped before this
    /// has been read (a message's packet may not have been read before).
    pub fn poll(
        &mut self,
        journeys: &mut Journeys,
        stream: bool,
        ring_read_ns: u64,
    ) -> Vec<(u64, Step)> {
        self.poll_up_to(journeys, stream, ring_read_ns, super::session::QUEUE_LEN)
    }

    /// [`Self::poll`], taking at most about `limit` messages from the queue.
    fn poll_up_to(
        &mut self,
        journeys: &mut Journeys,
        stream: bool,
        ring_read_ns: u64,
        limit: usize,
    ) -> Vec<(u64, Step)> {
        let mut added = Vec::new();
        // Every message sent before this is drained below: a journey
        // closed before it has all its rule steps once they are tied.
        let drained = self.session.drained_ns();
        // Taken from the queue a batch at a time (under load it holds
        // thousands: collected at once they were 8.6 MB of one Vec), and
        // at most a queue's worth, so that a reader that keeps filling it
        // does not keep the ring buffer waiting.
        let mut batch = std::mem::take(&mut self.waiting);
        let mut taken = 0;
        let emptied = loop {
            for t in batch {
                self.take_message(journeys, t, ring_read_ns, stream.then_some(&mut added));
            }
            if taken >= limit {
                break false;
            }
            batch = self.session.drain(DRAIN_BATCH);
            if batch.is_empty() {
                break true;
            }
            taken += batch.len();
        };
        // The messages of one evaluation come together.
        // (One clock reading for all: thousands under load.)
        let now = Instant::now();
        self.groups
            .retain(|_, g| now.saturating_duration_since(g.seen) < GROUP_AGE);
        if !emptied {
            // What was sent before `drained` is not all handled yet.
            return added;
        }
        let oldest_waiting = self.waiting.iter().map(|t| t.received_ns).min();
        self.seen.handled_ns = oldest_waiting.map_or(drained, |w| w.min(drained));
        journeys.caught_up_ns = journeys.caught_up_ns.max(drained);
        added
    }

    /// Ties one message, or keeps it waiting for its packet's steps.
    fn take_message(
        &mut self,
        journeys: &mut Journeys,
        t: Box<NftTrace>,
        ring_read_ns: u64,
        added: Option<&mut Vec<(u64, Step)>>,
    ) {
        let read_past = |ns| ring_read_ns > t.received_ns.saturating_add(ns);
        // The step the hook comes after is not coming: place the message
        // with what is there.
        let settle = read_past(SETTLE_NS);
        match self.tie(journeys, &t, settle, added) {
            Attached::Yes => {}
            Attached::NotYet if !read_past(WAIT_NS) && self.waiting.len() < WAIT_MAX => {
                self.waiting.push(t)
            }
            // Its journey was handed out (ended, or evicted under load), or
            // its packet was never seen.
            _ => self.unmatched += 1,
        }
    }

    /// Waits (at most `limit`) until the reader has read every message
    /// sent before now, then ties them: called when tracing stops, with
    /// the ring buffer read to the end.
    pub fn catch_up(&mut self, journeys: &mut Journeys, limit: Duration) -> Vec<(u64, Step)> {
        let now = pktpath_core::clock::monotonic_ns();
        let deadline = Instant::now() + limit;
        while self.session.drained_ns() < now && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        self.poll_up_to(journeys, true, u64::MAX, usize::MAX)
    }

    /// For a rule of a table iptables-nft manages: its number in the chain
    /// (the chain's order in nft) and its `iptables -S` text.
    fn iptables_rule(&mut self, t: &NftTrace, handle: Option<u64>) -> Option<(u32, String)> {
        let handle = handle?;
        if !is_iptables_table(&t.family, &t.table) {
            return None;
        }
        let key = (
            t.netns_ino,
            t.family.clone(),
            t.table.clone(),
            t.chain.clone(),
            handle,
        );
        if let Some(known) = self.iptables.get(&key) {
            return known.clone();
        }
        let ns = self.namespaces.get(&t.netns_ino)?;
        let found = (|| {
            let chain = self
                .rules
                .chain(ns, &t.family, &t.table, &t.chain, Some(handle))?;
            let n = chain.order.iter().position(|h| *h == handle)?;
            let tool = if &*t.family == "ip6" {
                "ip6tables-nft"
            } else {
                "iptables-nft"
            };
            let text = run_in(ns, tool, &["-t", &t.table, "-S", &t.chain], None).ok()?;
            let prefix = format!("-A {} ", t.chain);
            let line = text.lines().filter(|l| l.starts_with(&prefix)).nth(n)?;
            Some((n as u32 + 1, line.to_string()))
        })();
        self.iptables.insert(key, found.clone());
        found
    }

    fn tie(
        &mut self,
        journeys: &mut Journeys,
        t: &NftTrace,
        settle: bool,
        added: Option<&mut Vec<(u64, Step)>>,
    ) -> Attached {
        let Some(ns) = self.namespaces.get(&t.netns_ino) else {
            return Attached::Gone;
        };
        let key = (t.netns_ino, t.id);
        let id = t.l3_bytes().and_then(|b| ident(&b));
        // The first message of an evaluation; the reader copies its
        // headers into the rest (`headers_inherited`). It is tied by its
        // headers alone: a trace id is a hash of the skb address, flow
        // hash and input interface, so a later packet of the flow in
        // recycled memory has the id of an earlier one. The rest follow
        // their first.
        let first = id.is_some() && !t.headers_inherited;
        let group = self.groups.get(&key);
        let journey = match (first, group) {
            (false, Some(g)) if g.pending => None,
            (false, Some(g)) => g.journey,
            _ => id.and_then(|id| self.seen.find(t, id)),
        };
        let Some(journey) = journey else {
            if first {
                let g = self.groups.entry(key).or_insert(Group {
                    journey: None,
                    pending: true,
                    hook: None,
                    seq: 0,
                    seen: Instant::now(),
                });
                g.pending = true;
                g.seen = Instant::now();
            }
            return Attached::NotYet;
        };
        // Described once its journey is found (a waiting message is tried
        // again at every poll).
        let info = self.rules.describe(ns, t);
        let base_hook = info.base.as_ref().and_then(|b| hook_name(&b.hook));
        // The same packet's earlier evaluations (another chain or hook):
        // its messages come after theirs.
        let same = group.filter(|g| g.journey == Some(journey));
        let hook = base_hook.or_else(|| same.filter(|_| !first).and_then(|g| g.hook));
        let seq = same.map_or(1, |g| g.seq + 1);
        let what = match t.kind {
            TraceKind::Rule => "rule",
            TraceKind::Return => "return",
            TraceKind::Policy => "policy",
            TraceKind::Other(_) => "other",
        };
        let detail = Detail::Rule(Box::new(pktpath_core::model::RuleMatch {
            family: info.family,
            table: info.table,
            chain: info.chain,
            hook: info.base.as_ref().map(|b| b.hook.clone()),
            priority: info.base.as_ref().map(|b| b.priority.clone()),
            what: what.into(),
            handle: info.rule_handle,
            iptables: self.iptables_rule(t, info.rule_handle),
            rule: info.rule_text,
            verdict: t.verdict.to_string(),
        }));
        // An ended journey has all its steps: nothing more to wait for.
        let make = |steps: &[Step], ended: bool| {
            let ts = place(steps, t, hook, seq, settle || ended)?;
            // The device the hook ran for: out on output and postrouting.
            let out = matches!(hook, Some("output" | "postrouting"));
            let dev = if out {
                t.oif.or(t.iif)
            } else {
                t.iif.or(t.oif)
            };
            let on = steps
                .iter()
                .find(|s| s.netns == t.netns_ino && Some(s.ifindex) == dev);
            Some(Step {
                ts_ns: ts,
                site: "nft_trace".into(),
                kind: SiteKind::Tracepoint,
                subsystem: "nftables".into(),
                source: None,
                netns: t.netns_ino,
                netns_name: on.map(|s| s.netns_name.clone()).unwrap_or_default(),
                dev: on.and_then(|s| s.dev.clone()),
                ifindex: on.map_or(0, |s| s.ifindex),
                len: 0,
                mark: t.mark,
                cpu: 0,
                skb: 0,
                correlated: true,
                headers: None,
                ct: None,
                vlan: None,
                detail,
                packet: None,
            })
        };
        let mut made = None;
        let tied = journeys.attach(journey, |steps, ended| {
            let s = make(steps, ended)?;
            if added.is_some() {
                made = Some(s.clone());
            }
            Some(s)
        });
        if tied != Attached::Yes {
            return tied;
        }
        if let (Some(added), Some(s)) = (added, made) {
            added.push((journey, s));
        }
        let g = self.groups.entry(key).or_insert(Group {
            journey: Some(journey),
            pending: false,
            hook: None,
            seq: 0,
            seen: Instant::now(),
        });
        g.journey = Some(journey);
        g.pending = false;
        g.seq = seq;
        g.seen = Instant::now();
        if first || g.hook.is_none() {
            g.hook = hook;
        }
        Attached::Yes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp(id: u16, sport: u16) -> Vec<u8> {
        let mut p = vec![
            0x45,
            0,
            0,
            33,
            (id >> 8) as u8,
            id as u8,
            0,
            0,
            64,
            17,
            0,
            0,
        ];
        p.extend([10, 0, 1, 2, 10, 0, 2, 2]);
        p.extend(sport.to_be_bytes());
        p.extend([0x27, 0x0f, 0, 13, 0, 0]);
        p
    }

    /// A reader held up for seconds still finds what was seen meanwhile:
    /// generations age by kernel time and by what was handled, not by the
    /// clock; once handled, old packets go.
    #[test]
    fn seen_packets_stay_until_their_messages_are_handled() {
        const S: u64 = 1_000_000_000;
        let at = |id| (1, 2, ident(&udp(id, 4000)).unwrap());
        let mut index = SeenIndex::default();
        index.insert(at(1), 11, S);
        for (i, ts) in (2..=10).map(|s| s * S).enumerate() {
            index.insert(at(100 + i as u16), 100 + i as u64, ts);
        }
        assert_eq!(index.get(&at(1), S), Some(11), "nothing handled yet");
        assert_eq!(
            index.get(&at(1), S + SEEN_WINDOW_NS),
            None,
            "outside the window"
        );
        // Handled up to 10 s: what was seen up to then may still be named
        // by a message read just after, and stays one generation more.
        index.handled_ns = 10 * S;
        for (i, ts) in (11..=20).map(|s| s * S).enumerate() {
            index.insert(at(200 + i as u16), 200 + i as u64, ts);
        }
        assert_eq!(index.get(&at(1), S), Some(11), "one generation more");
        index.handled_ns = 20 * S;
        index.insert(at(300), 300, 21 * S);
        assert_eq!(index.get(&at(1), S), None, "handled long ago");
        assert_eq!(index.get(&at(209), 20 * S), Some(209));
    }

    #[test]
    fn identity_ignores_addresses_and_survives_ethernet() {
        let a = ident(&udp(7, 4000)).unwrap();
        let mut natted = udp(7, 4000);
        natted[12] = 192;
        assert_eq!(ident(&natted), Some(a));
        assert_ne!(ident(&udp(8, 4000)), Some(a));
        let mut frame = vec![0u8; 12];
        frame.extend([0x08, 0x00]);
        frame.extend(udp(7, 4000));
        let mut s = pktpath_core::model::test_step(0, "netif_receive_skb", "r", Detail::None);
        s.packet = Some((false, frame.into()));
        assert_eq!(step_ident(&s), Some(a));
        assert!(ident(&[0x45, 0, 0]).is_none());
    }

    fn ping6(kind: u8, seq: u16) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0, 0, 16, 58, 64];
        p.extend([0xfd; 16]);
        p.extend([0xfe; 16]);
        p.extend([kind, 0, 0, 0, 0, 7]);
        p.extend(seq.to_be_bytes());
        p.extend([0; 8]);
        p
    }

    /// IPv6 has no IP id: an echo request and its reply, or two requests,
    /// differ by ICMP type and sequence; two datagrams of one length by
    /// their checksum.
    #[test]
    fn ipv6_packets_of_one_length_are_told_apart() {
        let req = ident(&ping6(128, 1)).unwrap();
        assert_ne!(ident(&ping6(129, 1)), Some(req));
        assert_ne!(ident(&ping6(128, 2)), Some(req));
        assert_eq!(ident(&ping6(128, 1)), Some(req));
        let udp6 = |sum: u16| {
            let mut p = vec![0x60, 0, 0, 0, 0, 12, 17, 64];
            p.extend([0xfd; 32]);
            p.extend([0x13, 0x88, 0x13, 0x89, 0, 12]);
            p.extend(sum.to_be_bytes());
            p.extend([1, 2, 3, 4]);
            ident(&p).unwrap()
        };
        assert_ne!(udp6(1), udp6(2));
        assert_eq!(udp6(1).loose(), udp6(2).loose());
        // IPv4 echo: the reply is not the request.
        let mut echo = udp(7, 4000);
        echo[9] = 1;
        echo[20] = 8;
        let request = ident(&echo).unwrap();
        echo[20] = 0;
        assert_ne!(ident(&echo), Some(request));
    }
}
