//! Root tests on the host's real kernel with the tracepoint backend (#2):
//! sandbox namespaces, veth, a bridge, routes and nftables rules; real
//! traffic; the real pktpath binary; assertions on the journeys it prints.

mod common;

use std::process::Command;

use common::{assert_in_order, journeys_with, Net, Pktpath, BIN};
use serde_json::Value;

fn end(j: &Value) -> (&str, &str) {
    (
        j["end"]["kind"].as_str().unwrap_or(""),
        j["end"]["netns"].as_str().unwrap_or(""),
    )
}

#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn routed_and_bridged_ping_path() {
    require_root!();
    let net = Net::new(201);
    let p = Pktpath::start(&[&format!("icmp and host {}", net.client_ip())]);
    net.ping();
    let all = p.stop();
    let req = journeys_with(&all, &["ICMP echo request", &net.client_ip()]);
    assert_eq!(req.len(), 1, "one echo request journey: {all:#?}");
    let (c, r, sw, s) = (&net.client, &net.router, &net.switch, &net.server);
    assert_in_order(
        req[0],
        &[
            ("net_dev_start_xmit", c, "eth0"),
            ("netif_receive_skb", r, "in0"),
            ("fib_table_lookup", r, ""),
            ("net_dev_start_xmit", r, "out0"),
            ("netif_receive_skb", sw, "p-router"),
            ("net_dev_start_xmit", sw, "p-server"),
            ("netif_receive_skb", s, "eth0"),
            ("consume_skb", s, ""),
        ],
    );
    assert_eq!(end(req[0]), ("consumed", s.as_str()));
    // The route the router chose is shown.
    let fib = req[0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["site"] == "fib_table_lookup" && s["netns_name"] == *r)
        .unwrap();
    assert_eq!(fib["detail"]["dst"], net.server_ip());
    assert_eq!(fib["detail"]["out_dev"], "out0");

    // The reply comes back to the client and ends there.
    let reply = journeys_with(&all, &["ICMP echo reply", &net.server_ip()]);
    assert!(!reply.is_empty(), "{all:#?}");
    assert!(reply
        .iter()
        .all(|j| j["end"]["netns"] == *c || j["end"]["kind"] == "delivered"));
    assert_in_order(
        reply[0],
        &[
            ("net_dev_start_xmit", s, "eth0"),
            ("netif_receive_skb", c, "eth0"),
        ],
    );
}

/// net_dev_queue, netif_rx and net_dev_xmit are left out by default (each fires right
/// before or after another tracepoint for the same skb) and come back with
/// --all-tracepoints.
#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn adjacent_tracepoints_come_with_all_tracepoints() {
    require_root!();
    let net = Net::new(219);
    let expr = format!("icmp and host {}", net.client_ip());
    let sites_of = |extra: &[&str]| {
        let mut args = extra.to_vec();
        args.push(&expr);
        let p = Pktpath::start(&args);
        net.ping();
        let all = p.stop();
        let req = journeys_with(&all, &["ICMP echo request", &net.client_ip()]);
        assert_eq!(req.len(), 1, "one echo request journey: {all:#?}");
        let sites: Vec<String> = req[0]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["site"].as_str().unwrap_or("").to_string())
            .collect();
        (req[0].clone(), sites)
    };
    let (_, default) = sites_of(&[]);
    for left_out in [
        "net_dev_queue",
        "netif_rx",
        "netif_rx_entry",
        "net_dev_xmit",
    ] {
        assert!(
            !default.iter().any(|s| s == left_out),
            "{left_out}: {default:?}"
        );
    }
    let (j, all) = sites_of(&["--all-tracepoints"]);
    let (c, r) = (&net.client, &net.router);
    assert_in_order(
        &j,
        &[
            ("net_dev_queue", c, "eth0"),
            ("net_dev_start_xmit", c, "eth0"),
            ("netif_rx", r, "in0"),
            ("net_dev_xmit", c, "eth0"),
            ("netif_receive_skb", r, "in0"),
        ],
    );
    assert!(all.len() > default.len(), "{default:?} vs {all:?}");
}

/// A packet sent from a device with a qdisc starts its journey when the
/// qdisc takes it (net_dev_queue, just before, is left out by default), and
/// the queue's steps name the qdisc.
#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn a_packet_sent_through_a_qdisc_starts_at_its_enqueue() {
    require_root!();
    let net = Net::new(225);
    // tbf never bypasses its queue (an empty pfifo_fast would).
    net.lab
        .exec(
            &net.client,
            &[
                "tc", "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", "1gbit", "burst",
                "64kb", "latency", "50ms",
            ],
        )
        .expect("tc qdisc replace ... tbf");
    let p = Pktpath::start(&[&format!("icmp and host {}", net.client_ip())]);
    net.ping();
    let all = p.stop();
    let req = journeys_with(&all, &["ICMP echo request", &net.client_ip()]);
    assert_eq!(req.len(), 1, "one echo request journey: {all:#?}");
    let (c, r) = (&net.client, &net.router);
    assert_in_order(
        req[0],
        &[
            ("qdisc_enqueue", c, "eth0"),
            ("qdisc_dequeue", c, "eth0"),
            ("net_dev_start_xmit", c, "eth0"),
            ("netif_receive_skb", r, "in0"),
        ],
    );
    let first = common::first_on_a_device(req[0]);
    assert_eq!(first["site"], "qdisc_enqueue", "{:#}", req[0]);
    assert_eq!(first["detail"]["kind"], "tbf", "{:#}", req[0]);
}

#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn nftables_drop_in_router_is_explained() {
    require_root!();
    let net = Net::new(202);
    net.lab
        .nft(
            &net.router,
            "table inet t {\n chain filter_forward {\n type filter hook forward priority 0;\n \
             udp dport 9999 drop\n }\n}\n",
        )
        .unwrap();
    let p = Pktpath::start(&[&net.only("udp port 9999")]);
    net.udp(9999);
    let all = p.stop();
    assert_eq!(all.len(), 1, "{all:#?}");
    let j = &all[0];
    assert_eq!(j["end"]["kind"], "dropped");
    assert_eq!(j["end"]["reason"], "NETFILTER_DROP");
    assert_eq!(j["end"]["netns"], net.router.as_str());
    assert_eq!(j["end"]["benign"], false);
    assert!(
        j["end"]["explanation"]
            .as_str()
            .unwrap()
            .contains("dropped by nftables rule `udp dport 9999 drop` (inet t filter_forward"),
        "{j:#}"
    );
    assert_in_order(
        j,
        &[
            ("net_dev_start_xmit", &net.client, "eth0"),
            ("netif_receive_skb", &net.router, "in0"),
            ("kfree_skb", &net.router, ""),
        ],
    );
    // Dropped in the router: it never reached the server.
    assert!(!common::path(j).iter().any(|(_, n, _)| *n == net.server));
}

