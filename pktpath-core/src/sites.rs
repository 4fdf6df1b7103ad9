//! The catalogue of sites: what each network tracepoint means, which
//! subsystem it belongs to, where in the kernel source it fires, and what it
//! means for the packet's tracking (goes on, freed, delivered).
//!
//! Tracepoints not listed here are still traced when they take a packet
//! (found through BTF); their subsystem is guessed from the name.

// Looked up for every step: a fast hash, no need for SipHash's defence.
use rustc_hash::FxHashMap as HashMap;
use std::sync::LazyLock;

/// What a site means for the life of the packet it sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Role {
    /// The packet goes on.
    #[default]
    Pass,
    /// The packet is freed here (dropped, or consumed after use).
    Free,
    /// The packet's data is handed to a program (copied to a socket's reader).
    Deliver,
}

/// Static knowledge about one tracepoint.
#[derive(Clone, Copy, Debug)]
pub struct SiteInfo {
    pub name: &'static str,
    pub subsystem: &'static str,
    /// What the step means, in a few words.
    pub what: &'static str,
    /// The kernel source file where the tracepoint fires (most common caller).
    pub source: &'static str,
    pub role: Role,
}

const fn site(
    name: &'static str,
    subsystem: &'static str,
    what: &'static str,
    source: &'static str,
    role: Role,
) -> SiteInfo {
    SiteInfo {
        name,
        subsystem,
        what,
        source,
        role,
    }
}

/// Known tracepoints, in the order they are given slots (most useful first).
pub const KNOWN: &[SiteInfo] = &[
    site(
        "netif_receive_skb",
        "receive",
        "receive",
        "net/core/dev.c",
        Role::Pass,
    ),
    site(
        "netif_rx",
        "receive",
        "queued to backlog",
        "net/core/dev.c",
        Role::Pass,
    ),
    site(
        "napi_gro_receive_entry",
        "gro",
        "GRO receive",
        "net/core/gro.c",
        Role::Pass,
    ),
    site(
        "napi_gro_frags_entry",
        "gro",
        "GRO receive (frags)",
        "net/core/gro.c",
        Role::Pass,
    ),
    site(
        "netif_receive_skb_entry",
        "receive",
        "driver hands over",
        "net/core/dev.c",
        Role::Pass,
    ),
    site(
        "netif_receive_skb_list_entry",
        "receive",
        "driver hands over (list)",
        "net/core/dev.c",
        Role::Pass,
    ),
    site(
        "netif_rx_entry",
        "receive",
        "driver hands over (netif_rx)",
        "net/core/dev.c",
        Role::Pass,
    ),
    site(
        "net_dev_queue",
        "xmit",
        "transmit queued",
        "net/core/dev.c",
        Role::Pass,
    ),
    site(
        "qdisc_enqueue",
        "qdisc",
        "enqueued on qdisc",
        "net/core/dev.c",
        Role::Pass,
    ),
    site(
        "qdisc_dequeue",
        "qdisc",
        "dequeued from qdisc",
        "net/sched/sch_generic.c",
        Role::Pass,
    ),
    site(
        "net_dev_start_xmit",
        "xmit",
        "handed to driver",
        "net/core/dev.c",
        Role::Pass,
    ),
    site(
        "net_dev_xmit",
        "xmit",
        "transmitted",
        "net/core/dev.c",
        Role::Pass,
    ),
    site(
        "icmp_send",
        "icmp",
        "ICMP error sent about it",
        "net/ipv4/icmp.c",
        Role::Pass,
    ),
    site(
        "tcp_probe",
        "tcp",
        "TCP receive (established)",
        "net/ipv4/tcp_input.c",
        Role::Pass,
    ),
    site(
        "tcp_retransmit_skb",
        "tcp",
        "TCP retransmit",
        "net/ipv4/tcp_output.c",
        Role::Pass,
    ),
    site(
        "tcp_send_reset",
        "tcp",
        "TCP reset sent",
        "net/ipv4/tcp_ipv4.c",
        Role::Pass,
    ),
    site(
        "tcp_bad_csum",
        "tcp",
        "TCP bad checksum",
        "net/ipv4/tcp_ipv4.c",
        Role::Pass,
    ),
    site(
        "tcp_sendmsg_locked",
        "tcp",
        "TCP send",
        "net/ipv4/tcp.c",
        Role::Pass,
    ),
    site(
        "udp_fail_queue_rcv_skb",
        "udp",
        "UDP socket queue failed",
        "net/ipv4/udp.c",
        Role::Pass,
    ),
    site(
        "sock_rcvqueue_full",
        "socket",
        "socket receive queue full",
        "net/core/sock.c",
        Role::Pass,
    ),
    site(
        "skb_copy_datagram_iovec",
        "socket",
        "copied to user space",
        "net/core/datagram.c",
        Role::Deliver,
    ),
    site(
        "kfree_skb",
        "drop",
        "dropped",
        "net/core/skbuff.c",
        Role::Free,
    ),
    site(
        "consume_skb",
        "free",
        "freed (consumed)",
        "net/core/skbuff.c",
        Role::Free,
    ),
];

