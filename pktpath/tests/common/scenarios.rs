//! The "why it went there" scenarios (#5, item 8), shared by the host tests
//! (rules.rs, routing.rs: one scenario per sandbox) and the VM (vm.rs:
//! several in one sandbox, traced by one pktpath run). Each configures a
//! rule or a route in a `Net`, sends its packet, and checks that the
//! journey's explanation names what it configured. Ports and destinations
//! differ between scenarios so that they can share a sandbox; scenarios
//! that cannot (the reject's input policy drops everything else that
//! reaches the server, the policy rule sends all of the client's packets to
//! table 100) say so.

use serde_json::Value;

use super::{journeys_with, Net};

/// A configured rule or route, its packet and what the journey must say.
pub trait Scenario {
    /// Configures the sandbox.
    fn setup(&self, net: &Net);
    /// Sends the scenario's packets.
    fn send(&self, net: &Net);
    /// Asserts what the journeys say; returns the scenario's journeys.
    fn check<'a>(&self, net: &Net, all: &'a [Value]) -> Vec<&'a Value>;
}

/// One UDP datagram from the client to `dst:port`, from `src` if given.
pub fn udp_from(net: &Net, src: Option<&str>, dst: &str, port: u16) {
    let bind = format!("{}:0", src.unwrap_or("0.0.0.0"));
    let to = format!("{dst}:{port}");
    pktpath::netns::in_netns(&net.client, move || {
        let s = std::net::UdpSocket::bind(bind).unwrap();
        s.send_to(b"pktpath scenario", to).unwrap();
    })
    .unwrap()
    .join()
    .unwrap();
}

/// The one journey of a UDP packet to `dst`, port `port` if given.
pub fn journey_to<'a>(all: &'a [Value], dst: &str, port: Option<u16>) -> &'a Value {
    let found: Vec<&Value> = journeys_with(all, &[&format!("> {dst} UDP")])
        .into_iter()
        .filter(|j| port.is_none_or(|p| to_port(j, p)))
        .collect();
    assert_eq!(found.len(), 1, "one journey to {dst} {port:?}: {all:#?}");
    found[0]
}

/// Whether the journey's packet goes to UDP/TCP port `p`.
fn to_port(j: &Value, p: u16) -> bool {
    let packet = j["packet"].as_str().unwrap_or("");
    packet.ends_with(&format!(" > {p}")) || packet.contains(&format!(" > {p},"))
}

/// The route lookups of a journey in namespace `ns` (their details).
pub fn lookups<'a>(j: &'a Value, ns: &str) -> Vec<&'a Value> {
    j["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["detail"]["type"] == "route" && s["netns_name"] == ns)
        .map(|s| &s["detail"])
        .collect()
}

/// The last route lookup of the journey in `ns`: the one that decided.
pub fn last_lookup<'a>(j: &'a Value, ns: &str) -> &'a Value {
    lookups(j, ns)
        .pop()
        .unwrap_or_else(|| panic!("no route lookup in {ns}: {j:#}"))
}

/// (reason, explanation, hint) of a journey that must end dropped. Its
/// cause, as data, says the same as its words, and its evidence points at
/// its drop step.
pub fn dropped(j: &Value) -> (&str, &str, &str) {
    let e = &j["end"];
    assert_eq!(e["kind"], "dropped", "{j:#}");
    let (explanation, hint) = (e["explanation"].as_str().unwrap(), e["hint"].as_str());
    let cause: pktpath_core::model::Cause = serde_json::from_value(e["cause"].clone())
        .unwrap_or_else(|err| panic!("end.cause: {err}: {j:#}"));
    if e["benign"] == false {
        let (what, fix) = pktpath_core::diagnosis::words(&cause);
        assert_eq!(
            (what.as_str(), fix.as_deref()),
            (explanation, hint),
            "{j:#}"
        );
    }
    let steps = j["steps"].as_array().unwrap();
    let evidence: Vec<usize> = serde_json::from_value(e["evidence"].clone()).unwrap();
    assert!(
        evidence
            .iter()
            .any(|&i| steps[i]["detail"]["type"] == "drop"),
        "{j:#}"
    );
    (
        e["reason"].as_str().unwrap(),
        explanation,
        hint.unwrap_or(""),
    )
}