#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn closed_udp_port_is_no_socket_with_icmp_error() {
    require_root!();
    let net = Net::new(203);
    let p = Pktpath::start(&[&net.only("udp port 7777")]);
    net.udp(7777);
    let all = p.stop();
    assert_eq!(all.len(), 1, "{all:#?}");
    let j = &all[0];
    assert_eq!(j["end"]["kind"], "dropped");
    assert_eq!(j["end"]["reason"], "NO_SOCKET");
    assert_eq!(j["end"]["netns"], net.server.as_str());
    assert_in_order(
        j,
        &[
            ("netif_receive_skb", &net.server, "eth0"),
            ("icmp_send", &net.server, ""),
            ("kfree_skb", &net.server, ""),
        ],
    );
    let icmp = j["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["site"] == "icmp_send")
        .unwrap();
    let args = icmp["detail"]["args"].as_array().unwrap();
    assert!(args.contains(&serde_json::json!(["type", "3"])), "{icmp}");
    assert!(args.contains(&serde_json::json!(["code", "3"])), "{icmp}");
}

/// With TSO off, the sender's device cuts TCP's large skb into segments
/// in software (validate_xmit_skb), each a new skb: every segment starts
/// its own journey at net_dev_start_xmit and reaches the server.
#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn segments_cut_by_software_gso_start_their_own_journeys() {
    require_root!();
    let net = Net::new(226);
    net.lab
        .exec(&net.client, &["ethtool", "-K", "eth0", "tso", "off"])
        .expect("ethtool -K eth0 tso off (scripts/setup.sh installs ethtool)");
    let server = net.tcp_server(8081);
    let p = Pktpath::start(&[&net.only("tcp dst port 8081 and greater 1000")]);
    net.tcp_send(8081, &[0x5a; 30000]);
    assert_eq!(server.join().unwrap().len(), 30000);
    let all = p.stop();
    let data = journeys_with(&all, &["TCP", "> 8081"]);
    // 30000 bytes at an MSS of 1448: 21 segments.
    assert!(data.len() >= 20, "{} journeys: {all:#?}", data.len());
    for j in data {
        let first = common::first_on_a_device(j);
        assert_eq!(first["site"], "net_dev_start_xmit", "{j:#}");
        assert_eq!(first["netns_name"], net.client.as_str(), "{j:#}");
        assert!(first["len"].as_u64().unwrap() <= 1514, "a segment: {j:#}");
        // Its end may be silence: TCP frees a segment it merged into its
        // backlog without a tracepoint.
        assert_in_order(
            j,
            &[
                ("net_dev_start_xmit", &net.client, "eth0"),
                ("netif_receive_skb", &net.server, "eth0"),
            ],
        );
        assert_ne!(j["end"]["kind"], "dropped", "{j:#}");
    }
}

#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn tcp_data_is_delivered_to_the_server_socket() {
    require_root!();
    let net = Net::new(204);
    let server = net.tcp_server(8080);
    let p = Pktpath::start(&[&net.only("tcp port 8080 and tcp[tcpflags] & tcp-push != 0")]);
    net.tcp_send(8080, b"hello pktpath");
    assert_eq!(server.join().unwrap(), b"hello pktpath");
    let all = p.stop();
    let data = journeys_with(&all, &["TCP", "> 8080"]);
    assert_eq!(data.len(), 1, "{all:#?}");
    assert_eq!(end(data[0]), ("delivered", net.server.as_str()));
    assert_in_order(
        data[0],
        &[
            ("net_dev_start_xmit", &net.client, "eth0"),
            ("netif_receive_skb", &net.server, "eth0"),
            ("skb_copy_datagram_iovec", &net.server, ""),
        ],
    );
    let copy = data[0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["site"] == "skb_copy_datagram_iovec")
        .unwrap();
    assert_eq!(copy["detail"]["bytes"], 13);
}

#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn unselected_traffic_is_absent() {
    require_root!();
    let net = Net::new(205);
    let p = Pktpath::start(&[&net.only("udp dst port 5001")]);
    net.ping();
    net.udp(5002);
    net.udp(5001);
    net.udp(5003);
    let all = p.stop();
    assert_eq!(all.len(), 1, "only the UDP 5001 datagram: {all:#?}");
    assert!(all[0]["packet"].as_str().unwrap().contains("> 5001"));
}

/// How often pktpath ran `filter` (turning everything down) while the
/// client flood-pinged the server 300 times. --netns: only the client
/// namespace's packets reach the filter, so other tests' traffic does not
/// count.
fn filter_runs_in_ping_flood(net: &Net, filter: &str) -> u64 {
    let p = Pktpath::start(&["--netns", &net.client, filter]);
    net.lab
        .exec(
            &net.client,
            &["ping", "-q", "-f", "-c", "300", &net.server_ip()],
        )
        .unwrap();
    let (status, all, err) = p.stop_with(libc::SIGINT);
    assert!(status.success() && all.is_empty(), "{err}");
    filter_runs(&err)
}

/// The filter's run count from pktpath's summary line ("filter run N").
fn filter_runs(err: &str) -> u64 {
    err.split("filter run ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no filter count in: {err}"))
}

/// Packets the filter turned down are remembered: later sites skip them
/// with a map lookup, and the filter runs again only where the headers
/// moved (a layer pushed or pulled), not at every site.
#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn rejected_packets_are_not_filtered_at_every_site() {
    require_root!();
    let net = Net::new(215);
    let runs = filter_runs_in_ping_flood(&net, &net.only("udp port 1"));
    // 300 requests out and 300 replies in, seen at 7 or so sites in the
    // client's namespace. Rejections are remembered by packet (buffer and
    // header bytes) and by the bytes the filter read: where a port would
    // be, ICMP has its checksum, id and sequence, different in every
    // packet, so each is filtered once (600 measured; ~1.5 per packet when
    // remembered by packet alone, one per packet and layer by skb alone,
    // one per site with nothing remembered: 2,424).
    // Not quite every one: the read bytes include ICMP's type, code and
    // checksum, and a checksum that repeats in the flood (16 bits; runs of
    // 593-598 seen, 1 run in 5) makes a packet whose bytes the filter
    // already turned down, skipped by design.
    assert!(runs >= 570, "every packet filtered about once: {runs}");
    assert!(runs <= 1000, "filtered again after a header moved: {runs}");
}

/// A filter that reads only addresses (and the protocol fields before them)
/// answers the same for every packet of a flow: a flow turned down is
/// remembered by those bytes, and its packets after the first are not
/// filtered at all (unselected_traffic_is_absent checks that another port
/// is still looked at).
#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn a_flow_turned_down_is_filtered_once() {
    require_root!();
    let net = Net::new(216);
    let runs = filter_runs_in_ping_flood(&net, "host 192.0.2.1");
    // 600 packets in two directions, each seen as Ethernet and as IP, and
    // an ARP exchange or two: a handful of distinct read sets.
    assert!(runs >= 2, "the flow was filtered: {runs}");
    assert!(runs <= 40, "filtered again for every packet: {runs}");
}

