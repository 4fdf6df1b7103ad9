//! Where each network tracepoint fires: the `trace_<name>(` call in the
//! kernel's source, per release whose source was read.
//!
//! A line is only right for the release it was read in (stable updates
//! move code), so a release not listed here gets the file (and, on
//! another update of a listed series, the function that fires it), never
//! a line from another release.
//!
//! Read from: Debian's `linux-source-6.1` 6.1.192-3 and `linux-source-6.12`
//! 6.12.107-1~deb12u1 (the kernels of the VM suite: 6.1.0-57 and
//! 6.12.107+deb12), and upstream v6.18, with `grep -n 'trace_NAME('`.
//! Elixir shows upstream's tree: Debian's 6.12.107 files listed here are
//! byte for byte those of its upstream orig tarball; for 6.1.192 the orig
//! tarball could not be had, and Debian's patches (those of 6.12 at least)
//! touch none of these files. v6.18 is the "update to linux-6.18" commit of
//! a GitHub mirror of the 6.18 series (6952350/linux-6.18.y), not checked
//! against kernel.org's tag.
//!
//! Where several functions fire a tracepoint, the line is the main
//! caller's, named in the table (the other callers are said in
//! [`OTHER_CALLERS`]).

use super::version::KernelVersion;

/// The releases whose lines are in [`FIRES`], in its column order.
pub const RELEASES: [KernelVersion; 3] = [
    KernelVersion::new(6, 1, 192),
    KernelVersion::new(6, 12, 107),
    KernelVersion::new(6, 18, 0),
];

