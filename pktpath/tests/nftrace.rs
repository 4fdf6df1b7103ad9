//! Root tests of nftables tracing (`pktpath::collect::nftables`) on the real
//! kernel: a tracing table in sandbox namespaces, real UDP packets, the
//! trace messages naming the user's rule, and no table left behind (after
//! a drop, and after a SIGKILL once the next session starts).

mod common;

use std::net::UdpSocket;
use std::process::Command;
use std::time::{Duration, Instant};

use pktpath::collect::nftables::message::{NftTrace, TraceKind};
use pktpath::collect::nftables::ruleset::RulesetCache;
use pktpath::collect::nftables::session::{NftraceSession, SessionPlan};
use pktpath::collect::nftables::translate::translate_filter;
use pktpath::netlab::Lab;
use pktpath::netns::in_netns;
use pktpath::netns::NetnsRef;
use pktpath::source::Source;

/// client (10.N.1.1) -- server (10.N.1.2), namespaces ptnftN-cli/-srv.
fn pair(n: u8) -> (Lab, String, String) {
    let mut lab = Lab::new(&format!("ptnft{n}-")).expect("lab");
    let cli = lab.netns("cli").unwrap();
    let srv = lab.netns("srv").unwrap();
    lab.veth(&cli, "eth0", &srv, "eth0").unwrap();
    lab.ip(&cli, &format!("addr add 10.{n}.1.1/24 dev eth0"))
        .unwrap();
    lab.ip(&srv, &format!("addr add 10.{n}.1.2/24 dev eth0"))
        .unwrap();
    (lab, cli, srv)
}

/// Sends one UDP datagram from namespace `ns` to `dst`.
fn send_udp(ns: &str, dst: String) {
    in_netns(ns, move || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.send_to(b"pktpath", &dst).unwrap();
    })
    .unwrap()
    .join()
    .unwrap();
}

fn our_tables(lab: &Lab, ns: &str) -> Vec<String> {
    lab.exec(ns, &["nft", "list", "tables"])
        .unwrap()
        .lines()
        .filter(|l| l.contains("pktpath_trace_"))
        .map(str::to_string)
        .collect()
}

fn udp_dport(t: &NftTrace) -> Option<u16> {
    let th = &t.transport_header;
    (th.len() >= 4).then(|| u16::from_be_bytes([th[2], th[3]]))
}