/// A packet dropped before any site where journeys start (here by an
/// nftables output rule, before it reaches a device) starts its journey
/// where it dies; the drops of a flow the filter turned down end at the
/// free's first check: the filter runs for the first of them only.
#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn a_packet_dropped_at_its_first_site_starts_its_journey_there() {
    require_root!();
    let net = Net::new(218);
    net.lab
        .nft(
            &net.client,
            "table ip d {\n chain out {\n type filter hook output priority 0;\n \
             udp dport { 5040, 5041 } drop\n }\n}\n",
        )
        .unwrap();
    let p = Pktpath::start(&["--netns", &net.client, &net.only("udp port 5040")]);
    let dst = net.server_ip();
    pktpath::netns::in_netns(&net.client, move || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        for _ in 0..50 {
            // EPERM: the rule dropped it.
            s.send_to(b"turned down", format!("{dst}:5041")).ok();
        }
        s.send_to(b"taken", format!("{dst}:5040")).ok();
    })
    .unwrap();
    let (status, all, err) = p.stop_with(libc::SIGINT);
    assert!(status.success(), "{err}");
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0]["end"]["kind"], "dropped", "{:#}", all[0]);
    assert_eq!(all[0]["end"]["reason"], "NETFILTER_DROP");
    assert_eq!(common::path(&all[0])[0].0, "kfree_skb", "{:#}", all[0]);
    let runs = filter_runs(&err);
    // 51 drops: the first of port 5041 and the one of 5040, and whatever
    // else the namespace sends (IPv6 solicitations).
    assert!(runs <= 10, "each drop filtered: {runs}");
}

/// A packet of a flow turned down is still selected when a byte the filter
/// reads differs: here the first payload bytes, behind the IPv4 header.
#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn a_turned_down_flow_does_not_hide_a_packet_the_filter_takes() {
    require_root!();
    let net = Net::new(217);
    let p = Pktpath::start(&[&net.only("udp dst port 5060 and udp[8:4] = 0x70707070")]);
    let dst = format!("{}:5060", net.server_ip());
    pktpath::netns::in_netns(&net.client, move || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        for _ in 0..50 {
            s.send_to(b"aaaa same length", &dst).unwrap();
        }
        s.send_to(b"pppp same length", &dst).unwrap();
        for _ in 0..10 {
            s.send_to(b"aaaa same length", &dst).unwrap();
        }
    })
    .unwrap()
    .join()
    .unwrap();
    let all = p.stop();
    assert_eq!(all.len(), 1, "only the pppp datagram: {all:#?}");
}

/// One small rtnetlink request (RTM_GETLINK for lo) and its answer. The
/// kernel puts the request in an skb allocated on this CPU: often the one
/// the datagram just read was in, and its buffer too.
fn netlink_request(fd: i32) {
    #[repr(C)]
    struct Req {
        nlmsg_len: u32,
        nlmsg_type: u16,
        nlmsg_flags: u16,
        nlmsg_seq: u32,
        nlmsg_pid: u32,
        ifi_family: u8,
        ifi_pad: u8,
        ifi_type: u16,
        ifi_index: i32,
        ifi_flags: u32,
        ifi_change: u32,
    }
    let req = Req {
        nlmsg_len: std::mem::size_of::<Req>() as u32,
        nlmsg_type: libc::RTM_GETLINK,
        nlmsg_flags: libc::NLM_F_REQUEST as u16,
        nlmsg_seq: 1,
        nlmsg_pid: 0,
        ifi_family: libc::AF_UNSPEC as u8,
        ifi_pad: 0,
        ifi_type: 0,
        ifi_index: 1,
        ifi_flags: 0,
        ifi_change: 0,
    };
    let mut buf = [0u8; 8192];
    // SAFETY: plain socket calls on our own buffers.
    unsafe {
        libc::send(
            fd,
            (&req as *const Req).cast(),
            std::mem::size_of::<Req>(),
            0,
        );
        libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0);
    }
}

/// A datagram read from a connected UDP socket is freed where no
/// tracepoint fires, so its skb address stays known; the next skb there
/// (here a netlink request, made right after each read) must not end the
/// datagram's journey with its own free: its header offsets, or its
/// buffer, differ from the datagram's at its last site. Without any check
/// 80-100 of these 1,500 journeys ended "consumed at netlink_unicast", with
/// the buffer alone compared still ~80: the request often gets the
/// datagram's buffer back too.
#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn a_reused_skb_address_does_not_end_the_last_packet_there() {
    require_root!();
    let net = Net::new(247);
    let p = Pktpath::start(&[&net.only("udp port 7003")]);
    let (server, client) = (net.server_ip(), net.client_ip());
    let rx = common::listening(&net.server, move |ready| {
        let s = std::net::UdpSocket::bind(format!("{server}:7003")).unwrap();
        s.connect(format!("{client}:7004")).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(3)))
            .unwrap();
        // Room for every datagram: with the suite's other tests on both
        // cores this reader can stall long enough to fill the default
        // buffer (once: 1,007 of 1,500 read).
        let size: libc::c_int = 8 << 20;
        // SAFETY: our socket, an int option of the size given.
        let rc = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&s),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "SO_RCVBUFFORCE");
        // SAFETY: a netlink socket we close below.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        assert!(fd >= 0, "netlink socket");
        ready();
        let mut buf = [0u8; 64];
        let mut n = 0;
        while s.recv(&mut buf).is_ok() {
            n += 1;
            netlink_request(fd);
        }
        // SAFETY: our fd.
        unsafe { libc::close(fd) };
        n
    });
    let (client, server) = (net.client_ip(), net.server_ip());
    pktpath::netns::in_netns(&net.client, move || {
        let s = std::net::UdpSocket::bind(format!("{client}:7004")).unwrap();
        for _ in 0..1500 {
            s.send_to(b"to a connected socket", format!("{server}:7003"))
                .unwrap();
            std::thread::sleep(std::time::Duration::from_micros(700));
        }
    })
    .unwrap()
    .join()
    .unwrap();
    let received = rx.join().unwrap();
    let all = p.stop();
    let selected = journeys_with(&all, &[&format!("> {} UDP", net.server_ip())]);
    assert!(
        received >= 1400 && selected.len() >= received * 9 / 10,
        "{received} datagrams read, {} journeys",
        selected.len()
    );
    let strays: Vec<_> = selected
        .iter()
        .filter(|j| {
            j["steps"].as_array().unwrap().iter().any(|s| {
                s["detail"]["location"]
                    .as_str()
                    .is_some_and(|l| l.contains("netlink"))
            })
        })
        .collect();
    assert!(
        strays.is_empty(),
        "{} of {} journeys end with another skb's free: {:#}",
        strays.len(),
        selected.len(),
        strays[0]
    );
}

#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn interface_and_netns_select_where_tracing_starts() {
    require_root!();
    let net = Net::new(206);
    let p = Pktpath::start(&["-i", "eth0", "--netns", &net.server, &net.only("udp")]);
    net.udp(6001);
    let all = p.stop();
    assert!(!all.is_empty());
    for j in &all {
        // Selected on the server's eth0: nothing before it is shown.
        let first = &j["steps"][0];
        assert_eq!(first["netns_name"], net.server.as_str(), "{j}");
    }
}

