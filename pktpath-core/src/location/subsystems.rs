//! Which part of the network stack a place in the kernel belongs to, from
//! where its code lives.
//!
//! The kernel's source tree is already a map of its subsystems
//! (`net/bridge/`, `net/netfilter/`, `net/sched/sch_*`), so the subsystem
//! of a step comes first from its source file (the tracepoint's, or the
//! function's with debug info), then from its module (its name, or its
//! path under `/lib/modules`), and only then from a guess on the function's
//! name. A reader sees when each subsystem comes into play
//! (`--view subsystems`).
//!
//! These names are the source tree's: they are not `Step::subsystem`, which
//! says what the step is (receive, xmit, drop) and which code compares.

/// Kernel source paths and their subsystem, matched by longest prefix: a
/// directory (`net/bridge/`), a file (`net/ipv4/icmp.c`) or the start of
/// file names (`net/ipv4/tcp` for `tcp.c`, `tcp_input.c`,
/// `tcp_ipv4.c`...). Every entry names a path of the kernel's tree (checked
/// against 6.1.192, 6.12.107 and 6.18; `drivers/net/netkit.c` is 6.7 and
/// later, `net/dccp/` was removed in 6.16).
pub const PATHS: &[(&str, &str)] = &[
    // The core: devices, the receive and transmit paths, packet buffers.
    ("net/core/", "core"),
    ("net/core/dev.c", "core"),
    ("net/core/gro.c", "gro"),
    ("net/core/gro_cells.c", "gro"),
    ("net/core/skbuff.c", "skb"),
    ("net/core/filter.c", "bpf"),
    ("net/core/lwt_bpf.c", "bpf"),
    ("net/core/xdp.c", "xdp"),
    ("net/core/sock.c", "socket"),
    ("net/core/datagram.c", "socket"),
    ("net/core/stream.c", "socket"),
    ("net/core/skmsg.c", "socket"),
    ("net/core/sock_map.c", "bpf"),
    ("net/core/neighbour.c", "neighbour"),
    ("net/core/dst.c", "routing"),
    ("net/core/fib_rules.c", "routing"),
    ("net/core/rtnetlink.c", "netlink"),
    ("net/core/flow_dissector.c", "core"),
    ("net/socket.c", "socket"),
    ("net/ethernet/", "ethernet"),
    ("net/8021q/", "vlan"),
    ("net/bridge/", "bridge"),
    ("net/bridge/netfilter/", "netfilter"),
    ("net/bridge/br_netfilter", "netfilter"),
    ("net/bridge/br_nf_core.c", "netfilter"),
    ("net/netfilter/", "netfilter"),
    ("net/sched/", "tc"),
    ("net/sched/sch_", "qdisc"),
    ("net/sched/cls_", "tc"),
    ("net/sched/act_", "tc"),
    // IPv4: the protocol, its routing, and what runs on it.
    ("net/ipv4/", "ipv4"),
    ("net/ipv4/netfilter/", "netfilter"),
    ("net/ipv4/netfilter.c", "netfilter"),
    ("net/ipv4/tcp", "tcp"),
    ("net/ipv4/bpf_tcp_ca.c", "tcp"),
    ("net/ipv4/syncookies.c", "tcp"),
    ("net/ipv4/udp", "udp"),
    ("net/ipv4/udp_tunnel", "tunnel"),
    ("net/ipv4/icmp.c", "icmp"),
    ("net/ipv4/ping.c", "icmp"),
    ("net/ipv4/raw.c", "socket"),
    ("net/ipv4/arp.c", "arp"),
    ("net/ipv4/route.c", "routing"),
    ("net/ipv4/fib", "routing"),
    ("net/ipv4/ipmr", "routing"),
    ("net/ipv4/nexthop.c", "routing"),
    ("net/ipv4/ip_tunnel", "tunnel"),
    ("net/ipv4/ipip.c", "tunnel"),
    ("net/ipv4/ip_gre.c", "tunnel"),
    ("net/ipv4/gre_", "tunnel"),
    ("net/ipv4/fou", "tunnel"),
    ("net/ipv4/ip_vti.c", "xfrm"),
    ("net/ipv4/xfrm4_", "xfrm"),
    ("net/ipv4/esp4", "xfrm"),
    ("net/ipv4/ah4.c", "xfrm"),
    ("net/ipv4/ipcomp.c", "xfrm"),
    // IPv6 likewise.
    ("net/ipv6/", "ipv6"),
    ("net/ipv6/netfilter/", "netfilter"),
    ("net/ipv6/netfilter.c", "netfilter"),
    ("net/ipv6/tcp", "tcp"),
    ("net/ipv6/syncookies.c", "tcp"),
    ("net/ipv6/udp", "udp"),
    ("net/ipv6/ip6_udp_tunnel.c", "tunnel"),
    ("net/ipv6/icmp.c", "icmpv6"),
    ("net/ipv6/ping.c", "icmpv6"),
    ("net/ipv6/raw.c", "socket"),
    ("net/ipv6/ndisc.c", "neighbour"),
    ("net/ipv6/route.c", "routing"),
    ("net/ipv6/ip6_fib.c", "routing"),
    ("net/ipv6/fib6_", "routing"),
    ("net/ipv6/ip6mr.c", "routing"),
    ("net/ipv6/seg6", "srv6"),
    ("net/ipv6/ip6_tunnel.c", "tunnel"),
    ("net/ipv6/ip6_gre.c", "tunnel"),
    ("net/ipv6/sit.c", "tunnel"),
    ("net/ipv6/fou6.c", "tunnel"),
    ("net/ipv6/ip6_vti.c", "xfrm"),
    ("net/ipv6/xfrm6_", "xfrm"),
    ("net/ipv6/esp6", "xfrm"),
    ("net/ipv6/ah6.c", "xfrm"),
    ("net/ipv6/ipcomp6.c", "xfrm"),
    // Other protocols and families.
    ("net/xfrm/", "xfrm"),
    ("net/packet/", "packet"),
    ("net/unix/", "unix"),
    ("net/openvswitch/", "ovs"),
    ("net/sctp/", "sctp"),
    ("net/mptcp/", "mptcp"),
    ("net/l2tp/", "tunnel"),
    ("net/tls/", "tls"),
    ("net/netlink/", "netlink"),
    ("net/xdp/", "xdp"),
    ("net/bpf/", "bpf"),
    ("net/dsa/", "dsa"),
    ("net/vmw_vsock/", "vsock"),
    ("net/wireless/", "wireless"),
    ("net/mac80211/", "wireless"),
    ("net/l3mdev/", "vrf"),
    ("net/mpls/", "mpls"),
    ("net/nsh/", "nsh"),
    ("net/hsr/", "hsr"),
    ("net/switchdev/", "switchdev"),
    ("net/psample/", "psample"),
    ("net/ife/", "tc"),
    ("net/key/", "xfrm"),
    ("net/kcm/", "kcm"),
    ("net/strparser/", "strparser"),
    ("net/smc/", "smc"),
    ("net/tipc/", "tipc"),
    ("net/rds/", "rds"),
    ("net/dccp/", "dccp"),
    ("net/llc/", "llc"),
    ("net/802/", "llc"),
    ("net/6lowpan/", "6lowpan"),
    ("net/ieee802154/", "ieee802154"),
    ("net/mac802154/", "ieee802154"),
    ("net/bluetooth/", "bluetooth"),
    ("net/can/", "can"),
    ("net/batman-adv/", "batman-adv"),
    ("net/nfc/", "nfc"),
    ("net/atm/", "atm"),
    ("net/ax25/", "ax25"),
    ("net/netrom/", "ax25"),
    ("net/rose/", "ax25"),
    ("net/x25/", "x25"),
    ("net/lapb/", "x25"),
    ("net/appletalk/", "appletalk"),
    ("net/phonet/", "phonet"),
    ("net/caif/", "caif"),
    ("net/iucv/", "iucv"),
    ("net/mctp/", "mctp"),
    ("net/qrtr/", "qrtr"),
    ("net/rxrpc/", "rxrpc"),
    ("net/ncsi/", "ncsi"),
    ("net/netlabel/", "netlabel"),
    ("net/dcb/", "dcb"),
    ("net/ethtool/", "ethtool"),
    ("net/devlink/", "devlink"),
    ("kernel/bpf/", "bpf"),
    // Headers: the inline functions a step (or, with debug info, an
    // inlined frame) can be in.
    ("include/linux/skbuff.h", "skb"),
    ("include/linux/netdevice.h", "core"),
    ("include/linux/netfilter", "netfilter"),
    ("include/linux/filter.h", "bpf"),
    ("include/linux/if_vlan.h", "vlan"),
    ("include/linux/virtio_net.h", "driver"),
    ("include/net/sock.h", "socket"),
    ("include/net/ip.h", "ipv4"),
    ("include/net/ipv6.h", "ipv6"),
    ("include/net/tcp.h", "tcp"),
    ("include/net/udp.h", "udp"),
    ("include/net/udplite.h", "udp"),
    ("include/net/icmp.h", "icmp"),
    ("include/net/arp.h", "arp"),
    ("include/net/neighbour.h", "neighbour"),
    ("include/net/dst", "routing"),
    ("include/net/route.h", "routing"),
    ("include/net/ip_fib.h", "routing"),
    ("include/net/ip6_route.h", "routing"),
    ("include/net/ip6_fib.h", "routing"),
    ("include/net/gro.h", "gro"),
    ("include/net/xdp.h", "xdp"),
    ("include/net/xfrm.h", "xfrm"),
    ("include/net/netfilter/", "netfilter"),
    ("include/net/sch_generic.h", "qdisc"),
    ("include/net/pkt_sched.h", "qdisc"),
    ("include/net/pkt_cls.h", "tc"),
    ("include/net/ip_tunnels.h", "tunnel"),
    ("include/net/vxlan.h", "vxlan"),
    ("include/net/netlink.h", "netlink"),
    // Devices: real NICs are `driver`, virtual ones are named.
    ("drivers/net/", "driver"),
    ("drivers/net/veth.c", "veth"),
    ("drivers/net/vxlan/", "vxlan"),
    ("drivers/net/geneve.c", "tunnel"),
    ("drivers/net/gtp.c", "tunnel"),
    ("drivers/net/bareudp.c", "tunnel"),
    ("drivers/net/tun.c", "tun"),
    ("drivers/net/tap.c", "tun"),
    ("drivers/net/macvlan.c", "macvlan"),
    ("drivers/net/macvtap.c", "macvlan"),
    ("drivers/net/ipvlan/", "ipvlan"),
    ("drivers/net/bonding/", "bond"),
    ("drivers/net/team/", "team"),
    ("drivers/net/vrf.c", "vrf"),
    ("drivers/net/loopback.c", "loopback"),
    ("drivers/net/netkit.c", "netkit"),
    ("drivers/net/wireguard/", "wireguard"),
    ("drivers/net/macsec.c", "macsec"),
];

