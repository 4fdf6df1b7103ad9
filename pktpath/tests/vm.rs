//! Function-level tracing (#3), run inside a VM booting a stock Debian
//! kernel (tests/vm/run.sh boots each kernel once and runs this binary with
//! PKTPATH_VM_BACKENDS naming the backends that kernel supports). On the host
//! these tests print why they skip: its kernel refuses fentry and kprobes.
//!
//! Function names differ between kernels: the assertions use a small set
//! present in both 6.1 and 6.12, in order.

mod common;

use common::scenarios::{self, Scenario};
use common::{assert_in_order, journeys_with, Net, Pktpath};
use pktpath::netlab::Lab;
use pktpath_core::diagnosis::drop_reasons;
use serde_json::Value;

/// The backends this kernel runs, from tests/vm/run.sh.
fn backends() -> Vec<String> {
    match std::env::var("PKTPATH_VM_BACKENDS") {
        Ok(v) if !v.trim().is_empty() => v.split_whitespace().map(str::to_string).collect(),
        _ => panic!("not in the test VM (PKTPATH_VM_BACKENDS unset): run tests/vm/run.sh"),
    }
}

/// The functions the tests attach to (a curated set, so that fentry under
/// software emulation attaches in seconds), plus the release path.
const FUNCTIONS: &str = "^(ip_output|ip_finish_output2?|__dev_queue_xmit|dev_hard_start_xmit|\
veth_xmit|__netif_receive_skb_one_core|__netif_receive_skb|netif_receive_skb|br_handle_frame|br_handle_frame_finish|\
br_forward|br_pass_frame_up|br_dev_xmit|ip_rcv|ip_rcv_finish|ip_forward|ip_forward_finish|nf_hook_slow|\
ip_local_deliver|ip_local_deliver_finish|icmp_rcv|raw_local_deliver|skb_clone|raw_rcv|ping_rcv|\
consume_skb|kfree_skbmem|__kfree_skb|napi_skb_cache_put|kfree_skb_reason|sk_skb_reason_drop|\
udp_rcv|__udp4_lib_rcv|udp_queue_rcv_skb|vxlan_xmit|vxlan_rcv|udp_tunnel_xmit_skb|iptunnel_xmit|\
gro_cells_receive|ip_error|ip_route_input_noref|ip_rcv_finish_core|br_allowed_ingress|nf_send_unreach|\
nf_nat_ipv4_pre_routing|nft_do_chain_ipv4|nft_do_chain_inet|__icmp_send)$";

/// Idle timeout for journeys: software emulation is slow.
const IDLE: &str = "3";

fn start(backend: &str, filter: &str, extra: &[&str]) -> Pktpath {
    // Rule-level nftables tracing is tested on the host (tests/rules.rs)
    // and with the scenarios below; elsewhere here its nft runs would only
    // slow the emulated machine down.
    let mut args = vec!["--no-nft-trace"];
    args.extend_from_slice(extra);
    start_traced(backend, filter, &args)
}

/// Like `start`, with nftables tracing.
fn start_traced(backend: &str, filter: &str, extra: &[&str]) -> Pktpath {
    let mut args = vec![
        "--backend",
        backend,
        "--functions",
        FUNCTIONS,
        "--idle-timeout",
        IDLE,
    ];
    args.extend_from_slice(extra);
    args.push(filter);
    Pktpath::start(&args)
}