/// Tracepoints without a packet argument, tied to the packet by the BPF side.
pub const FIB4: SiteInfo = site(
    "fib_table_lookup",
    "routing",
    "IPv4 route lookup",
    "net/ipv4/fib_trie.c",
    Role::Pass,
);
pub const FIB6: SiteInfo = site(
    "fib6_table_lookup",
    "routing",
    "IPv6 route lookup",
    "net/ipv6/route.c",
    Role::Pass,
);
pub const NEIGH: SiteInfo = site(
    "neigh_event_send_done",
    "neighbour",
    "next hop resolution",
    "net/core/neighbour.c",
    Role::Pass,
);

/// A datagram queued to its socket (sock:sk_data_ready, Linux 6.3 and
/// later; no packet argument, tied to the packet by the BPF side).
pub const SOCK_READY: SiteInfo = site(
    "sk_data_ready",
    "socket",
    "queued to a socket",
    "net/core/sock.c",
    Role::Deliver,
);

/// Tracepoints a packet never reaches first: it passed a site where
/// journeys start just before (the driver's return after
/// net_dev_start_xmit, the dequeue after qdisc_enqueue, the socket layer
/// after receive), or right after (netif_rx_entry, then netif_rx), or it is
/// TCP's own write-queue skb (sendmsg, retransmissions), which has no
/// headers to filter on. A packet not followed costs one map lookup there
/// instead of two reads of its headers to learn whether the filter turned
/// it down: of the 5 sites a TCP segment passes over veth (attached by
/// default), 2 still read them (net_dev_start_xmit, netif_receive_skb).
const CONTINUATIONS: &[&str] = &[
    "net_dev_xmit",
    "netif_rx_entry",
    "qdisc_dequeue",
    "icmp_send",
    "tcp_probe",
    "tcp_retransmit_skb",
    "tcp_send_reset",
    "tcp_bad_csum",
    "tcp_sendmsg_locked",
    "udp_fail_queue_rcv_skb",
    "sock_rcvqueue_full",
    "skb_copy_datagram_iovec",
];

/// Whether a packet first seen at `name` starts a journey. Not at the
/// continuations, nor at consume_skb: a packet seen only when freed after
/// normal use is a copy or clone whose life we did not see, and would be
/// noise. Drops still start one (a packet dropped early is worth seeing
/// even alone), and so do tracepoints we know nothing of.
pub fn starts_journey(name: &str) -> bool {
    name != "consume_skb" && !CONTINUATIONS.contains(&name)
}

/// Tracepoints that see only TCP's write-queue skb: the data a socket keeps
/// until it is acknowledged, of which each transmission sends a clone.
/// Only a function site (skb_clone's return) links that skb to a journey;
/// with tracepoints alone it is never followed there, and these sites, hit
/// for every send() (the most frequent TCP tracepoint), are left out.
pub const WRITE_QUEUE: &[&str] = &["tcp_sendmsg_locked", "tcp_retransmit_skb"];