#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn mark_selects_marked_packets() {
    require_root!();
    let net = Net::new(207);
    net.lab
        .nft(
            &net.client,
            "table ip m {\n chain out {\n type route hook output priority 0;\n \
             udp dport 5010 meta mark set 0x42\n }\n}\n",
        )
        .unwrap();
    let p = Pktpath::start(&["--mark", "0x42", &net.only("udp")]);
    net.udp(5010);
    net.udp(5011);
    let all = p.stop();
    assert_eq!(all.len(), 1, "{all:#?}");
    assert!(all[0]["packet"].as_str().unwrap().contains("> 5010"));
    let own = all[0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s.get("correlated").is_none())
        .unwrap();
    assert_eq!(own["mark"], 0x42);
}

#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn raw_tp_backend_sees_the_same_path_as_tp_btf() {
    require_root!();
    let net = Net::new(208);
    let sites = |backend: &str| {
        let p = Pktpath::start(&["--backend", backend, &net.only("udp port 5020")]);
        net.udp(5020);
        let all = p.stop();
        assert_eq!(all.len(), 1, "{backend}: {all:#?}");
        common::path(&all[0])
            .into_iter()
            .filter(|(s, _, _)| s != "fib_table_lookup" && s != "neigh_event_send_done")
            .collect::<Vec<_>>()
    };
    assert_eq!(sites("tp_btf"), sites("raw_tp"));
}

#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn steps_are_streamed_live_and_count_stops() {
    require_root!();
    let net = Net::new(209);
    let p = Pktpath::start(&["--steps", "-c", "1", &net.only("udp port 5030")]);
    net.udp(5030);
    net.udp(5030);
    let all = p.stop();
    let steps = all.iter().filter(|v| v.get("step").is_some()).count();
    let journeys: Vec<_> = all.iter().filter(|v| v.get("steps").is_some()).collect();
    assert_eq!(journeys.len(), 1, "-c 1 prints one journey");
    // Steps pktpath adds from other sources (nftables traces, the bridge
    // step) join the journey later; the kernel's were all streamed.
    let kernel_steps = journeys[0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["site"] != "nft_trace" && s["site"] != "bridge")
        .count();
    assert!(
        steps >= kernel_steps,
        "{steps} streamed, {kernel_steps} in the journey"
    );
}

/// `-c 1` with a burst of datagrams in flight: one journey is printed, and
/// the summary says how many more were not shown (they once vanished
/// without a word).
#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn count_says_how_many_journeys_it_did_not_show() {
    require_root!();
    let net = Net::new(250);
    let p = Pktpath::start(&["-c", "1", &net.only("udp port 5031")]);
    let to = format!("{}:5031", net.server_ip());
    pktpath::netns::in_netns(&net.client, move || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        for _ in 0..50 {
            s.send_to(b"burst", &to).unwrap();
        }
    })
    .unwrap()
    .join()
    .unwrap();
    let (status, all, err) = p.stop_with(libc::SIGINT);
    assert!(status.success(), "{err}");
    assert_eq!(all.len(), 1, "{all:#?}");
    let not_shown: u64 = err
        .split(", ")
        .find_map(|part| part.split_once(" more not shown")?.0.parse().ok())
        .unwrap_or_else(|| panic!("no count of journeys not shown: {err}"));
    assert!((1..=49).contains(&not_shown), "{err}");
}

/// A reader that stalls (stdout a pipe nobody reads for a while) makes the
/// ring buffer overflow: the journeys in flight then say that events were
/// lost, in the output itself, not only in the summary.
#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn journeys_in_flight_during_a_ring_buffer_loss_say_so() {
    require_root!();
    use std::io::Read;
    let net = Net::new(254);
    let ready = std::env::temp_dir().join(format!("pktpath-ring-{}", std::process::id()));
    let _ = std::fs::remove_file(&ready);
    let mut child = Command::new(BIN)
        .arg("--json")
        .arg("--ready-file")
        .arg(&ready)
        .args(["--ring-size", "1", "--idle-timeout", "0.5"])
        .arg(net.only("udp port 5033"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    while !ready.exists() {
        assert!(child.try_wait().unwrap().is_none(), "pktpath exited");
        assert!(
            t.elapsed() < std::time::Duration::from_secs(60),
            "never ready"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let to = format!("{}:5033", net.server_ip());
    pktpath::netns::in_netns(&net.client, move || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        for _ in 0..20_000 {
            let _ = s.send_to(b"flood", &to);
        }
    })
    .unwrap()
    .join()
    .unwrap();
    // Now read: pktpath goes on, finds the loss, and prints the rest.
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).unwrap();
        text
    });
    std::thread::sleep(std::time::Duration::from_secs(3));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    std::fs::remove_file(&ready).ok();
    assert!(status.success(), "{err}");
    let text = reader.join().unwrap();
    let all: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let lost: u64 = err
        .split(", ")
        .find_map(|p| p.split_once(" lost in the ring buffer")?.0.parse().ok())
        .unwrap_or_else(|| panic!("{err}"));
    assert!(lost > 0, "the stalled reader lost nothing: {err}");
    let marked = all
        .iter()
        .filter(|j| {
            j["caveats"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c.as_str().unwrap().contains("ring buffer"))
            })
        })
        .count();
    assert!(
        marked > 0,
        "{lost} events lost, no journey says so ({} journeys)",
        all.len()
    );
}

/// Ids of the BPF objects of `kind` ("prog" or "link") that process `pid`
/// holds, from the fdinfo of its descriptors ("prog_id:", "link_id:").
fn held_by(kind: &str, pid: i32) -> Vec<u64> {
    let key = format!("{kind}_id:");
    let mut ids: Vec<u64> = std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix(key.as_str()))
                .and_then(|v| v.trim().parse().ok())
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Whether BPF object `kind` `id` still exists (BPF_*_GET_FD_BY_ID).
fn exists(kind: &str, id: u64) -> bool {
    match kind {
        "prog" => libbpf_rs::Program::fd_from_id(id as u32).is_ok(),
        _ => {
            // SAFETY: plain libbpf call; a returned fd is closed at once.
            let fd = unsafe { libbpf_rs::libbpf_sys::bpf_link_get_fd_by_id(id as u32) };
            if fd >= 0 {
                unsafe { libc::close(fd) };
            }
            fd >= 0
        }
    }
}

