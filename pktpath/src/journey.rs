//! Journeys: the ordered steps of one packet, from the first time it was
//! selected to the end of its life, and how it ended.
//!
//! The BPF side gives every selected packet a journey id; here steps are
//! grouped by that id, ordered by time (events from several CPUs can reach
//! the ring buffer out of order) and closed when the packet is freed, shortly
//! after it was copied to a socket, or after it went quiet.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};

// Journey ids and stream keys: a fast hash, no need for SipHash's defence.
use rustc_hash::FxHashMap as HashMap;

use serde::{Deserialize, Serialize};

use crate::enrich::drop;
use crate::event::{Detail, Step};
use crate::kernel::abi::{ROLE_DELIVER, ROLE_FREE};

/// How a packet's journey ended.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum End {
    /// Freed by kfree_skb: a drop, with the kernel's reason.
    Dropped {
        reason: String,
        /// The reason in words.
        explanation: String,
        /// What to check, when we know.
        #[serde(skip_serializing_if = "Option::is_none")]
        hint: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        location: Option<String>,
        netns: String,
        /// Not a loss (e.g. ICMP echo replies whose copy reached ping's raw
        /// socket, while the original finds no ping socket).
        benign: bool,
    },
    /// Copied to a socket in user space, or queued to a datagram socket.
    Delivered {
        netns: String,
        /// The datagram socket it was queued to, in words ("UDP socket
        /// 10.0.0.2:53 of dnsmasq (pid 12)").
        #[serde(default, skip_serializing_if = "Option::is_none")]
        socket: Option<String>,
        /// Not copied from its own skb: TCP added its data to the segment
        /// before it in the socket's queue (coalescing, where no tracepoint
        /// fires), and a segment queued after it was read (TCP reads in
        /// order).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        merged: bool,
    },
    /// Handed to a device driver for transmission.
    Transmitted { dev: String, netns: String },
    /// Freed after the kernel used it (e.g. an ICMP echo request answered).
    Consumed { netns: String, after: String },
    /// Read from a capture that states the end only in words (or not at
    /// all: a FreeBSD mbuf_trace record, a plain packet capture).
    Recorded { text: String },
    /// No end seen before the journey went quiet or tracing stopped.
    Unknown {
        last_site: String,
        /// A TCP segment: TCP frees what it handled without a tracepoint.
        #[serde(default)]
        tcp: bool,
        /// Routed to a local address, and nothing seen after: handed to
        /// the local stack where no tracepoint fires (a datagram queued
        /// to its socket).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        local: bool,
    },
}

impl End {
    pub fn is_real_drop(&self) -> bool {
        match self {
            End::Dropped { benign, .. } => !benign,
            End::Recorded { text } => text.starts_with("dropped") && !text.contains("(not a loss)"),
            _ => false,
        }
    }
    /// A one-line statement of the end.
    pub fn line(&self) -> String {
        match self {
            End::Dropped {
                reason,
                explanation,
                netns,
                location,
                benign,
                ..
            } => {
                let at = location
                    .as_ref()
                    .map(|l| format!(" at {l}"))
                    .unwrap_or_default();
                let note = if *benign { " (not a loss)" } else { "" };
                format!("dropped in netns {netns}: {reason}{at}, {explanation}{note}")
            }
            End::Recorded { text } => text.clone(),
            End::Delivered {
                netns,
                socket: Some(socket),
                ..
            } => format!("delivered to {socket} in netns {netns}"),
            End::Delivered {
                netns,
                merged: false,
                ..
            } => format!("delivered to a socket in netns {netns}"),
            End::Delivered {
                netns,
                merged: true,
                ..
            } => format!(
                "delivered to a socket in netns {netns} (its data joined the segment \
                 before it in the socket's queue, and later data was read)"
            ),
            End::Transmitted { dev, netns } => format!("transmitted on {dev} in netns {netns}"),
            End::Consumed { netns, after } => {
                format!("consumed by the kernel in netns {netns} after {after}")
            }
            End::Unknown {
                last_site,
                tcp: true,
                ..
            } => format!(
                "no end seen after {last_site} (TCP frees segments it handles without a \
                 tracepoint)"
            ),
            End::Unknown {
                last_site,
                local: true,
                ..
            } => format!(
                "no end seen after {last_site}, routed to a local address (handed to the \
                 local stack, where no tracepoint fires: e.g. a datagram queued to its socket)"
            ),
            End::Unknown { last_site, .. } => format!(
                "no end seen after {last_site} (freed where no tracepoint fires, or still \
                 in flight)"
            ),
        }
    }
}