/// Tracepoints that fire for the same skb right before or after another
/// one, left out unless asked for (`--all-tracepoints`, or `--start-at`
/// naming one): each is a run of a program for every packet that passes,
/// armed or not, for a step that tells little the next one does not.
/// - netif_rx_entry: netif_rx fires next, at the top of
///   netif_rx_internal() (which dev_forward_skb() calls too), nothing
///   between that could change or drop the packet.
/// - netif_rx (queued to a CPU's backlog): netif_receive_skb fires for the
///   same skb when the backlog is processed, and a packet the backlog
///   drops is kfree_skb's (reason CPU_BACKLOG). On veth it fires inside the
///   sender's transmit, between its net_dev_start_xmit and net_dev_xmit, so
///   a journey without it also reads in order.
/// - net_dev_queue: the top of a transmit, after tc egress, right before
///   the device's qdisc. On a device without one (veth, bridges, VLANs,
///   tunnels: noqueue) net_dev_start_xmit fires next for the same skb; with
///   one, qdisc_enqueue does (net_dev_start_xmit when an empty qdisc is
///   bypassed). Both start journeys; a packet dropped in between (a full
///   qdisc, a device down) is kfree_skb's, with the reason.
/// - net_dev_xmit: the driver's return, right after net_dev_start_xmit;
///   its return code is all it adds (a busy driver's requeue shows as a
///   second net_dev_start_xmit).
///
/// Retis's default probes make the same choice: net_dev_start_xmit and
/// netif_receive_skb.
pub const ADJACENT: &[&str] = &[
    "netif_rx_entry",
    "netif_rx",
    "net_dev_queue",
    "net_dev_xmit",
];

/// When a run attaches a tracepoint (besides --start-at naming it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachWhen {
    Always,
    /// One of [`ADJACENT`]: with --all-tracepoints.
    AllTracepoints,
    /// One of [`WRITE_QUEUE`]: with function sites.
    FunctionSites,
}

impl AttachWhen {
    pub fn of(name: &str) -> AttachWhen {
        if ADJACENT.contains(&name) {
            AttachWhen::AllTracepoints
        } else if WRITE_QUEUE.contains(&name) {
            AttachWhen::FunctionSites
        } else {
            AttachWhen::Always
        }
    }

    /// How `pktpath sites` says it.
    pub fn text(self) -> &'static str {
        match self {
            AttachWhen::Always => "always",
            AttachWhen::AllTracepoints => "with --all-tracepoints",
            AttachWhen::FunctionSites => "with function sites",
        }
    }
}

/// Whether tracepoint `name` is attached: not the write-queue ones without
/// function sites, nor the adjacent ones unless `all` (--all-tracepoints),
/// unless --start-at names them.
pub fn attached(name: &str, functions: bool, start_at: Option<&str>, all: bool) -> bool {
    start_at == Some(name)
        || match AttachWhen::of(name) {
            AttachWhen::Always => true,
            AttachWhen::AllTracepoints => all,
            AttachWhen::FunctionSites => functions,
        }
}

/// Sites that free a packet the kernel was done with (not a drop): a free
/// there with other header offsets than the packet's last site is another
/// skb's at the same address.
pub fn frees_after_use(name: &str) -> bool {
    name == "consume_skb"
}

/// Functions that end an skb's life (its memory goes back to the allocator).
pub const FREEING_FUNCTIONS: &[&str] = &[
    "__kfree_skb",
    "kfree_skbmem",
    "napi_skb_cache_put",
    "kfree_skb_partial",
];

