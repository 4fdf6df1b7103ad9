//! How a journey ended, and why, in words: from its last steps and what
//! came before them (the drop's reason, the route, the rule, the TTL).

use serde::{Deserialize, Serialize};

use crate::model::{Detail, Step};
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
/// in between. The program, in words.
fn read_from_device(steps: &[Step], copy: &Step) -> Option<String> {
    let at = steps.iter().position(|s| std::ptr::eq(s, copy))?;
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
            explanation: found,
            hint: found_hint,
            ..
        } = &**d;
        let (explanation, hint) = drop_reasons::explain(reason);
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