fn function_path(j: &Value) -> Vec<String> {
    j["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == "function")
        .map(|s| s["site"].as_str().unwrap().to_string())
        .collect()
}

/// client (veth) -> server, where the server's side is a bridge port and
/// the address is on the bridge; nftables prerouting and input chains in
/// the server so that nf_hook_slow runs at both hooks.
struct BridgeNet {
    lab: Lab,
    a: String,
    b: String,
}

fn bridge_net(n: u8) -> BridgeNet {
    let mut lab = Lab::new(&format!("pv{n}-")).unwrap();
    let a = lab.netns("a").unwrap();
    let b = lab.netns("b").unwrap();
    lab.veth(&a, "eth0", &b, "port0").unwrap();
    lab.ip(&b, "link add br0 type bridge").unwrap();
    lab.ip(&b, "link set port0 master br0").unwrap();
    lab.ip(&b, "link set br0 up").unwrap();
    lab.ip(&a, &format!("addr add 10.{n}.0.1/24 dev eth0"))
        .unwrap();
    lab.ip(&b, &format!("addr add 10.{n}.0.2/24 dev br0"))
        .unwrap();
    lab.nft(
        &b,
        "table inet f {\n chain pre {\n type filter hook prerouting priority 0;\n counter accept\n }\n \
         chain input {\n type filter hook input priority 0;\n counter accept\n }\n}\n",
    )
    .unwrap();
    lab.exec(&a, &["ping", "-c1", "-W5", &format!("10.{n}.0.2")])
        .unwrap();
    BridgeNet { lab, a, b }
}

#[test]
fn every_backend_sees_the_bridged_and_the_forwarded_path() {
    let backends = backends();
    let bn = bridge_net(180);
    let net = Net::new(181);
    let mut sequences = Vec::new();
    for backend in &backends {
        let p = start(
            backend,
            "icmp and (net 10.180.0.0/16 or net 10.181.0.0/16)",
            &[],
        );
        bn.lab
            .exec(&bn.a, &["ping", "-c1", "-W5", "10.180.0.2"])
            .unwrap();
        net.ping();
        let all = p.stop();

        // Across the bridge: transmit path in a, receive path in b.
        let req = journeys_with(&all, &["ICMP echo request", "10.180.0.1"]);
        assert_eq!(req.len(), 1, "{backend}: {all:#?}");
        let (a, b) = (bn.a.as_str(), bn.b.as_str());
        assert_in_order(
            req[0],
            &[
                ("ip_output", a, ""),
                ("__dev_queue_xmit", a, ""),
                ("veth_xmit", a, "eth0"),
                ("__netif_receive_skb_one_core", b, ""),
                // Takes struct sk_buff **: read through the pointer.
                ("br_handle_frame", b, "port0"),
                ("br_handle_frame_finish", b, "port0"),
                ("ip_rcv", b, "br0"),
                ("nf_hook_slow", b, ""), // PREROUTING
                ("ip_local_deliver", b, ""),
                ("nf_hook_slow", b, ""), // INPUT
                ("icmp_rcv", b, ""),
            ],
        );
        assert_eq!(req[0]["end"]["kind"], "consumed", "{backend}: {}", req[0]);
        // Netfilter hooks are named, with what the packet did after them.
        let hooks: Vec<String> = req[0]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| {
                s["site"] == "nf_hook_slow"
                    && s["netns_name"] == b
                    && s["detail"]["family"] == "ipv4"
            })
            .map(|s| {
                let d = &s["detail"];
                format!(
                    "{} {} {}",
                    d["family"].as_str().unwrap_or("?"),
                    d["hook"].as_str().unwrap_or("?"),
                    d["verdict"].as_str().unwrap_or("?")
                )
            })
            .collect();
        assert_eq!(
            hooks,
            ["ipv4 PREROUTING accept", "ipv4 INPUT accept"],
            "{backend}: {}",
            req[0]
        );
        assert_eq!(req[0]["end"]["netns"], b);

        // Forwarded: ip_forward in the router.
        let fwd = journeys_with(&all, &["ICMP echo request", &net.client_ip()]);
        assert_eq!(fwd.len(), 1, "{backend}: {all:#?}");
        assert_in_order(
            fwd[0],
            &[
                ("ip_output", &net.client, ""),
                ("ip_rcv", &net.router, "in0"),
                ("ip_forward", &net.router, ""),
                ("ip_output", &net.router, ""),
                ("br_handle_frame_finish", &net.switch, "p-router"),
                ("ip_rcv", &net.server, "eth0"),
                ("icmp_rcv", &net.server, ""),
            ],
        );
        sequences.push((backend.clone(), function_path(req[0])));
    }
    // Same packet, same functions, whatever the backend.
    for w in sequences.windows(2) {
        assert_eq!(w[0].1, w[1].1, "{} and {} differ", w[0].0, w[1].0);
    }
}

#[test]
fn clones_join_the_journey_and_it_ends_with_its_last_skb() {
    let backends = backends();
    let bn = bridge_net(182);
    for backend in &backends {
        // By a byte behind the IP header (the filter's X): the programs'
        // indexed reads load and verify on every backend, and the request,
        // turned down by those bytes at every site, is not followed.
        let p = start(
            backend,
            "icmp[icmptype] == icmp-echoreply and net 10.182.0.0/16",
            &[],
        );
        bn.lab
            .exec(&bn.a, &["ping", "-c1", "-W5", "10.182.0.2"])
            .unwrap();
        let all = p.stop();
        let request = journeys_with(&all, &["ICMP echo request"]);
        assert!(request.is_empty(), "{backend}: {request:#?}");
        // ping(8) gets the reply through a raw socket: raw_local_deliver
        // clones it; the clone is delivered, the original has no ping socket.
        let reply = journeys_with(&all, &["ICMP echo reply", "10.182.0.2"]);
        assert_eq!(
            reply.len(),
            1,
            "{backend}: one journey for both skbs: {all:#?}"
        );
        let steps = reply[0]["steps"].as_array().unwrap();
        let ret = steps
            .iter()
            .find(|s| s["site"] == "skb_clone" && s["kind"] == "return")
            .unwrap_or_else(|| panic!("{backend}: skb_clone return: {}", reply[0]));
        assert!(ret["detail"]["from"].is_string(), "{ret}");
        let skbs: std::collections::HashSet<_> = steps.iter().map(|s| s["skb"].clone()).collect();
        assert!(
            skbs.len() >= 2,
            "{backend}: original and clone in one journey"
        );
        assert_eq!(
            reply[0]["end"]["kind"], "delivered",
            "{backend}: {}",
            reply[0]["end"]
        );
    }
}