/// Caveats: why a journey may be incomplete, said with it in every output.
pub const WHILE_ATTACHING: &str =
    "began while the probes were still attaching: steps before its first may be missing";
pub const RING_LOSS: &str = "events were lost in the ring buffer while it was in flight: \
    steps may be missing (a larger --ring-size, or a narrower filter, loses fewer)";
pub const NFT_LOSS: &str = "nftables trace messages were lost while it was in flight: its \
    rule steps may be incomplete";

pub const NFT_BEHIND: &str = "handed out before every nftables trace message sent while it \
    was in flight had been read (the reader was behind): its rule steps may be incomplete";

/// A finished journey.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Journey {
    /// Journey id (the BPF side's counter, from 1).
    pub id: u64,
    /// The packet as first seen ("10.0.1.2 > 10.0.2.2 ICMP echo request ...").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packet: Option<String>,
    /// IP length of the packet as first seen (skb->len when not IP).
    pub len: u32,
    /// Time from the first to the last step, ns.
    pub duration_ns: u64,
    pub end: End,
    pub steps: Vec<Step>,
    /// Why its evidence may be incomplete (WHILE_ATTACHING, RING_LOSS,
    /// NFT_LOSS), in words.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caveats: Vec<String>,
    /// For an ICMP error: the journey of the packet it is about (the one
    /// with the `icmp_send` step), when that was traced too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub about: Option<u64>,
}

impl Journey {
    /// Builds a journey from its steps (any order) and classifies the end.
    pub fn from_steps(id: u64, mut steps: Vec<Step>, closed: bool) -> Journey {
        steps.sort_by_key(|s| s.ts_ns);
        // A step with neither device nor socket has no netns of its own: the
        // packet is still where the previous step saw it.
        let mut prev: Option<(u32, std::sync::Arc<str>)> = None;
        for s in steps.iter_mut() {
            match (&prev, s.netns) {
                (Some((ino, name)), 0) => {
                    s.netns = *ino;
                    s.netns_name = name.clone();
                }
                (_, ino) if ino != 0 => prev = Some((ino, s.netns_name.clone())),
                _ => {}
            }
        }
        hook_verdicts(&mut steps);
        let first = steps.iter().find(|s| s.packet.is_some()).or(steps.first());
        let flow = first.and_then(|s| s.flow());
        // Taken before the steps' fragments are named: the title names the
        // datagram.
        let mut packet = first.and_then(|s| s.headers.as_deref().map(str::to_string));
        let datagram = name_fragments(&mut steps);
        // A packet first seen half built (at __ip_local_out the IP header's
        // length is still 0) has its size at a later step.
        let len = flow
            .as_ref()
            .and_then(|f| f.ip_len)
            .filter(|&l| l > 0)
            .or_else(|| {
                steps
                    .iter()
                    .filter(|s| s.packet.is_some())
                    .find_map(|s| s.flow()?.ip_len.filter(|&l| l > 0))
            })
            .or_else(|| steps.iter().find(|s| !s.correlated).map(|s| s.len))
            .unwrap_or(0);
        let len = match datagram {
            Some(d) => {
                if let Some(p) = packet.as_mut() {
                    p.push_str(&d.title());
                }
                d.bytes.unwrap_or(len)
            }
            None => len,
        };
        let duration_ns = match (steps.first(), steps.last()) {
            (Some(a), Some(b)) => b.ts_ns - a.ts_ns,
            _ => 0,
        };
        let end = classify(&steps, closed, flow.as_ref());
        Journey {
            id,
            packet,
            len,
            duration_ns,
            end,
            steps,
            caveats: Vec::new(),
            about: None,
        }
    }
}