#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn nothing_stays_attached_after_sigint_sigterm_or_sigkill() {
    require_root!();
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGKILL] {
        let p = Pktpath::start(&["udp port 5999"]);
        let progs = held_by("prog", p.pid());
        let links = held_by("link", p.pid());
        assert!(progs.len() > 10, "programs loaded while tracing: {progs:?}");
        assert!(links.len() > 10, "links attached while tracing: {links:?}");
        let (status, _, _) = p.stop_with(signal);
        if signal != libc::SIGKILL {
            assert!(status.success(), "clean exit on signal {signal}: {status}");
        }
        // The kernel frees objects asynchronously (RCU): allow a moment.
        let t = std::time::Instant::now();
        let left = || -> Vec<u64> {
            links
                .iter()
                .filter(|id| exists("link", **id))
                .chain(progs.iter().filter(|id| exists("prog", **id)))
                .copied()
                .collect()
        };
        while !left().is_empty() && t.elapsed() < std::time::Duration::from_secs(10) {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert_eq!(
            left(),
            Vec::<u64>::new(),
            "objects left after signal {signal}"
        );
    }
}

#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn demo_runs_and_cleans_up() {
    require_root!();
    let report = std::env::temp_dir().join(format!("pktpath-demo-{}.html", std::process::id()));
    let out = Command::new(BIN)
        .args(["demo", "--json", "--report"])
        .arg(&report)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // The demo's report, and where it is said.
    let page = std::fs::read_to_string(&report).unwrap();
    assert!(page.contains("default-src 'none'"), "the report");
    assert!(
        err.contains(&format!("report written to {}", report.display())),
        "{err}"
    );
    std::fs::remove_file(&report).ok();
    let all: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let dropped = all
        .iter()
        .find(|j| j["end"]["reason"] == "NETFILTER_DROP")
        .expect("the nftables drop");
    assert_eq!(dropped["end"]["netns"], "ppdemo-router");
    assert!(all
        .iter()
        .any(|j| j["end"]["kind"] == "delivered" && j["end"]["netns"] == "ppdemo-server"));
    assert!(all
        .iter()
        .any(|j| j["end"]["reason"] == "NO_SOCKET" && j["end"]["netns"] == "ppdemo-server"));
    // The only losses are the two the demo provokes (a FIN purged when
    // the server closes, ping's echo reply: not losses).
    let mut real: Vec<&str> = all
        .iter()
        .filter(|j| j["end"]["kind"] == "dropped" && j["end"]["benign"] == false)
        .map(|j| j["end"]["reason"].as_str().unwrap())
        .collect();
    real.sort();
    let ends: Vec<String> = all
        .iter()
        .map(|j| format!("{} | {}", j["packet"], j["end"]))
        .collect();
    assert_eq!(real, ["NETFILTER_DROP", "NO_SOCKET"], "{ends:#?}");
    assert!(
        dropped["end"]["explanation"]
            .as_str()
            .unwrap()
            .contains("`udp dport 9999 counter drop` (inet ppdemo forward"),
        "{err}\n{dropped:#}"
    );
    assert!(
        !pktpath::netns::list_netns()
            .iter()
            .any(|n| n.starts_with("ppdemo-")),
        "demo namespaces removed"
    );
}

#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn ipv6_ping_with_route_lookups() {
    require_root!();
    let mut lab = pktpath::netlab::Lab::new("pt210-").unwrap();
    let a = lab.netns("a").unwrap();
    let b = lab.netns("b").unwrap();
    lab.veth(&a, "eth0", &b, "eth0").unwrap();
    lab.ip(&a, "-6 addr add fd00:210::1/64 dev eth0 nodad")
        .unwrap();
    lab.ip(&b, "-6 addr add fd00:210::2/64 dev eth0 nodad")
        .unwrap();
    lab.exec(&a, &["ping", "-6", "-c1", "-W3", "fd00:210::2"])
        .unwrap();
    let p = Pktpath::start(&["icmp6 and ip6[40] == 128 and net fd00:210::/64"]);
    lab.exec(&a, &["ping", "-6", "-c1", "-W3", "fd00:210::2"])
        .unwrap();
    let all = p.stop();
    assert_eq!(all.len(), 1, "{all:#?}");
    let j = &all[0];
    assert!(
        j["packet"].as_str().unwrap().contains("ICMP6 echo request"),
        "{j}"
    );
    assert_in_order(
        j,
        &[
            ("net_dev_start_xmit", &a, "eth0"),
            ("netif_receive_skb", &b, "eth0"),
            ("fib6_table_lookup", &b, ""),
        ],
    );
    let fib = j["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["site"] == "fib6_table_lookup" && s["netns_name"] == *b)
        .unwrap();
    assert_eq!(fib["detail"]["family"], 6);
    assert_eq!(fib["detail"]["dst"], "fd00:210::2");
    assert_eq!(j["end"]["netns"], b.as_str());
}

#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn pcapng_is_read_by_tcpdump_with_the_path_in_comments() {
    require_root!();
    let net = Net::new(211);
    let file = std::env::temp_dir().join(format!("pktpath-{}.pcapng", std::process::id()));
    let f = file.to_str().unwrap();
    let p = Pktpath::start(&["-w", f, &net.only("udp port 5040")]);
    net.udp(5040);
    p.stop();
    let out = Command::new("tcpdump")
        .args(["-nn", "-r", f])
        .output()
        .expect("tcpdump is installed by scripts/setup.sh");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.lines().count(), 1, "one packet per journey: {text}");
    assert!(
        text.contains("10.211.1.2") && text.contains("5040"),
        "{text}"
    );
    let bytes = std::fs::read(&file).unwrap();
    let raw = String::from_utf8_lossy(&bytes);
    assert!(raw.contains("pktpath journey #"), "path in the comments");
    assert!(raw.contains("net_dev_start_xmit") && raw.contains("netif_receive_skb"));
    std::fs::remove_file(&file).ok();
}

/// Whether this kernel has the sock:sk_data_ready tracepoint (6.3 and
/// later): its BTF names the tracepoint's type.
fn has_sk_data_ready() -> bool {
    let btf = std::fs::read("/sys/kernel/btf/vmlinux").unwrap_or_default();
    btf.windows(23).any(|w| w == b"btf_trace_sk_data_ready")
}

/// Says why the test is skipped where the kernel has no sk_data_ready.
fn lacks_sk_data_ready() -> bool {
    let lacks = !has_sk_data_ready();
    if lacks {
        eprintln!("SKIPPED: this kernel has no sock:sk_data_ready tracepoint (before 6.3)");
    }
    lacks
}

