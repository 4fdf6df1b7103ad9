//! Routing in the user's terms (#5, item 5), on the host's real kernel:
//! each scenario (tests/common/scenarios.rs) configures a route, a rule or
//! rp_filter on the router, sends real traffic, and checks that the
//! journey's route lookups and its explanation name what it configured.

mod common;

use common::scenarios::{self, Scenario};
use common::{journeys_with, Net, Pktpath};

/// Sets up `scenario` in its own sandbox, traces its UDP and checks it.
fn run_alone(n: u8, scenario: &dyn Scenario) {
    require_root!();
    let net = Net::new(n);
    scenario.setup(&net);
    let p = Pktpath::start(&[&net.only("udp")]);
    scenario.send(&net);
    let all = p.stop();
    scenario.check(&net, &all);
}

#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn no_route_is_network_unreachable_in_table_main() {
    run_alone(241, &scenarios::NoRoute);
}

#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn blackhole_route_is_named() {
    run_alone(242, &scenarios::Blackhole);
}

#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn prohibit_route_is_named() {
    run_alone(243, &scenarios::Prohibit);
}

#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn rp_filter_drop_names_the_interface_and_the_sysctl() {
    run_alone(244, &scenarios::RpFilter);
}

#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn policy_routing_names_table_100_and_the_rule() {
    run_alone(245, &scenarios::PolicyRouting);
}

/// A route lookup is tied to the packet being routed, not to whatever
/// packet was traced last on that CPU: with a flood of unselected
/// datagrams to another address of the server in between (each routed on
/// the same device, while the selected ones wait in a socket), the
/// selected journeys hold no lookup of the flood's destination.
#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn route_lookups_belong_to_their_packet() {
    require_root!();
    let net = Net::new(246);
    let flood_dst = format!("10.{}.2.3", net.n);
    net.lab
        .ip(&net.server, &format!("addr add {flood_dst}/24 dev eth0"))
        .unwrap();
    // The selected datagrams wait in a socket (no free ends their
    // journeys' last step on the CPU), the flood is dropped (no socket).
    let p = Pktpath::start(&[&net.only("udp port 7001")]);
    let server = net.server_ip();
    let rx = common::listening(&net.server, move |ready| {
        let s = std::net::UdpSocket::bind(format!("{server}:7001")).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(3)))
            .unwrap();
        ready();
        let mut buf = [0u8; 64];
        while s.recv(&mut buf).is_ok() {}
    });
    let to = format!("{flood_dst}:7002");
    let flood = pktpath::netns::in_netns(&net.client, move || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        for _ in 0..20_000 {
            let _ = s.send_to(b"unselected", &to);
        }
    })
    .unwrap();
    for _ in 0..30 {
        scenarios::udp_from(&net, None, &net.server_ip(), 7001);
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    flood.join().unwrap();
    rx.join().unwrap();
    let all = p.stop();
    let selected = common::journeys_with(&all, &[&format!("> {} UDP", net.server_ip())]);
    assert!(
        selected.len() >= 20,
        "journeys of the selected datagrams: {all:#?}"
    );
    let mut lookups = 0;
    for j in &selected {
        for s in j["steps"].as_array().unwrap() {
            if s["detail"]["type"] == "route" {
                lookups += 1;
                assert_ne!(
                    s["detail"]["dst"], flood_dst,
                    "a lookup of the flood's destination in a selected journey: {j:#}"
                );
            }
        }
    }
    assert!(
        lookups >= selected.len(),
        "the selected journeys have their lookups: {selected:#?}"
    );
}

/// A datagram sent with TTL 1 dies at the router: the journey says its
/// time to live ran out there (not "invalid IP header", the kernel's
/// counter for it) and that ICMP time exceeded went back, and that ICMP
/// error's own journey names the datagram it is about.
#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn ttl_expiry_at_the_router_is_named_with_its_icmp_error() {
    require_root!();
    let net = Net::new(248);
    let p = Pktpath::start(&[&net.only("udp port 7010 or icmp")]);
    let to = format!("{}:7010", net.server_ip());
    pktpath::netns::in_netns(&net.client, move || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        s.set_ttl(1).unwrap();
        s.send_to(b"ttl 1", to).unwrap();
    })
    .unwrap()
    .join()
    .unwrap();
    let all = p.stop();
    let j = scenarios::journey_to(&all, &net.server_ip(), Some(7010));
    let (reason, why, hint) = scenarios::dropped(j);
    assert_eq!(reason, "IP_INHDR", "{j:#}");
    assert_eq!(
        scenarios::cause(j),
        ("ttl", vec!["icmp_send", "kfree_skb"]),
        "{j:#}"
    );
    assert_eq!(j["end"]["netns"], net.router.as_str(), "{j:#}");
    assert!(
        why.contains("time to live (TTL) ran out at this router")
            && why.contains(&format!(
                "ICMP time exceeded sent back to {}",
                net.client_ip()
            )),
        "{why}"
    );
    assert!(hint.contains("traceroute"), "{hint}");
    let icmp_send = j["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["site"] == "icmp_send")
        .unwrap_or_else(|| panic!("no icmp_send step: {j:#}"));
    assert_eq!(icmp_send["netns_name"], net.router.as_str());
    let error = format!(
        "10.{}.1.1 > {} ICMP time exceeded (TTL expired in transit), for {} > {} UDP",
        net.n,
        net.client_ip(),
        net.client_ip(),
        net.server_ip()
    );
    let errors: Vec<&serde_json::Value> = all
        .iter()
        .filter(|e| e["packet"].as_str().is_some_and(|p| p.starts_with(&error)))
        .collect();
    assert!(!errors.is_empty(), "no journey of {error}...: {all:#?}");
    // Linked to the datagram's journey.
    assert!(errors.iter().all(|e| e["about"] == j["id"]), "{errors:#?}");
}