/// Each netfilter hook step's verdict, from what the packet did next: died
/// of NETFILTER_DROP before anything else happened to it (drop), or went
/// on (accept). Steps of the functions a hook runs (nft_do_chain_inet...)
/// carry the hook too and come between nf_hook_slow and the drop: the hook
/// dropped it if no other nf_hook_slow came before the drop, the function
/// did if no other hook step did.
fn hook_verdicts(steps: &mut [Step]) {
    let nf_drop = |s: &Step| matches!(&s.detail, Detail::Drop(d) if d.reason == "NETFILTER_DROP");
    for i in 0..steps.len() {
        let Detail::Hook(h) = &steps[i].detail else {
            continue;
        };
        if h.verdict.is_some() {
            continue;
        }
        let skb = steps[i].skb;
        let outer = &*steps[i].site == "nf_hook_slow";
        let dropped_here = steps[i + 1..]
            .iter()
            .filter(|s| !s.correlated && s.skb == skb)
            .find(|s| {
                nf_drop(s)
                    || matches!(s.detail, Detail::Hook { .. })
                        && (!outer || &*s.site == "nf_hook_slow")
            })
            .is_some_and(nf_drop);
        if dropped_here {
            if let Detail::Hook(h) = &mut steps[i].detail {
                h.verdict = Some("drop".into());
            }
            continue;
        }
        let next = steps[i + 1..].iter().find(|s| {
            !s.correlated
                && s.skb == skb
                && (matches!(s.detail, Detail::Drop { .. })
                    || !is_release(&s.site) && !s.site.contains("drop"))
        });
        let verdict = match next.map(|s| &s.detail) {
            Some(Detail::Drop(d)) if d.reason == "NETFILTER_DROP" => "drop",
            Some(_) => "accept",
            None => continue,
        };
        if let Detail::Hook(h) = &mut steps[i].detail {
            h.verdict = Some(verdict.to_string());
        }
    }
}

/// The datagram socket the packet was queued to, if a step saw it.
fn queued_to(steps: &[Step]) -> Option<&crate::event::SocketInfo> {
    steps.iter().rev().find_map(|s| match &s.detail {
        Detail::Socket(k) => Some(&**k),
        _ => None,
    })
}

/// A packet sent on a TUN or TAP device is copied to the program that
/// reads the device (skb_copy_datagram_iovec fires in tun_put_user), not to
/// a socket: its copy comes after a transmit on that device with no receive
/// in between. The program, in words.
fn read_from_device(steps: &[Step], copy: &Step) -> Option<String> {
    let at = steps.iter().position(|s| std::ptr::eq(s, copy))?;
    let xmit = steps[..at].iter().rev().find(|s| {
        !s.correlated
            && (matches!(&*s.site, "net_dev_xmit" | "net_dev_start_xmit")
                || (s.kind == crate::event::SiteKind::Tracepoint
                    && (s.site.starts_with("netif_") || s.site.starts_with("napi_gro"))))
    })?;
    let dev = xmit.dev.as_deref()?;
    let sent = matches!(&*xmit.site, "net_dev_xmit" | "net_dev_start_xmit");
    (sent && xmit.netns == copy.netns)
        .then(|| format!("the program reading device {dev} (TUN/TAP)"))
}