/// A UDP socket on the server's address and `port`, bound when this
/// returns; joining it gives the sizes of the datagrams it read, until
/// none came for 2 s.
fn udp_receiver(net: &Net, port: u16) -> pktpath::netns::NsThread<Vec<usize>> {
    let addr = format!("{}:{port}", net.server_ip());
    common::listening(&net.server, move |ready| {
        let s = std::net::UdpSocket::bind(addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        ready();
        let mut buf = [0u8; 8192];
        let mut sizes = Vec::new();
        while let Ok(n) = s.recv(&mut buf) {
            sizes.push(n);
        }
        sizes
    })
}

/// A datagram queued to a UDP socket ends "delivered to" that socket, with
/// the address and port it is bound to and the process holding it: the
/// kernel reads linear datagrams out (copy_linear_skb) and frees them
/// (skb_attempt_defer_free) where no tracepoint fires, so each of them
/// used to end "no end seen after netif_receive_skb".
#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn a_datagram_is_delivered_to_its_socket() {
    require_root!();
    if lacks_sk_data_ready() {
        return;
    }
    let net = Net::new(229);
    let p = Pktpath::start(&[&net.only("udp port 7005")]);
    let rx = udp_receiver(&net, 7005);
    for _ in 0..20 {
        net.udp(7005);
    }
    let all = p.stop();
    assert_eq!(rx.join().unwrap().len(), 20);
    let sent = journeys_with(&all, &[&format!("> {} UDP", net.server_ip())]);
    assert_eq!(sent.len(), 20, "{all:#?}");
    let socket = format!(
        "UDP socket {}:7005 of {}",
        net.server_ip(),
        std::fs::read_to_string("/proc/self/comm")
            .unwrap()
            .trim_end()
    );
    for j in sent {
        assert_eq!(end(j), ("delivered", net.server.as_str()), "{j:#}");
        let said = j["end"]["socket"].as_str().unwrap_or_default();
        assert!(said.starts_with(&socket), "{said} is not {socket}: {j:#}");
        assert!(
            said.ends_with(&format!("(pid {})", std::process::id())),
            "{said}"
        );
        let last = j["steps"].as_array().unwrap().last().unwrap();
        assert_eq!(last["site"], "sk_data_ready", "{j:#}");
    }
}

/// An echo reply queued to a ping socket (an unprivileged ICMP datagram
/// socket, as ping(8) uses where net.ipv4.ping_group_range allows) ends
/// "delivered" to that socket, with its echo id and process: it ended
/// "consumed by the kernel" when the application read it.
#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn an_echo_reply_is_delivered_to_its_ping_socket() {
    require_root!();
    if lacks_sk_data_ready() {
        return;
    }
    let net = Net::new(196);
    net.lab
        .sysctl(&net.client, "net.ipv4.ping_group_range", "0 0")
        .unwrap();
    let p = Pktpath::start(&[&format!("icmp and host {}", net.client_ip())]);
    let server: std::net::Ipv4Addr = net.server_ip().parse().unwrap();
    let (id, got, fd) = pktpath::netns::in_netns(&net.client, move || {
        // SAFETY: plain socket calls on a socket this closure owns, with
        // buffers that outlive them.
        unsafe {
            // Close-on-exec: a process another test spawns meanwhile must
            // not hold it too (pktpath would name that one its holder).
            let fd = libc::socket(
                libc::AF_INET,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::IPPROTO_ICMP,
            );
            assert!(fd >= 0, "ping socket: {}", std::io::Error::last_os_error());
            let tv = libc::timeval {
                tv_sec: 2,
                tv_usec: 0,
            };
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as u32,
            );
            let mut to: libc::sockaddr_in = std::mem::zeroed();
            to.sin_family = libc::AF_INET as u16;
            to.sin_addr.s_addr = u32::from(server).to_be();
            // Echo request: the kernel sets the id and the checksum.
            let req = [8u8, 0, 0, 0, 0, 0, 0, 1, b'p', b'k', b't'];
            let sent = libc::sendto(
                fd,
                req.as_ptr() as *const libc::c_void,
                req.len(),
                0,
                &to as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            );
            assert_eq!(sent, req.len() as isize);
            let mut me: libc::sockaddr_in = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::sockaddr_in>() as u32;
            libc::getsockname(fd, &mut me as *mut _ as *mut libc::sockaddr, &mut len);
            let mut buf = [0u8; 64];
            let got = libc::recv(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0);
            (u16::from_be(me.sin_port), got, fd)
        }
    })
    .unwrap()
    .join()
    .unwrap();
    // Open until pktpath has named its holder.
    let all = p.stop();
    // SAFETY: the socket made above, closed once.
    unsafe { libc::close(fd) };
    assert!(got > 0, "no echo reply read");
    let reply = journeys_with(&all, &["ICMP echo reply", &net.server_ip()]);
    assert_eq!(reply.len(), 1, "{all:#?}");
    assert_eq!(
        end(reply[0]),
        ("delivered", net.client.as_str()),
        "{:#}",
        reply[0]
    );
    let said = reply[0]["end"]["socket"].as_str().unwrap_or_default();
    let socket = format!(
        "ICMP socket *, echo id {id} of {}",
        std::fs::read_to_string("/proc/self/comm")
            .unwrap()
            .trim_end()
    );
    assert!(said.starts_with(&socket), "{said} is not {socket}");
}

/// The Internet checksum of `b`.
fn checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A packet written into a TUN device by a program (a user-space VPN or
/// tunnel) is received by the stack; an echo request so received is
/// answered, and the journey ends there, consumed, not "no end seen": on
/// a device without a link header, the free after ICMP pulled its header
/// was taken for another packet's. The reply goes to the program, and its
/// journey says so (it said "delivered to a socket").
#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn a_packet_written_into_a_tun_device_is_answered() {
    require_root!();
    let mut lab = pktpath::netlab::Lab::new("pt197-").unwrap();
    let ns = lab.netns("tun").unwrap();
    let fd = pktpath::netns::in_netns(&ns, || {
        // SAFETY: a TUNSETIFF request with a zeroed ifreq naming the device.
        unsafe {
            let fd = libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_NONBLOCK);
            assert!(fd >= 0, "/dev/net/tun: {}", std::io::Error::last_os_error());
            let mut ifr = [0u8; 40];
            ifr[..5].copy_from_slice(b"tun97");
            let flags: u16 = 0x0001 | 0x1000; // IFF_TUN | IFF_NO_PI
            ifr[16..18].copy_from_slice(&flags.to_ne_bytes());
            let rc = libc::ioctl(fd, 0x400454ca, ifr.as_mut_ptr()); // TUNSETIFF
            assert_eq!(rc, 0, "TUNSETIFF: {}", std::io::Error::last_os_error());
            fd
        }
    })
    .unwrap()
    .join()
    .unwrap();
    lab.ip(&ns, "addr add 10.197.0.1/24 dev tun97").unwrap();
    lab.ip(&ns, "link set tun97 up").unwrap();
    let p = Pktpath::start(&["icmp and net 10.197.0.0/24"]);
    // An echo request from 10.197.0.2, as a tunnel program would write it.
    let mut icmp = vec![8u8, 0, 0, 0, 0x12, 0x34, 0, 1];
    icmp.extend_from_slice(b"pktpath-tun");
    let c = checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut ip = vec![
        0x45, 0, 0, 0, 0, 7, 0, 0, 64, 1, 0, 0, 10, 197, 0, 2, 10, 197, 0, 1,
    ];
    let total = (ip.len() + icmp.len()) as u16;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip.extend_from_slice(&icmp);
    // SAFETY: writes and reads of the TUN device's own fd and buffers.
    let answered = unsafe {
        assert_eq!(
            libc::write(fd, ip.as_ptr() as *const libc::c_void, ip.len()),
            ip.len() as isize
        );
        let mut buf = [0u8; 256];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            let n = libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len());
            if n >= 28 && buf[9] == 1 && buf[20] == 0 {
                break true;
            }
            if std::time::Instant::now() > deadline {
                break false;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    };
    let all = p.stop();
    // SAFETY: the fd opened above, closed once (the device goes with it).
    unsafe { libc::close(fd) };
    assert!(answered, "no echo reply read from the TUN device");
    let req = journeys_with(&all, &["ICMP echo request", "10.197.0.2"]);
    assert_eq!(req.len(), 1, "{all:#?}");
    assert_eq!(end(req[0]), ("consumed", ns.as_str()), "{:#}", req[0]);
    let reply = journeys_with(&all, &["ICMP echo reply", "10.197.0.1"]);
    assert_eq!(reply.len(), 1, "{all:#?}");
    // Read by the program behind the device, not "delivered to a socket".
    assert_eq!(end(reply[0]), ("delivered", ns.as_str()), "{:#}", reply[0]);
    assert_eq!(
        reply[0]["end"]["socket"], "the program reading device tun97 (TUN/TAP)",
        "{:#}",
        reply[0]
    );
}