/// Five datagrams of one flow (same addresses and ports) sent with TTL 1
/// at once: each ICMP time exceeded names its own datagram's journey (the
/// error quotes the datagram's IP id), not the latest of the five.
#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn each_icmp_error_of_a_burst_names_its_own_datagram() {
    require_root!();
    let net = Net::new(170);
    let p = Pktpath::start(&[&net.only("udp port 7012 or icmp")]);
    let to = format!("{}:7012", net.server_ip());
    pktpath::netns::in_netns(&net.client, move || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        s.set_ttl(1).unwrap();
        for _ in 0..5 {
            s.send_to(b"ttl 1", &to).unwrap();
        }
    })
    .unwrap()
    .join()
    .unwrap();
    let all = p.stop();
    let sent: Vec<u64> = journeys_with(&all, &[&format!("> {} UDP", net.server_ip())])
        .iter()
        .filter(|j| !j["packet"].as_str().unwrap_or_default().contains("ICMP"))
        .map(|j| j["id"].as_u64().unwrap())
        .collect();
    assert_eq!(sent.len(), 5, "{all:#?}");
    let about: Vec<u64> = all
        .iter()
        .filter(|e| {
            e["packet"]
                .as_str()
                .is_some_and(|p| p.contains("ICMP time exceeded"))
        })
        .map(|e| {
            e["about"]
                .as_u64()
                .unwrap_or_else(|| panic!("not linked: {e:#}"))
        })
        .collect();
    // Linux rate-limits ICMP errors per destination (a burst of six).
    assert!(about.len() >= 2, "{all:#?}");
    let mut distinct = about.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        about.len(),
        "two errors name one datagram: {about:?}"
    );
    assert!(about.iter().all(|a| sent.contains(a)), "{about:?} {sent:?}");
}

/// The same in IPv6: a datagram sent with hop limit 1 dies at the router
/// (IP_INHDR in ip6_forward, in words), and the ICMPv6 time exceeded the
/// router sends back (no tracepoint fires at icmp6_send: the drop says
/// nothing of it) names the datagram and is linked to its journey.
#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn ipv6_hop_limit_expiry_is_named_and_its_icmpv6_error_linked() {
    require_root!();
    let (_lab, client, router, _server) = common::router_lab(198, common::Family::V6);
    let p = Pktpath::start(&[
        "--no-nft-trace",
        "(udp port 7012 or (icmp6 and ip6[40] == 3)) and net fd00:198::/32",
    ]);
    pktpath::netns::in_netns(&client, || {
        use std::os::fd::AsRawFd;
        let s = std::net::UdpSocket::bind("[::]:0").unwrap();
        let hops: libc::c_int = 1;
        // SAFETY: a valid socket and an int option of its size.
        let r = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::IPPROTO_IPV6,
                libc::IPV6_UNICAST_HOPS,
                (&hops as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0);
        s.send_to(b"hop limit 1", "[fd00:198:2::2]:7012").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
    })
    .unwrap()
    .join()
    .unwrap();
    let all = p.stop();
    let j = scenarios::journey_to(&all, "fd00:198:2::2", Some(7012));
    let (reason, why, _hint) = scenarios::dropped(j);
    assert_eq!(reason, "IP_INHDR", "{j:#}");
    assert_eq!(j["end"]["netns"], router.as_str(), "{j:#}");
    assert!(why.contains("hop limit ran out at this router"), "{why}");
    let error = "fd00:198:1::1 > fd00:198:1::2 ICMP6 time exceeded";
    let errors = common::journeys_with(&all, &[error]);
    assert!(!errors.is_empty(), "no journey of {error}: {all:#?}");
    for e in &errors {
        let packet = e["packet"].as_str().unwrap();
        assert!(
            packet.contains(", for fd00:198:1::2 > fd00:198:2::2 UDP"),
            "{packet}"
        );
        assert_eq!(
            e["about"], j["id"],
            "linked to the datagram's journey: {e:#}"
        );
    }
}

