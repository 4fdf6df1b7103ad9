//! Steps grouped live into journeys: the BPF side gives every selected
//! packet a journey id; steps are grouped by it, ordered by time (events
//! from several CPUs reach the ring buffer out of order) and a journey is
//! closed when its packet is freed, shortly after it was copied to a
//! socket, or after it went quiet.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};

// Journey ids and stream keys: a fast hash, no need for SipHash's defence.
use rustc_hash::FxHashMap as HashMap;

use super::{Journey, NFT_BEHIND};
use crate::diagnosis::{is_local_route, End};
use crate::model::{Detail, Step};
use crate::sites::Role;

struct Open {
    steps: Vec<Step>,
    last_ts: u64,
    delivered: bool,
    /// Handed to a socket with data an application has yet to read.
    queued: bool,
    /// The packet carries bytes a socket would queue (from its headers).
    socket_data: Option<bool>,
    /// A datagram (not TCP): read whole by one copy, so a delivered one
    /// waits only for its free.
    datagram: bool,
    /// Seen in a namespace whose rules are traced: late nftables steps
    /// may come for it.
    rule_traced: bool,
    /// The last step left the packet where the tracepoints may see no
    /// more of it, and whatever else happens follows at once (same
    /// softirq): received by the stack (its input route aside), routed
    /// to a local address, or a segment TCP processed with no data to
    /// queue. Not so after a transmit queue or a neighbour wait.
    settled: bool,
    /// Waiting in a neighbour's queue for its resolution (the last of its
    /// own steps before it): nothing is seen until it answers, or the
    /// kernel gives up (3 s with the default probes).
    neigh_wait: bool,
    /// skbs of this packet still alive (clones and copies join it).
    live: Vec<u64>,
    /// A TCP segment's direction of its connection (addresses and
    /// ports) and sequence number; whether it is in `Journeys::unread`.
    stream: Option<(u64, u32)>,
    unread: bool,
}

/// TCP segments queued to a socket and not read yet, per stream (see
/// `stream_key`), in the order they were queued: (sequence number, journey
/// id). Closed journeys leave their entries, skipped when met and swept
/// when they pile up: a deque of thousands (a receive buffer of MTU
/// segments) is not searched per step.
#[derive(Default)]
struct Unread {
    by_stream: HashMap<u64, VecDeque<(u32, u64)>>,
    len: usize,
}

impl Unread {
    fn queued(&mut self, stream: u64, seq: u32, id: u64) {
        self.by_stream
            .entry(stream)
            .or_default()
            .push_back((seq, id));
        self.len += 1;
    }

    /// Journey `id`'s segment at `seq` was read: TCP reads a stream in
    /// order, so the data of every segment queued before it was read too,
    /// some of it from another skb (coalescing frees a segment's own where
    /// no tracepoint fires). Returns those segments' journeys.
    fn read(&mut self, stream: u64, seq: u32, id: u64) -> Vec<u64> {
        let mut before_it = Vec::new();
        let Some(w) = self.by_stream.get_mut(&stream) else {
            return before_it;
        };
        while let Some(&(other_seq, other)) = w.front() {
            // Sequence numbers wrap: "before" is within half the space.
            let before = (seq.wrapping_sub(other_seq) as i32) > 0;
            if other != id && !before {
                break;
            }
            w.pop_front();
            self.len -= 1;
            if other != id {
                before_it.push(other);
            }
        }
        if w.is_empty() {
            self.by_stream.remove(&stream);
        }
        before_it
    }

    /// Drops the entries of journeys no longer open once they are most of
    /// it.
    fn sweep(&mut self, open: impl Fn(u64) -> bool, open_len: usize) {
        if self.len <= 1024 + 2 * open_len {
            return;
        }
        self.by_stream.retain(|_, w| {
            w.retain(|&(_, id)| open(id));
            !w.is_empty()
        });
        self.len = self.by_stream.values().map(VecDeque::len).sum();
    }
}

/// A stream's key: its addresses and ports, one direction.
fn stream_key(f: &crate::packet::Flow) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let ports = f.ports?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (&f.src, &f.dst, ports).hash(&mut h);
    Some(h.finish())
}

/// The journey of `steps`; `merged`: delivered by inference (see
/// `End::Delivered::merged`), unless a drop or a copy said otherwise.
fn finish(id: u64, steps: Vec<Step>, freed: bool, merged: bool) -> Journey {
    let mut j = Journey::from_steps(id, steps, freed);
    if merged && !matches!(j.end, End::Dropped { .. } | End::Delivered { .. }) {
        let netns = j
            .steps
            .iter()
            .rev()
            .find(|s| crate::sites::queues_to_socket(&s.site))
            .or(j.steps.last())
            .map_or_else(String::new, |s| s.netns_name.to_string());
        j.end = End::Delivered {
            netns,
            socket: None,
            merged: true,
        };
    }
    j
}