fn classify(steps: &[Step], closed: bool, flow: Option<&crate::packet::Flow>) -> End {
    // The drop tracepoint is the end even when release functions follow it.
    let last = steps
        .iter()
        .rev()
        .find(|s| matches!(s.detail, Detail::Drop { .. }))
        .or(steps.last());
    let Some(last) = last else {
        return End::Unknown {
            last_site: "-".into(),
            tcp: false,
            local: false,
        };
    };
    let delivered = steps
        .iter()
        .rev()
        .find(|s| matches!(s.detail, Detail::Deliver { .. }));
    if let Detail::Drop(d) = &last.detail {
        let crate::event::DropInfo {
            reason,
            location,
            explanation: found,
            hint: found_hint,
            ..
        } = &**d;
        let (explanation, hint) = drop::explain(reason);
        let ping_reply = reason == "NO_SOCKET" && flow.is_some_and(|f| f.is_echo_reply());
        // A FIN (no data) still queued when the application closed its
        // socket: the connection ended normally.
        let closing_fin = matches!(reason.as_str(), "QUEUE_PURGE" | "SOCKET_CLOSE")
            && flow.is_some_and(|f| f.is_bare_fin());
        let benign = ping_reply || closing_fin;
        if let (true, Some(d)) = (ping_reply, delivered) {
            // The original found no ping socket; its clone reached ping's
            // raw socket: that is the story.
            return End::Delivered {
                netns: d.netns_name.to_string(),
                socket: None,
                merged: false,
            };
        }
        if let (true, Some(k)) = (
            matches!(reason.as_str(), "QUEUE_PURGE" | "SOCKET_CLOSE"),
            queued_to(steps),
        ) {
            return End::Dropped {
                reason: reason.clone(),
                explanation: format!(
                    "queued to {}, and purged unread when the application closed it",
                    k.describe()
                ),
                hint: None,
                location: location.clone(),
                netns: last.netns_name.to_string(),
                benign: true,
            };
        }
        let said = match found {
            Some(f) => Some((f.clone(), found_hint.clone())),
            None => route_verdict(steps, last, reason, location.as_deref())
                .or_else(|| ttl_verdict(steps, last, reason, location.as_deref(), flow))
                .or_else(|| rule_verdict(steps, last)),
        };
        let (explanation, hint) = match said {
            Some(said) if !benign => said,
            _ => match legacy_table(location.as_deref()) {
                Some((tool, what)) if reason == "NETFILTER_DROP" => (
                    format!("dropped by a {tool} rule ({what}, which has no trace interface)"),
                    Some(format!(
                        "in netns {}: {tool} -L -v -n --line-numbers (the rule whose counter \
                         grew)",
                        last.netns_name
                    )),
                ),
                _ => (explanation, Some(hint)),
            },
        };
        let (explanation, hint) = if ping_reply {
            (
                "no ping socket for this echo reply; ping(8) on a raw socket got its own copy"
                    .to_string(),
                None,
            )
        } else if closing_fin {
            (
                "the peer's FIN, still queued when the application closed its socket (a \
                 normal end of connection)"
                    .to_string(),
                None,
            )
        } else {
            (explanation, hint)
        };
        return End::Dropped {
            reason: reason.clone(),
            explanation,
            hint,
            location: location.clone(),
            netns: last.netns_name.to_string(),
            benign,
        };
    }
    if let Some(d) = steps
        .iter()
        .rev()
        .find(|s| matches!(s.detail, Detail::Deliver { .. } | Detail::Socket(_)))
    {
        let socket = queued_to(steps)
            .map(|k| k.describe())
            .or_else(|| read_from_device(steps, d));
        return End::Delivered {
            netns: d.netns_name.to_string(),
            socket,
            merged: false,
        };
    }
    if !closed {
        let own = steps.iter().rev().find(|s| !s.correlated).unwrap_or(last);
        if &*own.site == "tcp_probe" {
            // TCP frees the segments it processed without a tracepoint.
            return End::Consumed {
                netns: own.netns_name.to_string(),
                after: "tcp_probe (TCP processed it)".into(),
            };
        }
        return End::Unknown {
            last_site: own.site.to_string(),
            tcp: flow.is_some_and(|f| f.proto == 6),
            local: steps.last().is_some_and(is_local_route),
        };
    }
    // Freed: by whom? The last step before the free that is the packet's own.
    let before = steps
        .iter()
        .rev()
        .skip(1)
        .find(|s| {
            !s.correlated && s.role() != ROLE_FREE && s.kind == crate::event::SiteKind::Tracepoint
        })
        .or_else(|| {
            steps
                .iter()
                .rev()
                .skip(1)
                .find(|s| !s.correlated && s.role() != ROLE_FREE && !is_release(&s.site))
        });
    match before {
        Some(b) if &*b.site == "net_dev_xmit" || &*b.site == "net_dev_start_xmit" => {
            End::Transmitted {
                dev: b.dev.as_deref().unwrap_or_default().to_string(),
                netns: b.netns_name.to_string(),
            }
        }
        Some(b) => End::Consumed {
            netns: last.netns_name.to_string(),
            after: b.site.to_string(),
        },
        None => End::Consumed {
            netns: last.netns_name.to_string(),
            after: "-".into(),
        },
    }
}

