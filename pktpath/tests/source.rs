//! Where in the source (#23), on the host's kernel without debug info:
//! each live step names its file, its source-tree subsystem and links to
//! Elixir on the running release (from uname, not a table); the subsystem
//! view collapses a journey into the subsystems it crossed.

mod common;

use common::{Net, Pktpath, BIN};
use pktpath_core::location::KernelVersion;

#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn live_steps_link_to_the_running_release() {
    require_root!();
    let net = Net::new(173);
    let p = Pktpath::start(&[&net.only("icmp")]);
    net.ping();
    let all = p.stop();
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let v = KernelVersion::running().expect("the running release is read");
    assert!(
        release.trim().starts_with(&v.to_string()) || release.contains("Debian"),
        "{v} from {release}"
    );
    let tag = format!("https://elixir.bootlin.com/linux/{}/", v.tag());
    let request = all
        .iter()
        .find(|j| j["packet"].as_str().unwrap_or("").contains("echo request"))
        .expect("the echo request's journey");
    let steps = request["steps"].as_array().unwrap();
    for s in steps {
        let at = &s["location"];
        assert!(
            at["subsystem"].is_string(),
            "every step has a subsystem: {s}"
        );
        for key in ["url", "ident_url"] {
            if let Some(u) = at[key].as_str() {
                assert!(u.starts_with(&tag), "{key} on this release: {u}");
            }
        }
    }
    // The transmit tracepoint fires in xmit_one, net/core/dev.c.
    let xmit = steps
        .iter()
        .find(|s| s["site"] == "net_dev_start_xmit")
        .unwrap();
    assert_eq!(xmit["location"]["file"], "net/core/dev.c", "{xmit}");
    assert_eq!(xmit["location"]["function"], "xmit_one", "{xmit}");
    assert_eq!(xmit["location"]["subsystem"], "core", "{xmit}");
    assert_eq!(
        xmit["location"]["ident_url"],
        format!("{tag}C/ident/xmit_one"),
        "{xmit}"
    );
    // The route lookup is routing's, in fib_trie.c.
    let lookup = steps
        .iter()
        .find(|s| s["site"] == "fib_table_lookup")
        .unwrap();
    assert_eq!(lookup["location"]["file"], "net/ipv4/fib_trie.c");
    assert_eq!(lookup["location"]["subsystem"], "routing");
    // Consumed by ICMP: located where it was freed, icmp_rcv.
    let free = steps.last().unwrap();
    assert_eq!(free["site"], "consume_skb", "{request}");
    assert_eq!(free["location"]["function"], "icmp_rcv", "{free}");
    assert_eq!(free["location"]["subsystem"], "icmp", "{free}");
}

#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn the_subsystem_view_is_the_order_subsystems_handled_a_packet() {
    require_root!();
    let net = Net::new(174);
    let dir = std::env::temp_dir().join(format!("pktpath-view-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ready = dir.join("ready");
    let child = std::process::Command::new(BIN)
        .args(["--view", "subsystems", "--color", "never", "-c", "1"])
        .args(["--ready-file", ready.to_str().unwrap()])
        .arg(net.only("icmp[icmptype] == icmp-echo"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    while !ready.exists() {
        assert!(t.elapsed().as_secs() < 60, "never ready");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    net.ping();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let head = lines.next().unwrap_or_default();
    assert!(head.contains("ICMP echo request"), "{text}");
    // client: route, transmit; router: receive, route, transmit; switch:
    // receive, bridge, transmit; server: receive, route, consumed by ICMP.
    assert_eq!(
        lines.next().unwrap_or_default().trim(),
        "routing → core → routing → core → bridge → core → routing → icmp",
        "{text}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