/// Modules and their subsystem, by name: exact names, and the start of
/// names ending in `*` (`nft_*`, `sch_*`). A module's path under
/// `/lib/modules` says the same through [`PATHS`] (see [`of_module_path`]),
/// but not every reader has it, and some modules sit away from their
/// subsystem (`br_netfilter.ko` in `net/bridge/`).
pub const MODULES: &[(&str, &str)] = &[
    ("nf_*", "netfilter"),
    ("nft_*", "netfilter"),
    ("nfnetlink*", "netfilter"),
    ("xt_*", "netfilter"),
    ("x_tables", "netfilter"),
    ("ip_tables", "netfilter"),
    ("ip6_tables", "netfilter"),
    ("arp_tables", "netfilter"),
    ("ebtables", "netfilter"),
    ("iptable_*", "netfilter"),
    ("ip6table_*", "netfilter"),
    ("arptable_*", "netfilter"),
    ("ebtable_*", "netfilter"),
    ("ebt_*", "netfilter"),
    ("ipt_*", "netfilter"),
    ("ip6t_*", "netfilter"),
    ("ip_set*", "netfilter"),
    ("ip_vs*", "netfilter"),
    ("br_netfilter", "netfilter"),
    ("bridge", "bridge"),
    ("veth", "veth"),
    ("vxlan", "vxlan"),
    ("8021q", "vlan"),
    ("sch_*", "qdisc"),
    ("cls_*", "tc"),
    ("act_*", "tc"),
    ("em_*", "tc"),
    ("openvswitch", "ovs"),
    ("sctp", "sctp"),
    ("ipv6", "ipv6"),
    ("ip_tunnel", "tunnel"),
    ("ip6_tunnel", "tunnel"),
    ("ipip", "tunnel"),
    ("ip_gre", "tunnel"),
    ("ip6_gre", "tunnel"),
    ("gre", "tunnel"),
    ("sit", "tunnel"),
    ("geneve", "tunnel"),
    ("fou", "tunnel"),
    ("fou6", "tunnel"),
    ("udp_tunnel", "tunnel"),
    ("ip6_udp_tunnel", "tunnel"),
    ("l2tp_*", "tunnel"),
    ("gtp", "tunnel"),
    ("bareudp", "tunnel"),
    ("esp4", "xfrm"),
    ("esp6", "xfrm"),
    ("ah4", "xfrm"),
    ("ah6", "xfrm"),
    ("xfrm*", "xfrm"),
    ("ip_vti", "xfrm"),
    ("ip6_vti", "xfrm"),
    ("af_packet", "packet"),
    ("unix", "unix"),
    ("tun", "tun"),
    ("tap", "tun"),
    ("macvlan", "macvlan"),
    ("macvtap", "macvlan"),
    ("ipvlan", "ipvlan"),
    ("bonding", "bond"),
    ("team", "team"),
    ("vrf", "vrf"),
    ("wireguard", "wireguard"),
    ("macsec", "macsec"),
    ("tls", "tls"),
    ("dummy", "driver"),
    ("virtio_net", "driver"),
];