/// One call site: its line and the function it is in.
pub type Site = Option<(u32, &'static str)>;

/// Each tracepoint: the file it fires in (the same in every release
/// listed) and its call site in each of [`RELEASES`] (None: the release
/// has no such tracepoint).
pub const FIRES: &[(&str, &str, [Site; 3])] = &[
    (
        "netif_receive_skb",
        "net/core/dev.c",
        [
            Some((5439, "__netif_receive_skb_core")),
            Some((5600, "__netif_receive_skb_core")),
            Some((5863, "__netif_receive_skb_core")),
        ],
    ),
    (
        "netif_rx",
        "net/core/dev.c",
        [
            Some((5081, "netif_rx_internal")),
            Some((5308, "netif_rx_internal")),
            Some((5570, "netif_rx_internal")),
        ],
    ),
    (
        "napi_gro_receive_entry",
        "net/core/gro.c",
        [
            Some((691, "napi_gro_receive")),
            Some((647, "napi_gro_receive")),
            Some((629, "gro_receive_skb")),
        ],
    ),
    (
        "napi_gro_frags_entry",
        "net/core/gro.c",
        [
            Some((821, "napi_gro_frags")),
            Some((780, "napi_gro_frags")),
            Some((768, "napi_gro_frags")),
        ],
    ),
    (
        "netif_receive_skb_entry",
        "net/core/dev.c",
        [
            Some((5895, "netif_receive_skb")),
            Some((6056, "netif_receive_skb")),
            Some((6335, "netif_receive_skb")),
        ],
    ),
    (
        "netif_receive_skb_list_entry",
        "net/core/dev.c",
        [
            Some((5922, "netif_receive_skb_list")),
            Some((6083, "netif_receive_skb_list")),
            Some((6362, "netif_receive_skb_list")),
        ],
    ),
    (
        "netif_rx_entry",
        "net/core/dev.c",
        [
            Some((5154, "netif_rx")),
            Some((5381, "netif_rx")),
            Some((5643, "netif_rx")),
        ],
    ),
    (
        "net_dev_queue",
        "net/core/dev.c",
        [
            Some((4353, "__dev_queue_xmit")),
            Some((4509, "__dev_queue_xmit")),
            Some((4727, "__dev_queue_xmit")),
        ],
    ),
    (
        "qdisc_enqueue",
        "net/core/dev.c",
        [
            Some((3913, "dev_qdisc_enqueue")),
            Some((3903, "dev_qdisc_enqueue")),
            Some((4120, "dev_qdisc_enqueue")),
        ],
    ),
    (
        "qdisc_dequeue",
        "net/sched/sch_generic.c",
        [
            Some((304, "dequeue_skb")),
            Some((305, "dequeue_skb")),
            Some((306, "dequeue_skb")),
        ],
    ),
    (
        "net_dev_start_xmit",
        "net/core/dev.c",
        [
            Some((3705, "xmit_one")),
            Some((3692, "xmit_one")),
            Some((3844, "xmit_one")),
        ],
    ),
    (
        "net_dev_xmit",
        "net/core/dev.c",
        [
            Some((3707, "xmit_one")),
            Some((3694, "xmit_one")),
            Some((3846, "xmit_one")),
        ],
    ),
    (
        "icmp_send",
        "net/ipv4/icmp.c",
        [
            Some((816, "__icmp_send")),
            Some((815, "__icmp_send")),
            Some((785, "__icmp_send")),
        ],
    ),
    (
        "tcp_probe",
        "net/ipv4/tcp_input.c",
        [
            Some((5988, "tcp_rcv_established")),
            Some((6156, "tcp_rcv_established")),
            Some((6267, "tcp_rcv_established")),
        ],
    ),
    (
        "tcp_retransmit_skb",
        "net/ipv4/tcp_output.c",
        [
            Some((3330, "__tcp_retransmit_skb")),
            Some((3451, "__tcp_retransmit_skb")),
            Some((3625, "__tcp_retransmit_skb")),
        ],
    ),
    (
        "tcp_send_reset",
        "net/ipv4/tcp_ipv4.c",
        [
            Some((824, "tcp_v4_send_reset")),
            Some((884, "tcp_v4_send_reset")),
            Some((888, "tcp_v4_send_reset")),
        ],
    ),
    (
        "tcp_bad_csum",
        "net/ipv4/tcp_ipv4.c",
        [
            Some((2144, "tcp_v4_rcv")),
            Some((2375, "tcp_v4_rcv")),
            Some((2397, "tcp_v4_rcv")),
        ],
    ),
    (
        "tcp_sendmsg_locked",
        "net/ipv4/tcp.c",
        [None, None, Some((1203, "tcp_sendmsg_locked"))],
    ),
    (
        "udp_fail_queue_rcv_skb",
        "net/ipv4/udp.c",
        [
            Some((2171, "__udp_queue_rcv_skb")),
            Some((2143, "__udp_queue_rcv_skb")),
            Some((2359, "__udp_queue_rcv_skb")),
        ],
    ),
    (
        "sock_rcvqueue_full",
        "net/core/sock.c",
        [
            Some((487, "__sock_queue_rcv_skb")),
            Some((488, "__sock_queue_rcv_skb")),
            Some((495, "__sock_queue_rcv_skb")),
        ],
    ),
    (
        "skb_copy_datagram_iovec",
        "net/core/datagram.c",
        [
            Some((534, "skb_copy_datagram_iter")),
            Some((537, "skb_copy_datagram_iter")),
            Some((534, "skb_copy_datagram_iter")),
        ],
    ),
    (
        "kfree_skb",
        "net/core/skbuff.c",
        [
            Some((892, "kfree_skb_reason")),
            Some((1219, "__sk_skb_reason_drop")),
            Some((1186, "__sk_skb_reason_drop")),
        ],
    ),
    (
        "consume_skb",
        "net/core/skbuff.c",
        [
            Some((1037, "consume_skb")),
            Some((1430, "consume_skb")),
            Some((1397, "consume_skb")),
        ],
    ),
    (
        "fib_table_lookup",
        "net/ipv4/fib_trie.c",
        [
            Some((1617, "fib_table_lookup")),
            Some((1619, "fib_table_lookup")),
            Some((1613, "fib_table_lookup")),
        ],
    ),
    (
        "fib6_table_lookup",
        "net/ipv6/route.c",
        [
            Some((2241, "fib6_table_lookup")),
            Some((2258, "fib6_table_lookup")),
            Some((2246, "fib6_table_lookup")),
        ],
    ),
    (
        "neigh_event_send_done",
        "net/core/neighbour.c",
        [
            Some((1251, "__neigh_event_send")),
            Some((1253, "__neigh_event_send")),
            Some((1275, "__neigh_event_send")),
        ],
    ),
    (
        "sk_data_ready",
        "net/core/sock.c",
        [
            None,
            Some((3487, "sock_def_readable")),
            Some((3546, "sock_def_readable")),
        ],
    ),
];

/// Tracepoints fired from more than one function, and the others (the
/// line in [`FIRES`] is the first named here, the main one).
pub const OTHER_CALLERS: &[(&str, &str)] = &[
    ("netif_rx_entry", "netif_rx; also __netif_rx (callers with bottom halves off)"),
    ("tcp_send_reset", "tcp_v4_send_reset; also tcp_v6_send_reset (net/ipv6/tcp_ipv6.c) and tcp_send_active_reset (net/ipv4/tcp_output.c)"),
    ("tcp_bad_csum", "tcp_v4_rcv; also tcp_v4_do_rcv, tcp_add_backlog, tcp_rcv_established, tcp_v6_rcv and tcp_v6_do_rcv"),
    ("udp_fail_queue_rcv_skb", "__udp_queue_rcv_skb; also __udpv6_queue_rcv_skb (net/ipv6/udp.c, 6.12 and later)"),
    ("kfree_skb", "the drop function (kfree_skb_reason, __sk_skb_reason_drop from 6.12); also net_tx_action (net/core/dev.c)"),
    ("consume_skb", "consume_skb; also __consume_stateless_skb, napi_consume_skb, net_tx_action, and __sk_skb_reason_drop (6.12 and later)"),
    ("fib_table_lookup", "fib_table_lookup at its result; also where it finds nothing (-EAGAIN) or a rejecting route"),
    ("fib6_table_lookup", "fib6_table_lookup; also ip6_pol_route_lookup and __ip6_route_redirect"),
    ("sk_data_ready", "sock_def_readable; also each protocol's own data_ready (skmsg, sctp, tipc...)"),
];

/// Where a tracepoint fires on one release.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fires {
    pub file: &'static str,
    /// On a release whose source was read (listed in [`RELEASES`]).
    pub line: Option<u32>,
    /// The function of its (main) call: on a listed release, or another
    /// stable update of a listed series (stable updates fix code, they do
    /// not rename functions; its line may have moved).
    pub function: Option<&'static str>,
}

