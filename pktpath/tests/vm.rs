//! Function-level tracing (#3), run inside a VM booting a stock Debian
//! kernel (tests/vm/run.sh boots each kernel once and runs this binary with
//! PKTPATH_VM_BACKENDS naming the backends that kernel supports). On the host
//! these tests print why they skip: its kernel refuses fentry and kprobes.
//!
//! Function names differ between kernels: the assertions use a small set
//! present in both 6.1 and 6.12, in order.

mod common;

use common::{assert_in_order, journeys_with, Net, Pktpath};
use pktpath::netlab::Lab;
use serde_json::Value;

/// The backends this kernel runs, from tests/vm/run.sh.
fn backends() -> Option<Vec<String>> {
    match std::env::var("PKTPATH_VM_BACKENDS") {
        Ok(v) if !v.trim().is_empty() => Some(v.split_whitespace().map(str::to_string).collect()),
        _ => {
            eprintln!(
                "SKIPPED: not in the test VM (PKTPATH_VM_BACKENDS unset; see tests/vm/run.sh)"
            );
            None
        }
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
gro_cells_receive)$";

/// Idle timeout for journeys: software emulation is slow.
const IDLE: &str = "3";

fn start(backend: &str, filter: &str, extra: &[&str]) -> Pktpath {
    let mut args = vec![
        "--backend",
        backend,
        "--functions",
        FUNCTIONS,
        "--idle-timeout",
        IDLE,
        // Rule-level nftables tracing is tested on the host (tests/rules.rs);
        // here its nft runs would only slow the emulated machine down.
        "--no-nft-trace",
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
    let Some(backends) = backends() else { return };
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
    let Some(backends) = backends() else { return };
    let bn = bridge_net(182);
    for backend in &backends {
        let p = start(backend, "icmp and net 10.182.0.0/16", &[]);
        bn.lab
            .exec(&bn.a, &["ping", "-c1", "-W5", "10.182.0.2"])
            .unwrap();
        let all = p.stop();
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
    let Some(backends) = backends() else { return };
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
    let Some(backends) = backends() else { return };
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
    let Some(backends) = backends() else { return };
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