/// A forwarded packet whose time to live (IPv6: hop limit) ran out:
/// ip_forward and ip6_forward drop it as IP_INHDR, an "invalid header" only
/// in the kernel's counters, after sending ICMP time exceeded.
fn ttl_verdict(
    steps: &[Step],
    drop: &Step,
    reason: &str,
    location: Option<&str>,
    flow: Option<&crate::packet::Flow>,
) -> Option<(String, Option<String>)> {
    let v6 = match location? {
        l if l.starts_with("ip_forward") => false,
        l if l.starts_with("ip6_forward") => true,
        _ => return None,
    };
    if reason != "IP_INHDR" {
        return None;
    }
    let (field, icmp) = if v6 {
        ("hop limit", "ICMPv6 time exceeded")
    } else {
        ("time to live (TTL)", "ICMP time exceeded")
    };
    let mut why =
        format!("its {field} ran out at this router (1 or 0 on arrival), so it was not forwarded");
    let sent = steps.iter().any(|s| {
        &*s.site == "icmp_send"
            && s.netns == drop.netns
            && matches!(&s.detail, Detail::Args { args } if args.iter().any(|(k, v)| k == "type" && v == "11"))
    });
    if sent {
        why.push_str(&format!("; {icmp} sent back"));
        if let Some(f) = flow.filter(|f| !f.src.is_empty()) {
            why.push_str(&format!(" to {}", f.src));
        }
    }
    Some((
        why,
        Some(
            "expected for traceroute; otherwise a routing loop (the same routers again and \
             again in the path) or a sender setting a low TTL"
                .into(),
        ),
    ))
}

/// The legacy x_tables code a drop location points into, if any.
fn legacy_table(location: Option<&str>) -> Option<(&'static str, &'static str)> {
    let l = location?;
    [
        ("ipt_do_table", "iptables-legacy", "ip_tables"),
        ("ip6t_do_table", "ip6tables-legacy", "ip6_tables"),
        ("arpt_do_table", "arptables-legacy", "arp_tables"),
        ("ebt_do_table", "ebtables-legacy", "ebtables"),
    ]
    .iter()
    .find(|(f, _, _)| l.starts_with(f))
    .map(|(_, tool, what)| (*tool, *what))
}

/// `ip` with `-n NAME` when the namespace has a name under /run/netns.
fn ip_in(netns: &str) -> String {
    if netns == "host" || netns.starts_with("netns:") || netns == "?" {
        "ip".into()
    } else {
        format!("ip -n {netns}")
    }
}