/// The kind of a dropped journey's cause, and the sites of its evidence.
pub fn cause(j: &Value) -> (&str, Vec<&str>) {
    let e = &j["end"];
    let steps = j["steps"].as_array().unwrap();
    let sites = e["evidence"]
        .as_array()
        .unwrap_or_else(|| panic!("no evidence: {j:#}"))
        .iter()
        .map(|i| {
            steps[i.as_u64().unwrap() as usize]["site"]
                .as_str()
                .unwrap()
        })
        .collect();
    (e["cause"]["kind"].as_str().unwrap_or_default(), sites)
}

/// The nftables steps of a journey, as printed, but for the end of a base
/// chain before its policy (`return`, `continue`), which 6.1 reports too.
pub fn rule_steps(j: &Value) -> Vec<String> {
    j["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["site"] == "nft_trace")
        .filter(|s| !(s["detail"]["what"] == "return" && s["detail"]["verdict"] == "continue"))
        .map(|s| {
            let d = &s["detail"];
            format!(
                "{} {} {} {} {} {} {}",
                s["netns_name"].as_str().unwrap(),
                d["family"].as_str().unwrap(),
                d["table"].as_str().unwrap(),
                d["chain"].as_str().unwrap(),
                d["what"].as_str().unwrap(),
                d["rule"].as_str().unwrap_or("-"),
                d["verdict"].as_str().unwrap()
            )
        })
        .collect()
}

/// An nftables rule in the router's forward chain drops the client's UDP
/// to port 9999.
pub struct NftDrop;

impl Scenario for NftDrop {
    fn setup(&self, net: &Net) {
        net.lab
            .nft(
                &net.router,
                &format!(
                    "table inet filter {{\n chain forward {{\n type filter hook forward priority 0; \
                     policy accept;\n ip saddr {} udp dport 9999 counter drop\n }}\n}}\n",
                    net.client_ip()
                ),
            )
            .unwrap();
    }

    fn send(&self, net: &Net) {
        net.udp(9999);
    }

    fn check<'a>(&self, net: &Net, all: &'a [Value]) -> Vec<&'a Value> {
        let j = journey_to(all, &net.server_ip(), Some(9999));
        assert_eq!(dropped(j).0, "NETFILTER_DROP", "{j:#}");
        assert_eq!(
            cause(j),
            ("nft_rule", vec!["nft_trace", "kfree_skb"]),
            "{j:#}"
        );
        let rule = format!("ip saddr {} udp dport 9999 counter drop", net.client_ip());
        let why = j["end"]["explanation"].as_str().unwrap();
        assert!(
            why.starts_with(&format!(
                "dropped by nftables rule `{rule}` (inet filter forward, handle "
            )),
            "{why}"
        );
        assert!(j["end"]["hint"]
            .as_str()
            .unwrap()
            .contains("nft delete rule inet filter forward handle"));
        // Other chains of the hook (another scenario's) may accept first.
        let rules = rule_steps(j);
        let (last, before) = rules.split_last().unwrap_or_else(|| panic!("{j:#}"));
        assert_eq!(
            last,
            &format!("{} inet filter forward rule {rule} drop", net.router),
            "{j:#}"
        );
        assert!(before.iter().all(|r| r.ends_with(" accept")), "{rules:?}");
        let step = j["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["site"] == "nft_trace" && s["detail"]["verdict"] == "drop")
            .unwrap();
        assert_eq!(step["detail"]["hook"], "forward");
        assert_eq!(step["detail"]["priority"], "filter");
        // Placed between the router's route lookup and the drop.
        super::assert_in_order(
            j,
            &[
                ("fib_table_lookup", &net.router, ""),
                ("nft_trace", &net.router, "in0"),
                ("kfree_skb", &net.router, ""),
            ],
        );
        vec![j]
    }
}

/// The server's input chain rejects UDP to port 5001, and its policy drops
/// what no rule accepts (UDP to 5002). The policy drops everything else
/// that reaches the server but ping: no other scenario of the sandbox may
/// need to reach it.
pub struct NftReject;

impl Scenario for NftReject {
    fn setup(&self, net: &Net) {
        net.lab
            .nft(
                &net.server,
                "table ip guard {\n chain input {\n type filter hook input priority 0; \
                 policy drop;\n udp dport 5001 reject\n icmp type echo-request accept\n }\n}\n",
            )
            .unwrap();
    }