/// A finished journey kept a moment for steps that arrive by another way
/// (nftables trace messages come over netlink, not the ring buffer).
struct Held {
    id: u64,
    steps: Vec<Step>,
    freed: bool,
    /// Delivered by inference (see `End::Delivered::merged`).
    merged: bool,
    /// Kernel time it closed: every trace message about it was sent
    /// before then (nftables sends them from the hook, as the packet
    /// passes).
    closed: u64,
    /// Kernel time after which it is handed out even if the messages
    /// sent before `closed` have not all been read.
    until: u64,
}

/// What `Journeys::attach` did with a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attached {
    Yes,
    /// Not placed yet: the journey (or the step it comes after) is not
    /// there yet.
    NotYet,
    /// The journey was handed out already.
    Gone,
}

/// Appends a step, growing the journey by half (4, 6, 9, 13...) rather
/// than doubling: most journeys have 4 to 8 steps of 208 bytes, and a
/// doubled Vec kept three empty ones for each 5-step datagram.
fn push_step(steps: &mut Vec<Step>, step: Step) {
    if steps.len() == steps.capacity() {
        steps.reserve_exact((steps.len() / 2).max(4));
    }
    steps.push(step);
}

/// Groups steps into journeys and decides when each is finished.
pub struct Journeys {
    open: HashMap<u64, Open>,
    held: BTreeMap<u64, Held>,
    /// Keep finished journeys at most this long for late steps (0: hand
    /// them out at once), ns.
    pub hold_ns: u64,
    /// Kernel time up to which the late steps have all been read: a held
    /// journey closed before it is complete and handed out at once.
    pub caught_up_ns: u64,
    /// Ids already closed, to count steps arriving after the end.
    closed: BTreeSet<u64>,
    /// Close a journey that saw nothing for this long, ns.
    pub idle_ns: u64,
    /// After a socket copy, wait this long for more copies, ns.
    pub deliver_grace_ns: u64,
    /// After a datagram's copy, wait this long for its free (the free
    /// follows the copy in the same recvmsg; some kernels free datagrams
    /// where no tracepoint fires), ns.
    pub datagram_grace_ns: u64,
    /// Namespaces whose nftables rules are traced: only journeys seen in
    /// one are held (`hold_ns`) for late trace messages. None: all are.
    pub hold_netns: Option<HashSet<u32>>,
    /// Data queued to a socket waits for the application's read this long.
    pub queued_idle_ns: u64,
    /// A packet queued for a neighbour's resolution waits this long
    /// (retrans_time 1 s x 3 multicast probes, and room), ns.
    pub neigh_wait_ns: u64,
    /// A settled packet (see `Open::settled`) closes after this long
    /// without a step, ns: what follows, if anything, comes at once (a
    /// drop, a forward, the socket's tracepoints); without it the
    /// tracepoint-only journeys of datagrams queued to a socket (no
    /// tracepoint there) and of pure ACKs would wait `idle_ns` (memory:
    /// 60,000 datagrams/s x 1 s x 7 steps, over the memory bound).
    pub settled_ns: u64,
    /// Steps that arrived after their journey was closed.
    pub late: u64,
    /// Steps kept (open and held journeys), and the most to keep: over
    /// it, `evict` hands out the held journeys, then the quietest open
    /// ones, until a quarter is free.
    steps: usize,
    pub max_steps: usize,
    /// Journeys `evict` cut short (neither delivered nor settled).
    pub evicted: u64,
    /// TCP segments queued to a socket and not read yet.
    unread: Unread,
    /// Journeys closed by a step of another journey, to hand out with the
    /// next `expire`.
    ready: Vec<Journey>,
}

impl Default for Journeys {
    fn default() -> Self {
        Journeys {
            open: HashMap::default(),
            held: BTreeMap::new(),
            hold_ns: 0,
            caught_up_ns: 0,
            closed: BTreeSet::new(),
            idle_ns: 1_000_000_000,
            deliver_grace_ns: 100_000_000,
            datagram_grace_ns: 10_000_000,
            hold_netns: None,
            queued_idle_ns: 10_000_000_000,
            neigh_wait_ns: 3_500_000_000,
            settled_ns: 25_000_000,
            late: 0,
            steps: 0,
            // ~500 bytes a step with its share of strings and bytes:
            // ~16 MB at most, however fast the events come or however
            // many journeys lose their end.
            max_steps: 32_768,
            evicted: 0,
            unread: Unread::default(),
            ready: Vec::new(),
        }
    }
}

