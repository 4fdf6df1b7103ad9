//! How a journey ended and why: its end (`End`), what decided a drop as
//! data (`model::Cause`: found here from the journey's steps, or by an
//! enricher from the kernel's state), the steps that show it, and that
//! cause in words (`words`). Every explanation and hint pktpath prints is
//! written here; the sinks, the captures and what comes next (the report,
//! expectations) take them from here.

use serde::{Deserialize, Serialize};

use crate::model::{Cause, Detail, Step};
use crate::sites::Role;

pub mod drop_reasons;

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
        /// What decided it, as data (`explanation` and `hint` say it in
        /// words).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cause: Option<Box<Cause>>,
        /// The steps that show it (indices into the journey's steps): the
        /// drop, and the rule, route, ICMP error or bridge behind it.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        evidence: Vec<usize>,
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

/// A route lookup that found a local address: the packet is for this
/// namespace.
pub(crate) fn is_local_route(s: &Step) -> bool {
    matches!(&s.detail, Detail::Route(r) if r.kind.as_deref() == Some("local"))
}

/// Functions of an skb's release path, not of what happened to the packet.
pub(crate) fn is_release(site: &str) -> bool {
    site.contains("free") || site.contains("release") || site.contains("consume")
}

/// The datagram socket the packet was queued to, if a step saw it.
fn queued_to(steps: &[Step]) -> Option<&crate::model::SocketInfo> {
    steps.iter().rev().find_map(|s| match &s.detail {
        Detail::Socket(k) => Some(&**k),
        _ => None,
    })
}

/// A packet sent on a TUN or TAP device is copied to the program that
/// reads the device (skb_copy_datagram_iovec fires in tun_put_user), not to
/// a socket: its copy comes after a transmit on that device with no receive
/// in between. The program, in words (`at`: the copy's step).
fn read_from_device(steps: &[Step], at: usize) -> Option<String> {
    let copy = &steps[at];
    let xmit = steps[..at].iter().rev().find(|s| {
        !s.correlated
            && (matches!(&*s.site, "net_dev_xmit" | "net_dev_start_xmit")
                || (s.kind == crate::model::SiteKind::Tracepoint
                    && (s.site.starts_with("netif_") || s.site.starts_with("napi_gro"))))
    })?;
    let dev = xmit.dev.as_deref()?;
    let sent = matches!(&*xmit.site, "net_dev_xmit" | "net_dev_start_xmit");
    (sent && xmit.netns == copy.netns)
        .then(|| format!("the program reading device {dev} (TUN/TAP)"))
}