    fn send(&self, net: &Net) {
        net.udp(5001);
        net.udp(5002);
    }

    fn check<'a>(&self, net: &Net, all: &'a [Value]) -> Vec<&'a Value> {
        let rejected = journey_to(all, &net.server_ip(), Some(5001));
        assert!(
            rejected["end"]["explanation"]
                .as_str()
                .unwrap()
                .starts_with(
                    "rejected by nftables rule `udp dport 5001 reject` (ip guard input, handle"
                ),
            "{rejected:#}"
        );
        assert_eq!(rejected["end"]["netns"], net.server.as_str());
        assert_eq!(cause(rejected).0, "nft_rule", "{rejected:#}");
        let policy = journey_to(all, &net.server_ip(), Some(5002));
        dropped(policy);
        assert_eq!(cause(policy).0, "nft_policy", "{policy:#}");
        assert_eq!(
            policy["end"]["explanation"],
            "dropped by the policy of nftables chain ip guard input (no rule accepted it)",
            "{policy:#}"
        );
        assert_eq!(
            rule_steps(policy),
            [format!("{} ip guard input policy - drop", net.server)]
        );
        // The reject sent an ICMP error back: it is a journey of its own.
        let errors = journeys_with(
            all,
            &[&format!("{} > {}", net.server_ip(), net.client_ip())],
        );
        assert!(
            errors
                .iter()
                .any(|j| j["packet"].as_str().unwrap().contains("ICMP")),
            "{all:#?}"
        );
        vec![rejected, policy]
    }
}

/// iptables (nft-backed) in the router: ACCEPT UDP to 7000, then DROP UDP
/// to 9998, named by its number and its `iptables -S` text.
pub struct IptablesDrop;

impl IptablesDrop {
    /// Why the scenario cannot run here, if it cannot.
    pub fn missing() -> Option<&'static str> {
        let have = std::process::Command::new("iptables-nft")
            .arg("--version")
            .output();
        (!have.is_ok_and(|o| o.status.success()))
            .then_some("iptables-nft is not installed (scripts/setup.sh installs it)")
    }
}

impl Scenario for IptablesDrop {
    fn setup(&self, net: &Net) {
        for rule in [
            "-A FORWARD -p udp --dport 7000 -j ACCEPT",
            "-A FORWARD -p udp --dport 9998 -j DROP",
        ] {
            let mut argv = vec!["iptables-nft"];
            argv.extend(rule.split(' '));
            net.lab.exec(&net.router, &argv).unwrap();
        }
    }

    fn send(&self, net: &Net) {
        net.udp(9998);
    }

    fn check<'a>(&self, net: &Net, all: &'a [Value]) -> Vec<&'a Value> {
        let j = journey_to(all, &net.server_ip(), Some(9998));
        let (_, why, hint) = dropped(j);
        assert_eq!(cause(j).0, "iptables", "{j:#}");
        assert_eq!(
            why,
            "dropped by iptables rule 2 of chain FORWARD (table filter): \
             `-A FORWARD -p udp -m udp --dport 9998 -j DROP`",
            "{j:#}"
        );
        assert!(hint.contains("iptables -t filter -D FORWARD 2"), "{hint}");
        vec![j]
    }
}

/// A port forward on the router: the client sends to the router's address,
/// port 8080; DNAT sends it on to the server's port 5353 (nobody listens).
/// The journey continues past the rewrite and shows the NAT.
pub struct DnatForward;

impl Scenario for DnatForward {
    fn setup(&self, net: &Net) {
        net.lab
            .nft(
                &net.router,
                &format!(
                    "table ip fwd_nat {{\n chain pre {{\n type nat hook prerouting priority \
                     dstnat;\n iifname \"in0\" udp dport 8080 dnat to {}:5353\n }}\n}}\n",
                    net.server_ip()
                ),
            )
            .unwrap();
    }

    fn send(&self, net: &Net) {
        udp_from(net, None, &format!("10.{}.1.1", net.n), 8080);
    }

