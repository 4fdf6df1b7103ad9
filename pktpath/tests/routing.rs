//! Routing in the user's terms (#5, item 5), on the host's real kernel:
//! each scenario configures a route, a rule or rp_filter on the router,
//! sends real traffic, and checks that the journey's route lookups and its
//! explanation name what the scenario configured.

mod common;

use common::{Net, Pktpath};
use serde_json::Value;

/// One UDP datagram from the client to `dst:port`, from `src` if given.
fn udp_from(net: &Net, src: Option<&str>, dst: &str, port: u16) {
    let bind = format!("{}:0", src.unwrap_or("0.0.0.0"));
    let to = format!("{dst}:{port}");
    pktpath::netlab::in_netns(&net.client, move || {
        let s = std::net::UdpSocket::bind(bind).unwrap();
        s.send_to(b"pktpath routing test", to).unwrap();
    })
    .unwrap()
    .join()
    .unwrap();
}

/// The one journey of a packet to `dst`.
fn journey_to<'a>(all: &'a [Value], dst: &str) -> &'a Value {
    let found = common::journeys_with(all, &[&format!("> {dst} UDP")]);
    assert_eq!(found.len(), 1, "one journey to {dst}: {all:#?}");
    found[0]
}

/// The route lookups of a journey in namespace `ns` (their details).
fn lookups<'a>(j: &'a Value, ns: &str) -> Vec<&'a Value> {
    j["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["detail"]["type"] == "route" && s["netns_name"] == ns)
        .map(|s| &s["detail"])
        .collect()
}

/// The last route lookup of the journey in `ns`: the one that decided.
fn last_lookup<'a>(j: &'a Value, ns: &str) -> &'a Value {
    lookups(j, ns)
        .pop()
        .unwrap_or_else(|| panic!("no route lookup in {ns}: {j:#}"))
}

fn end(j: &Value) -> (&str, &str, &str) {
    let e = &j["end"];
    assert_eq!(e["kind"], "dropped", "{j:#}");
    (
        e["reason"].as_str().unwrap(),
        e["explanation"].as_str().unwrap(),
        e["hint"].as_str().unwrap_or(""),
    )
}

#[test]
fn no_route_is_network_unreachable_in_table_main() {
    require_root!();
    let net = Net::new(241);
    let dst = "10.241.7.7";
    let p = Pktpath::start(&[&net.only("udp port 9999")]);
    udp_from(&net, None, dst, 9999);
    let all = p.stop();
    let j = journey_to(&all, dst);
    let (reason, why, hint) = end(j);
    assert_eq!(reason, "IP_INNOROUTES");
    assert_eq!(
        why,
        format!(
            "dropped: network unreachable: no route to {dst} in table main in namespace {}",
            net.router
        )
    );
    assert!(
        hint.contains(&format!("ip -n {} route get {dst}", net.router)),
        "{hint}"
    );
    let fib = last_lookup(j, &net.router);
    assert_eq!(fib["table"], "main");
    assert_eq!(fib["unroutable"], true);
    assert_eq!(
        fib["error"],
        format!("network unreachable: no route to {dst} in table main")
    );
    assert!(fib.get("route").is_none(), "{fib:#}");
    // The client's lookup found its default route.
    let client = last_lookup(j, &net.client);
    assert_eq!(client["route"], "default via 10.241.1.1 dev eth0");
    assert_eq!(client["kind"], "unicast");
    assert_eq!(client["prefix"], "default");
}

#[test]
fn blackhole_route_is_named() {
    require_root!();
    let net = Net::new(242);
    net.lab
        .ip(&net.router, "route add blackhole 10.242.9.0/24")
        .unwrap();
    let dst = "10.242.9.9";
    let p = Pktpath::start(&[&net.only("udp port 9999")]);
    udp_from(&net, None, dst, 9999);
    let all = p.stop();
    let j = journey_to(&all, dst);
    let (_, why, hint) = end(j);
    assert_eq!(
        why,
        format!(
            "dropped: route to 10.242.9.0/24 is blackhole (table main) in namespace {}",
            net.router
        )
    );
    assert_eq!(
        hint,
        format!(
            "if this traffic should pass, remove that route: ip -n {} route del blackhole \
             10.242.9.0/24",
            net.router
        )
    );
    let fib = last_lookup(j, &net.router);
    assert_eq!(fib["kind"], "blackhole");
    assert_eq!(fib["route"], "blackhole 10.242.9.0/24");
    assert_eq!(fib["prefix"], "10.242.9.0/24");
    assert_eq!(fib["table"], "main");
    assert_eq!(j["end"]["netns"], net.router.as_str());
}

