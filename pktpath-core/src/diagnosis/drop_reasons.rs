//! Drop reasons (the kernel's enum skb_drop_reason, named through BTF) in
//! words a network engineer reads at a glance, with the usual fix.

/// (reason, what happened, what to check)
const WORDS: &[(&str, &str, &str)] = &[
    (
        "NOT_SPECIFIED",
        "dropped without a reason given by the kernel",
        "look at the drop location",
    ),
    (
        "NO_SOCKET",
        "no socket was listening for it",
        "is the service running and bound to this address and port?",
    ),
    (
        "PKT_TOO_SMALL",
        "packet shorter than its headers",
        "a truncated or malformed packet",
    ),
    (
        "TCP_CSUM",
        "bad TCP checksum",
        "checksum offload or corruption on the way",
    ),
    (
        "SOCKET_FILTER",
        "rejected by a socket filter (SO_ATTACH_FILTER)",
        "a BPF filter on the receiving socket",
    ),
    (
        "UDP_CSUM",
        "bad UDP checksum",
        "checksum offload or corruption on the way",
    ),
    (
        "NETFILTER_DROP",
        "dropped by a netfilter rule (nftables/iptables)",
        "list the ruleset of this namespace: nft list ruleset",
    ),
    (
        "OTHERHOST",
        "addressed to another host's MAC address",
        "promiscuous mode or a wrong destination MAC",
    ),
    ("IP_CSUM", "bad IP header checksum", "corruption on the way"),
    ("IP_INHDR", "invalid IP header", "a malformed packet"),
    (
        "IP_RPFILTER",
        "failed the reverse-path check (rp_filter)",
        "the route back to the source uses another interface: check net.ipv4.conf.*.rp_filter",
    ),
    (
        "UNICAST_IN_L2_MULTICAST",
        "IP unicast in an L2 multicast/broadcast frame",
        "a misaddressed frame",
    ),
    (
        "XFRM_POLICY",
        "IPsec (xfrm) policy rejected it",
        "ip xfrm policy",
    ),
    (
        "IP_NOPROTO",
        "no handler for this IP protocol",
        "is the protocol's module loaded?",
    ),
    (
        "SOCKET_RCVBUFF",
        "socket receive buffer full",
        "the application reads too slowly; raise SO_RCVBUF",
    ),
    (
        "PROTO_MEM",
        "protocol memory limit reached",
        "tcp_mem/udp_mem pressure",
    ),
    (
        "TCP_MD5NOTFOUND",
        "TCP MD5 signature missing",
        "TCP-MD5 configuration on both ends",
    ),
    (
        "TCP_MD5UNEXPECTED",
        "unexpected TCP MD5 signature",
        "TCP-MD5 configuration on both ends",
    ),
    (
        "TCP_MD5FAILURE",
        "TCP MD5 signature mismatch",
        "TCP-MD5 keys on both ends",
    ),
    (
        "SOCKET_BACKLOG",
        "socket backlog full",
        "the application is too slow",
    ),
    (
        "TCP_FLAGS",
        "invalid TCP flags",
        "a malformed or scanning packet",
    ),
    (
        "TCP_ZEROWINDOW",
        "receiver's TCP window is zero",
        "the application does not read",
    ),
    (
        "TCP_OLD_DATA",
        "TCP data already received (retransmission)",
        "retransmissions: loss on the path",
    ),
    (
        "TCP_OVERWINDOW",
        "TCP data beyond the receive window",
        "window tracking or a middlebox",
    ),
    (
        "TCP_OFOMERGE",
        "TCP out-of-order data merged",
        "reordering on the path",
    ),
    (
        "TCP_RFC7323_PAWS",
        "TCP timestamp too old (PAWS)",
        "timestamps or NAT mixing connections",
    ),
    (
        "TCP_INVALID_SEQUENCE",
        "TCP sequence number outside the window",
        "a stale or spoofed segment",
    ),
    (
        "TCP_RESET",
        "TCP reset received",
        "the peer closed the connection",
    ),
    (
        "TCP_INVALID_SYN",
        "unexpected TCP SYN",
        "a SYN on an established connection",
    ),
    (
        "TCP_CLOSE",
        "TCP socket closed",
        "the connection was already closed",
    ),
    ("TCP_FASTOPEN", "TCP Fast Open failure", "TFO cookies"),
    ("TCP_OLD_ACK", "TCP ACK for old data", "a late segment"),
    ("TCP_TOO_OLD_ACK", "TCP ACK too old", "a late segment"),
    (
        "TCP_ACK_UNSENT_DATA",
        "TCP ACK for data never sent",
        "a spoofed or confused peer",
    ),
    (
        "TCP_OFO_QUEUE_PRUNE",
        "TCP out-of-order queue pruned",
        "memory pressure",
    ),
    (
        "TCP_OFO_DROP",
        "TCP out-of-order segment dropped",
        "memory pressure or reordering",
    ),
    (
        "IP_OUTNOROUTES",
        "no route to send it",
        "ip route get DESTINATION",
    ),
    (
        "BPF_CGROUP_EGRESS",
        "dropped by a cgroup BPF egress program",
        "bpftool cgroup tree",
    ),
    (
        "IPV6DISABLED",
        "IPv6 is disabled on the device",
        "net.ipv6.conf.*.disable_ipv6",
    ),
    (
        "NEIGH_CREATEFAIL",
        "could not create a neighbour entry",
        "neighbour table full (gc_thresh)",
    ),
    (
        "NEIGH_FAILED",
        "next hop did not answer ARP/ND",
        "is the gateway or host up? ip neigh",
    ),
    (
        "NEIGH_QUEUEFULL",
        "too many packets waiting for ARP/ND",
        "the next hop does not answer",
    ),
    (
        "NEIGH_DEAD",
        "neighbour entry was being removed",
        "a transient race",
    ),
    (
        "TC_EGRESS",
        "dropped by a tc egress action",
        "tc -s filter show dev <its device> egress",
    ),
    (
        "SECURITY_HOOK",
        "dropped by a security module",
        "LSM/SELinux policy",
    ),
    (
        "QDISC_DROP",
        "dropped by the queueing discipline (queue full)",
        "tc -s qdisc show; the link is congested",
    ),
    (
        "QDISC_OVERLIMIT",
        "qdisc over its limit",
        "tc -s qdisc show",
    ),
    (
        "QDISC_CONGESTED",
        "qdisc congestion drop",
        "tc -s qdisc show",
    ),
    (
        "CPU_BACKLOG",
        "CPU backlog queue full",
        "net.core.netdev_max_backlog",
    ),
    ("XDP", "dropped by an XDP program", "ip link show (xdp)"),
    (
        "TC_INGRESS",
        "dropped by a tc ingress action",
        "tc -s filter show dev <its device> ingress",
    ),
    (
        "UNHANDLED_PROTO",
        "no handler for this protocol",
        "an unknown ethertype",
    ),
    ("SKB_CSUM", "checksum error", "corruption"),
    ("SKB_GSO_SEG", "GSO segmentation failed", "offload settings"),
    (
        "SKB_UCOPY_FAULT",
        "copy to user space failed",
        "the application's buffer",
    ),
    ("DEV_HDR", "device header error", "driver or encapsulation"),
    (
        "DEV_READY",
        "device not ready (down or no carrier)",
        "ip link show: is it up?",
    ),
    (
        "FULL_RING",
        "device transmit ring full",
        "the NIC is saturated",
    ),
    ("NOMEM", "out of memory", "memory pressure"),
    ("HDR_TRUNC", "headers truncated", "a malformed packet"),
    (
        "TAP_FILTER",
        "dropped by a tap filter",
        "the tun/tap device's filter",
    ),
    (
        "TAP_TXFILTER",
        "dropped by a tap TX filter",
        "the tun/tap device's filter",
    ),
    ("ICMP_CSUM", "bad ICMP checksum", "corruption"),
    ("INVALID_PROTO", "invalid protocol", "a malformed packet"),
    (
        "IP_INADDRERRORS",
        "invalid destination address",
        "a martian or misaddressed packet",
    ),
    (
        "IP_INNOROUTES",
        "no route for it on input",
        "ip route get DST from SRC iif DEV",
    ),
    (
        "IP_LOCAL_SOURCE",
        "source address is a local address",
        "a loop or spoofed packet",
    ),
    (
        "IP_INVALID_SOURCE",
        "invalid source address",
        "a martian source: check rp_filter and routes",
    ),
    (
        "IP_LOCALNET",
        "loopback address seen on a non-loopback device",
        "route_localnet",
    ),
    (
        "IP_INVALID_DEST",
        "invalid destination",
        "a martian destination",
    ),
    (
        "PKT_TOO_BIG",
        "packet larger than the MTU",
        "path MTU: check MTUs and ICMP frag-needed",
    ),
    ("DUP_FRAG", "duplicate fragment", "retransmitted fragments"),
    (
        "FRAG_REASM_TIMEOUT",
        "fragment reassembly timed out",
        "a fragment was lost",
    ),
    (
        "FRAG_TOO_FAR",
        "fragment too far from the others",
        "ipfrag_max_dist",
    ),
    (
        "TCP_MINTTL",
        "TTL below the socket's minimum",
        "IP_MINTTL on the socket",
    ),
    (
        "IPV6_BAD_EXTHDR",
        "bad IPv6 extension header",
        "a malformed packet",
    ),
    (
        "IPV6_TOO_MANY_EXTHDRS",
        "IPv6 packet with more extension headers than the kernel accepts",
        "a crafted packet, or a sender chaining unusually many extension headers",
    ),
    (
        "IPV6_NDISC_FRAG",
        "fragmented neighbour discovery",
        "a malformed ND packet",
    ),
    (
        "IPV6_NDISC_HOP_LIMIT",
        "ND packet with a hop limit other than 255",
        "an off-link ND packet",
    ),
    (
        "IPV6_NDISC_BAD_CODE",
        "ND packet with a bad code",
        "a malformed ND packet",
    ),
    (
        "IPV6_NDISC_BAD_OPTIONS",
        "ND packet with bad options",
        "a malformed ND packet",
    ),
    (
        "IPV6_NDISC_NS_OTHERHOST",
        "neighbour solicitation for another host",
        "normal on shared links",
    ),
    (
        "QUEUE_PURGE",
        "freed with a queue that was emptied: a socket closed before this was read, or a \
         device going down",
        "if the application closed its socket unread, nothing it wanted was lost; otherwise \
         ip link show: did a device go down?",
    ),
    ("TC_COOKIE_ERROR", "tc cookie error", "tc configuration"),
    (
        "PACKET_SOCK_ERROR",
        "packet socket error",
        "an AF_PACKET reader",
    ),
    (
        "TC_CHAIN_NOTFOUND",
        "tc chain not found",
        "tc chain configuration",
    ),
    (
        "TC_RECLASSIFY_LOOP",
        "tc reclassify loop",
        "tc configuration",
    ),
    (
        "VXLAN_INVALID_HDR",
        "invalid VXLAN header",
        "VXLAN peer configuration",
    ),
    (
        "VXLAN_VNI_NOT_FOUND",
        "VXLAN VNI not configured here",
        "ip -d link show type vxlan",
    ),
    (
        "MAC_INVALID_SOURCE",
        "invalid source MAC",
        "a malformed frame",
    ),
    ("VXLAN_ENTRY_EXISTS", "VXLAN FDB entry exists", "bridge fdb"),
    ("IP_TUNNEL_ECN", "tunnel ECN error", "ECN decapsulation"),
    (
        "TUNNEL_TXINFO",
        "tunnel has no transmit info",
        "metadata tunnel configuration",
    ),
    ("LOCAL_MAC", "source MAC is our own", "a loop"),
    (
        "ARP_PVLAN_DISABLE",
        "ARP proxy for private VLAN disabled",
        "proxy_arp_pvlan",
    ),
    (
        "MAC_IEEE_MAC_CONTROL",
        "IEEE MAC control frame",
        "pause frames",
    ),
    (
        "BRIDGE_INGRESS_STP_STATE",
        "bridge port not forwarding (STP state)",
        "bridge link show: port state",
    ),
    (
        "SOCKET_CLOSE",
        "the socket was closed with this data still queued",
        "the application closed before reading everything",
    ),
    (
        "UNIX_DISCONNECT",
        "UNIX socket disconnected with this data queued",
        "the peer went away",
    ),
    (
        "UNIX_SKIP_OOB",
        "UNIX socket out-of-band byte skipped",
        "MSG_OOB use by the application",
    ),
    (
        "TCP_AUTH_HDR",
        "TCP-AO or MD5 header present where not expected, or both",
        "TCP authentication configuration of both ends",
    ),
    (
        "TCP_AONOTFOUND",
        "TCP-AO expected but the segment has no AO option",
        "TCP-AO keys on the peer",
    ),
    (
        "TCP_AOUNEXPECTED",
        "TCP-AO option on a connection without AO",
        "TCP-AO keys on this host",
    ),
    (
        "TCP_AOKEYNOTFOUND",
        "TCP-AO key id unknown here",
        "TCP-AO key ids of both ends",
    ),
    (
        "TCP_AOFAILURE",
        "TCP-AO signature does not verify",
        "TCP-AO keys of both ends",
    ),
    (
        "TCP_ABORT_ON_DATA",
        "data arrived on a socket closed by the application: TCP sent a reset",
        "the application closed with data in flight",
    ),
    (
        "TCP_RFC7323_PAWS_ACK",
        "TCP timestamp too old on an ACK (PAWS, RFC 7323)",
        "a stale or replayed segment",
    ),
    (
        "TCP_RFC7323_TW_PAWS",
        "TCP timestamp too old for a connection in TIME-WAIT (PAWS)",
        "port reuse by a client behind NAT",
    ),
    (
        "TCP_RFC7323_TSECR",
        "TCP echoed timestamp is invalid",
        "a middlebox rewriting TCP options",
    ),
    (
        "TCP_LISTEN_OVERFLOW",
        "listening socket's accept queue is full",
        "the application accepts too slowly: ss -ltn (Recv-Q), listen backlog",
    ),
    (
        "TCP_OLD_SEQUENCE",
        "TCP segment entirely before the receive window (old data)",
        "retransmission of data already received",
    ),
    (
        "TCP_INVALID_END_SEQUENCE",
        "TCP segment ends past the receive window",
        "a peer ignoring the advertised window",
    ),
    (
        "TCP_INVALID_ACK_SEQUENCE",
        "TCP acknowledges data never sent",
        "a middlebox or an attack",
    ),
    (
        "NEIGH_HH_FILLFAIL",
        "link-layer header could not be built from the neighbour entry",
        "ip neigh show: the next hop's entry",
    ),
    (
        "CAKE_FLOOD",
        "dropped by the CAKE qdisc (flood protection)",
        "tc -s qdisc show: cake limits",
    ),
    (
        "FQ_BAND_LIMIT",
        "fq qdisc band full",
        "tc -s qdisc show: fq band limits",
    ),
    (
        "FQ_HORIZON_LIMIT",
        "fq qdisc: timestamp beyond the horizon",
        "tc qdisc fq horizon, or the sender's SO_TXTIME",
    ),
    (
        "FQ_FLOW_LIMIT",
        "fq qdisc: per-flow limit reached",
        "tc -s qdisc show: fq flow_limit",
    ),
    (
        "NO_TX_TARGET",
        "no device to transmit to (e.g. a team or bond without active port)",
        "ip link show master: the aggregate's ports",
    ),
    (
        "CAN_RX_INVALID_FRAME",
        "invalid CAN frame received",
        "the CAN sender",
    ),
    (
        "CANFD_RX_INVALID_FRAME",
        "invalid CAN FD frame received",
        "the CAN sender",
    ),
    (
        "CANXL_RX_INVALID_FRAME",
        "invalid CAN XL frame received",
        "the CAN sender",
    ),
    (
        "PFMEMALLOC",
        "packet allocated from memory reserves for a socket not allowed to use them",
        "memory pressure: free memory, swap over network",
    ),
    (
        "DUALPI2_STEP_DROP",
        "dropped by the DualPI2 qdisc (step threshold)",
        "tc -s qdisc show: dualpi2",
    ),
    (
        "PSP_INPUT",
        "PSP (encryption) policy refused the received packet",
        "PSP configuration of the socket and device",
    ),
    (
        "PSP_OUTPUT",
        "PSP (encryption) could not be applied on output",
        "PSP configuration of the socket and device",
    ),
    (
        "RECURSION_LIMIT",
        "transmit recursion limit reached (a loop between virtual devices)",
        "tunnels or stacked devices routing into each other",
    ),
    (
        "SKB_RX_HEADROOM",
        "received buffer had too little headroom, and room could not be made",
        "look at the drop location: a device or tunnel that prepends headers on receive",
    ),
];