#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn drop_rule_is_traced_with_its_text() {
    require_root!();
    let n = 211;
    let (lab, cli, srv) = pair(n);
    let server = format!("10.{n}.1.2");
    lab.nft(
        &srv,
        &format!(
            "table inet t {{\n chain input {{\n type filter hook input priority filter; policy accept;\n \
             ip daddr {server} udp dport 9999 counter drop\n }}\n}}\n"
        ),
    )
    .unwrap();
    let namespaces = [
        NetnsRef::named(&cli).unwrap(),
        NetnsRef::named(&srv).unwrap(),
    ];
    let matches = translate_filter(&format!("udp port 9999 and host {server}"));
    assert!(matches.is_some());
    let session = NftraceSession::start(SessionPlan {
        namespaces: &namespaces,
        matches,
    })
    .unwrap();
    assert_eq!(our_tables(&lab, &srv).len(), 2, "inet and bridge tables");

    // A packet the filter does not select, then one it does.
    send_udp(&cli, format!("{server}:9998"));
    let mut traces = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && !traces.iter().any(|t: &NftTrace| &*t.verdict == "drop") {
        send_udp(&cli, format!("{server}:9999"));
        traces.extend(session.collect_until(Duration::from_millis(500), |t| &*t.verdict == "drop"));
    }
    let drop = traces
        .iter()
        .find(|t| &*t.verdict == "drop")
        .unwrap_or_else(|| panic!("no drop trace: {traces:#?}"));
    assert_eq!(drop.netns_ino, namespaces[1].inode);
    assert_eq!((&*drop.family, &*drop.table), ("inet", "t"));
    assert_eq!(&*drop.chain, "input");
    assert_eq!(drop.nfproto.as_deref(), Some("ipv4"));
    assert_eq!(udp_dport(drop), Some(9999));
    let ifindex = pktpath::netns::ifindex_in(Some(&srv), "eth0").unwrap();
    assert_eq!(drop.iif, ifindex);
    let flow = pktpath_core::packet::decode(&drop.l3_bytes().unwrap(), true).unwrap();
    assert_eq!(flow.dst, server);
    // Our own table's messages are not passed on.
    assert!(traces.iter().all(|t| !t.is_own()), "{traces:#?}");
    // The packet to port 9998 was not traced.
    assert!(
        traces.iter().all(|t| udp_dport(t) != Some(9998)),
        "{traces:#?}"
    );

    let mut cache = RulesetCache::new();
    let info = cache.describe(&namespaces[1], drop);
    let handle = drop.rule_handle.expect("rule handle");
    assert_eq!(info.rule_handle, Some(handle));
    let text = info.rule_text.expect("rule text");
    assert_eq!(
        text,
        format!("ip daddr {server} udp dport 9999 counter drop")
    );
    let base = info.base.expect("base chain");
    assert_eq!(
        base.text,
        "type filter hook input priority filter; policy accept;"
    );
    assert_eq!(
        (base.hook.as_str(), base.priority.as_str()),
        ("input", "filter")
    );
    // The same as `nft -a list ruleset` prints, counters aside.
    let listed = lab.exec(&srv, &["nft", "-a", "list", "ruleset"]).unwrap();
    assert!(
        listed.contains(&format!("ip daddr {server} udp dport 9999 counter packets"))
            && listed.contains(&format!("drop # handle {handle}")),
        "{listed}"
    );
    assert_eq!(session.malformed(), 0);

    // (b) Nothing stays behind.
    drop_session(session);
    assert!(our_tables(&lab, &srv).is_empty());
    assert!(our_tables(&lab, &cli).is_empty());
}

fn drop_session(s: NftraceSession) {
    s.stop().unwrap();
}

#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn untranslatable_filter_traces_every_packet_and_drop_cleans_up() {
    require_root!();
    let n = 212;
    let (lab, cli, srv) = pair(n);
    lab.nft(
        &srv,
        "table ip u {\n chain pre {\n type filter hook prerouting priority 0; policy accept;\n }\n}\n",
    )
    .unwrap();
    assert_eq!(translate_filter("not udp"), None);
    let namespaces = [NetnsRef::named(&srv).unwrap()];
    {
        let session = NftraceSession::start(SessionPlan {
            namespaces: &namespaces,
            matches: None,
        })
        .unwrap();
        assert!(session.table_name().starts_with("pktpath_trace_"));
        let mut got = Vec::new();
        for _ in 0..10 {
            send_udp(&cli, format!("10.{n}.1.2:7"));
            got = session.collect_until(Duration::from_millis(500), |t| {
                &*t.table == "u" && &*t.verdict == "accept"
            });
            if got.iter().any(|t| &*t.table == "u") {
                break;
            }
        }
        let policy = got
            .iter()
            .find(|t| &*t.table == "u")
            .unwrap_or_else(|| panic!("{got:#?}"));
        // The kernel's end-of-rules marker (a "rule" without handle) is
        // not passed on: the first message is the policy.
        assert_eq!(policy.kind, TraceKind::Policy, "{got:#?}");
        assert_eq!(
            policy.iif,
            pktpath::netns::ifindex_in(Some(&srv), "eth0").unwrap()
        );
        assert_eq!(&*policy.family, "ip");
        assert_eq!(policy.rule_handle, None);
        assert_eq!(&*policy.verdict, "accept");
        assert_eq!(our_tables(&lab, &srv).len(), 2);
        // Dropped here, without stop().
    }
    assert!(our_tables(&lab, &srv).is_empty());
}