/// For a drop that follows a failed route lookup in the same namespace
/// (no route, or a blackhole, unreachable or prohibit route), the route
/// in the user's terms and the fix.
fn route_verdict(
    steps: &[Step],
    drop: &Step,
    reason: &str,
    location: Option<&str>,
) -> Option<(String, Option<String>)> {
    // The drops that routing causes: ip_error() (input), the output path,
    // dst_discard (blackhole), IPv6's ip6_pkt_discard/prohibit.
    let by_routing = reason.contains("NOROUTE")
        || reason == "IP_INADDRERRORS"
        || (reason == "NOT_SPECIFIED"
            && location.is_none_or(|l| {
                ["ip_error", "dst_discard", "ip6_pkt_"]
                    .iter()
                    .any(|f| l.starts_with(f))
            }));
    if !by_routing {
        return None;
    }
    let (table, dst, src, kind, prefix, unroutable) = steps
        .iter()
        .rev()
        .filter(|s| s.netns == drop.netns && s.ts_ns <= drop.ts_ns)
        .find_map(|s| match &s.detail {
            Detail::Route(r) => Some((&r.table, &r.dst, &r.src, &r.kind, &r.prefix, r.unroutable)),
            _ => None,
        })?;
    let ns = &drop.netns_name;
    let ip = ip_in(ns);
    let table_arg = if table == "main" {
        String::new()
    } else {
        format!(" table {table}")
    };
    match kind.as_deref() {
        Some(k @ ("blackhole" | "unreachable" | "prohibit")) => {
            let what = prefix.as_deref().unwrap_or(dst);
            let del = prefix
                .as_ref()
                .map(|p| format!("{ip} route del {k} {p}{table_arg}"))
                .unwrap_or_else(|| format!("{ip} route get {dst}"));
            Some((
                format!("dropped: route to {what} is {k} (table {table}) in namespace {ns}"),
                Some(format!(
                    "if this traffic should pass, remove that route: {del}"
                )),
            ))
        }
        _ if unroutable => {
            let dev = drop
                .dev
                .as_ref()
                .map(|d| format!(" iif {d}"))
                .unwrap_or_default();
            Some((
                format!(
                    "dropped: network unreachable: no route to {dst} in table {table} in \
                     namespace {ns}"
                ),
                Some(format!(
                    "add a route (or a default route) for {dst}: {ip} route add {dst} via \
                     GATEWAY{table_arg}; check with {ip} route get {dst} from {src}{dev}"
                )),
            ))
        }
        _ => None,
    }
}

/// For a drop in a namespace where nftables traced the packet, the rule
/// (or chain policy) that dropped it, in the user's terms, and the fix.
fn rule_verdict(steps: &[Step], drop: &Step) -> Option<(String, Option<String>)> {
    let (family, table, chain, what, handle, rule, iptables) =
        steps.iter().rev().find_map(|s| match &s.detail {
            Detail::Rule(r) if r.verdict == "drop" && s.netns == drop.netns => Some((
                &r.family,
                &r.table,
                &r.chain,
                &r.what,
                &r.handle,
                &r.rule,
                &r.iptables,
            )),
            _ => None,
        })?;
    let at = format!("{family} {table} {chain}");
    if let (Some((n, text)), "rule") = (iptables, what.as_str()) {
        let tool = if family == "ip6" {
            "ip6tables"
        } else {
            "iptables"
        };
        let verb = if text.contains("REJECT") {
            "rejected"
        } else {
            "dropped"
        };
        return Some((
            format!("{verb} by {tool} rule {n} of chain {chain} (table {table}): `{text}`"),
            Some(format!(
                "if this traffic should pass: {tool} -t {table} -D {chain} {n}, or insert an \
                 ACCEPT rule before it"
            )),
        ));
    }
    if what == "policy" {
        return Some((
            format!("dropped by the policy of nftables chain {at} (no rule accepted it)"),
            Some(format!(
                "add an accept rule for this traffic to {at}: nft -a list chain {at}"
            )),
        ));
    }
    let rule = rule.as_deref().unwrap_or("?");
    let verb = if rule.contains("reject") {
        "rejected"
    } else {
        "dropped"
    };
    let handle = handle.map_or("?".to_string(), |h| h.to_string());
    Some((
        format!("{verb} by nftables rule `{rule}` ({at}, handle {handle})"),
        Some(format!(
            "if this traffic should pass: nft delete rule {at} handle {handle}, or insert an \
             accept rule before it"
        )),
    ))
}

/// A route lookup that found a local address: the packet is for this
/// namespace.
fn is_local_route(s: &Step) -> bool {
    matches!(&s.detail, Detail::Route(r) if r.kind.as_deref() == Some("local"))
}