/// Three UDP datagrams of 3,500 bytes from the client to the server's
/// `port`: over links of MTU 1500, three fragments each.
fn three_big_datagrams(net: &Net, port: u16) {
    let dst = format!("{}:{port}", net.server_ip());
    pktpath::netns::in_netns(&net.client, move || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        for _ in 0..3 {
            s.send_to(&[7u8; 3500], &dst).unwrap();
        }
    })
    .unwrap()
    .join()
    .unwrap();
}

/// The fragments of an IPv4 datagram are one journey, that of its first
/// fragment (the only one with ports, so the one a port filter selects):
/// each step names its fragment, the reassembly in the receiving namespace
/// is a step, and the journey ends with the datagram in its socket. It
/// used to be the first fragment alone, ending "consumed" where it was
/// reassembled, and the datagram's delivery was not shown.
#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn the_fragments_of_a_datagram_are_one_journey_to_its_socket() {
    require_root!();
    if lacks_sk_data_ready() {
        return;
    }
    let net = Net::new(240);
    let p = Pktpath::start(&[&net.only("udp port 7006")]);
    let rx = udp_receiver(&net, 7006);
    three_big_datagrams(&net, 7006);
    let all = p.stop();
    assert_eq!(rx.join().unwrap(), vec![3500; 3]);
    let sent = journeys_with(&all, &[&format!("> {} UDP", net.server_ip())]);
    assert_eq!(sent.len(), 3, "one journey per datagram: {all:#?}");
    for j in sent {
        let title = j["packet"].as_str().unwrap_or_default();
        assert!(title.ends_with("datagram in 3 fragments"), "{title}");
        assert_eq!(j["len"], 3528, "{j:#}");
        assert_eq!(end(j), ("delivered", net.server.as_str()), "{j:#}");
        let steps = j["steps"].as_array().unwrap();
        let headers: Vec<&str> = steps.iter().filter_map(|s| s["headers"].as_str()).collect();
        for (i, offset) in [(2, 1480), (3, 2960)] {
            let named = format!("IP fragment {i} of 3 (offset {offset})");
            assert!(headers.iter().any(|h| h.contains(&named)), "{named}: {j:#}");
        }
        // Each fragment crossed every link: each driver on the way was
        // handed three.
        let mut xmits = std::collections::BTreeMap::new();
        for s in steps.iter().filter(|s| s["site"] == "net_dev_start_xmit") {
            *xmits
                .entry(s["dev"].as_str().unwrap_or_default())
                .or_insert(0) += 1;
        }
        assert!(xmits.len() >= 2, "{j:#}");
        assert!(xmits.values().all(|&n| n == 3), "{xmits:?}: {j:#}");
        let joined = steps
            .iter()
            .position(|s| s["site"] == "consume_skb" && s["netns_name"] == net.server.as_str())
            .unwrap_or_else(|| panic!("no reassembly step: {j:#}"));
        let queued = steps
            .iter()
            .position(|s| s["site"] == "sk_data_ready")
            .unwrap_or_else(|| panic!("not queued to its socket: {j:#}"));
        assert!(joined < queued, "{j:#}");
    }
}

/// Through a router with a stateful firewall, conntrack gathers the
/// fragments at prerouting (nf_defrag), the datagram is forwarded whole
/// and cut again on the way out: still one journey per datagram, to its
/// socket on the server, and none of its pieces a journey of its own.
#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn fragments_through_a_stateful_router_are_one_journey() {
    require_root!();
    if lacks_sk_data_ready() {
        return;
    }
    let net = Net::new(199);
    net.lab
        .nft(
            &net.router,
            "table inet stateful {\n chain forward {\n type filter hook forward priority 0; \
             policy drop;\n ct state established,related accept\n udp dport 7013 accept\n }\n}",
        )
        .unwrap();
    let p = Pktpath::start(&[&net.only("udp port 7013")]);
    let rx = udp_receiver(&net, 7013);
    three_big_datagrams(&net, 7013);
    let all = p.stop();
    assert_eq!(rx.join().unwrap(), vec![3500; 3]);
    assert_eq!(all.len(), 3, "one journey per datagram: {all:#?}");
    for j in &all {
        assert_eq!(end(j), ("delivered", net.server.as_str()), "{j:#}");
        // It crossed the router: received there, and sent on to the server.
        let path = common::path(j);
        assert!(
            path.iter()
                .any(|(s, n, d)| s == "net_dev_start_xmit" && n == &net.router && d == "out0"),
            "{j:#}"
        );
    }
}

/// A ping too big for the links is one journey per direction in IPv4 and
/// IPv6, each fragment joining its datagram's (a host filter selects each
/// fragment: they were three journeys, and the datagram's end, reassembled
/// in another fragment's skb, was not seen). The request is answered where
/// it was reassembled.
#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn a_big_ping_is_one_journey_per_datagram_in_ipv4_and_ipv6() {
    require_root!();
    let net = Net::new(220);
    let (lab6, client6, _router6, server6) = common::router_lab(251, common::Family::V6);
    let p = Pktpath::start(&[&format!(
        "(icmp and host {}) or ip6 host fd00:251:2::2",
        net.client_ip()
    )]);
    // 3,000 bytes of ICMP data over links of MTU 1500: three fragments.
    net.lab
        .exec(
            &net.client,
            &["ping", "-c1", "-W3", "-s3000", &net.server_ip()],
        )
        .expect("ping");
    lab6.exec(
        &client6,
        &["ping", "-6", "-c1", "-W3", "-s3000", "fd00:251:2::2"],
    )
    .expect("ping -6");
    let all = p.stop();
    for (what, server, bytes) in [
        ("ICMP echo request", &net.server, 3028),
        ("ICMP6 echo request", &server6, 3048),
    ] {
        let req = journeys_with(&all, &[what]);
        assert_eq!(req.len(), 1, "one {what} journey: {all:#?}");
        let j = req[0];
        let title = j["packet"].as_str().unwrap_or_default();
        assert!(title.ends_with("datagram in 3 fragments"), "{title}");
        assert_eq!(j["len"], bytes, "{j:#}");
        assert_eq!(end(j), ("consumed", server.as_str()), "{j:#}");
        let headers: Vec<&str> = j["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["headers"].as_str())
            .collect();
        for i in [2, 3] {
            let named = format!("IP fragment {i} of 3 (offset");
            assert!(headers.iter().any(|h| h.contains(&named)), "{named}: {j:#}");
        }
        let reply = journeys_with(&all, &[&what.replace("request", "reply")]);
        assert_eq!(reply.len(), 1, "one reply journey: {all:#?}");
    }
}

