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
        "tc filter show dev DEV egress",
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
        "tc filter show dev DEV ingress",
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
        "queue purged (device or socket going away)",
        "a device went down",
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
];

/// What a drop reason means and what to check.
pub fn explain(reason: &str) -> (String, Option<&'static str>) {
    match WORDS.iter().find(|(r, _, _)| *r == reason) {
        Some((_, what, fix)) => (what.to_string(), Some(fix)),
        None => (reason.to_lowercase().replace('_', " "), None),
    }
}