/// Functions of an skb's release path, not of what happened to the packet.
fn is_release(site: &str) -> bool {
    site.contains("free") || site.contains("release") || site.contains("consume")
}

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

/// The IPv4 or IPv6 datagram whose fragments a journey followed (they join the
/// journey of the first one selected).
#[derive(Clone, Copy, Debug)]
struct Datagram {
    /// Fragments seen.
    count: usize,
    /// Whether the last one was seen (then `count` is all of them).
    whole: bool,
    /// Its IP length once reassembled, when every fragment was seen.
    bytes: Option<u32>,
}

impl Datagram {
    fn title(&self) -> String {
        match self.whole {
            true => format!(", datagram in {} fragments", self.count),
            false => format!(
                ", {} fragments of a datagram (its last not seen)",
                self.count
            ),
        }
    }
}

/// Names the fragment each step saw (`fragment 2 of 3`, by offset) in its
/// headers; the datagram, when the steps saw more than one fragment of it.
fn name_fragments(steps: &mut [Step]) -> Option<Datagram> {
    use crate::packet::Fragment;
    let frag = |s: &Step| -> Option<Fragment> {
        if s.correlated {
            return None;
        }
        s.fragment()
    };
    let id = steps.iter().find_map(frag)?.id;
    let mut offsets: Vec<u32> = steps
        .iter()
        .filter_map(frag)
        .filter(|f| f.id == id)
        .map(|f| f.offset)
        .collect();
    offsets.sort_unstable();
    offsets.dedup();
    let last = steps
        .iter()
        .filter_map(frag)
        .find(|f| f.id == id && !f.more);
    let count = offsets.len();
    let whole = last.is_some() && offsets.first() == Some(&0);
    for s in steps.iter_mut() {
        let Some(f) = frag(s).filter(|f| f.id == id) else {
            continue;
        };
        // A datagram's fragments are freed with it by kfree_skb without a
        // reason (__kfree_skb releases its data as NOT_SPECIFIED), though
        // their data was used: not a drop.
        if let Detail::Drop(d) = &s.detail {
            let with_datagram = d.reason == "NOT_SPECIFIED"
                && d.location
                    .as_deref()
                    .is_some_and(|l| l.starts_with("skb_release_data"));
            if with_datagram && count > 1 {
                s.detail = Detail::Free {
                    location: d.location.clone(),
                };
            }
        }
        let i = offsets.iter().position(|&o| o == f.offset).unwrap_or(0) + 1;
        let of = if whole {
            format!(" of {count}")
        } else {
            String::new()
        };
        let Some(h) = s.headers.as_deref() else {
            continue;
        };
        let named = if f.offset == 0 {
            format!("{h}, fragment 1{of}")
        } else {
            h.replace(
                &format!("IP fragment offset {}", f.offset),
                &format!("IP fragment {i}{of} (offset {})", f.offset),
            )
        };
        s.headers = Some(named.into());
    }
    (count > 1 || last.is_some_and(|f| f.offset > 0)).then(|| Datagram {
        count,
        whole,
        bytes: last
            .filter(|_| whole)
            .map(|f| f.header + f.offset + f.payload),
    })
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
        o.delivered |= role == ROLE_DELIVER;
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
        let read_before = match (role == ROLE_DELIVER, o.stream) {
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
            if role == ROLE_FREE {
                o.live.retain(|&s| s != step.skb);
            } else if !o.live.contains(&step.skb) {
                o.live.push(step.skb);
            }
        }
        let ts = step.ts_ns;
        push_step(&mut o.steps, step);
        self.steps += 1;
        let freed = role == ROLE_FREE && o.live.is_empty();
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

    use crate::event::test_step as step;
    use crate::event::{DropInfo, HookRun};

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
                        explanation: None,
                        hint: None,
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
            kind: crate::event::SiteKind::Function,
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
            explanation: None,
            hint: None,
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
        Detail::Route(Box::new(crate::event::RouteLookup {
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
                explanation: None,
                hint: None,
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