/// A datagram with don't-fragment set, larger than the MTU of the
/// router's way out: the drop names the device, its MTU and the size.
#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn mtu_drop_names_the_device_and_its_mtu() {
    require_root!();
    let net = Net::new(252);
    net.lab.ip(&net.router, "link set out0 mtu 1300").unwrap();
    let p = Pktpath::start(&[&net.only("udp port 7011")]);
    let to = format!("{}:7011", net.server_ip());
    pktpath::netns::in_netns(&net.client, move || {
        use std::os::fd::AsRawFd;
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        let v: libc::c_int = libc::IP_PMTUDISC_DO;
        // SAFETY: our socket, an int option of the size given.
        let rc = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "IP_MTU_DISCOVER");
        s.send_to(&[0x55; 1400], to).unwrap();
    })
    .unwrap()
    .join()
    .unwrap();
    let all = p.stop();
    let j = scenarios::journey_to(&all, &net.server_ip(), Some(7011));
    let (reason, why, hint) = scenarios::dropped(j);
    assert_eq!(reason, "PKT_TOO_BIG", "{j:#}");
    assert_eq!(scenarios::cause(j).0, "mtu", "{j:#}");
    assert!(
        why.contains("1428 bytes to leave by out0 (MTU 1300)") && why.contains(&net.router),
        "{why}"
    );
    assert!(
        hint.contains(&format!("ip -n {} link set out0 mtu 1428", net.router)),
        "{hint}"
    );
}

/// A route chosen by `ip rule fwmark`, with the mark set by an nftables
/// rule on the way in, after the packet's receive step: the lookup names
/// the rule (the lookup's own mark is used, not the packet's at its last
/// site; before, the table was named and the rule was not).
#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn fwmark_rule_is_named() {
    require_root!();
    let net = Net::new(253);
    let n = net.n;
    net.lab
        .ip(
            &net.router,
            &format!("route add 10.{n}.2.0/24 dev out0 table 100 proto static"),
        )
        .unwrap();
    net.lab
        .ip(&net.router, "rule add fwmark 0x7 table 100 priority 100")
        .unwrap();
    net.lab
        .nft(
            &net.router,
            "table inet m {\n chain pre {\n type filter hook prerouting priority mangle;\n \
             udp dport 7012 meta mark set 7\n }\n}\n",
        )
        .unwrap();
    let p = Pktpath::start(&[&net.only("udp port 7012")]);
    scenarios::udp_from(&net, None, &net.server_ip(), 7012);
    let all = p.stop();
    let j = scenarios::journey_to(&all, &net.server_ip(), Some(7012));
    let lookups = scenarios::lookups(j, &net.router);
    let fib = lookups
        .iter()
        .find(|d| d["table"] == "100")
        .unwrap_or_else(|| panic!("no lookup in table 100: {j:#}"));
    assert_eq!(
        fib["rule"], "100: from all fwmark 0x7 lookup 100",
        "{fib:#}"
    );
}

/// IPv6 next-hop resolution is a step of the packet that needed it, as
/// IPv4's is (the router's, forwarding to the server), and the sender's
/// route lookup, made before the packet reaches a tracepoint, is the
/// packet's first step. There was no neighbour step for IPv6, nor the
/// sender's own route lookup. (The sender's own resolution, whose packet
/// waits in the neighbour's queue for the answer, is not tied yet.)
#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn ipv6_next_hop_resolution_is_shown() {
    require_root!();
    let (lab, client, router, server) = common::router_lab(239, common::Family::V6);
    let p = Pktpath::start(&[
        "--no-nft-trace",
        "icmp6 and ip6[40] == 128 and net fd00:239::/32",
    ]);
    lab.exec(&client, &["ping", "-6", "-c1", "-W3", "fd00:239:2::2"])
        .unwrap();
    let all = p.stop();
    let req = common::journeys_with(&all, &["ICMP6 echo request"]);
    assert_eq!(req.len(), 1, "{all:#?}");
    let steps: Vec<(String, String, String)> = req[0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["netns_name"].as_str().unwrap_or_default().to_string(),
                s["site"].as_str().unwrap_or_default().to_string(),
                s["detail"]["addr"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let resolved = |ns: &str, addr: &str| {
        steps
            .iter()
            .any(|(n, site, a)| n == ns && site == "neigh_event_send_done" && a == addr)
    };
    assert!(resolved(&router, "fd00:239:2::2"), "{:#}", req[0]);
    let routed_at_client = steps
        .iter()
        .any(|(n, site, _)| n == &client && site == "fib6_table_lookup");
    assert!(routed_at_client, "{:#}", req[0]);
    // It waited in the router's neighbour queue (a fresh lab: about a
    // second, while the server's own solicitation is answered) and went on:
    // the journey waits for it rather than end "no end seen".
    assert_eq!(req[0]["end"]["kind"], "consumed", "{:#}", req[0]);
    assert_eq!(req[0]["end"]["netns"], server.as_str(), "{:#}", req[0]);
}