#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn table_of_a_dead_pid_is_swept_at_start() {
    require_root!();
    if std::path::Path::new("/proc/999999").exists() {
        eprintln!("SKIPPED: pid 999999 exists");
        return;
    }
    let (lab, _cli, srv) = pair(213);
    lab.nft(
        &srv,
        "table inet pktpath_trace_999999 {\n chain pre {\n type filter hook prerouting priority -500; policy accept;\n meta nftrace set 1\n }\n}\n\
         table bridge pktpath_trace_999999_2 {\n}\n",
    )
    .unwrap();
    assert_eq!(our_tables(&lab, &srv).len(), 2);
    let ns = NetnsRef::named(&srv).unwrap();
    let session = NftraceSession::start(SessionPlan {
        namespaces: std::slice::from_ref(&ns),
        matches: None,
    })
    .unwrap();
    let mut swept: Vec<&str> = session.swept().iter().map(|(_, t)| t.as_str()).collect();
    swept.sort();
    assert_eq!(
        swept,
        ["bridge pktpath_trace_999999_2", "inet pktpath_trace_999999"]
    );
    let left = our_tables(&lab, &srv);
    assert!(left.iter().all(|t| !t.contains("999999")), "{left:?}");
    drop(session);
    assert!(our_tables(&lab, &srv).is_empty());
}

#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn namespaces_without_a_ruleset_are_not_traced() {
    require_root!();
    let (lab, cli, srv) = pair(215);
    lab.nft(
        &srv,
        "table inet user {\n chain input { type filter hook input priority 0; }\n}\n",
    )
    .unwrap();
    let namespaces = [
        NetnsRef::named(&cli).unwrap(),
        NetnsRef::named(&srv).unwrap(),
    ];
    let session = NftraceSession::start(SessionPlan {
        namespaces: &namespaces,
        matches: None,
    })
    .unwrap();
    // No rule to report in cli, and tracing would cost every packet
    // there netlink messages: left alone.
    assert_eq!(session.without_rules(), std::slice::from_ref(&cli));
    let traced: Vec<&str> = session
        .namespaces()
        .iter()
        .map(|n| n.name.as_str())
        .collect();
    assert_eq!(traced, [srv.as_str()]);
    assert!(our_tables(&lab, &cli).is_empty());
    assert_eq!(our_tables(&lab, &srv).len(), 2);
    drop(session);
    assert!(our_tables(&lab, &srv).is_empty());
}

const CHILD_ENV: &str = "PKTPATH_NFTRACE_CHILD_NETNS";

/// Not a test on its own: the process that `sigkill_leaves_a_table_that_the_next_start_sweeps`
/// starts and kills. Holds a session in the namespace it is given.
#[test]
fn child_holds_a_session() {
    let Ok(ns) = std::env::var(CHILD_ENV) else {
        return;
    };
    let _session = NftraceSession::start(SessionPlan {
        namespaces: &[NetnsRef::named(&ns).unwrap()],
        matches: None,
    })
    .unwrap();
    println!("CHILD READY");
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn sigkill_leaves_a_table_that_the_next_start_sweeps() {
    require_root!();
    let (lab, _cli, srv) = pair(214);
    // A ruleset of the user's: namespaces without one are not traced.
    lab.nft(
        &srv,
        "table inet user {\n chain input { type filter hook input priority 0; }\n}\n",
    )
    .unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_holds_a_session", "--nocapture"])
        .env(CHILD_ENV, &srv)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    while our_tables(&lab, &srv).len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let tables = our_tables(&lab, &srv);
    assert!(
        tables
            .iter()
            .any(|t| t.ends_with(&format!("pktpath_trace_{pid}"))),
        "{tables:?}"
    );
    // SAFETY: kill on the pid of our own child.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    child.wait().unwrap();
    assert_eq!(our_tables(&lab, &srv).len(), 2, "SIGKILL leaves the table");
    let session = NftraceSession::start(SessionPlan {
        namespaces: &[NetnsRef::named(&srv).unwrap()],
        matches: None,
    })
    .unwrap();
    assert_eq!(session.swept().len(), 2, "{:?}", session.swept());
    let left = our_tables(&lab, &srv);
    assert!(
        left.iter()
            .all(|t| !t.ends_with(&format!("pktpath_trace_{pid}"))),
        "{left:?}"
    );
    drop(session);
    assert!(our_tables(&lab, &srv).is_empty());
}