    fn check<'a>(&self, net: &Net, all: &'a [Value]) -> Vec<&'a Value> {
        let router = format!("10.{}.1.1", net.n);
        let j = journey_to(all, &router, Some(8080));
        // Past the rewrite: it reached the server (no one listens there).
        assert_eq!(j["end"]["netns"], net.server.as_str(), "{j:#}");
        assert_eq!(j["end"]["reason"], "NO_SOCKET", "{j:#}");
        let rules = rule_steps(j);
        assert!(
            rules.contains(&format!(
                "{} ip fwd_nat pre rule iifname \"in0\" udp dport 8080 dnat to {}:5353 accept",
                net.router,
                net.server_ip()
            )),
            "{rules:#?}"
        );
        let nat = j["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|s| s["ct"]["nat"].as_str())
            .unwrap_or_else(|| panic!("no conntrack NAT in {j:#}"));
        assert!(
            nat.starts_with(&format!("dnat {router}:8080 -> {}:5353", net.server_ip())),
            "{nat}"
        );
        let rewritten = j["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["headers"].as_str())
            .any(|h| h.contains(&format!("> {} UDP", net.server_ip())) && h.contains("> 5353"));
        assert!(rewritten, "rewritten headers shown: {j:#}");
        vec![j]
    }
}

/// No route on the router for 10.N.7.7: network unreachable, table main.
pub struct NoRoute;

impl Scenario for NoRoute {
    fn setup(&self, _: &Net) {}

    fn send(&self, net: &Net) {
        udp_from(net, None, &format!("10.{}.7.7", net.n), 9999);
    }

    fn check<'a>(&self, net: &Net, all: &'a [Value]) -> Vec<&'a Value> {
        let dst = format!("10.{}.7.7", net.n);
        let j = journey_to(all, &dst, None);
        let (reason, why, hint) = dropped(j);
        assert_eq!(reason, "IP_INNOROUTES");
        assert_eq!(
            cause(j),
            ("no_route", vec!["fib_table_lookup", "kfree_skb"]),
            "{j:#}"
        );
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
        assert_eq!(
            client["route"],
            format!("default via 10.{}.1.1 dev eth0", net.n)
        );
        assert_eq!(client["kind"], "unicast");
        assert_eq!(client["prefix"], "default");
        vec![j]
    }
}

/// A blackhole route on the router for 10.N.9.0/24.
pub struct Blackhole;

impl Scenario for Blackhole {
    fn setup(&self, net: &Net) {
        net.lab
            .ip(
                &net.router,
                &format!("route add blackhole 10.{}.9.0/24", net.n),
            )
            .unwrap();
    }

    fn send(&self, net: &Net) {
        udp_from(net, None, &format!("10.{}.9.9", net.n), 9999);
    }

    fn check<'a>(&self, net: &Net, all: &'a [Value]) -> Vec<&'a Value> {
        let (n, r) = (net.n, &net.router);
        let j = journey_to(all, &format!("10.{n}.9.9"), None);
        let (_, why, hint) = dropped(j);
        assert_eq!(
            cause(j),
            ("route", vec!["fib_table_lookup", "kfree_skb"]),
            "{j:#}"
        );
        assert_eq!(
            why,
            format!("dropped: route to 10.{n}.9.0/24 is blackhole (table main) in namespace {r}")
        );
        assert_eq!(
            hint,
            format!(
                "if this traffic should pass, remove that route: ip -n {r} route del blackhole \
                 10.{n}.9.0/24"
            )
        );
        let fib = last_lookup(j, r);
        assert_eq!(fib["kind"], "blackhole");
        assert_eq!(fib["route"], format!("blackhole 10.{n}.9.0/24"));
        assert_eq!(fib["prefix"], format!("10.{n}.9.0/24"));
        assert_eq!(fib["table"], "main");
        assert_eq!(j["end"]["netns"], r.as_str());
        vec![j]
    }
}

/// A prohibit route on the router for 10.N.8.0/24, metric 30.
pub struct Prohibit;

impl Scenario for Prohibit {
    fn setup(&self, net: &Net) {
        net.lab
            .ip(
                &net.router,
                &format!("route add prohibit 10.{}.8.0/24 metric 30", net.n),
            )
            .unwrap();
    }

    fn send(&self, net: &Net) {
        udp_from(net, None, &format!("10.{}.8.8", net.n), 9999);
    }