/// Where tracepoint `name` fires on `version` (None: not in the table).
pub fn fires(name: &str, version: Option<&KernelVersion>) -> Option<Fires> {
    let (_, file, sites) = FIRES.iter().find(|(n, ..)| *n == name)?;
    let exact = version.and_then(|v| RELEASES.iter().position(|r| r == v));
    let series = version.and_then(|v| {
        RELEASES
            .iter()
            .position(|r| (r.major, r.minor) == (v.major, v.minor) && v.rc.is_none())
    });
    Some(Fires {
        file,
        line: exact.and_then(|c| sites[c]).map(|(l, _)| l),
        function: series.and_then(|c| sites[c]).map(|(_, f)| f),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sites;

    #[test]
    fn lines_only_on_the_releases_read() {
        let v = |t: &str| KernelVersion::parse(t).unwrap();
        let at = |name: &str, version: Option<&str>| {
            fires(name, version.map(v).as_ref()).map(|f| (f.file, f.line, f.function))
        };
        assert_eq!(
            at("kfree_skb", Some("6.12.107")),
            Some((
                "net/core/skbuff.c",
                Some(1219),
                Some("__sk_skb_reason_drop")
            ))
        );
        assert_eq!(
            at("net_dev_start_xmit", Some("6.18")),
            Some(("net/core/dev.c", Some(3844), Some("xmit_one")))
        );
        assert_eq!(
            at("netif_receive_skb", Some("6.1.192")),
            Some((
                "net/core/dev.c",
                Some(5439),
                Some("__netif_receive_skb_core")
            ))
        );
        // Another stable update of a listed series: its function, no line.
        assert_eq!(
            at("kfree_skb", Some("6.12.118")),
            Some(("net/core/skbuff.c", None, Some("__sk_skb_reason_drop")))
        );
        assert_eq!(
            at("napi_gro_receive_entry", Some("6.18.44")),
            Some(("net/core/gro.c", None, Some("gro_receive_skb")))
        );
        // Another series, or none known: the file alone.
        assert_eq!(
            at("kfree_skb", Some("6.8.4")),
            Some(("net/core/skbuff.c", None, None))
        );
        assert_eq!(
            at("kfree_skb", Some("6.12-rc3")),
            Some(("net/core/skbuff.c", None, None))
        );
        assert_eq!(
            at("kfree_skb", None),
            Some(("net/core/skbuff.c", None, None))
        );
        // Not in that release.
        assert_eq!(
            at("sk_data_ready", Some("6.1.192")),
            Some(("net/core/sock.c", None, None))
        );
        assert_eq!(at("no_such_tracepoint", Some("6.18")), None);
    }

    #[test]
    fn every_known_tracepoint_is_listed_with_its_file() {
        for s in sites::KNOWN.iter().chain([
            &sites::FIB4,
            &sites::FIB6,
            &sites::NEIGH,
            &sites::SOCK_READY,
        ]) {
            let f = fires(s.name, None).unwrap_or_else(|| panic!("{}", s.name));
            assert_eq!(f.file, s.source, "{}", s.name);
        }
        for (name, _) in OTHER_CALLERS {
            assert!(FIRES.iter().any(|(n, ..)| n == name), "{name}");
        }
    }
}
