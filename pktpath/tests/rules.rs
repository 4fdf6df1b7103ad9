//! Why it went there (#5), on the host's real kernel: each scenario
//! configures a rule or a route, sends real traffic, and checks that the
//! journey's explanation names what the scenario configured.

mod common;

use std::process::Command;

use common::{Net, Pktpath};
use serde_json::Value;

/// The nftables steps of a journey, as printed.
fn rule_steps(j: &Value) -> Vec<String> {
    j["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["site"] == "nft_trace")
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

/// The tracing tables of pktpath run `pid` in the sandbox's namespaces
/// (other tests' runs add theirs there too).
fn tables_of(net: &Net, pid: i32) -> Vec<String> {
    let name = format!("pktpath_trace_{pid}");
    tables_named_pktpath(net)
        .into_iter()
        .filter(|t| t.ends_with(&name))
        .collect()
}

/// Every pktpath run sweeps the tables of dead runs in all namespaces:
/// the tests of this file run one at a time, so that none sweeps what
/// another is looking at.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn tables_named_pktpath(net: &Net) -> Vec<String> {
    [&net.client, &net.router, &net.switch, &net.server]
        .iter()
        .flat_map(|ns| {
            let out = Command::new("ip")
                .args(["netns", "exec", ns, "nft", "list", "tables"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.contains("pktpath_trace_"))
                .map(|l| format!("{ns}: {l}"))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn nft_drop_names_the_rule_table_chain_and_handle() {
    require_root!();
    let _serial = serial();
    let net = Net::new(231);
    net.lab
        .nft(
            &net.router,
            "table inet filter {\n chain forward {\n type filter hook forward priority 0; \
             policy accept;\n ip saddr 10.231.1.2 udp dport 9999 counter drop\n }\n}\n",
        )
        .unwrap();
    let p = Pktpath::start(&[&net.only("udp port 9999")]);
    let pid = p.pid();
    net.udp(9999);
    let all = p.stop();
    assert_eq!(all.len(), 1, "{all:#?}");
    let j = &all[0];
    assert_eq!(j["end"]["reason"], "NETFILTER_DROP");
    let why = j["end"]["explanation"].as_str().unwrap();
    assert!(
        why.starts_with(
            "dropped by nftables rule `ip saddr 10.231.1.2 udp dport 9999 counter drop` \
             (inet filter forward, handle "
        ),
        "{why}"
    );
    assert!(j["end"]["hint"]
        .as_str()
        .unwrap()
        .contains("nft delete rule inet filter forward handle"));
    let rules = rule_steps(j);
    assert_eq!(
        rules,
        [format!(
            "{} inet filter forward rule ip saddr 10.231.1.2 udp dport 9999 counter drop drop",
            net.router
        )],
        "{j:#}"
    );
    let step = j["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["site"] == "nft_trace")
        .unwrap();
    assert_eq!(step["detail"]["hook"], "forward");
    assert_eq!(step["detail"]["priority"], "filter");
    // Placed between the router's route lookup and the drop.
    common::assert_in_order(
        j,
        &[
            ("fib_table_lookup", &net.router, ""),
            ("nft_trace", &net.router, "in0"),
            ("kfree_skb", &net.router, ""),
        ],
    );
    assert!(tables_of(&net, pid).is_empty());
}

#[test]
fn nft_reject_and_chain_policy_are_explained() {
    require_root!();
    let _serial = serial();
    let net = Net::new(232);
    net.lab
        .nft(
            &net.server,
            "table ip guard {\n chain input {\n type filter hook input priority 0; \
             policy drop;\n udp dport 5001 reject\n icmp type echo-request accept\n }\n}\n",
        )
        .unwrap();
    let p = Pktpath::start(&[&net.only("udp or icmp")]);
    net.udp(5001);
    net.udp(5002);
    let all = p.stop();
    let to = |port: &str| {
        all.iter()
            .find(|j| {
                j["packet"]
                    .as_str()
                    .unwrap_or("")
                    .contains(&format!("> {port}"))
            })
            .unwrap_or_else(|| panic!("no journey to port {port}: {all:#?}"))
    };
    let rejected = to("5001");
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
    let policy = to("5002");
    assert_eq!(
        policy["end"]["explanation"],
        "dropped by the policy of nftables chain ip guard input (no rule accepted it)"
    );
    assert_eq!(
        rule_steps(policy),
        [format!("{} ip guard input policy - drop", net.server)]
    );
    // The reject sent an ICMP error back: it is a journey of its own.
    assert!(
        all.iter()
            .any(|j| j["packet"].as_str().unwrap_or("").contains("ICMP")),
        "{all:#?}"
    );
}

/// The tracing tables go away on SIGINT and SIGTERM; after SIGKILL they
/// stay, and the next start removes them. Only namespaces with a ruleset
/// get them.
#[test]
fn tracing_tables_are_removed_on_every_exit() {
    require_root!();
    let _serial = serial();
    let net = Net::new(233);
    for ns in [&net.router, &net.switch] {
        net.lab
            .nft(
                ns,
                "table inet user {\n chain c { type filter hook input priority 0; }\n}\n",
            )
            .unwrap();
    }
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGKILL] {
        let p = Pktpath::start(&[&net.only("udp port 5233")]);
        let pid = p.pid();
        // Other tests' runs add theirs here too: count this run's.
        let own = tables_of(&net, pid);
        assert_eq!(
            own.len(),
            2 * 2,
            "inet and bridge tables in the 2 namespaces with a ruleset: {own:?}"
        );
        assert!(
            own.iter()
                .all(|t| t.starts_with(&net.router) || t.starts_with(&net.switch)),
            "{own:?}"
        );
        let (status, _, _) = p.stop_with(signal);
        if signal == libc::SIGKILL {
            let left = tables_of(&net, pid);
            assert_eq!(
                left.len(),
                2 * 2,
                "a SIGKILLed run cannot clean up: {left:?}"
            );
            // The next run sweeps them away, and its own go at exit.
            let next = Pktpath::start(&[&net.only("udp port 5233")]);
            let now = tables_of(&net, pid);
            assert!(now.is_empty(), "{now:?}");
            next.stop();
        } else {
            assert!(status.success());
        }
        assert!(tables_of(&net, pid).is_empty(), "after signal {signal}");
    }
}

/// A port forward on the router: the client sends to the router's address,
/// DNAT sends it on to the server; the journey continues past the rewrite,
/// and shows the NAT rule and the conntrack mapping.
#[test]
fn dnat_port_forward_is_followed_and_shown() {
    require_root!();
    let _serial = serial();
    let net = Net::new(234);
    net.lab
        .nft(
            &net.router,
            "table ip fwd_nat {\n chain pre {\n type nat hook prerouting priority dstnat;\n \
             iifname \"in0\" udp dport 8080 dnat to 10.234.2.2:5353\n }\n}\n",
        )
        .unwrap();
    let p = Pktpath::start(&[&net.only("udp")]);
    pktpath::netlab::in_netns(&net.client, || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        s.send_to(b"forward me", "10.234.1.1:8080").unwrap();
    })
    .unwrap()
    .join()
    .unwrap();
    let all = p.stop();
    let j = all
        .iter()
        .find(|j| j["packet"].as_str().unwrap_or("").contains("> 8080"))
        .unwrap_or_else(|| panic!("{all:#?}"));
    // Past the rewrite: it reached the server (no one listens there).
    assert_eq!(j["end"]["netns"], net.server.as_str(), "{j:#}");
    assert_eq!(j["end"]["reason"], "NO_SOCKET");
    let rules = rule_steps(j);
    assert!(
        rules.contains(&format!(
            "{} ip fwd_nat pre rule iifname \"in0\" udp dport 8080 dnat to 10.234.2.2:5353 accept",
            net.router
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
        nat.starts_with("dnat 10.234.1.1:8080 -> 10.234.2.2:5353"),
        "{nat}"
    );
    let headers: Vec<&str> = j["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["headers"].as_str())
        .collect();
    assert!(
        headers
            .iter()
            .any(|h| h.contains("> 10.234.2.2 UDP") && h.contains("> 5353")),
        "{headers:?}"
    );
}

/// iptables (nft-backed) DROP in FORWARD: named by its number and its
/// `iptables -S` text.
#[test]
fn iptables_drop_in_forward_is_named() {
    require_root!();
    let _serial = serial();
    let have = Command::new("iptables-nft").arg("--version").output();
    if !have.is_ok_and(|o| o.status.success()) {
        eprintln!("SKIPPED iptables: iptables-nft is not installed (scripts/setup.sh installs it)");
        return;
    }
    let net = Net::new(235);
    for rule in [
        "-A FORWARD -p udp --dport 7000 -j ACCEPT",
        "-A FORWARD -p udp --dport 9999 -j DROP",
    ] {
        let mut args = vec!["netns", "exec", &net.router, "iptables-nft"];
        args.extend(rule.split(' '));
        assert!(Command::new("ip").args(&args).status().unwrap().success());
    }
    let p = Pktpath::start(&[&net.only("udp port 9999")]);
    net.udp(9999);
    let all = p.stop();
    assert_eq!(all.len(), 1, "{all:#?}");
    let why = all[0]["end"]["explanation"].as_str().unwrap();
    assert_eq!(
        why,
        "dropped by iptables rule 2 of chain FORWARD (table filter): \
         `-A FORWARD -p udp -m udp --dport 9999 -j DROP`"
    );
    assert!(all[0]["end"]["hint"]
        .as_str()
        .unwrap()
        .contains("iptables -t filter -D FORWARD 2"));
}

/// The bridge step: in by one port, out by another, and what the FDB said:
/// a learned entry for the server's MAC, none for a MAC nobody has (flood).
#[test]
fn bridge_ports_and_fdb_hit_or_flood() {
    require_root!();
    let _serial = serial();
    let net = Net::new(236);
    net.lab
        .ip(
            &net.router,
            "neigh replace 10.236.2.77 lladdr 02:00:00:00:02:77 dev out0",
        )
        .unwrap();
    let p = Pktpath::start(&[&net.only("icmp")]);
    net.ping();
    net.lab
        .exec(&net.client, &["ping", "-c1", "-W1", "10.236.2.77"])
        .ok();
    let all = p.stop();
    let bridge_of = |words: &[&str]| -> String {
        let j = common::journeys_with(&all, words);
        let j = j.first().unwrap_or_else(|| panic!("{words:?}: {all:#?}"));
        j["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["site"] == "bridge")
            .map(|s| {
                let d = &s["detail"];
                format!(
                    "{} in {} out {} fdb {}",
                    d["bridge"].as_str().unwrap(),
                    d["in_port"].as_str().unwrap(),
                    d["out_ports"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|p| p.as_str().unwrap())
                        .collect::<Vec<_>>()
                        .join(","),
                    d["fdb"].as_str().unwrap_or("-")
                )
            })
            .unwrap_or_else(|| panic!("no bridge step: {j:#}"))
    };
    let hit = bridge_of(&["ICMP echo request", "10.236.2.2"]);
    assert!(
        hit.starts_with("br0 in p-router out p-server fdb ")
            && hit.ends_with("on p-server (learned)"),
        "{hit}"
    );
    let flood = bridge_of(&["ICMP echo request", "10.236.2.77"]);
    assert!(
        flood.starts_with("br0 in p-router")
            && flood.ends_with("no entry for 02:00:00:00:02:77: flooded"),
        "{flood}"
    );
}

/// A VLAN sub-interface on veth: the tag travels outside the packet data
/// (skb->vlan_tci), and the steps on the veth show it.
#[test]
fn vlan_tags_held_outside_the_data_are_shown() {
    require_root!();
    let _serial = serial();
    let net = Net::new(237);
    if let Err(e) = net.lab.ip(
        &net.client,
        "link add link eth0 name eth0.100 type vlan id 100",
    ) {
        eprintln!("SKIPPED vlan: this kernel has no 802.1Q devices ({e})");
        return;
    }
    net.lab
        .ip(&net.client, "addr add 10.237.100.2/24 dev eth0.100")
        .unwrap();
    net.lab.ip(&net.client, "link set eth0.100 up").unwrap();
    net.lab
        .ip(
            &net.router,
            "link add link in0 name in0.100 type vlan id 100",
        )
        .unwrap();
    net.lab
        .ip(&net.router, "addr add 10.237.100.1/24 dev in0.100")
        .unwrap();
    net.lab.ip(&net.router, "link set in0.100 up").unwrap();
    let p = Pktpath::start(&[&net.only("icmp")]);
    net.lab
        .exec(&net.client, &["ping", "-c1", "-W2", "10.237.100.1"])
        .unwrap();
    let all = p.stop();
    let req = common::journeys_with(&all, &["ICMP echo request", "10.237.100.1"]);
    assert!(!req.is_empty(), "{all:#?}");
    let tagged: Vec<String> = req[0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["vlan"] == 100)
        .map(|s| {
            format!(
                "{} {}",
                s["site"].as_str().unwrap(),
                s["dev"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert!(
        tagged.iter().any(|t| t.ends_with(" eth0")),
        "the tag on the client's veth: {tagged:?} in {:#}",
        req[0]
    );
}

/// With --steps, rule verdicts are streamed too, as they join the journey.
#[test]
fn streamed_steps_include_rule_verdicts() {
    require_root!();
    let _serial = serial();
    let net = Net::new(238);
    net.lab
        .nft(
            &net.router,
            "table inet filter {\n chain forward {\n type filter hook forward priority 0; \
             policy accept;\n udp dport 9999 counter drop\n }\n}\n",
        )
        .unwrap();
    let p = Pktpath::start(&["--steps", &net.only("udp port 9999")]);
    net.udp(9999);
    let lines = p.stop();
    let journey = lines
        .iter()
        .find(|l| l["end"]["reason"] == "NETFILTER_DROP")
        .unwrap_or_else(|| panic!("{lines:#?}"));
    let streamed: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["journey"] == journey["id"] && l["step"]["site"] == "nft_trace")
        .collect();
    assert_eq!(streamed.len(), 1, "{lines:#?}");
    assert_eq!(streamed[0]["step"]["detail"]["verdict"], "drop");
}