impl Journeys {
    /// Adds a step; returns the journey when this step ended it.
    pub fn push(&mut self, id: u64, step: Step) -> Option<Journey> {
        // An open journey is not closed: the set of closed ids (a tree of
        // up to 65,536) is searched only for a step that opens one.
        if !self.open.contains_key(&id) && self.closed.contains(&id) {
            self.late += 1;
            return None;
        }
        let role = step.role();
        let o = self.open.entry(id).or_insert_with(|| Open {
            // Grown as steps come (push_step): a reserve of 12 (3.5 kB)
            // per journey was 40 % of the heap with 5-step UDP journeys.
            steps: Vec::new(),
            last_ts: 0,
            delivered: false,
            queued: false,
            socket_data: None,
            datagram: false,
            rule_traced: false,
            settled: false,
            neigh_wait: false,
            live: Default::default(),
            stream: None,
            unread: false,
        });
        o.last_ts = o.last_ts.max(step.ts_ns);
        o.delivered |= role == Role::Deliver;
        if o.socket_data.is_none() {
            if let Some(f) = step.flow() {
                o.socket_data = Some(f.waits_in_socket());
                o.datagram = f.proto != 6;
                o.stream = stream_key(&f).zip(f.tcp_seq).filter(|_| f.proto == 6);
            }
        }
        if self.hold_ns > 0 && !o.rule_traced {
            o.rule_traced = self
                .hold_netns
                .as_ref()
                .is_none_or(|n| n.contains(&step.netns));
        }
        o.queued |= o.socket_data == Some(true) && crate::sites::queues_to_socket(&step.site);
        // A TCP segment waits in its socket; a read of a later one reads
        // it too (see Unread::read).
        if let (Some((k, seq)), false) = (o.stream, o.unread) {
            if o.queued && !o.delivered {
                o.unread = true;
                self.unread.queued(k, seq, id);
            }
        }
        let read_before = match (role == Role::Deliver, o.stream) {
            (true, Some((k, seq))) => self.unread.read(k, seq, id),
            _ => Vec::new(),
        };
        o.neigh_wait = match &step.detail {
            Detail::Neigh(n) => n.queued(),
            _ => o.neigh_wait && step.correlated,
        };
        o.settled = match &step.detail {
            // The input route of a received packet: local, or on its way.
            Detail::Route(_) => o.settled || is_local_route(&step),
            _ => {
                matches!(&*step.site, "netif_receive_skb")
                    || (&*step.site == "tcp_probe" && !o.queued)
            }
        };
        if !step.correlated {
            if role == Role::Free {
                o.live.retain(|&s| s != step.skb);
            } else if !o.live.contains(&step.skb) {
                o.live.push(step.skb);
            }
        }
        let ts = step.ts_ns;
        push_step(&mut o.steps, step);
        self.steps += 1;
        let freed = role == Role::Free && o.live.is_empty();
        for other in read_before {
            // Closed already (an entry left behind), or read itself.
            if self.open.get(&other).is_some_and(|o| !o.delivered) {
                if let Some(j) = self.close_as(other, false, true, ts) {
                    self.ready.push(j);
                }
            }
        }
        // Ends when its last skb is freed.
        if freed {
            return self.close(id, true, ts);
        }
        None
    }

    /// Closes a journey: hands it out, or holds it until `now + hold_ns`.
    fn close(&mut self, id: u64, freed: bool, now: u64) -> Option<Journey> {
        self.close_as(id, freed, false, now)
    }

    /// `close`; `merged`: delivered by inference (`End::Delivered::merged`).
    fn close_as(&mut self, id: u64, freed: bool, merged: bool, now: u64) -> Option<Journey> {
        let o = self.open.remove(&id).expect("open journey");
        self.closed.insert(id);
        // Keep the set small: ids grow, old ones can go.
        while self.closed.len() > 65536 {
            self.closed.pop_first();
        }
        if self.hold_ns == 0 || !o.rule_traced {
            self.steps -= o.steps.len();
            return Some(finish(id, o.steps, freed, merged));
        }
        self.held.insert(
            id,
            Held {
                id,
                steps: o.steps,
                freed,
                merged,
                closed: now,
                until: now.saturating_add(self.hold_ns),
            },
        );
        None
    }

    /// Adds a step that came by another way to journey `id` (open or
    /// held); `make` builds it from the journey's steps and whether the
    /// journey has ended (all its steps are there), or says not yet (None).
    pub fn attach(
        &mut self,
        id: u64,
        make: impl FnOnce(&[Step], bool) -> Option<Step>,
    ) -> Attached {
        let (steps, ended) = match self.open.get_mut(&id) {
            Some(o) => (&mut o.steps, false),
            None => match self.held.get_mut(&id) {
                Some(h) => (&mut h.steps, true),
                None if self.closed.contains(&id) => return Attached::Gone,
                None => return Attached::NotYet,
            },
        };
        let Some(step) = make(steps, ended) else {
            return Attached::NotYet;
        };
        push_step(steps, step);
        self.steps += 1;
        Attached::Yes
    }

    /// Journeys that went quiet by kernel time `now_ns`, and held ones
    /// whose time is up, oldest first.
    pub fn expire(&mut self, now_ns: u64) -> Vec<Journey> {
        let mut out = self.close_quiet(now_ns);
        let due: Vec<u64> = self
            .held
            .values()
            .filter(|h| h.closed < self.caught_up_ns || h.until <= now_ns)
            .map(|h| h.id)
            .collect();
        for id in due {
            let h = self.held.remove(&id).expect("held journey");
            out.push(self.release(h));
        }
        out.sort_by_key(|j| j.id);
        out
    }