/// Function names and their subsystem, by longest prefix (leading
/// underscores ignored: `__netif_receive_skb` is `netif_`'s): the guess
/// when neither the file nor the module is known.
pub const FUNCTIONS: &[(&str, &str)] = &[
    ("netif_", "core"),
    ("dev_", "core"),
    ("net_rx_action", "core"),
    ("net_tx_action", "core"),
    ("process_backlog", "core"),
    ("validate_xmit", "core"),
    ("sch_direct_xmit", "qdisc"),
    ("napi_", "core"),
    ("napi_gro", "gro"),
    ("gro_", "gro"),
    ("dev_gro", "gro"),
    ("inet_gro", "gro"),
    ("ipv6_gro", "gro"),
    ("skb_", "skb"),
    ("pskb_", "skb"),
    ("alloc_skb", "skb"),
    ("build_skb", "skb"),
    ("kfree_skb", "skb"),
    ("consume_skb", "skb"),
    ("napi_consume_skb", "skb"),
    ("sk_skb_reason_drop", "skb"),
    ("ip_", "ipv4"),
    ("ipv4_", "ipv4"),
    ("inet_", "ipv4"),
    ("ip_route", "routing"),
    ("ip_mkroute", "routing"),
    ("fib_", "routing"),
    ("fib4_", "routing"),
    ("rt_", "routing"),
    ("dst_", "routing"),
    ("ip6_", "ipv6"),
    ("ipv6_", "ipv6"),
    ("inet6_", "ipv6"),
    ("ip6_route", "routing"),
    ("ip6_pol_route", "routing"),
    ("fib6_", "routing"),
    ("rt6_", "routing"),
    ("icmp_", "icmp"),
    ("ping_", "icmp"),
    ("icmpv6_", "icmpv6"),
    ("icmp6_", "icmpv6"),
    ("ndisc_", "neighbour"),
    ("neigh_", "neighbour"),
    ("arp_", "arp"),
    ("tcp", "tcp"),
    ("udp", "udp"),
    ("udp_tunnel", "tunnel"),
    ("raw_", "socket"),
    ("rawv6_", "socket"),
    ("sock_", "socket"),
    ("sk_", "socket"),
    ("nf_", "netfilter"),
    ("nft_", "netfilter"),
    ("nfqnl_", "netfilter"),
    ("ipt_", "netfilter"),
    ("ip6t_", "netfilter"),
    ("ebt_", "netfilter"),
    ("xt_", "netfilter"),
    ("br_nf_", "netfilter"),
    ("br_", "bridge"),
    ("nbp_", "bridge"),
    ("qdisc_", "qdisc"),
    ("pfifo_", "qdisc"),
    ("tcf_", "tc"),
    ("tc_", "tc"),
    ("bpf_", "bpf"),
    ("xdp_", "xdp"),
    ("veth_", "veth"),
    ("vxlan_", "vxlan"),
    ("geneve_", "tunnel"),
    ("gre_", "tunnel"),
    ("ipgre_", "tunnel"),
    ("ip_tunnel", "tunnel"),
    ("ip6_tnl", "tunnel"),
    ("ip6gre_", "tunnel"),
    ("ipip_", "tunnel"),
    ("xfrm", "xfrm"),
    ("esp_", "xfrm"),
    ("esp4_", "xfrm"),
    ("esp6_", "xfrm"),
    ("packet_", "packet"),
    ("tpacket_", "packet"),
    ("unix_", "unix"),
    ("vlan_", "vlan"),
    ("eth_", "ethernet"),
    ("ovs_", "ovs"),
    ("sctp_", "sctp"),
    ("mptcp_", "mptcp"),
    ("subflow_", "mptcp"),
    ("tun_", "tun"),
    ("macvlan_", "macvlan"),
    ("ipvlan_", "ipvlan"),
    ("bond_", "bond"),
    ("wg_", "wireguard"),
    ("vrf_", "vrf"),
    ("netlink_", "netlink"),
    ("rtnl_", "netlink"),
    ("skb_flow_dissect", "core"),
    ("skb_gso", "core"),
    ("skb_recv_datagram", "socket"),
    ("skb_try_recv", "socket"),
    ("skb_free_datagram", "socket"),
    ("skb_copy_datagram", "socket"),
    ("skb_datagram_iter", "socket"),
    ("zerocopy_", "socket"),
    ("genl_", "netlink"),
    ("devlink_", "devlink"),
    ("ethnl_", "ethtool"),
    ("ethtool_", "ethtool"),
    ("dcb", "dcb"),
    ("netlbl_", "netlabel"),
    ("rtm_", "routing"),
    ("inet_rtm_", "routing"),
    ("inet6_rtm_", "routing"),
    ("ip_mr_", "routing"),
    ("ip6_mr_", "routing"),
    ("ip6_pkt_", "routing"),
    ("mip6_", "ipv6"),
    ("skb_get_hash", "core"),
    ("rtnetlink_", "netlink"),
    ("netdev_", "core"),
    ("netpoll_", "core"),
    ("lwtunnel_", "routing"),
    ("nexthop_", "routing"),
    ("nh_", "routing"),
    ("ipmr_", "routing"),
    ("ip6mr_", "routing"),
    ("mr_", "routing"),
    ("pim_", "routing"),
    ("igmp", "ipv4"),
    ("cipso_", "ipv4"),
    ("mld_", "ipv6"),
    ("igmp6_", "ipv6"),
    ("ioam6_", "ipv6"),
    ("ila_", "ipv6"),
    ("seg6_", "srv6"),
    ("ctnetlink_", "netfilter"),
    ("nfnl_", "netfilter"),
    ("nfnetlink_", "netfilter"),
    ("synproxy_", "netfilter"),
    ("ip_vs_", "netfilter"),
    ("ip_set_", "netfilter"),
    ("arpt_", "netfilter"),
    ("ebt", "netfilter"),
    ("cls_", "tc"),
    ("u32_", "tc"),
    ("fl_", "tc"),
    ("mirred_", "tc"),
    ("sch_", "qdisc"),
    ("fq_", "qdisc"),
    ("fq_codel_", "qdisc"),
    ("fq_pie_", "qdisc"),
    ("htb_", "qdisc"),
    ("tbf_", "qdisc"),
    ("netem_", "qdisc"),
    ("cake_", "qdisc"),
    ("sfq_", "qdisc"),
    ("sfb_", "qdisc"),
    ("taprio_", "qdisc"),
    ("cbs_", "qdisc"),
    ("choke_", "qdisc"),
    ("hfsc_", "qdisc"),
    ("hhf_", "qdisc"),
    ("multiq_", "qdisc"),
    ("mqprio_", "qdisc"),
    ("ets_", "qdisc"),
    ("drr_", "qdisc"),
    ("qfq_", "qdisc"),
    ("iptunnel_", "tunnel"),
    ("l2tp_", "tunnel"),
    ("fou_", "tunnel"),
    ("gue_", "tunnel"),
    ("gue6_", "tunnel"),
    ("erspan_", "tunnel"),
    ("sit_", "tunnel"),
    ("ipip6_", "tunnel"),
    ("ip6ip6_", "tunnel"),
    ("vti_", "xfrm"),
    ("vti6_", "xfrm"),
    ("ipcomp", "xfrm"),
    ("ah_", "xfrm"),
    ("ah4_", "xfrm"),
    ("ah6_", "xfrm"),
    ("espintcp_", "xfrm"),
    ("dsa_", "dsa"),
    ("ieee80211_", "wireless"),
    ("cfg80211_", "wireless"),
    ("nl80211_", "wireless"),
    ("mpls_", "mpls"),
    ("hsr_", "hsr"),
    ("tipc_", "tipc"),
    ("smc_", "smc"),
    ("llc_", "llc"),
    ("can_", "can"),
];