pub fn classify(steps: &[Step], closed: bool, flow: Option<&crate::packet::Flow>) -> End {
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
        let crate::model::DropInfo {
            reason,
            location,
            found,
            ..
        } = &**d;
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
        let netns = last.netns_name.to_string();
        let purged = matches!(reason.as_str(), "QUEUE_PURGE" | "SOCKET_CLOSE")
            .then(|| queued_to(steps))
            .flatten()
            .map(|k| Cause::Purged {
                socket: k.describe(),
            });
        let benign = benign || purged.is_some();
        let found = purged.or_else(|| found.clone()).or_else(|| {
            route_cause(steps, last, reason, location.as_deref())
                .or_else(|| ttl_cause(steps, last, reason, location.as_deref(), flow))
                .or_else(|| rule_cause(steps, last))
        });
        let cause = match found {
            Some(c) if !benign || matches!(c, Cause::Purged { .. }) => c,
            _ => match legacy_table(location.as_deref()) {
                Some((tool, code)) if reason == "NETFILTER_DROP" => Cause::LegacyTable {
                    netns: netns.clone(),
                    tool: tool.into(),
                    code: code.into(),
                },
                _ => Cause::Reason {
                    reason: reason.clone(),
                },
            },
        };
        let (explanation, hint) = if matches!(cause, Cause::Purged { .. }) {
            words(&cause)
        } else if ping_reply {
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
            words(&cause)
        };
        let mut end = End::Dropped {
            reason: reason.clone(),
            explanation,
            hint,
            location: location.clone(),
            netns,
            benign,
            cause: Some(Box::new(cause)),
            evidence: Vec::new(),
        };
        end.place_evidence(steps);
        return end;
    }
    if let Some(at) = steps
        .iter()
        .rposition(|s| matches!(s.detail, Detail::Deliver { .. } | Detail::Socket(_)))
    {
        let socket = queued_to(steps)
            .map(|k| k.describe())
            .or_else(|| read_from_device(steps, at));
        return End::Delivered {
            netns: steps[at].netns_name.to_string(),
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
            !s.correlated && s.role() != Role::Free && s.kind == crate::model::SiteKind::Tracepoint
        })
        .or_else(|| {
            steps
                .iter()
                .rev()
                .skip(1)
                .find(|s| !s.correlated && s.role() != Role::Free && !is_release(&s.site))
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
fn ttl_cause(
    steps: &[Step],
    drop: &Step,
    reason: &str,
    location: Option<&str>,
    flow: Option<&crate::packet::Flow>,
) -> Option<Cause> {
    let v6 = match location? {
        l if l.starts_with("ip_forward") => false,
        l if l.starts_with("ip6_forward") => true,
        _ => return None,
    };
    if reason != "IP_INHDR" {
        return None;
    }
    let icmp_sent = steps.iter().any(|s| is_time_exceeded(s, drop));
    Some(Cause::Ttl {
        v6,
        icmp_sent,
        to: flow
            .filter(|f| icmp_sent && !f.src.is_empty())
            .map(|f| f.src.clone()),
    })
}

/// An icmp_send of a time exceeded error, in the namespace of `drop`.
fn is_time_exceeded(s: &Step, drop: &Step) -> bool {
    &*s.site == "icmp_send"
        && s.netns == drop.netns
        && matches!(&s.detail, Detail::Args { args } if args.iter().any(|(k, v)| k == "type" && v == "11"))
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

/// The namespace's name under /run/netns, if it has one (commands then
/// take `-n NAME`).
fn named(netns: &str) -> Option<&str> {
    (!(netns == "host" || netns.starts_with("netns:") || netns == "?")).then_some(netns)
}

/// `ip`, with `-n NAME` when the namespace has a name under /run/netns.
fn ip_in(netns: &str) -> String {
    named(netns).map_or("ip".into(), |n| format!("ip -n {n}"))
}

/// For a drop that follows a failed route lookup in the same namespace
/// (no route, or a blackhole, unreachable or prohibit route): that route.
fn route_cause(steps: &[Step], drop: &Step, reason: &str, location: Option<&str>) -> Option<Cause> {
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
    let Detail::Route(r) = &steps[route_lookup_before(steps, drop)?].detail else {
        return None;
    };
    let netns = drop.netns_name.to_string();
    match r.kind.as_deref() {
        Some(k @ ("blackhole" | "unreachable" | "prohibit")) => Some(Cause::Route {
            netns,
            table: r.table.clone(),
            dst: r.dst.clone(),
            prefix: r.prefix.clone(),
            route: k.into(),
        }),
        _ if r.unroutable => Some(Cause::NoRoute {
            netns,
            table: r.table.clone(),
            dst: r.dst.clone(),
            src: r.src.clone(),
            iif: drop.dev.as_deref().map(str::to_string),
        }),
        _ => None,
    }
}

/// The last route lookup in the namespace of `drop`, up to it.
fn route_lookup_before(steps: &[Step], drop: &Step) -> Option<usize> {
    steps.iter().rposition(|s| {
        s.netns == drop.netns && s.ts_ns <= drop.ts_ns && matches!(s.detail, Detail::Route(_))
    })
}

/// The last nftables verdict that dropped the packet in the namespace of
/// `drop`.
fn rule_step(steps: &[Step], drop: &Step) -> Option<usize> {
    steps.iter().rposition(
        |s| matches!(&s.detail, Detail::Rule(r) if r.verdict == "drop" && s.netns == drop.netns),
    )
}

/// For a drop in a namespace where nftables traced the packet, the rule
/// (or chain policy) that dropped it.
fn rule_cause(steps: &[Step], drop: &Step) -> Option<Cause> {
    let Detail::Rule(r) = &steps[rule_step(steps, drop)?].detail else {
        return None;
    };
    let (family, table, chain) = (r.family.clone(), r.table.clone(), r.chain.clone());
    Some(match (&r.iptables, r.what.as_str()) {
        (Some((number, rule)), "rule") => Cause::Iptables {
            family,
            table,
            chain,
            number: *number,
            rule: rule.clone(),
        },
        (_, "policy") => Cause::NftPolicy {
            family,
            table,
            chain,
        },
        _ => Cause::NftRule {
            family,
            table,
            chain,
            handle: r.handle,
            rule: r.rule.clone(),
        },
    })
}

impl End {
    /// Finds the steps that show the cause of a drop (see `evidence`):
    /// again after steps were added to the journey.
    pub fn place_evidence(&mut self, steps: &[Step]) {
        let End::Dropped {
            reason,
            cause: Some(cause),
            evidence,
            ..
        } = self
        else {
            return;
        };
        evidence.clear();
        let Some(at) = steps
            .iter()
            .rposition(|s| matches!(&s.detail, Detail::Drop(d) if d.reason == *reason))
        else {
            return;
        };
        let drop = &steps[at];
        evidence.push(at);
        let behind = match &**cause {
            Cause::NftRule { .. } | Cause::NftPolicy { .. } | Cause::Iptables { .. } => {
                rule_step(steps, drop)
            }
            Cause::Route { .. } | Cause::NoRoute { .. } | Cause::Mtu { .. } => {
                route_lookup_before(steps, drop)
            }
            Cause::Ttl { .. } => steps.iter().position(|s| is_time_exceeded(s, drop)),
            Cause::VlanFilter { bridge, .. } => steps
                .iter()
                .rposition(|s| matches!(&s.detail, Detail::Bridge(b) if b.bridge == *bridge)),
            Cause::Purged { .. } => steps
                .iter()
                .rposition(|s| matches!(s.detail, Detail::Socket(_))),
            _ => None,
        };
        evidence.extend(behind);
        evidence.sort_unstable();
    }
}

/// A cause in words: what happened, and what to check or change (the
/// command, in the namespace where it happened).
pub fn words(cause: &Cause) -> (String, Option<String>) {
    match cause {
        Cause::Reason { reason } => {
            let (what, fix) = drop_reasons::explain(reason);
            (what, Some(fix))
        }
        Cause::NftRule {
            family,
            table,
            chain,
            handle,
            rule,
        } => {
            let at = format!("{family} {table} {chain}");
            let rule = rule.as_deref().unwrap_or("?");
            let verb = if rule.contains("reject") {
                "rejected"
            } else {
                "dropped"
            };
            let handle = handle.map_or("?".to_string(), |h| h.to_string());
            (
                format!("{verb} by nftables rule `{rule}` ({at}, handle {handle})"),
                Some(format!(
                    "if this traffic should pass: nft delete rule {at} handle {handle}, or \
                     insert an accept rule before it"
                )),
            )
        }
        Cause::NftPolicy {
            family,
            table,
            chain,
        } => {
            let at = format!("{family} {table} {chain}");
            (
                format!("dropped by the policy of nftables chain {at} (no rule accepted it)"),
                Some(format!(
                    "add an accept rule for this traffic to {at}: nft -a list chain {at}"
                )),
            )
        }
        Cause::Iptables {
            family,
            table,
            chain,
            number,
            rule,
        } => {
            let tool = if family == "ip6" {
                "ip6tables"
            } else {
                "iptables"
            };
            let verb = if rule.contains("REJECT") {
                "rejected"
            } else {
                "dropped"
            };
            (
                format!(
                    "{verb} by {tool} rule {number} of chain {chain} (table {table}): `{rule}`"
                ),
                Some(format!(
                    "if this traffic should pass: {tool} -t {table} -D {chain} {number}, or \
                     insert an ACCEPT rule before it"
                )),
            )
        }
        Cause::LegacyTable { netns, tool, code } => (
            format!("dropped by a {tool} rule ({code}, which has no trace interface)"),
            Some(format!(
                "in netns {netns}: {tool} -L -v -n --line-numbers (the rule whose counter grew)"
            )),
        ),
        Cause::Route {
            netns,
            table,
            dst,
            prefix,
            route,
        } => {
            let ip = ip_in(netns);
            let del = prefix
                .as_ref()
                .map(|p| format!("{ip} route del {route} {p}{}", table_arg(table)))
                .unwrap_or_else(|| format!("{ip} route get {dst}"));
            (
                format!(
                    "dropped: route to {} is {route} (table {table}) in namespace {netns}",
                    prefix.as_deref().unwrap_or(dst)
                ),
                Some(format!(
                    "if this traffic should pass, remove that route: {del}"
                )),
            )
        }
        Cause::NoRoute {
            netns,
            table,
            dst,
            src,
            iif,
        } => {
            let ip = ip_in(netns);
            let dev = iif
                .as_ref()
                .map(|d| format!(" iif {d}"))
                .unwrap_or_default();
            (
                format!(
                    "dropped: network unreachable: no route to {dst} in table {table} in \
                     namespace {netns}"
                ),
                Some(format!(
                    "add a route (or a default route) for {dst}: {ip} route add {dst} via \
                     GATEWAY{}; check with {ip} route get {dst} from {src}{dev}",
                    table_arg(table)
                )),
            )
        }
        Cause::Ttl { v6, icmp_sent, to } => {
            let (field, icmp) = if *v6 {
                ("hop limit", "ICMPv6 time exceeded")
            } else {
                ("time to live (TTL)", "ICMP time exceeded")
            };
            let mut why = format!(
                "its {field} ran out at this router (1 or 0 on arrival), so it was not forwarded"
            );
            if *icmp_sent {
                why.push_str(&format!("; {icmp} sent back"));
                if let Some(to) = to {
                    why.push_str(&format!(" to {to}"));
                }
            }
            (
                why,
                Some(
                    "expected for traceroute; otherwise a routing loop (the same routers again \
                     and again in the path) or a sender setting a low TTL"
                        .into(),
                ),
            )
        }
        Cause::Mtu {
            netns,
            dev,
            mtu,
            len,
            route,
        } => {
            let route_mtu = route
                .as_ref()
                .map(|r| format!("; its route `{r}` sets an MTU of its own"))
                .unwrap_or_default();
            let mtu = mtu.map_or("MTU unknown".to_string(), |m| format!("MTU {m}"));
            (
                format!(
                    "too big for the way out: {len} bytes to leave by {dev} ({mtu}) in \
                     namespace {netns}, and it may not be fragmented (don't-fragment set, or \
                     IPv6){route_mtu}"
                ),
                Some(format!(
                    "the sender learns the path MTU from the ICMP error sent back (check that \
                     nothing on the way back drops it); or raise the MTU: {} link set {dev} mtu \
                     {len}",
                    ip_in(netns)
                )),
            )
        }
        Cause::RpFilter {
            netns,
            dev,
            src,
            here,
            all,
            back,
        } => {
            let mode = |v: u32| match v {
                0 => "off",
                1 => "strict",
                _ => "loose",
            };
            let setting = match (here, all) {
                (Some(h), Some(a)) if a > h => format!(
                    "net.ipv4.conf.all.rp_filter = {a} ({}), which applies over \
                     net.ipv4.conf.{dev}.rp_filter = {h} (the higher of the two counts)",
                    mode(*a)
                ),
                (Some(h), _) => format!("net.ipv4.conf.{dev}.rp_filter = {h} ({})", mode(*h)),
                (None, _) => format!("net.ipv4.conf.{dev}.rp_filter"),
            };
            let route_back = match back {
                Some(r) if r.devs.iter().any(|d| d == dev) => format!(
                    "the route back to {src} is `{}` (table main; the check found no usable \
                     route back by {dev})",
                    r.route
                ),
                Some(r) => format!(
                    "the route back to {src} is `{}`, which leaves by {}, not by {dev}",
                    r.route,
                    r.devs.first().map_or("another interface", String::as_str)
                ),
                None => format!("there is no route back to {src} in table main"),
            };
            (
                format!(
                    "dropped by the reverse-path filter on {dev} in namespace {netns}: the \
                     packet from {src} came in by {dev}, {setting}, and {route_back}"
                ),
                Some(format!(
                    "if {src} really is reached by {dev}, route it there; or make the check \
                     loose: {}sysctl -w net.ipv4.conf.{dev}.rp_filter=2 (and \
                     net.ipv4.conf.all.rp_filter at most 2)",
                    exec_in(netns)
                )),
            )
        }
        Cause::Tc {
            netns,
            dev,
            direction,
            filters,
            progs,
        } => {
            let on = format!("on {dev} in namespace {netns}");
            let what = match filters.as_slice() {
                [] => format!("dropped by a tc {direction} action {on} (no filter there now)"),
                [f] => format!("dropped by the tc {direction} filter {on}: {f}"),
                many => format!(
                    "dropped by one of the {} tc {direction} filters {on}: {}",
                    many.len(),
                    many.join("; ")
                ),
            };
            let tc = named(netns).map_or("tc".into(), |n| format!("tc -n {n}"));
            let mut hint = format!(
                "{tc} -s filter show dev {dev} {direction} (the filter whose counters grew)"
            );
            for id in progs {
                hint += &format!("; bpftool prog dump xlated id {id}");
            }
            (what, Some(hint))
        }
        Cause::VlanFilter {
            netns,
            bridge,
            port,
            vid,
            why,
        } => {
            let fix = match vid {
                Some(vid) => format!("bridge vlan add dev {port} vid {vid}"),
                None => format!("bridge vlan add dev {port} vid VID pvid untagged"),
            };
            (
                format!(
                    "dropped by the VLAN filter of bridge {bridge} in namespace {netns}: {why}"
                ),
                Some(format!(
                    "if this traffic should pass: ip netns exec {netns} {fix}"
                )),
            )
        }
        Cause::Purged { socket } => (
            format!("queued to {socket}, and purged unread when the application closed it"),
            None,
        ),
    }
}

/// ` table T` for a route command, but for main (the default).
fn table_arg(table: &str) -> String {
    if table == "main" {
        String::new()
    } else {
        format!(" table {table}")
    }
}

/// `ip netns exec NAME ` when the namespace has a name under /run/netns.
fn exec_in(netns: &str) -> String {
    named(netns).map_or(String::new(), |n| format!("ip netns exec {n} "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{test_step, BridgeCross, DropInfo};

    #[test]
    fn a_vlan_filter_drop_in_words_and_its_evidence() {
        let cause = Cause::VlanFilter {
            netns: "sw".into(),
            bridge: "br0".into(),
            port: "pa".into(),
            vid: Some(30),
            why: "vlan 30 (tagged): not allowed on pa, which allows 10, 20-22".into(),
        };
        assert_eq!(
            words(&cause),
            (
                "dropped by the VLAN filter of bridge br0 in namespace sw: vlan 30 (tagged): \
                 not allowed on pa, which allows 10, 20-22"
                    .to_string(),
                Some(
                    "if this traffic should pass: ip netns exec sw bridge vlan add dev pa vid 30"
                        .to_string()
                )
            )
        );
        let bridge = Detail::Bridge(Box::new(BridgeCross {
            bridge: "br0".into(),
            in_port: "pa".into(),
            out_ports: Vec::new(),
            fdb: None,
            vlan: None,
        }));
        let drop = Detail::Drop(Box::new(DropInfo {
            reason: "NOT_SPECIFIED".into(),
            code: 2,
            location: Some("br_handle_frame_finish+0x1".into()),
            found: None,
        }));
        let steps = vec![
            test_step(1, "netif_receive_skb", "sw", Detail::None),
            test_step(2, "bridge", "sw", bridge),
            test_step(3, "kfree_skb", "sw", drop),
        ];
        let mut end = classify(&steps, true, None);
        let End::Dropped { cause: found, .. } = &mut end else {
            panic!("{end:?}");
        };
        assert!(
            matches!(found.as_deref(), Some(Cause::Reason { .. })),
            "{found:?}"
        );
        *found = Some(Box::new(cause));
        end.place_evidence(&steps);
        let End::Dropped { evidence, .. } = &end else {
            unreachable!()
        };
        assert_eq!(evidence, &[1, 2], "the bridge, then the drop");
    }
}