    /// Open journeys that went quiet by kernel time `now_ns` (and those
    /// another journey's step closed), oldest first; held ones stay (their
    /// late nftables steps come by another way, read between polls).
    pub fn close_quiet(&mut self, now_ns: u64) -> Vec<Journey> {
        let open = &self.open;
        self.unread.sweep(|id| open.contains_key(&id), open.len());
        let ready = std::mem::take(&mut self.ready);
        let mut ids: Vec<u64> = self
            .open
            .iter()
            .filter(|(_, o)| {
                let quiet = now_ns.saturating_sub(o.last_ts);
                if o.delivered && o.datagram {
                    quiet > self.datagram_grace_ns
                } else if o.delivered {
                    quiet > self.deliver_grace_ns
                } else if o.queued {
                    quiet > self.queued_idle_ns.max(self.idle_ns)
                } else if o.neigh_wait {
                    quiet > self.neigh_wait_ns.max(self.idle_ns)
                } else if o.settled {
                    quiet > self.settled_ns.min(self.idle_ns)
                } else {
                    quiet > self.idle_ns
                }
            })
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        let mut out: Vec<Journey> = ids
            .into_iter()
            .filter_map(|id| self.close(id, false, now_ns))
            .collect();
        out.extend(ready);
        out.sort_by_key(|j| j.id);
        out
    }

    fn release(&mut self, h: Held) -> Journey {
        self.steps -= h.steps.len();
        let behind = h.closed >= self.caught_up_ns;
        let mut j = finish(h.id, h.steps, h.freed, h.merged);
        if behind {
            j.caveats.push(NFT_BEHIND.to_string());
        }
        j
    }

    /// More steps kept than `max_steps`.
    pub fn over_limit(&self) -> bool {
        self.steps > self.max_steps
    }

    /// Hands out journeys until a quarter of `max_steps` is free: held
    /// ones first (finished; only late nftables steps are given up), then
    /// open ones that only wait out a grace (delivered, or settled), then
    /// the others, quietest first (they end as they stand: "no end
    /// seen"). Only those last count as `evicted`: the others had their
    /// end, or all of it the tracepoints show.
    pub fn evict(&mut self) -> Vec<Journey> {
        let target = self.max_steps - self.max_steps / 4;
        let mut out = Vec::new();
        while self.steps > target {
            let Some((_, h)) = self.held.pop_first() else {
                break;
            };
            out.push(self.release(h));
        }
        if self.steps > target {
            // (waiting for nothing but time, last step, id): the ones only
            // waiting first, each group quietest first.
            let mut order: Vec<(bool, u64, u64)> = self
                .open
                .iter()
                .map(|(id, o)| (!(o.delivered || o.settled), o.last_ts, *id))
                .collect();
            order.sort_unstable();
            for (unended, _, id) in order {
                if self.steps <= target {
                    break;
                }
                let o = self.open.remove(&id).expect("open journey");
                self.closed.insert(id);
                self.steps -= o.steps.len();
                self.evicted += unended as u64;
                out.push(Journey::from_steps(id, o.steps, false));
            }
        }
        out.sort_by_key(|j| j.id);
        out
    }