/// The entry of `table` that is the longest prefix of `key`.
fn longest<'a>(table: &[(&str, &'a str)], key: &str) -> Option<&'a str> {
    table
        .iter()
        .filter(|(p, _)| key.starts_with(p))
        .max_by_key(|(p, _)| p.len())
        .map(|(_, s)| *s)
}

/// The subsystem of a kernel source file (`net/ipv4/icmp.c`: icmp). A path
/// from debug info may be absolute (the build's directory): it is read
/// from its last `net/`, `drivers/`, `include/` or `kernel/bpf/` on.
pub fn of_path(path: &str) -> Option<&'static str> {
    longest(PATHS, tree_relative(path))
}

/// `path` from the top of the kernel's tree (`/build/linux/net/ipv4/x.c`:
/// `net/ipv4/x.c`; `kernel/net/bridge/bridge.ko` under `/lib/modules`:
/// `net/bridge/bridge.ko`).
fn tree_relative(path: &str) -> &str {
    const TOPS: [&str; 4] = ["net/", "drivers/", "include/", "kernel/bpf/"];
    let path = path.trim_start_matches("./");
    if TOPS.iter().any(|t| path.starts_with(t)) {
        return path;
    }
    // Each top's last occurrence (a build directory may be called `net`),
    // the outermost of those (`drivers/net/veth.c`, not `net/veth.c`).
    TOPS.iter()
        .filter_map(|top| path.rfind(&format!("/{top}")).map(|i| &path[i + 1..]))
        .max_by_key(|rest| rest.len())
        .unwrap_or(path)
}

