//! Why it went there (#5), on the host's real kernel: each scenario
//! configures a rule or a route, sends real traffic, and checks that the
//! journey's explanation names what the scenario configured.

mod common;

use std::process::Command;

use common::scenarios::{self, Scenario};
use common::{Net, Pktpath};

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

/// Sets up `scenario` in its own sandbox, traces `filter` there and checks
/// the journeys; returns the pid of the pktpath run.
fn run_alone(n: u8, scenario: &dyn Scenario, filter: &str) -> (Net, i32) {
    let net = Net::new(n);
    scenario.setup(&net);
    let p = Pktpath::start(&[&net.only(filter)]);
    let pid = p.pid();
    scenario.send(&net);
    let all = p.stop();
    scenario.check(&net, &all);
    (net, pid)
}

#[test]
fn nft_drop_names_the_rule_table_chain_and_handle() {
    require_root!();
    let _serial = serial();
    let (net, pid) = run_alone(231, &scenarios::NftDrop, "udp port 9999");
    assert!(tables_of(&net, pid).is_empty());
}

#[test]
fn nft_reject_and_chain_policy_are_explained() {
    require_root!();
    let _serial = serial();
    run_alone(232, &scenarios::NftReject, "udp or icmp");
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

/// A port forward on the router: the journey continues past the rewrite,
/// and shows the NAT rule and the conntrack mapping.
#[test]
fn dnat_port_forward_is_followed_and_shown() {
    require_root!();
    let _serial = serial();
    run_alone(234, &scenarios::DnatForward, "udp");
}

/// iptables (nft-backed) DROP in FORWARD: named by its number and its
/// `iptables -S` text.
#[test]
fn iptables_drop_in_forward_is_named() {
    require_root!();
    let _serial = serial();
    if let Some(why) = scenarios::IptablesDrop::missing() {
        eprintln!("SKIPPED iptables: {why}");
        return;
    }
    run_alone(235, &scenarios::IptablesDrop, "udp port 9998");
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