/// What a drop reason means and what to check. A reason of a kernel newer
/// than this table (the normal case after an upgrade) still reads: its own
/// name in words, and a hint saying where its meaning is written.
pub fn explain(reason: &str) -> (String, String) {
    match WORDS.iter().find(|(r, _, _)| *r == reason) {
        Some((_, what, fix)) => (what.to_string(), fix.to_string()),
        None => (
            reason.to_lowercase().replace('_', " "),
            format!(
                "pktpath has no description of this kernel's reason yet: see \
                 SKB_DROP_REASON_{reason} in the kernel's include/net/dropreason-core.h"
            ),
        ),
    }
}

/// The reasons (names without `SKB_DROP_REASON_`) that have no words here.
pub fn undescribed<'a>(reasons: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    reasons
        .into_iter()
        .filter(|r| !WORDS.iter().any(|(w, _, _)| w == r))
        .collect()
}

/// The drop-reason lists of the kernels we test on (host and VM), one file
/// per kernel release, made by scripts/drop-reasons.sh: (release, reasons).
#[cfg(any(test, feature = "testing"))]
pub fn tested_kernels() -> Vec<(String, Vec<String>)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/diagnosis/drop_reasons");
    let mut all: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|f| {
            let f = f.unwrap();
            let text = std::fs::read_to_string(f.path()).unwrap();
            let reasons = text
                .lines()
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string)
                .collect();
            (f.file_name().to_string_lossy().into_owned(), reasons)
        })
        .collect();
    all.sort();
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_of_the_kernels_we_test_on_is_described() {
        let kernels = tested_kernels();
        assert!(kernels.len() >= 3, "host, Debian 6.1 and 6.12: {kernels:?}");
        for (kernel, reasons) in kernels {
            assert!(
                reasons.len() > 60,
                "{kernel}: only {} reasons",
                reasons.len()
            );
            let missing = undescribed(reasons.iter().map(String::as_str));
            assert!(missing.is_empty(), "{kernel}: no words for {missing:?}");
        }
    }

    #[test]
    fn an_unknown_reason_reads_as_its_name() {
        let (what, hint) = explain("SOME_FUTURE_REASON");
        assert_eq!(what, "some future reason");
        assert!(
            hint.contains("SKB_DROP_REASON_SOME_FUTURE_REASON"),
            "{hint}"
        );
        assert_eq!(
            undescribed(["NO_SOCKET", "SOME_FUTURE_REASON"]),
            ["SOME_FUTURE_REASON"]
        );
    }
}