#[test]
fn prohibit_route_is_named() {
    require_root!();
    let net = Net::new(243);
    net.lab
        .ip(&net.router, "route add prohibit 10.243.8.0/24 metric 30")
        .unwrap();
    let dst = "10.243.8.8";
    let p = Pktpath::start(&[&net.only("udp port 9999")]);
    udp_from(&net, None, dst, 9999);
    let all = p.stop();
    let j = journey_to(&all, dst);
    let (_, why, _) = end(j);
    assert_eq!(
        why,
        format!(
            "dropped: route to 10.243.8.0/24 is prohibit (table main) in namespace {}",
            net.router
        )
    );
    let fib = last_lookup(j, &net.router);
    assert_eq!(fib["kind"], "prohibit");
    assert_eq!(fib["route"], "prohibit 10.243.8.0/24 metric 30");
    assert_eq!(fib["metric"], 30);
    assert!(
        fib["error"].as_str().unwrap().contains("prohibit route"),
        "{fib:#}"
    );
    // The router told the sender: ICMP "administratively prohibited".
    assert!(
        j["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["site"] == "icmp_send"),
        "{j:#}"
    );
}

#[test]
fn rp_filter_drop_names_the_interface_and_the_sysctl() {
    require_root!();
    let net = Net::new(244);
    net.lab
        .sysctl(&net.router, "net.ipv4.conf.in0.rp_filter", "1")
        .unwrap();
    net.lab
        .sysctl(&net.router, "net.ipv4.conf.all.rp_filter", "0")
        .unwrap();
    // A source from the server's side of the router, sent by the client.
    let spoofed = "10.244.2.99";
    net.lab
        .ip(&net.client, &format!("addr add {spoofed}/32 dev eth0"))
        .unwrap();
    let p = Pktpath::start(&[&net.only("udp port 9999")]);
    udp_from(&net, Some(spoofed), &net.server_ip(), 9999);
    let all = p.stop();
    let j = journey_to(&all, &net.server_ip());
    let (reason, why, hint) = end(j);
    assert_eq!(reason, "IP_RPFILTER");
    assert_eq!(
        why,
        format!(
            "dropped by the reverse-path filter on in0 in namespace {r}: the packet from \
             {spoofed} came in by in0, net.ipv4.conf.in0.rp_filter = 1 (strict), and the route \
             back to {spoofed} is `10.244.2.0/24 dev out0 proto kernel scope link src \
             10.244.2.1`, which leaves by out0, not by in0",
            r = net.router
        )
    );
    assert!(
        hint.contains(&format!(
            "ip netns exec {} sysctl -w net.ipv4.conf.in0.rp_filter=2",
            net.router
        )),
        "{hint}"
    );
    assert_eq!(j["end"]["netns"], net.router.as_str());
}

#[test]
fn policy_routing_names_table_100_and_the_rule() {
    require_root!();
    let net = Net::new(245);
    net.lab
        .ip(
            &net.router,
            "route add 10.245.2.0/24 dev out0 table 100 proto static metric 7",
        )
        .unwrap();
    net.lab
        .ip(
            &net.router,
            "rule add from 10.245.1.2 table 100 priority 100",
        )
        .unwrap();
    let p = Pktpath::start(&[&net.only("udp port 9999")]);
    net.udp(9999);
    let all = p.stop();
    let j = journey_to(&all, &net.server_ip());
    let router = lookups(j, &net.router);
    let fib = router
        .iter()
        .find(|d| d["table"] == "100")
        .unwrap_or_else(|| panic!("no lookup in table 100: {j:#}"));
    assert_eq!(fib["rule"], "100: from 10.245.1.2 lookup 100");
    assert_eq!(fib["kind"], "unicast");
    assert_eq!(fib["prefix"], "10.245.2.0/24");
    assert_eq!(fib["metric"], 7);
    assert_eq!(fib["protocol"], "static");
    let route = fib["route"].as_str().unwrap();
    assert!(
        route.starts_with("10.245.2.0/24 dev out0 table 100 proto static")
            && route.contains("metric 7"),
        "{route}"
    );
    assert!(fib.get("error").is_none(), "{fib:#}");
    // Table 100 decided: it is the last lookup, and the packet went on
    // to the server (no socket there: dropped NO_SOCKET).
    assert_eq!(router.last().unwrap()["table"], "100");
    assert_eq!(j["end"]["netns"], net.server.as_str());
    // The main-table lookup of a packet from elsewhere names no rule.
    let server = last_lookup(j, &net.server);
    assert!(server.get("rule").is_none(), "{server:#}");
    assert_eq!(server["kind"], "local");
}