/// A packet dropped by a tc BPF classifier on the receiving device names
/// the filter (kind, program name and id, pref, handle, chain), the device
/// and the namespace, with the commands to look at them (the hint said
/// `tc filter show dev DEV ingress`, a literal DEV and no namespace).
#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn a_tc_drop_names_its_filter() {
    require_root!();
    let dir = std::env::temp_dir().join(format!("pktpath-tc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (src, obj) = (dir.join("drop.c"), dir.join("drop.o"));
    std::fs::write(
        &src,
        "struct __sk_buff;\n\
         __attribute__((section(\"tc\"), used)) int drop_all(struct __sk_buff *s) { return 2; }\n\
         char _license[] __attribute__((section(\"license\"), used)) = \"GPL\";\n",
    )
    .unwrap();
    let built = Command::new("clang")
        .args(["-O2", "-target", "bpf", "-c"])
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .status()
        .expect("clang (it builds pktpath's own BPF)");
    assert!(built.success());
    let mut lab = pktpath::netlab::Lab::new("pt230-").unwrap();
    let client = lab.netns("client").unwrap();
    let server = lab.netns("server").unwrap();
    lab.veth(&client, "eth0", &server, "eth0").unwrap();
    lab.ip(&client, "addr add 10.230.0.1/24 dev eth0").unwrap();
    lab.ip(&server, "addr add 10.230.0.2/24 dev eth0").unwrap();
    lab.exec(&client, &["ping", "-c1", "-W3", "10.230.0.2"])
        .unwrap();
    lab.exec(&server, &["tc", "qdisc", "add", "dev", "eth0", "clsact"])
        .unwrap();
    let obj = obj.to_str().unwrap();
    lab.exec(
        &server,
        &[
            "tc", "filter", "add", "dev", "eth0", "ingress", "bpf", "da", "obj", obj, "sec", "tc",
        ],
    )
    .unwrap();
    let id = lab
        .exec(
            &server,
            &["tc", "-j", "filter", "show", "dev", "eth0", "ingress"],
        )
        .unwrap();
    let id = serde_json::from_str::<Value>(&id).unwrap()[1]["options"]["prog"]["id"]
        .as_u64()
        .unwrap();
    let p = Pktpath::start(&["udp port 7006 and host 10.230.0.2"]);
    pktpath::netns::in_netns(&client, || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        s.send_to(b"to be shot", "10.230.0.2:7006").unwrap();
    })
    .unwrap()
    .join()
    .unwrap();
    let all = p.stop();
    std::fs::remove_dir_all(&dir).ok();
    let dropped = journeys_with(&all, &["> 10.230.0.2 UDP"]);
    assert_eq!(dropped.len(), 1, "{all:#?}");
    let e = &dropped[0]["end"];
    assert_eq!(e["reason"], "TC_INGRESS", "{e:#}");
    assert_eq!(
        e["explanation"],
        format!(
            "dropped by the tc ingress filter on eth0 in namespace {server}: bpf `drop_all` \
             (prog id {id}, direct-action), pref 49152 handle 0x1 chain 0"
        ),
        "{e:#}"
    );
    assert_eq!(
        e["hint"],
        format!(
            "tc -n {server} -s filter show dev eth0 ingress (the filter whose counters grew); \
             bpftool prog dump xlated id {id}"
        )
    );
}

/// A ping through a VXLAN tunnel is one journey per packet on the
/// tracepoint backend: the inner packet's send on the VXLAN device, the
/// outer UDP packet on the underlay (the same skb, its headers pushed in
/// front), its receive there, and the inner packet again after
/// decapsulation, to its end. Each ping was three journeys, the first
/// ending "no end seen after net_dev_start_xmit" though it was sent on.
#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn a_vxlan_packet_is_one_journey_through_the_tunnel() {
    require_root!();
    let mut lab = pktpath::netlab::Lab::new("pt227-").unwrap();
    let a = lab.netns("a").unwrap();
    let b = lab.netns("b").unwrap();
    lab.veth(&a, "under0", &b, "under0").unwrap();
    for (ns, me, peer) in [(&a, 1, 2), (&b, 2, 1)] {
        for cmd in [
            format!("addr add 10.227.0.{me}/24 dev under0"),
            format!(
                "link add vx0 type vxlan id 42 dstport 4789 local 10.227.0.{me} \
                 remote 10.227.0.{peer} dev under0"
            ),
            format!("addr add 10.227.1.{me}/24 dev vx0"),
            "link set vx0 up".to_string(),
        ] {
            lab.ip(ns, &cmd).unwrap();
        }
    }
    lab.exec(&a, &["ping", "-c1", "-W3", "10.227.1.2"]).unwrap();
    let p = Pktpath::start(&["icmp and host 10.227.1.2"]);
    lab.exec(&a, &["ping", "-c2", "-i0.3", "-W3", "10.227.1.2"])
        .unwrap();
    let all = p.stop();
    let echo = journeys_with(&all, &["ICMP echo"]);
    assert_eq!(echo.len(), 4, "a journey per request and reply: {all:#?}");
    for j in echo {
        let steps = j["steps"].as_array().unwrap();
        let on = |ns: &str, dev: &str, site: &str| {
            steps
                .iter()
                .any(|s| s["netns_name"] == ns && s["dev"] == dev && s["site"] == site)
        };
        let (from, to) = if j["packet"].as_str().unwrap().contains("echo request") {
            (a.as_str(), b.as_str())
        } else {
            (b.as_str(), a.as_str())
        };
        for (ns, dev, site) in [
            (from, "vx0", "net_dev_start_xmit"),
            (from, "under0", "net_dev_start_xmit"),
            (to, "under0", "netif_receive_skb"),
            (to, "vx0", "netif_receive_skb"),
        ] {
            assert!(on(ns, dev, site), "{site} on {dev} in {ns}: {j:#}");
        }
        let outer = steps
            .iter()
            .find(|s| s["dev"] == "under0")
            .and_then(|s| s["headers"].as_str())
            .unwrap_or_default();
        assert!(
            outer.contains("UDP") && outer.contains("> 4789"),
            "{outer}: {j:#}"
        );
        assert_ne!(j["end"]["kind"], "unknown", "{j:#}");
    }
}