/// Sites where a packet is handed to a socket's receive path: what it
/// carries may wait in the queue until the application reads it.
pub fn queues_to_socket(site: &str) -> bool {
    matches!(
        site,
        "tcp_probe"
            | "tcp_rcv_established"
            | "tcp_queue_rcv"
            | "tcp_data_queue"
            | "tcp_add_backlog"
            | "tcp_v4_do_rcv"
            | "tcp_v6_do_rcv"
            | "sock_queue_rcv_skb_reason"
            | "__sock_queue_rcv_skb"
            | "__udp_enqueue_schedule_skb"
            | "udp_queue_rcv_one_skb"
            | "udpv6_queue_rcv_one_skb"
    )
}

/// What a function site means for tracking.
pub fn function_role(name: &str) -> Role {
    if FREEING_FUNCTIONS.contains(&name) {
        Role::Free
    } else {
        Role::Pass
    }
}

/// Whether a packet first seen in function `name` starts a journey: not in
/// the functions that free or release it (the journey, if any, has ended).
pub fn function_starts_journey(name: &str) -> bool {
    !(name.contains("free") || name.contains("release") || name.contains("consume"))
}

/// What we know of tracepoint `name`, guessing for unlisted ones.
pub fn info(name: &str) -> SiteInfo {
    // Looked up for every step a sink writes: a map, not a scan of the list.
    static BY_NAME: LazyLock<HashMap<&str, SiteInfo>> = LazyLock::new(|| {
        KNOWN
            .iter()
            .chain([&FIB4, &FIB6, &NEIGH, &SOCK_READY])
            .rev() // the first of a name wins, as in a scan
            .map(|s| (s.name, *s))
            .collect()
    });
    if let Some(s) = BY_NAME.get(name) {
        return *s;
    }
    let subsystem = [
        ("tcp_", "tcp"),
        ("udp_", "udp"),
        ("sock_", "socket"),
        ("qdisc_", "qdisc"),
        ("net_dev_", "xmit"),
        ("netif_", "receive"),
        ("napi_", "gro"),
        ("icmp", "icmp"),
        ("fib", "routing"),
        ("neigh_", "neighbour"),
        ("br_", "bridge"),
        ("subflow_", "mptcp"),
        ("mptcp_", "mptcp"),
        ("devlink_", "devlink"),
        ("xdp_", "xdp"),
    ]
    .iter()
    .find(|(p, _)| name.starts_with(p))
    .map(|(_, s)| *s)
    .unwrap_or("other");
    SiteInfo {
        name: "",
        subsystem,
        what: "",
        source: "",
        role: Role::Pass,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_of_life_are_free_sites() {
        assert_eq!(info("kfree_skb").role, Role::Free);
        assert_eq!(info("consume_skb").role, Role::Free);
        assert_eq!(info("skb_copy_datagram_iovec").role, Role::Deliver);
        assert_eq!(info("tcp_whatever").subsystem, "tcp");
        assert_eq!(info("brand_new").subsystem, "other");
    }

    #[test]
    fn left_out_sites_are_attached_when_asked() {
        for name in WRITE_QUEUE {
            assert!(CONTINUATIONS.contains(name), "{name}");
            assert!(!attached(name, false, None, false));
            assert!(!attached(name, false, None, true));
            assert!(attached(name, true, None, false));
            assert!(attached(name, false, Some(name), false));
        }
        for name in ADJACENT {
            assert!(KNOWN.iter().any(|s| s.name == *name), "{name}");
            assert!(!attached(name, true, None, false));
            assert!(attached(name, true, Some(name), false));
            assert!(attached(name, false, None, true));
        }
        assert!(attached("netif_receive_skb", false, None, false));
        assert!(attached("net_dev_start_xmit", false, None, false));
    }

    #[test]
    fn continuations_are_known_passes() {
        // A misspelt name would leave that site starting journeys.
        for name in CONTINUATIONS {
            assert!(KNOWN.iter().any(|s| s.name == *name), "{name}");
            assert!(!starts_journey(name), "{name}");
        }
        for name in [
            "net_dev_queue",
            "qdisc_enqueue",
            "net_dev_start_xmit",
            "netif_rx",
            "netif_receive_skb",
            "kfree_skb",
        ] {
            assert!(starts_journey(name), "{name}");
        }
    }
}