    /// Closes everything (tracing stops).
    pub fn flush(&mut self) -> Vec<Journey> {
        self.hold_ns = 0;
        let mut ids: Vec<u64> = self.open.keys().copied().collect();
        ids.sort_unstable();
        let mut out: Vec<Journey> = ids
            .into_iter()
            .filter_map(|id| self.close(id, false, 0))
            .collect();
        let held = std::mem::take(&mut self.held);
        out.extend(held.into_values().map(|h| self.release(h)));
        out.append(&mut self.ready);
        out.sort_by_key(|j| j.id);
        out
    }

    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// Journeys not handed out yet: open, held for late steps, or ready.
    pub fn pending(&self) -> usize {
        self.open.len() + self.held.len() + self.ready.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::model::test_step as step;
    use crate::model::{DropInfo, HookRun};

    /// A step without a device is where the packet was last seen, not in
    /// the netns of a socket its skb still holds (a fragment's sender's).
    #[test]
    fn a_step_without_a_device_is_where_the_packet_is() {
        let mut sent = step(1, "net_dev_start_xmit", "client", Detail::None);
        sent.netns = 10;
        let mut received = step(2, "netif_receive_skb", "server", Detail::None);
        received.netns = 20;
        let mut copied = step(3, "skb_copy_datagram_iovec", "client", Detail::None);
        copied.netns = 10;
        copied.dev = None;
        let j = Journey::from_steps(1, vec![sent, received, copied], false);
        assert_eq!((j.steps[2].netns, &*j.steps[2].netns_name), (20, "server"));
        assert_eq!((j.steps[0].netns, &*j.steps[0].netns_name), (10, "client"));
    }

    #[test]
    fn drop_ends_journey_with_reason_in_words() {
        let mut j = Journeys::default();
        assert!(j
            .push(1, step(10, "net_dev_queue", "client", Detail::None))
            .is_none());
        let done = j
            .push(
                1,
                step(
                    30,
                    "kfree_skb",
                    "router",
                    Detail::Drop(Box::new(DropInfo {
                        reason: "NETFILTER_DROP".into(),
                        code: 6,
                        location: Some("nf_hook_slow+0x9a".into()),
                        found: None,
                    })),
                ),
            )
            .expect("closed");
        assert_eq!(done.duration_ns, 20);
        assert!(done.end.is_real_drop());
        assert!(done.end.line().contains("netfilter"), "{}", done.end.line());
        assert_eq!(j.open_count(), 0);
    }

    #[test]
    fn steps_are_ordered_by_time_and_late_ones_counted() {
        let mut j = Journeys::default();
        j.push(7, step(50, "netif_receive_skb", "server", Detail::None));
        j.push(
            7,
            step(20, "net_dev_xmit", "client", Detail::Xmit { rc: 0 }),
        );
        let done = j
            .push(
                7,
                step(60, "consume_skb", "server", Detail::Free { location: None }),
            )
            .unwrap();
        let sites: Vec<_> = done.steps.iter().map(|s| &*s.site).collect();
        assert_eq!(sites, ["net_dev_xmit", "netif_receive_skb", "consume_skb"]);
        assert!(matches!(done.end, End::Consumed { .. }));
        j.push(7, step(70, "netif_rx", "server", Detail::None));
        assert_eq!(j.late, 1);
    }

    #[test]
    fn transmit_then_free_is_transmitted() {
        let mut j = Journeys::default();
        j.push(2, step(1, "net_dev_xmit", "host", Detail::Xmit { rc: 0 }));
        let done = j
            .push(
                2,
                step(2, "consume_skb", "host", Detail::Free { location: None }),
            )
            .unwrap();
        assert_eq!(
            done.end,
            End::Transmitted {
                dev: "eth0".into(),
                netns: "host".into()
            }
        );
    }

    #[test]
    fn memory_bound_hands_out_held_then_quietest_journeys() {
        let mut js = Journeys {
            max_steps: 40,
            hold_ns: 1_000_000_000,
            ..Journeys::default()
        };
        let free = |ts| step(ts, "consume_skb", "a", Detail::Free { location: None });
        // Journey 1 finished (held), 2..=11 open with 4 steps each (on
        // their way: last seen queued to a device), the later a journey's
        // id, the later its last step; 12, the latest, received by the
        // stack (settled: it only waits for time).
        js.push(1, step(1, "netif_receive_skb", "a", Detail::None));
        assert!(js.push(1, free(2)).is_none(), "held for late steps");
        for id in 2..=11u64 {
            for k in 0..4 {
                js.push(id, step(id * 100 + k, "net_dev_queue", "a", Detail::None));
            }
        }
        for k in 0..4 {
            js.push(12, step(5000 + k, "netif_receive_skb", "a", Detail::None));
        }
        assert!(js.over_limit(), "46 steps kept, limit 40");
        let out = js.evict();
        let ids: Vec<u64> = out.iter().map(|j| j.id).collect();
        // 46 -> at most 30: the held one (2 steps), the settled one (4),
        // then the three quietest.
        assert_eq!(ids, [1, 2, 3, 4, 12]);
        assert!(
            matches!(out[0].end, End::Consumed { .. }),
            "{:?}",
            out[0].end
        );
        assert!(
            matches!(out[1].end, End::Unknown { .. }),
            "{:?}",
            out[1].end
        );
        assert!(!js.over_limit());
        assert_eq!(js.open_count(), 7);
        // Only the three cut short count.
        assert_eq!(js.evicted, 3);
        // Late steps of an evicted journey are counted, not reopened.
        js.push(2, free(900));
        assert_eq!((js.late, js.open_count()), (1, 7));
    }

    #[test]
    fn hook_verdicts_come_from_what_followed() {
        let hook = |ts| Step {
            kind: crate::model::SiteKind::Function,
            detail: Detail::Hook(Box::new(HookRun {
                family: "ipv4".into(),
                hook: "FORWARD".into(),
                verdict: None,
            })),
            ..step(ts, "nf_hook_slow", "r", Detail::None)
        };
        let drop = Detail::Drop(Box::new(DropInfo {
            reason: "NETFILTER_DROP".into(),
            code: 6,
            location: None,
            found: None,
        }));
        let j = Journey::from_steps(
            1,
            vec![
                hook(1),
                step(2, "ip_forward_finish", "r", Detail::None),
                hook(3),
                step(4, "kfree_skb_reason", "r", Detail::None),
                step(5, "kfree_skb", "r", drop),
            ],
            true,
        );
        let v: Vec<String> = j.steps.iter().map(|s| s.describe().into_owned()).collect();
        assert_eq!(v[0], "netfilter ipv4 FORWARD: accept");
        assert_eq!(v[2], "netfilter ipv4 FORWARD: drop");
    }

    #[test]
    fn delivery_closes_after_grace_and_quiet_ones_after_idle() {
        let mut j = Journeys::default();
        j.push(
            3,
            step(
                0,
                "skb_copy_datagram_iovec",
                "server",
                Detail::Deliver { bytes: 5 },
            ),
        );
        j.push(4, step(0, "net_dev_queue", "server", Detail::None));
        assert!(j.expire(50_000_000).is_empty());
        let done = j.expire(200_000_000);
        assert_eq!(done.len(), 1);
        assert!(matches!(done[0].end, End::Delivered { .. }));
        let quiet = j.expire(2_000_000_000);
        assert!(matches!(quiet[0].end, End::Unknown { .. }));
    }

    /// A copy of 5 bytes to a socket in namespace "server" at `ts`.
    fn socket_copy(ts: u64) -> Step {
        step(
            ts,
            "skb_copy_datagram_iovec",
            "server",
            Detail::Deliver { bytes: 5 },
        )
    }

    /// A packet first seen before its IP header's length is set (fentry
    /// on __ip_local_out) is as long as the later steps say, not 0 bytes.
    #[test]
    fn size_comes_from_a_built_header() {
        let echo = |tot_len: u8, ts: u64, site: &str| {
            let mut p = vec![0x45, 0, 0, tot_len, 0, 0, 0x40, 0, 64, 1, 0, 0];
            p.extend([10, 0, 1, 2, 10, 0, 2, 2]);
            p.extend([8, 0, 0, 0, 0x01, 0xea, 0, 1]);
            let mut s = step(ts, site, "client", Detail::None);
            s.packet = Some((true, p.into()));
            s
        };
        let j = Journey::from_steps(
            1,
            vec![echo(0, 1, "__ip_local_out"), echo(84, 2, "ip_output")],
            false,
        );
        assert_eq!(j.len, 84);
    }

    /// A datagram is read whole by one copy: once copied, its journey
    /// waits only for the free (which some kernels do without a
    /// tracepoint), not for more copies as a TCP segment's does.
    #[test]
    fn delivered_datagram_ends_sooner_than_a_stream() {
        let datagram = || {
            let mut p = vec![0x45, 0, 0, 33, 0, 0, 0x40, 0, 64, 17, 0, 0];
            p.extend([10, 0, 1, 2, 10, 0, 2, 2]);
            p.extend([0x9c, 0x40, 0, 53, 0, 13, 0, 0, 1, 2, 3, 4, 5]);
            let mut s = step(0, "netif_receive_skb", "server", Detail::None);
            s.packet = Some((true, p.into()));
            s
        };
        let mut j = Journeys::default();
        j.push(1, datagram());
        j.push(1, socket_copy(1_000));
        // The same copy without headers: a stream's grace.
        j.push(2, socket_copy(1_000));
        let done = j.expire(1_000 + j.datagram_grace_ns + 1);
        assert_eq!(done.iter().map(|j| j.id).collect::<Vec<_>>(), [1]);
        assert!(matches!(done[0].end, End::Delivered { .. }));
        assert!(j.expire(1_000 + j.deliver_grace_ns / 2).is_empty());
        let done = j.expire(1_000 + j.deliver_grace_ns + 1);
        assert_eq!(done.iter().map(|j| j.id).collect::<Vec<_>>(), [2]);
    }

    /// TCP reads a stream in order: when a segment queued to the socket is
    /// read, the segments queued before it (by sequence number, which
    /// wraps) whose own skb saw no copy were read too (coalesced into an
    /// earlier skb); those queued after it wait for their own reads.
    #[test]
    fn coalesced_segments_are_delivered_when_later_data_is_read() {
        let segment = |seq: u32, ts: u64, site: &str| {
            let mut p = vec![0x45, 0, 0, 45, 0, 0, 0x40, 0, 64, 6, 0, 0];
            p.extend([10, 0, 1, 2, 10, 0, 2, 2]);
            p.extend([0x9c, 0x40, 0x14, 0x51]); // 40000 > 5201
            p.extend(seq.to_be_bytes());
            p.extend([0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
            p.extend([1, 2, 3, 4, 5]);
            let mut s = step(ts, site, "server", Detail::None);
            s.packet = Some((true, p.into()));
            s
        };
        let mut j = Journeys::default();
        // Journey n: the segment at sequence number seqs[n - 1].
        let seqs = [u32::MAX - 9, u32::MAX - 4, 0, 5, 10];
        for (n, &seq) in seqs.iter().enumerate() {
            let (id, ts) = (n as u64 + 1, 100 * n as u64);
            j.push(id, segment(seq, ts, "netif_receive_skb"));
            j.push(id, segment(seq, ts + 1, "tcp_probe"));
        }
        // 1 read from its own skb; 2 and 3 joined it; 4 read, past the
        // wrap of the sequence numbers; 5 not read yet.
        assert!(j.push(1, socket_copy(1_000)).is_none());
        assert!(j.push(4, socket_copy(1_100)).is_none());
        let done = j.expire(1_101);
        assert_eq!(done.iter().map(|j| j.id).collect::<Vec<_>>(), [2, 3]);
        for d in &done {
            assert_eq!(
                d.end,
                End::Delivered {
                    netns: "server".into(),
                    socket: None,
                    merged: true
                }
            );
            assert!(d.end.line().contains("joined the segment before it"));
        }
        assert_eq!(j.open_count(), 3, "1 and 4 in their grace, 5 unread");
        let done = j.expire(1_100 + j.deliver_grace_ns + 1);
        assert_eq!(done.iter().map(|j| j.id).collect::<Vec<_>>(), [1, 4]);
        assert!(done
            .iter()
            .all(|d| matches!(d.end, End::Delivered { merged: false, .. })));
        assert_eq!(j.open_count(), 1);

        // Entries of segments that ended otherwise (freed here) are swept
        // once they pile up, not searched at every read.
        let mut j = Journeys::default();
        for n in 0..3000u32 {
            let (id, ts) = (n as u64 + 1, n as u64 * 10);
            j.push(id, segment(n * 5, ts, "tcp_probe"));
            let free = step(
                ts + 1,
                "consume_skb",
                "server",
                Detail::Free { location: None },
            );
            assert!(j.push(id, free).is_some());
        }
        assert_eq!(j.unread.len, 3000);
        j.expire(30_000);
        assert_eq!((j.unread.len, j.unread.by_stream.len()), (0, 0));
    }

    /// A received packet with nothing after it (the tracepoints do not
    /// see a datagram queued to its socket) closes after `settled_ns`,
    /// and says where it was routed; one that waits in a transmit queue
    /// or for its neighbour waits `idle_ns`.
    #[test]
    fn received_packet_closes_when_quiet() {
        let mut j = Journeys::default();
        let lookup = |kind| {
            let mut s = step(
                2,
                "fib_table_lookup",
                "b",
                route("local", "10.0.2.2", Some(kind), Some("10.0.2.2")),
            );
            s.correlated = true;
            s
        };
        let received = || step(1, "netif_receive_skb", "b", Detail::None);
        j.push(1, received());
        j.push(1, lookup("local"));
        // Early demux: a connected socket's route, no lookup.
        j.push(2, received());
        j.push(3, received());
        j.push(3, lookup("unicast"));
        j.push(3, step(3, "net_dev_queue", "b", Detail::None));
        let done = j.expire(3 + j.settled_ns + 1);
        assert_eq!(done.iter().map(|j| j.id).collect::<Vec<_>>(), [1, 2]);
        assert!(
            matches!(&done[0].end, End::Unknown { local: true, last_site, .. } if last_site == "netif_receive_skb"),
            "{:?}",
            done[0].end
        );
        assert!(done[0].end.line().contains("routed to a local address"));
        assert!(matches!(&done[1].end, End::Unknown { local: false, .. }));
        assert_eq!(j.expire(3 + j.idle_ns + 1)[0].id, 3);
    }

    /// Only journeys seen in a namespace whose rules are traced wait for
    /// late trace messages; the others are handed out when they end.
    #[test]
    fn held_only_where_rules_are_traced() {
        let mut j = Journeys {
            hold_ns: 300_000_000,
            hold_netns: Some([7].into()),
            ..Journeys::default()
        };
        let free = |ts| step(ts, "consume_skb", "a", Detail::Free { location: None });
        j.push(1, step(1, "netif_receive_skb", "a", Detail::None));
        let out = j
            .push(1, free(2))
            .expect("not held: namespace 1 is not traced");
        assert_eq!(out.id, 1);
        let mut traced = step(3, "netif_receive_skb", "b", Detail::None);
        traced.netns = 7;
        j.push(2, traced);
        assert!(j.push(2, free(4)).is_none(), "held: namespace 7 is traced");
        assert_eq!(j.expire(4 + 300_000_001)[0].id, 2);
    }

    /// A held journey goes out once the trace messages sent before it
    /// closed have all been read (complete), or when its time is up,
    /// saying that its rule steps may be incomplete.
    #[test]
    fn held_until_the_trace_reader_caught_up() {
        let mut j = Journeys {
            hold_ns: 2_000_000_000,
            hold_netns: Some([7].into()),
            ..Journeys::default()
        };
        let free = |ts| step(ts, "consume_skb", "a", Detail::Free { location: None });
        for (id, ts) in [(1, 10), (2, 20)] {
            let mut traced = step(ts, "netif_receive_skb", "a", Detail::None);
            traced.netns = 7;
            j.push(id, traced);
            assert!(j.push(id, free(ts + 1)).is_none(), "held");
        }
        assert!(j.expire(15).is_empty(), "nothing read yet");
        j.caught_up_ns = 15;
        let out = j.expire(16);
        assert_eq!(out.iter().map(|j| j.id).collect::<Vec<_>>(), [1]);
        assert!(out[0].caveats.is_empty(), "{:?}", out[0].caveats);
        let late = j.expire(21 + 2_000_000_000);
        assert_eq!(late.iter().map(|j| j.id).collect::<Vec<_>>(), [2]);
        assert_eq!(late[0].caveats, [NFT_BEHIND]);
    }

    /// The sweep inside a long poll closes quiet open journeys but keeps
    /// held ones: their trace messages are read between polls.
    #[test]
    fn a_sweep_keeps_held_journeys() {
        let mut j = Journeys {
            hold_ns: 1_000,
            hold_netns: Some([7].into()),
            ..Journeys::default()
        };
        let mut traced = step(1, "netif_receive_skb", "a", Detail::None);
        traced.netns = 7;
        j.push(1, traced);
        let free = step(2, "consume_skb", "a", Detail::Free { location: None });
        assert!(j.push(1, free).is_none(), "held");
        j.push(2, step(3, "netif_receive_skb", "a", Detail::None));
        let later = 3 + j.settled_ns + 1;
        let swept = j.close_quiet(later);
        assert_eq!(swept.iter().map(|j| j.id).collect::<Vec<_>>(), [2]);
        assert_eq!(
            j.expire(later).iter().map(|j| j.id).collect::<Vec<_>>(),
            [1]
        );
    }

    /// A TCP segment with data waits in the receive queue for the reader;
    /// a pure ACK at the same site does not hold its journey open.
    #[test]
    fn queued_data_waits_for_the_reader() {
        let segment = |flags: u8, ip_len: u8| {
            let mut p = vec![0x45, 0, 0, ip_len, 0, 0, 0x40, 0, 64, 6, 0, 0];
            p.extend([10, 0, 1, 2, 10, 0, 2, 2]);
            p.extend([0x9c, 0x40, 0, 80, 0, 0, 0, 0, 0, 0, 0, 0, 0x50, flags]);
            let mut s = step(0, "netif_receive_skb", "server", Detail::None);
            s.packet = Some((true, p.into()));
            s
        };
        let mut j = Journeys::default();
        j.push(1, segment(0x18, 53));
        j.push(1, step(1, "tcp_probe", "server", Detail::None));
        j.push(2, segment(0x10, 40));
        j.push(2, step(1, "tcp_probe", "server", Detail::None));
        let quiet = j.expire(2_000_000_000);
        assert_eq!(quiet.iter().map(|j| j.id).collect::<Vec<_>>(), [2]);
        let copy = step(
            3_000_000_000,
            "skb_copy_datagram_iovec",
            "server",
            Detail::Deliver { bytes: 13 },
        );
        j.push(1, copy);
        let read = j.expire(3_200_000_000);
        assert!(matches!(read[0].end, End::Delivered { .. }));
    }

    fn route(table: &str, dst: &str, kind: Option<&str>, prefix: Option<&str>) -> Detail {
        Detail::Route(Box::new(crate::model::RouteLookup {
            family: 4,
            table: table.into(),
            error: Some("x".into()),
            dst: dst.into(),
            src: "10.0.1.2".into(),
            gateway: None,
            out_dev: None,
            kind: kind.map(str::to_string),
            route: prefix.map(|p| format!("{} {p}", kind.unwrap_or(""))),
            prefix: prefix.map(str::to_string),
            metric: None,
            protocol: None,
            rule: None,
            unroutable: kind.is_none(),
        }))
    }

    fn dropped(steps: Vec<Step>) -> (String, String) {
        match Journey::from_steps(1, steps, true).end {
            End::Dropped {
                explanation, hint, ..
            } => (explanation, hint.unwrap_or_default()),
            e => panic!("{e:?}"),
        }
    }

    fn drop_step(ts: u64, reason: &str, location: &str) -> Step {
        step(
            ts,
            "kfree_skb",
            "router",
            Detail::Drop(Box::new(DropInfo {
                reason: reason.into(),
                code: 2,
                location: Some(location.into()),
                found: None,
            })),
        )
    }

    #[test]
    fn route_drops_name_the_route() {
        let (why, hint) = dropped(vec![
            step(
                1,
                "fib_table_lookup",
                "router",
                route("main", "10.0.9.9", Some("blackhole"), Some("10.0.9.0/24")),
            ),
            drop_step(2, "NOT_SPECIFIED", "ip_error+0x94"),
        ]);
        assert_eq!(
            why,
            "dropped: route to 10.0.9.0/24 is blackhole (table main) in namespace router"
        );
        assert_eq!(
            hint,
            "if this traffic should pass, remove that route: ip -n router route del blackhole \
             10.0.9.0/24"
        );
        let (why, _) = dropped(vec![
            step(
                1,
                "fib_table_lookup",
                "router",
                route("100", "10.0.7.7", None, None),
            ),
            drop_step(2, "IP_INNOROUTES", "ip_error+0x94"),
        ]);
        assert_eq!(
            why,
            "dropped: network unreachable: no route to 10.0.7.7 in table 100 in namespace router"
        );
        // Not a routing drop: the route is not blamed.
        let (why, _) = dropped(vec![
            step(
                1,
                "fib_table_lookup",
                "router",
                route("main", "10.0.9.9", Some("blackhole"), Some("10.0.9.0/24")),
            ),
            drop_step(2, "NOT_SPECIFIED", "sk_skb_reason_drop+0x10"),
        ]);
        assert!(!why.contains("blackhole"), "{why}");
    }
}