    fn check<'a>(&self, net: &Net, all: &'a [Value]) -> Vec<&'a Value> {
        let (n, r) = (net.n, &net.router);
        let j = journey_to(all, &format!("10.{n}.8.8"), None);
        let (_, why, _) = dropped(j);
        assert_eq!(
            why,
            format!("dropped: route to 10.{n}.8.0/24 is prohibit (table main) in namespace {r}")
        );
        let fib = last_lookup(j, r);
        assert_eq!(fib["kind"], "prohibit");
        assert_eq!(fib["route"], format!("prohibit 10.{n}.8.0/24 metric 30"));
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
        vec![j]
    }
}

/// Strict rp_filter on the router's in0, and a packet from an address of
/// the server's side sent by the client.
pub struct RpFilter;

impl RpFilter {
    fn spoofed(net: &Net) -> String {
        format!("10.{}.2.99", net.n)
    }
}

impl Scenario for RpFilter {
    fn setup(&self, net: &Net) {
        net.lab
            .sysctl(&net.router, "net.ipv4.conf.in0.rp_filter", "1")
            .unwrap();
        net.lab
            .sysctl(&net.router, "net.ipv4.conf.all.rp_filter", "0")
            .unwrap();
        net.lab
            .ip(
                &net.client,
                &format!("addr add {}/32 dev eth0", Self::spoofed(net)),
            )
            .unwrap();
    }

    fn send(&self, net: &Net) {
        udp_from(net, Some(&Self::spoofed(net)), &net.server_ip(), 9999);
    }

    fn check<'a>(&self, net: &Net, all: &'a [Value]) -> Vec<&'a Value> {
        let (n, r, spoofed) = (net.n, &net.router, Self::spoofed(net));
        let j = journeys_with(all, &[&format!("{spoofed} > {} UDP", net.server_ip())]);
        assert_eq!(j.len(), 1, "{all:#?}");
        let j = j[0];
        let (reason, why, hint) = dropped(j);
        assert_eq!(reason, "IP_RPFILTER");
        assert_eq!(cause(j).0, "rp_filter", "{j:#}");
        assert_eq!(
            why,
            format!(
                "dropped by the reverse-path filter on in0 in namespace {r}: the packet from \
                 {spoofed} came in by in0, net.ipv4.conf.in0.rp_filter = 1 (strict), and the \
                 route back to {spoofed} is `10.{n}.2.0/24 dev out0 proto kernel scope link src \
                 10.{n}.2.1`, which leaves by out0, not by in0"
            )
        );
        assert!(
            hint.contains(&format!(
                "ip netns exec {r} sysctl -w net.ipv4.conf.in0.rp_filter=2"
            )),
            "{hint}"
        );
        assert_eq!(j["end"]["netns"], r.as_str());
        vec![j]
    }
}

/// Policy routing on the router: `ip rule` sends everything from the
/// client to table 100, which routes the server's subnet (metric 7); the
/// client's UDP to port 9997 goes that way. Every other packet from the
/// client in the sandbox is looked up in table 100 first too.
pub struct PolicyRouting;

impl Scenario for PolicyRouting {
    fn setup(&self, net: &Net) {
        let n = net.n;
        net.lab
            .ip(
                &net.router,
                &format!("route add 10.{n}.2.0/24 dev out0 table 100 proto static metric 7"),
            )
            .unwrap();
        net.lab
            .ip(
                &net.router,
                &format!("rule add from 10.{n}.1.2 table 100 priority 100"),
            )
            .unwrap();
    }

    fn send(&self, net: &Net) {
        net.udp(9997);
    }

    fn check<'a>(&self, net: &Net, all: &'a [Value]) -> Vec<&'a Value> {
        let n = net.n;
        let j = journey_to(all, &net.server_ip(), Some(9997));
        let router = lookups(j, &net.router);
        let fib = router
            .iter()
            .find(|d| d["table"] == "100")
            .unwrap_or_else(|| panic!("no lookup in table 100: {j:#}"));
        assert_eq!(fib["rule"], format!("100: from 10.{n}.1.2 lookup 100"));
        assert_eq!(fib["kind"], "unicast");
        assert_eq!(fib["prefix"], format!("10.{n}.2.0/24"));
        assert_eq!(fib["metric"], 7);
        assert_eq!(fib["protocol"], "static");
        let route = fib["route"].as_str().unwrap();
        assert!(
            route.starts_with(&format!("10.{n}.2.0/24 dev out0 table 100 proto static"))
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
        vec![j]
    }
}