#[test]
fn start_at_a_function_begins_there() {
    let backends = backends();
    let bn = bridge_net(183);
    let p = start(
        &backends[0],
        "icmp and net 10.183.0.0/16",
        &["--start-at", "ip_rcv"],
    );
    bn.lab
        .exec(&bn.a, &["ping", "-c1", "-W5", "10.183.0.2"])
        .unwrap();
    let all = p.stop();
    assert!(!all.is_empty());
    for j in &all {
        let first = j["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s.get("correlated").is_none())
            .unwrap();
        assert_eq!(first["site"], "ip_rcv", "{j}");
    }
}

#[test]
fn all_functions_attach_with_the_first_backend() {
    let backends = backends();
    // kprobe-multi attaches every function in seconds; fentry and kprobe
    // need one attach per function, too slow under software emulation.
    let Some(b) = backends.iter().find(|b| *b == "kprobe-multi") else {
        eprintln!("SKIPPED: no kprobe-multi on this kernel");
        return;
    };
    let bn = bridge_net(184);
    let p = Pktpath::start(&[
        "--backend",
        b,
        "--idle-timeout",
        IDLE,
        "--no-nft-trace",
        "icmp and net 10.184.0.0/16",
    ]);
    let err = p.stderr();
    bn.lab
        .exec(&bn.a, &["ping", "-c1", "-W5", "10.184.0.2"])
        .unwrap();
    let all = p.stop();
    let n: usize = err
        .split("attached ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!(n > 1000, "all functions attached: {err}");
    let req = journeys_with(&all, &["ICMP echo request", "10.184.0.1"]);
    assert_eq!(req.len(), 1, "{all:#?}");
    assert!(
        function_path(req[0]).len() > 30,
        "dozens of functions per packet: {:?}",
        function_path(req[0])
    );
}

#[test]
fn vxlan_journey_spans_outer_and_inner_processing() {
    let backends = backends();
    // a and b joined by an underlay veth (10.185.0.0/24), and a VXLAN
    // overlay on top (10.186.0.0/24).
    let mut lab = Lab::new("pv185-").unwrap();
    let a = lab.netns("a").unwrap();
    let b = lab.netns("b").unwrap();
    lab.veth(&a, "under0", &b, "under0").unwrap();
    lab.ip(&a, "addr add 10.185.0.1/24 dev under0").unwrap();
    lab.ip(&b, "addr add 10.185.0.2/24 dev under0").unwrap();
    for (ns, local, remote, addr) in [
        (&a, "10.185.0.1", "10.185.0.2", "10.186.0.1/24"),
        (&b, "10.185.0.2", "10.185.0.1", "10.186.0.2/24"),
    ] {
        lab.ip(
            ns,
            &format!("link add vx0 type vxlan id 42 local {local} remote {remote} dstport 4789"),
        )
        .unwrap();
        lab.ip(ns, &format!("addr add {addr} dev vx0")).unwrap();
        lab.ip(ns, "link set vx0 up").unwrap();
    }
    lab.exec(&a, &["ping", "-c1", "-W5", "10.186.0.2"]).unwrap();
    for backend in &backends {
        let p = start(backend, "icmp and net 10.186.0.0/24", &[]);
        lab.exec(&a, &["ping", "-c1", "-W5", "10.186.0.2"]).unwrap();
        let all = p.stop();
        let req = journeys_with(&all, &["ICMP echo request", "10.186.0.1"]);
        assert_eq!(
            req.len(),
            1,
            "{backend}: one journey across the tunnel: {all:#?}"
        );
        assert_in_order(
            req[0],
            &[
                ("ip_output", &a, ""),
                ("vxlan_xmit", &a, "vx0"),
                // Encapsulated: out through the underlay device.
                ("veth_xmit", &a, "under0"),
                ("ip_rcv", &b, "under0"),
                ("udp_rcv", &b, "under0"),
                ("vxlan_rcv", &b, "under0"),
                // The inner packet goes up through GRO (ip_list_rcv).
                ("ip_local_deliver", &b, "vx0"),
                ("icmp_rcv", &b, "vx0"),
            ],
        );
        // The outer headers show while it is encapsulated.
        let outer = req[0]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["headers"].as_str())
            .any(|h| h.contains("10.185.0.1 > 10.185.0.2 UDP") && h.contains("> 4789"));
        assert!(outer, "{backend}: outer VXLAN headers seen: {}", req[0]);
        assert_eq!(
            req[0]["end"]["netns"],
            b.as_str(),
            "{backend}: {}",
            req[0]["end"]
        );
    }
}

/// GENEVE, GRE and IPIP (modules the host kernel lacks) on the tracepoint
/// backend: a ping's request is one journey from the tunnel device through
/// the underlay to the far tunnel device, and its end, as VXLAN is on the
/// host (tests/host.rs). The skb keeps its address while its headers
/// change; each ping was several journeys, the first ending "no end seen".
#[test]
fn tunnels_are_one_journey_on_the_tracepoint_backend() {
    backends();
    let mut lab = Lab::new("pv190-").unwrap();
    let tunnels = [
        ("geneve", "gn0", "type geneve id 7 remote {peer}"),
        ("gre", "gr0", "type gre local {me} remote {peer}"),
        ("ipip", "ip0", "type ipip local {me} remote {peer}"),
    ];
    let mut nets = Vec::new();
    for (n, (kind, dev, how)) in tunnels.iter().enumerate() {
        let a = lab.netns(&format!("{kind}a")).unwrap();
        let b = lab.netns(&format!("{kind}b")).unwrap();
        lab.veth(&a, "under0", &b, "under0").unwrap();
        for (ns, me, peer) in [(&a, 1, 2), (&b, 2, 1)] {
            let (me_u, peer_u) = (format!("10.190.{n}.{me}"), format!("10.190.{n}.{peer}"));
            lab.ip(ns, &format!("addr add {me_u}/24 dev under0"))
                .unwrap();
            let how = how.replace("{me}", &me_u).replace("{peer}", &peer_u);
            lab.ip(ns, &format!("link add {dev} {how}")).unwrap();
            lab.ip(ns, &format!("addr add 10.191.{n}.{me}/24 dev {dev}"))
                .unwrap();
            lab.ip(ns, &format!("link set {dev} up")).unwrap();
        }
        lab.exec(&a, &["ping", "-c1", "-W5", &format!("10.191.{n}.2")])
            .unwrap();
        nets.push((kind, dev, a, b, n));
    }
    let p = Pktpath::start(&[
        "--backend",
        "tracepoint",
        "--no-nft-trace",
        "--idle-timeout",
        IDLE,
        "icmp and net 10.191.0.0/16",
    ]);
    for (_, _, a, _, n) in &nets {
        lab.exec(a, &["ping", "-c1", "-W5", &format!("10.191.{n}.2")])
            .unwrap();
    }
    let all = p.stop();
    for (kind, dev, a, b, n) in &nets {
        let req = journeys_with(&all, &["ICMP echo request", &format!("10.191.{n}.1 >")]);
        assert_eq!(
            req.len(),
            1,
            "{kind}: one journey across the tunnel: {all:#?}"
        );
        let steps = req[0]["steps"].as_array().unwrap();
        let on = |ns: &str, d: &str, site: &str| {
            steps
                .iter()
                .any(|s| s["netns_name"] == ns && s["dev"] == d && s["site"] == site)
        };
        let dev: &str = dev;
        for (ns, d, site) in [
            (a.as_str(), dev, "net_dev_start_xmit"),
            (a.as_str(), "under0", "net_dev_start_xmit"),
            (b.as_str(), "under0", "netif_receive_skb"),
            (b.as_str(), dev, "netif_receive_skb"),
        ] {
            assert!(
                on(ns, d, site),
                "{kind}: {site} on {d} in {ns}: {:#}",
                req[0]
            );
        }
        // After an L3 tunnel's decapsulation (GRE, IPIP: no link header,
        // the MAC header reset at the network header) the free once ICMP
        // pulled its header was taken for another packet's ("no end seen").
        assert_ne!(req[0]["end"]["kind"], "unknown", "{kind}: {:#}", req[0]);
        assert_eq!(req[0]["end"]["netns"], b.as_str(), "{kind}: {:#}", req[0]);
    }
}

/// "site family hook verdict" of each netfilter hook step in `ns`
/// (nf_hook_slow, and the hook functions it runs: nft_do_chain_inet...).
fn hooks(j: &Value, ns: &str) -> Vec<String> {
    j["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["detail"]["type"] == "hook" && s["netns_name"] == ns)
        .map(|s| {
            let d = &s["detail"];
            format!(
                "{} {} {} {}",
                s["site"].as_str().unwrap(),
                d["family"].as_str().unwrap_or("?"),
                d["hook"].as_str().unwrap_or("?"),
                d["verdict"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

/// Asserts that the journey ended dropped in `ns`, in function `func`.
fn dropped_in(j: &Value, ns: &str, func: &str) {
    assert_eq!(j["end"]["netns"], ns, "{j:#}");
    let at = j["end"]["location"].as_str().unwrap_or("");
    assert!(at.starts_with(func), "dropped in {func}, not {at}: {j:#}");
}

fn has(j: &Value, site: &str, ns: &str) -> bool {
    common::path(j).iter().any(|(s, n, _)| s == site && n == ns)
}

/// The function-level steps each scenario must show, beyond what its
/// shared check (the rule, route or reason) asserts.
fn function_steps(name: &str, net: &Net, js: &[&Value]) {
    let (r, j) = (net.router.as_str(), js[0]);
    let hooks_in = |ns: &str| hooks(j, ns);
    match name {
        "nft drop" | "iptables drop" => {
            assert_in_order(
                j,
                &[
                    ("ip_rcv", r, "in0"),
                    ("ip_forward", r, ""),
                    ("nf_hook_slow", r, ""),
                    ("kfree_skb", r, ""),
                ],
            );
            let h = hooks_in(r);
            assert!(
                h.contains(&"nf_hook_slow ipv4 PREROUTING accept".into()),
                "{h:?}"
            );
            assert!(
                h.contains(&"nf_hook_slow ipv4 FORWARD drop".into()),
                "{h:?}"
            );
            // The chain that dropped it: inet filter for nft, ip filter
            // (iptables-nft) for iptables; the last hook step.
            let chain = if name == "nft drop" { "inet" } else { "ipv4" };
            assert_eq!(
                h.last().unwrap(),
                &format!("nft_do_chain_{chain} ipv4 FORWARD drop"),
                "{h:?}"
            );
            dropped_in(j, r, "nft_do_chain");
        }
        "dnat" => {
            assert_in_order(
                j,
                &[
                    ("ip_rcv", r, "in0"),
                    ("nf_nat_ipv4_pre_routing", r, "in0"),
                    ("ip_forward", r, ""),
                    ("ip_output", r, ""),
                    ("br_forward", &net.switch, "p-router"),
                    ("ip_rcv", &net.server, "eth0"),
                    ("__udp4_lib_rcv", &net.server, "eth0"),
                ],
            );
            // The rewrite shows first at or after the NAT hook function.
            let steps = j["steps"].as_array().unwrap();
            let nat = steps
                .iter()
                .position(|s| s["site"] == "nf_nat_ipv4_pre_routing")
                .unwrap();
            let to_server = format!("> {} UDP", net.server_ip());
            let first = steps
                .iter()
                .position(|s| {
                    s["headers"]
                        .as_str()
                        .is_some_and(|h| h.contains(&to_server))
                })
                .unwrap_or_else(|| panic!("no rewritten headers: {j:#}"));
            assert!(
                first >= nat,
                "rewritten at step {first}, NAT at {nat}: {j:#}"
            );
            let h = hooks_in(r);
            assert!(
                h.contains(&"nf_nat_ipv4_pre_routing ipv4 PREROUTING accept".into()),
                "{h:?}"
            );
            assert!(!h.iter().any(|h| h.ends_with("drop")), "{h:?}");
            dropped_in(j, &net.server, "__udp4_lib_rcv");
        }
        "policy routing" => {
            assert_in_order(
                j,
                &[
                    ("ip_rcv", r, "in0"),
                    ("ip_route_input_noref", r, "in0"),
                    ("fib_table_lookup", r, ""),
                    ("ip_forward", r, ""),
                    ("ip_output", r, ""),
                    ("ip_rcv", &net.server, "eth0"),
                ],
            );
            // The table 100 lookup is the input route lookup's.
            let steps = j["steps"].as_array().unwrap();
            let at = |f: &dyn Fn(&Value) -> bool| steps.iter().position(f).unwrap();
            let input = at(&|s| s["site"] == "ip_route_input_noref" && s["netns_name"] == r);
            let t100 = at(&|s| s["detail"]["table"] == "100");
            let fwd = at(&|s| s["site"] == "ip_forward");
            assert!(input < t100 && t100 < fwd, "{j:#}");
        }
        "no route" | "blackhole" | "prohibit" => {
            assert_in_order(
                j,
                &[
                    ("ip_rcv", r, "in0"),
                    ("ip_route_input_noref", r, "in0"),
                    ("fib_table_lookup", r, ""),
                    // The route's input function for every route that
                    // cannot forward: it drops, and may send ICMP.
                    ("ip_error", r, "in0"),
                    ("kfree_skb", r, ""),
                ],
            );
            assert!(!has(j, "ip_forward", r), "{j:#}");
            dropped_in(j, r, "ip_error");
            if name != "blackhole" {
                assert_in_order(j, &[("ip_error", r, ""), ("__icmp_send", r, "in0")]);
            }
        }
        "rp_filter" => {
            assert_in_order(
                j,
                &[
                    ("ip_rcv", r, "in0"),
                    ("ip_route_input_noref", r, "in0"),
                    ("kfree_skb", r, ""),
                ],
            );
            assert!(!has(j, "ip_forward", r) && !has(j, "ip_error", r), "{j:#}");
            dropped_in(j, r, "ip_rcv_finish_core");
        }
        "nft reject" => {
            let s = net.server.as_str();
            let (rejected, policy) = (js[0], js[1]);
            assert_in_order(
                rejected,
                &[
                    ("ip_local_deliver", s, "eth0"),
                    ("nf_hook_slow", s, ""),
                    ("nf_send_unreach", s, "eth0"),
                    ("__icmp_send", s, "eth0"),
                    ("kfree_skb", s, ""),
                ],
            );
            for j in [rejected, policy] {
                let h = hooks(j, s);
                assert!(h.contains(&"nf_hook_slow ipv4 INPUT drop".into()), "{h:?}");
                assert_eq!(
                    h.last().unwrap(),
                    "nft_do_chain_ipv4 ipv4 INPUT drop",
                    "{h:?}"
                );
                dropped_in(j, s, "nft_do_chain");
            }
            assert!(!has(policy, "nf_send_unreach", s), "{policy:#}");
        }
        _ => panic!("no function-level checks for {name}"),
    }
}

/// The "why it went there" scenarios of the host tests (rules.rs,
/// routing.rs), with a function backend and nftables tracing, and a bridge
/// with VLAN filtering (VM only: the host has no 802.1Q): three sandboxes,
/// one pktpath run (a start costs most of a minute under emulation). Each scenario's own checks (the rule, route
/// or reason it configured) must hold here too, and the function-level
/// steps must show where it happened.
#[test]
fn why_it_went_there_with_function_steps() {
    let backends = backends();
    // Forwarded through the router: rules, NAT, policy routing.
    let fwd = Net::new(187);
    // Dropped by routes, rp_filter, or the server's input chain.
    let drops = Net::new(188);
    let mut all_of: Vec<(&str, &Net, Box<dyn Scenario>)> = vec![
        ("nft drop", &fwd, Box::new(scenarios::NftDrop)),
        ("dnat", &fwd, Box::new(scenarios::DnatForward)),
        ("policy routing", &fwd, Box::new(scenarios::PolicyRouting)),
        ("no route", &drops, Box::new(scenarios::NoRoute)),
        ("blackhole", &drops, Box::new(scenarios::Blackhole)),
        ("prohibit", &drops, Box::new(scenarios::Prohibit)),
        ("rp_filter", &drops, Box::new(scenarios::RpFilter)),
        ("nft reject", &drops, Box::new(scenarios::NftReject)),
    ];
    match scenarios::IptablesDrop::missing() {
        Some(why) => eprintln!("SKIPPED iptables scenario: {why}"),
        None => all_of.push(("iptables drop", &fwd, Box::new(scenarios::IptablesDrop))),
    }
    for (_, net, s) in &all_of {
        s.setup(net);
    }
    let vlans = VlanBridge::new();
    let p = start_traced(
        &backends[0],
        "(udp or icmp) and (net 10.187.0.0/16 or net 10.188.0.0/16 or net 10.189.0.0/16)",
        &[],
    );
    for (_, net, s) in &all_of {
        s.send(net);
    }
    vlans.send();
    // Its summary (events lost, nft messages unmatched) helps read a failure.
    let (status, all, err) = p.stop_with(libc::SIGINT);
    eprintln!("{err}");
    assert!(status.success(), "{err}");
    for (name, net, s) in &all_of {
        let js = s.check(net, &all);
        function_steps(name, net, &js);
    }
    vlans.check(&all);
}

/// A bridge with VLAN filtering: ports pa and pb untagged in VLAN 10
/// (their PVID). A ping from a to b is forwarded in VLAN 10; one tagged
/// with VLAN 30, which pa does not allow, is dropped on the way in.
struct VlanBridge {
    lab: Lab,
    a: String,
    b: String,
    sw: String,
    b_mac: String,
}

impl VlanBridge {
    fn new() -> VlanBridge {
        let mut lab = Lab::new("pv189-").unwrap();
        let a = lab.netns("a").unwrap();
        let b = lab.netns("b").unwrap();
        let sw = lab.netns("sw").unwrap();
        lab.veth(&a, "eth0", &sw, "pa").unwrap();
        lab.veth(&b, "eth0", &sw, "pb").unwrap();
        lab.ip(&sw, "link add br0 type bridge vlan_filtering 1")
            .unwrap();
        for port in ["pa", "pb"] {
            lab.ip(&sw, &format!("link set {port} master br0")).unwrap();
            for args in [
                format!("vlan del dev {port} vid 1"),
                format!("vlan add dev {port} vid 10 pvid untagged"),
            ] {
                let mut argv = vec!["bridge"];
                argv.extend(args.split(' '));
                lab.exec(&sw, &argv).unwrap();
            }
        }
        lab.ip(&sw, "link set br0 up").unwrap();
        lab.ip(&a, "addr add 10.189.10.1/24 dev eth0").unwrap();
        lab.ip(&b, "addr add 10.189.10.2/24 dev eth0").unwrap();
        // A VLAN 30 device on a: its frames leave eth0 tagged 30.
        lab.ip(&a, "link add link eth0 name eth0.30 type vlan id 30")
            .unwrap();
        lab.ip(&a, "addr add 10.189.30.1/24 dev eth0.30").unwrap();
        lab.ip(&a, "link set eth0.30 up").unwrap();
        // No ARP crosses in VLAN 30: tell a where 10.189.30.2 would be.
        let b_link = lab.ip(&b, "-br link show eth0").unwrap();
        let b_mac = b_link.split_whitespace().nth(2).unwrap().to_string();
        lab.ip(
            &a,
            &format!("neigh replace 10.189.30.2 lladdr {b_mac} dev eth0.30"),
        )
        .unwrap();
        lab.exec(&a, &["ping", "-c1", "-W5", "10.189.10.2"])
            .unwrap();
        VlanBridge {
            lab,
            a,
            b,
            sw,
            b_mac,
        }
    }

    fn send(&self) {
        let a = &self.a;
        self.lab
            .exec(a, &["ping", "-c1", "-W5", "10.189.10.2"])
            .unwrap();
        let tagged = self.lab.exec(a, &["ping", "-c1", "-W1", "10.189.30.2"]);
        assert!(tagged.is_err(), "VLAN 30 must not cross: {tagged:?}");
    }

    fn check(&self, all: &[Value]) {
        let (a, b, sw, b_mac) = (&self.a, &self.b, &self.sw, &self.b_mac);
        let bridge_step = |j: &Value| -> Value {
            j["steps"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["site"] == "bridge")
                .cloned()
                .unwrap_or_else(|| panic!("no bridge step: {j:#}"))
        };

        // Forwarded in VLAN 10: in untagged by pa (its PVID), out by pb.
        let fwd = journeys_with(all, &["ICMP echo request", "10.189.10.1"]);
        assert_eq!(fwd.len(), 1, "{all:#?}");
        let step = bridge_step(fwd[0]);
        let d = &step["detail"];
        assert_eq!(d["vlan"], "vlan 10 (untagged, pvid of pa)", "{step:#}");
        assert_eq!(d["in_port"], "pa");
        assert_eq!(d["out_ports"], serde_json::json!(["pb"]));
        let fdb = d["fdb"].as_str().unwrap();
        assert!(
            fdb.ends_with(&format!("{b_mac} on pb (learned, vlan 10)")),
            "{fdb}"
        );
        assert_eq!(step["vlan"], 10);
        assert_in_order(
            fwd[0],
            &[
                ("veth_xmit", a, "eth0"),
                ("br_handle_frame", sw, "pa"),
                ("br_allowed_ingress", sw, "pa"),
                ("br_forward", sw, "pa"),
                ("veth_xmit", sw, "pb"),
                ("icmp_rcv", b, "eth0"),
            ],
        );
        // Inside the bridge the frame carries VLAN 10 (the PVID it was given).
        let tagged_in_bridge = fwd[0]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["site"] == "br_forward" && s["vlan"] == 10);
        assert!(tagged_in_bridge, "{:#}", fwd[0]);
        assert_eq!(fwd[0]["end"]["kind"], "consumed", "{:#}", fwd[0]);

        // Tagged 30: pa does not allow it, the bridge drops it on the way in.
        let drop = journeys_with(all, &["ICMP echo request", "10.189.30.1"]);
        assert_eq!(drop.len(), 1, "{all:#?}");
        let j = drop[0];
        let step = bridge_step(j);
        let d = &step["detail"];
        assert_eq!(
            d["vlan"], "vlan 30 (tagged): not allowed on pa, which allows 10",
            "{step:#}"
        );
        assert_eq!(d["out_ports"], serde_json::json!([]));
        assert!(d.get("fdb").is_none(), "no FDB lookup for it: {step:#}");
        let (_, why, hint) = scenarios::dropped(j);
        assert_eq!(
            why,
            format!(
            "dropped by the VLAN filter of bridge br0 in namespace {sw}: vlan 30 (tagged): not \
             allowed on pa, which allows 10"
        )
        );
        assert_eq!(
            hint,
            format!(
                "if this traffic should pass: ip netns exec {sw} bridge vlan add dev pa vid 30"
            )
        );
        dropped_in(j, sw, "br_allowed_ingress");
        assert_in_order(
            j,
            &[
                ("veth_xmit", a, "eth0"),
                ("br_handle_frame", sw, "pa"),
                ("br_allowed_ingress", sw, "pa"),
                ("kfree_skb", sw, ""),
            ],
        );
        assert!(!has(j, "br_forward", sw), "{j:#}");
        // The tag travels outside the data from a's VLAN device on.
        let on_wire = j["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["site"] == "veth_xmit" && s["vlan"] == 30);
        assert!(on_wire, "{j:#}");
    }
}

/// Every drop reason of this stock kernel has words, and the list of its
/// reasons that the unit tests check (pktpath-core/src/diagnosis/drop_reasons/) is its own.
#[test]
fn every_drop_reason_of_this_kernel_is_described() {
    backends();
    let inv = pktpath::kernel::btf::Inventory::load().unwrap();
    let reasons = inv.drop_reasons();
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let release = release.trim();
    let file = format!("pktpath-core/src/diagnosis/drop_reasons/{release}");
    let (_, listed) = drop_reasons::tested_kernels()
        .into_iter()
        .find(|(k, _)| k == release)
        .unwrap_or_else(|| panic!("no {file} (make it with scripts/drop-reasons.sh)"));
    assert_eq!(reasons, listed, "{file} is stale");
    assert_eq!(
        drop_reasons::undescribed(reasons),
        Vec::<&str>::new(),
        "reasons of this kernel without words"
    );
    let doctor = std::process::Command::new(common::BIN)
        .arg("doctor")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&doctor.stdout);
    assert!(!text.contains("without a description"), "{text}");
}

/// The loaded kernel modules, by name.
fn modules() -> Vec<String> {
    let text = std::fs::read_to_string("/proc/modules").unwrap_or_default();
    let mut names: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

/// pktpath changes nothing: a run with nftables tracing, on a machine
/// where nf_tables is a module not loaded, and `pktpath doctor` load no
/// kernel module (they once loaded nf_tables, nfnetlink and their
/// dependencies). tests/vm/run.sh runs this test first in each boot,
/// before other tests' rulesets load nf_tables.
#[test]
fn tracing_loads_no_kernel_module() {
    let backends = backends();
    let before = modules();
    if before.iter().any(|m| m == "nf_tables") {
        eprintln!(
            "SKIPPED tracing_loads_no_kernel_module: nf_tables was loaded before it ran \
             (tests/vm/run.sh runs it first in a boot)"
        );
        return;
    }
    let p = start_traced(&backends[0], "udp port 5999", &[]);
    p.stop();
    let doctor = std::process::Command::new(common::BIN)
        .arg("doctor")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&doctor.stdout);
    assert!(text.contains("nf_tables is not loaded"), "{text}");
    assert_eq!(modules(), before, "modules loaded by pktpath");
}

/// `pktpath expect` (#25) with a function backend: expectations on
/// functions (order, avoided) are checked; on the tracepoint backend the
/// same file says they cannot be (exit 1, not a silent pass).
#[test]
fn function_expectations_are_checked_where_functions_are_traced() {
    let backends = backends();
    let net = Net::new(191);
    let (r, sw, s) = (&net.router, &net.switch, &net.server);
    let file = format!(
        r#"
[[expect]]
name = "pings are forwarded by the router's ip_forward, then bridged"
packets = "icmp[icmptype] == icmp-echo and net 10.191.0.0/16"
order = [
  {{ function = "ip_rcv", netns = "{r}" }},
  {{ function = "ip_forward", netns = "{r}" }},
  {{ function = "br_handle_frame", netns = "{sw}" }},
  {{ function = "icmp_rcv", netns = "{s}" }},
]
avoids = [{{ function = "ip_local_deliver", netns = "{r}" }}]
ends = {{ consumed = "{s}" }}
"#
    );
    let dir = std::env::temp_dir().join("pktpath-vm-expect");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("forward.toml");
    std::fs::write(&path, file).unwrap();
    let cmd = format!(
        "ip netns exec {} ping -c1 -W5 {} >/dev/null",
        net.client,
        net.server_ip()
    );
    let run = |backend: &str| {
        let o = std::process::Command::new(common::BIN)
            .args(["expect", path.to_str().unwrap(), "--color", "never"])
            .args(["--backend", backend, "--functions", FUNCTIONS])
            .args(["--no-nft-trace", "--idle-timeout", IDLE, "--settle", IDLE])
            .args(["--cmd", &cmd])
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        (o.status.code(), format!("{out}\n{err}"))
    };
    let (code, said) = run(&backends[0]);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("PASS pings are forwarded by the router's ip_forward, then bridged (line 2): 1 of 1 packets showed it"), "{said}");
    let (code, said) = run("tracepoint");
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("UNCHECKED pings are forwarded")
            && said.contains("--backend asked for tracepoints only"),
        "{said}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