/// The subsystem of a module, by name (`nf_tables`: netfilter; `sch_tbf`:
/// qdisc). Module names have `_` where their file names may have `-`.
pub fn of_module(name: &str) -> Option<&'static str> {
    let name = name.replace('-', "_");
    MODULES
        .iter()
        .filter(|(p, _)| match p.strip_suffix('*') {
            Some(start) => name.starts_with(start),
            None => name == *p,
        })
        .max_by_key(|(p, _)| p.len())
        .map(|(_, s)| *s)
}

/// The subsystem of a module from its path under `/lib/modules/RELEASE`
/// (`kernel/net/netfilter/nf_tables.ko`, as `modules.dep` has it).
pub fn of_module_path(path: &str) -> Option<&'static str> {
    let file = path.rsplit('/').next()?;
    let name = file.split('.').next()?;
    of_module(name).or_else(|| of_path(path))
}

/// A guess from a function's name (`icmp_rcv`: icmp), its suffixes
/// (`.isra.0`) and offset (`+0x259`) ignored.
pub fn of_function(name: &str) -> Option<&'static str> {
    let name = super::function_ident(name).trim_start_matches('_');
    longest(FUNCTIONS, name)
}

/// The subsystem of a place: from its source file, else its module, else
/// its function's name; "other" when none says.
pub fn of_place(file: Option<&str>, module: Option<&str>, function: Option<&str>) -> &'static str {
    file.and_then(of_path)
        .or_else(|| module.and_then(of_module))
        .or_else(|| function.and_then(of_function))
        .unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_by_longest_prefix() {
        let cases = [
            ("net/ipv4/ip_input.c", "ipv4"),
            ("net/ipv4/netfilter/iptable_filter.c", "netfilter"),
            ("net/ipv4/tcp_input.c", "tcp"),
            ("net/ipv4/tcp.c", "tcp"),
            ("net/ipv4/udp.c", "udp"),
            ("net/ipv4/udp_offload.c", "udp"),
            ("net/ipv4/udp_tunnel_core.c", "tunnel"),
            ("net/ipv4/icmp.c", "icmp"),
            ("net/ipv4/route.c", "routing"),
            ("net/ipv4/fib_trie.c", "routing"),
            ("net/ipv4/ip_tunnel.c", "tunnel"),
            ("net/ipv4/ip_gre.c", "tunnel"),
            ("net/ipv4/ipip.c", "tunnel"),
            ("net/ipv6/ip6_input.c", "ipv6"),
            ("net/ipv6/route.c", "routing"),
            ("net/ipv6/tcp_ipv6.c", "tcp"),
            ("net/ipv6/netfilter/ip6_tables.c", "netfilter"),
            ("net/bridge/br_input.c", "bridge"),
            ("net/bridge/br_netfilter_hooks.c", "netfilter"),
            ("net/bridge/netfilter/ebtables.c", "netfilter"),
            ("net/netfilter/nf_tables_core.c", "netfilter"),
            ("net/sched/sch_generic.c", "qdisc"),
            ("net/sched/sch_tbf.c", "qdisc"),
            ("net/sched/cls_bpf.c", "tc"),
            ("net/sched/act_mirred.c", "tc"),
            ("net/sched/cls_api.c", "tc"),
            ("net/core/dev.c", "core"),
            ("net/core/skbuff.c", "skb"),
            ("net/core/filter.c", "bpf"),
            ("net/core/gro.c", "gro"),
            ("net/core/flow_dissector.c", "core"),
            ("net/xfrm/xfrm_input.c", "xfrm"),
            ("net/packet/af_packet.c", "packet"),
            ("net/unix/af_unix.c", "unix"),
            ("net/8021q/vlan_core.c", "vlan"),
            ("net/openvswitch/datapath.c", "ovs"),
            ("net/sctp/input.c", "sctp"),
            ("net/mptcp/protocol.c", "mptcp"),
            ("drivers/net/veth.c", "veth"),
            ("drivers/net/vxlan/vxlan_core.c", "vxlan"),
            ("drivers/net/ethernet/intel/e1000e/netdev.c", "driver"),
            ("drivers/net/virtio_net.c", "driver"),
        ];
        for (path, subsystem) in cases {
            assert_eq!(of_path(path), Some(subsystem), "{path}");
        }
        assert_eq!(of_path("fs/ext4/inode.c"), None);
        assert_eq!(of_path(""), None);
        // Where debug info says the build was.
        assert_eq!(of_path("/build/linux-6.12/net/ipv4/icmp.c"), Some("icmp"));
        assert_eq!(of_path("./net/core/dev.c"), Some("core"));
        assert_eq!(of_path("/build/linux/drivers/net/veth.c"), Some("veth"));
        assert_eq!(of_path("/usr/src/net/linux/net/ipv4/icmp.c"), Some("icmp"));
        assert_eq!(of_path("/build/linux/include/linux/skbuff.h"), Some("skb"));
        assert_eq!(
            of_path("include/net/netfilter/nf_queue.h"),
            Some("netfilter")
        );
    }

    #[test]
    fn every_known_tracepoint_source_has_a_subsystem() {
        use crate::sites;
        for s in sites::KNOWN.iter().chain([
            &sites::FIB4,
            &sites::FIB6,
            &sites::NEIGH,
            &sites::SOCK_READY,
        ]) {
            assert!(of_path(s.source).is_some(), "{} {}", s.name, s.source);
        }
    }

    /// On the functions pktpath traces on our kernels (issue 23: those that
    /// take or return a packet, in the BTF of 6.1.192, 6.12.107 and
    /// 6.18.44), with the file each is defined in: every file of the
    /// network stack has a subsystem, and the guess from the name, which
    /// stands in when the file is not known (no debug info), agrees with
    /// the file's for most (where it does not, the names mislead: route.c's
    /// `ip6_pkt_discard` is routing's, datagram.c's `skb_recv_datagram` the
    /// socket layer's).
    #[test]
    fn the_tables_on_the_functions_of_our_kernels() {
        let text = include_str!("../../tests/fixtures/skb-functions.tsv");
        let (mut agree, mut compared, mut guessed, mut rows) = (0, 0, 0, 0);
        let mut differ = Vec::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let mut cols = line.split('\t');
            let (name, file) = (cols.next().unwrap(), cols.next().unwrap());
            rows += 1;
            let guess = of_function(name);
            guessed += guess.is_some() as usize;
            if file == "-" {
                continue;
            }
            let stack = file.starts_with("net/") || file.starts_with("drivers/net/");
            // The TLS handshake upcall's netlink family: not a packet's way.
            if stack && !file.starts_with("net/handshake/") {
                assert!(of_path(file).is_some(), "{name} {file}");
            }
            if let (Some(by_file), Some(by_name)) = (of_path(file), guess) {
                compared += 1;
                match by_file == by_name {
                    true => agree += 1,
                    false => differ.push(format!("{name} ({file}): {by_name}, not {by_file}")),
                }
            }
        }
        assert!(rows > 2500, "{rows} functions");
        assert!(
            agree * 100 >= compared * 88,
            "{agree} of {compared}: {differ:#?}"
        );
        assert!(guessed * 100 >= rows * 75, "{guessed} of {rows} guessed");
    }

    #[test]
    fn modules_by_name_and_path() {
        let cases = [
            ("nf_tables", "netfilter"),
            ("nf_conntrack", "netfilter"),
            ("nft_chain_nat", "netfilter"),
            ("br_netfilter", "netfilter"),
            ("xt_MASQUERADE", "netfilter"),
            ("bridge", "bridge"),
            ("veth", "veth"),
            ("vxlan", "vxlan"),
            ("8021q", "vlan"),
            ("sch_tbf", "qdisc"),
            ("sch_fq_codel", "qdisc"),
            ("cls_bpf", "tc"),
            ("act_mirred", "tc"),
            ("openvswitch", "ovs"),
            ("ip-gre", "tunnel"),
        ];
        for (m, subsystem) in cases {
            assert_eq!(of_module(m), Some(subsystem), "{m}");
        }
        assert_eq!(of_module("snd_hda_intel"), None);
        assert_eq!(
            of_module_path("kernel/net/bridge/br_netfilter.ko.xz"),
            Some("netfilter")
        );
        assert_eq!(
            of_module_path("kernel/net/sched/sch_netem.ko"),
            Some("qdisc")
        );
        // Not in the name table: its directory says.
        assert_eq!(
            of_module_path("kernel/drivers/net/ethernet/intel/igb/igb.ko"),
            Some("driver")
        );
        assert_eq!(
            of_module_path("/lib/modules/6.12.107+deb12-amd64/kernel/net/ipv4/ip_vti.ko"),
            Some("xfrm")
        );
        assert_eq!(of_module_path(""), None);
    }

    #[test]
    fn functions_by_name() {
        let cases = [
            ("ip_rcv", "ipv4"),
            ("ip_route_input_noref", "routing"),
            ("ip6_rcv_core", "ipv6"),
            ("ip6_route_input", "routing"),
            ("tcp_v4_rcv", "tcp"),
            ("udp_queue_rcv_one_skb", "udp"),
            ("udp_tunnel_xmit_skb", "tunnel"),
            ("nf_hook_slow", "netfilter"),
            ("nft_do_chain", "netfilter"),
            ("br_handle_frame", "bridge"),
            ("br_nf_pre_routing", "netfilter"),
            ("__netif_receive_skb_core", "core"),
            ("__dev_queue_xmit", "core"),
            ("napi_gro_receive", "gro"),
            ("neigh_resolve_output", "neighbour"),
            ("fib_table_lookup", "routing"),
            ("skb_clone", "skb"),
            ("kfree_skb_reason", "skb"),
            ("icmp_rcv", "icmp"),
            ("icmp_rcv+0x259", "icmp"),
            ("ping_rcv+0xb3", "icmp"),
            ("arp_process+0x341", "arp"),
            ("veth_xmit", "veth"),
            ("ip_finish_output2.isra.0", "ipv4"),
            ("tcp_rcv_established.cold", "tcp"),
        ];
        for (f, subsystem) in cases {
            assert_eq!(of_function(f), Some(subsystem), "{f}");
        }
        assert_eq!(of_function("schedule"), None);
        assert_eq!(of_function(""), None);
    }

    #[test]
    fn the_file_comes_first() {
        // ping_rcv is ICMP's by name and by file; a file says more than a
        // module, a module more than a name.
        assert_eq!(
            of_place(
                Some("net/bridge/br_netfilter_hooks.c"),
                Some("br_netfilter"),
                Some("br_nf_pre_routing")
            ),
            "netfilter"
        );
        assert_eq!(of_place(None, Some("veth"), Some("veth_xmit")), "veth");
        assert_eq!(of_place(None, Some("bridge"), Some("nbp_x")), "bridge");
        assert_eq!(
            of_place(Some("net/ipv4/icmp.c"), None, Some("skb_x")),
            "icmp"
        );
        assert_eq!(of_place(None, None, Some("mystery")), "other");
        assert_eq!(of_place(None, None, None), "other");
    }
}
