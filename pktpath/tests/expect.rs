//! `pktpath expect` (#25): expectations files checked on live traffic
//! through real namespaces, rules and routes, and on a recorded capture;
//! a configuration change that breaks an expectation makes it fail, and
//! say where the packets went instead.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{listening, Net, BIN};
use serde_json::Value;

/// The golden journey set (pktpath-core/tests/fixtures/record.sh: a NAT
/// router with an nftables drop rule, a bridge, a closed port, TTL 1).
const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../pktpath-core/tests/fixtures/journeys.pcapng"
);

struct Run {
    code: i32,
    out: String,
    err: String,
}

fn expect(args: &[&str]) -> Run {
    let o = Command::new(BIN)
        .arg("expect")
        .args(args)
        .output()
        .expect("pktpath runs");
    Run {
        code: o.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&o.stdout).into_owned(),
        err: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pktpath-expect-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn verdicts(run: &Run) -> Vec<Value> {
    let doc: Value = serde_json::from_str(&run.out)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", run.out, run.err));
    doc["verdicts"].as_array().unwrap().clone()
}

fn status(v: &[Value]) -> Vec<(&str, &str)> {
    v.iter()
        .map(|v| (v["name"].as_str().unwrap(), v["status"].as_str().unwrap()))
        .collect()
}

const GOLDEN_FILE: &str = r#"
[[expect]]
name = "UDP to 7001 crosses the router and the bridge to the server"
packets = "udp dst port 7001"
from = { netns = "gold-client" }
order = [
  { netns = "gold-client", dev = "eth0" },
  { route = "10.77.2.0/24", netns = "gold-router" },
  { rule = "masquerade", chain = "postrouting" },
  { bridge = "br0" },
  { netns = "gold-server" },
]
ends = { delivered = "gold-server" }

[[expect]]
name = "UDP to 7003 is let through"
packets = "udp dst port 7003"
passes = [{ policy = "accept", chain = "forward" }]

[[expect]]
name = "no SSH"
packets = "tcp port 22"
count = "none"

[[expect]]
name = "forwarded by ip_forward"
packets = "icmp"
passes = [{ function = "ip_forward" }]
"#;

/// No root needed: a capture's journeys, checked; each kind of verdict,
/// the exit code, JSON, JUnit.
#[test]
fn a_capture_is_checked_with_pass_fail_and_unchecked_verdicts() {
    let dir = scratch("golden");
    let file = write(&dir, "gold.toml", GOLDEN_FILE);
    let junit = dir.join("junit.xml");
    let run = expect(&[
        &file,
        "-r",
        GOLDEN,
        "--color",
        "never",
        "--junit",
        junit.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 1, "{}{}", run.out, run.err);
    let out = &run.out;
    assert!(out.contains("PASS UDP to 7001 crosses the router and the bridge to the server (line 2): 1 of 1 packets showed it"), "{out}");
    assert!(
        out.contains("PASS no SSH (line 20): none of 0 packets showed it"),
        "{out}"
    );
    // The failure: the journey, what was expected, the step where it
    // diverged (marked) and the diagnosis there.
    assert!(out.contains("FAIL UDP to 7003 is let through (line 15): 1 of 1 packets of `udp dst port 7003` did not show it"), "{out}");
    assert!(
        out.contains("      expected: the accept policy of chain forward\n"),
        "{out}"
    );
    assert!(out.contains("      found:    at step 5 it met nft_trace in netns gold-router, dev in0: inet gold forward (hook forward): rule `udp dport 7003 counter drop` (handle 3): drop\n"), "{out}");
    assert!(out.contains("      hint:     if this traffic should pass: nft delete rule inet gold forward handle 3"), "{out}");
    assert!(
        out.contains("     >  5 nft_trace in netns gold-router"),
        "{out}"
    );
    assert!(out.contains("UNCHECKED forwarded by ip_forward (line 25): cannot be checked: it names function ip_forward, and the capture holds no function steps"), "{out}");
    assert!(
        out.ends_with("4 expectations: 2 passed, 1 failed, 1 could not be checked (14 journeys)\n"),
        "{out}"
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains(r#"tests="4" skipped="1" failures="1""#),
        "{xml}"
    );
    assert!(
        xml.contains(r#"<testcase name="UDP to 7003 is let through""#),
        "{xml}"
    );

    let run = expect(&[&file, "-r", GOLDEN, "--json"]);
    let v = verdicts(&run);
    assert_eq!(
        status(&v),
        [
            (
                "UDP to 7001 crosses the router and the bridge to the server",
                "pass"
            ),
            ("UDP to 7003 is let through", "fail"),
            ("no SSH", "pass"),
            ("forwarded by ip_forward", "unchecked"),
        ]
    );
    let b = &v[1]["broken"][0];
    assert_eq!(b["step"], 4);
    assert_eq!(b["journey"]["id"], 11);
    assert_eq!(b["journey"]["end"]["cause"]["kind"], "nft_rule");

    // The same journeys as JSON lines (`--json`, with each packet's frame):
    // the same verdicts.
    let json = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../pktpath-core/tests/golden/journeys.jsonl"
    );
    let again = verdicts(&expect(&[&file, "-r", json, "--json"]));
    assert_eq!(status(&again), status(&v));

    // All pass: exit 0.
    let only = write(&dir, "pass.toml", "[[expect]]\npackets = \"udp dst port 7003\"\nends = { dropped = \"gold-router\", rule = \"udp dport 7003 counter drop\", cause = \"nft_rule\" }\n");
    let run = expect(&[&only, "-r", GOLDEN]);
    assert_eq!(run.code, 0, "{}{}", run.out, run.err);
    std::fs::remove_dir_all(&dir).ok();
}

/// A bad file, filter or capture: one line naming the file (and line and
/// column), exit 2, before anything is traced.
#[test]
fn bad_files_are_one_line_errors_with_exit_2() {
    let dir = scratch("bad");
    let cases = [
        (
            "[[expect]]\npackets = \"icmp\"\nends = { droped = true }\n",
            ":3:10: unknown field `droped`",
        ),
        (
            "[[expect]]\npackets = \"icmp and\"\ncount = \"none\"\n",
            ":1: packets = \"icmp and\": ",
        ),
        (
            "[[expect]]\npackets = \"icmp\"\n",
            ":1:1: this [[expect]] expects nothing",
        ),
        ("[[expect]\n", ":1:"),
        ("\u{0}\u{1}", ":1:"),
    ];
    for (i, (text, said)) in cases.iter().enumerate() {
        let file = write(&dir, &format!("bad{i}.toml"), text);
        let run = expect(&[&file, "-r", GOLDEN]);
        assert_eq!(run.code, 2, "{text}: {}", run.err);
        assert_eq!(run.err.lines().count(), 1, "one line: {}", run.err);
        assert!(
            run.err.starts_with(&format!("pktpath: {file}")) && run.err.contains(said),
            "{text}: {}",
            run.err
        );
    }
    let ok = write(
        &dir,
        "ok.toml",
        "[[expect]]\npackets = \"icmp\"\ncount = \"none\"\n",
    );
    let run = expect(&[&dir.join("missing.toml").display().to_string()]);
    assert_eq!(run.code, 2, "{}", run.err);
    assert!(run.err.contains("cannot read"), "{}", run.err);
    let corrupt = write(&dir, "corrupt.pcapng", "\n\r\r\n\u{ff}\u{ff}garbage");
    let run = expect(&[&ok, "-r", &corrupt]);
    assert_eq!(run.code, 2, "{}", run.err);
    assert_eq!(run.err.lines().count(), 1, "{}", run.err);
    // JSON lines written before the frame was kept: words only.
    let lines: Vec<String> = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../pktpath-core/tests/golden/journeys.jsonl"
    ))
    .unwrap()
    .lines()
    .map(|l| {
        let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
        v.as_object_mut().unwrap().remove("frame");
        v.to_string()
    })
    .collect();
    let json = write(&dir, "j.jsonl", &lines.join("\n"));
    let run = expect(&[&ok, "-r", &json]);
    assert_eq!(run.code, 2, "{}", run.err);
    assert!(run.err.contains("needs the packets' bytes"), "{}", run.err);
    std::fs::remove_dir_all(&dir).ok();
}

/// One UDP datagram from the client, sent by the shell (`--cmd`).
fn udp_cmd(net: &Net, port: u16) -> String {
    format!(
        "ip netns exec {} bash -c 'echo pktpath > /dev/udp/{}/{port}'",
        net.client,
        net.server_ip()
    )
}

/// A UDP socket on the server's `port`, waiting (a while) for one datagram.
fn udp_listener(net: &Net, port: u16) -> pktpath::netns::NsThread<bool> {
    let bind = format!("{}:{port}", net.server_ip());
    listening(&net.server, move |ready| {
        let s = std::net::UdpSocket::bind(bind).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        ready();
        s.recv_from(&mut [0u8; 64]).is_ok()
    })
}

/// A firewall's expectations (rule, namespace, bridge, order, end, count)
/// hold on live traffic; replacing the rule that lets the app through with
/// one that drops it makes the file fail, naming the rule met instead.
#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn a_firewall_passes_its_expectations_until_the_ruleset_changes() {
    require_root!();
    let net = Net::new(171);
    let (c, r, sw, s) = (&net.client, &net.router, &net.switch, &net.server);
    let ruleset = |app: &str| {
        format!(
            "table inet fw {{\n chain forward {{\n type filter hook forward priority 0; policy drop;\n \
             ct state established,related accept\n {app}\n icmp type echo-request accept\n }}\n}}\n"
        )
    };
    net.lab
        .nft(r, &ruleset("udp dport 7001 accept comment \"app\""))
        .unwrap();
    let file = format!(
        r#"
[[expect]]
name = "the app's UDP reaches the server through the router and the switch"
packets = "udp dst port 7001 and net 10.171.0.0/16"
from = {{ netns = "{c}" }}
order = [
  {{ netns = "{c}", dev = "eth0" }},
  {{ route = "10.171.2.0/24", netns = "{r}" }},
  {{ comment = "app", verdict = "accept", chain = "forward" }},
  {{ bridge = "br0", netns = "{sw}" }},
  {{ netns = "{s}" }},
]
ends = {{ delivered = "{s}" }}

[[expect]]
name = "other UDP dies at the forward chain's policy"
packets = "udp dst port 7002 and net 10.171.0.0/16"
avoids = [{{ netns = "{s}" }}]
ends = {{ dropped = "{r}", policy_of = "forward", reason = "NETFILTER_DROP" }}

[[expect]]
name = "no telnet"
packets = "tcp port 23 and net 10.171.0.0/16"
count = "none"

[[expect]]
name = "a ping is let in by its rule, the next as part of its connection"
packets = "icmp[icmptype] == icmp-echo and net 10.171.0.0/16"
passes = [{{ rule = "icmp type echo-request accept", netns = "{r}" }}]
ends = {{ consumed = "{s}" }}
count = "exactly 1"

[[expect]]
name = "pings are answered"
packets = "icmp[icmptype] == icmp-echo and net 10.171.0.0/16"
passes = [{{ chain = "forward", verdict = "accept", netns = "{r}" }}]
ends = {{ consumed = "{s}" }}
count = "at least 2"
"#
    );
    let dir = scratch("firewall");
    let path = write(&dir, "firewall.toml", &file);
    let junit = dir.join("junit.xml");
    let cmd = format!(
        "{}; {}; ip netns exec {c} ping -c2 -i0.2 -W1 {} >/dev/null",
        udp_cmd(&net, 7001),
        udp_cmd(&net, 7002),
        net.server_ip()
    );
    let listener = udp_listener(&net, 7001);
    let run = expect(&[
        &path,
        "--cmd",
        &cmd,
        "--json",
        "--junit",
        junit.to_str().unwrap(),
    ]);
    assert!(listener.join().unwrap(), "the app's datagram arrived");
    assert_eq!(run.code, 0, "{}\n{}", run.out, run.err);
    let v = verdicts(&run);
    assert!(v.iter().all(|v| v["status"] == "pass"), "{v:#?}");
    assert_eq!(v[0]["packets"], 1, "{v:#?}");
    assert_eq!(v[3]["packets"], 2, "{v:#?}");
    assert_eq!(v[3]["showed"], 1, "the second is established: {v:#?}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains(r#"tests="5" skipped="0" failures="0""#),
        "{xml}"
    );

    // The ruleset changes: the app's rule now drops.
    Command::new("ip")
        .args(["netns", "exec", r, "nft", "delete", "table", "inet", "fw"])
        .status()
        .unwrap();
    net.lab
        .nft(r, &ruleset("udp dport 7001 drop comment \"app\""))
        .unwrap();
    let listener = udp_listener(&net, 7001);
    let run = expect(&[
        &path,
        "--cmd",
        &cmd,
        "--color",
        "never",
        "--junit",
        junit.to_str().unwrap(),
    ]);
    assert!(!listener.join().unwrap(), "the app's datagram was dropped");
    assert_eq!(run.code, 1, "{}\n{}", run.out, run.err);
    let out = &run.out;
    assert!(out.contains("FAIL the app's UDP reaches the server through the router and the switch (line 2): 1 of 1 packets"), "{out}");
    assert!(
        out.contains(&format!("      expected: an nftables rule in chain forward, comment \"app\", verdict accept after route 10.171.2.0/24 in netns {r} (step ")),
        "{out}"
    );
    assert!(
        out.contains(&format!("it met nft_trace in netns {r}, dev in0: inet fw forward (hook forward): rule `udp dport 7001 drop comment \"app\"`")),
        "{out}"
    );
    assert!(
        out.contains(
            "      hint:     if this traffic should pass: nft delete rule inet fw forward handle "
        ),
        "{out}"
    );
    assert!(out.contains("     > "), "the step is marked: {out}");
    assert!(out.contains("PASS other UDP dies"), "{out}");
    assert!(
        out.contains("5 expectations: 4 passed, 1 failed ("),
        "{out}"
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains(r#"failures="1""#), "{xml}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A route expectation holds, until a policy rule sends the packets to a
/// table whose blackhole route drops them: the verdict names the lookup.
#[test]
#[ignore = "needs root (namespaces, BPF): scripts/test.sh runs it with --include-ignored"]
fn a_route_expectation_fails_when_a_policy_rule_sends_packets_elsewhere() {
    require_root!();
    let net = Net::new(172);
    let (r, s) = (&net.router, &net.server);
    let file = format!(
        r#"
[[expect]]
name = "pings to the server take the router's main route"
packets = "icmp[icmptype] == icmp-echo and dst host {dst}"
passes = [{{ route = "10.172.2.0/24", route_table = "main", route_type = "unicast", netns = "{r}" }}]
ends = {{ consumed = "{s}" }}
"#,
        dst = net.server_ip()
    );
    let dir = scratch("route");
    let path = write(&dir, "route.toml", &file);
    let cmd = format!(
        "ip netns exec {} ping -c1 -W1 {} >/dev/null",
        net.client,
        net.server_ip()
    );
    let run = expect(&[&path, "--cmd", &cmd, "--color", "never"]);
    assert_eq!(run.code, 0, "{}\n{}", run.out, run.err);
    assert!(run.out.contains("PASS pings to the server take the router's main route (line 2): 1 of 1 packets showed it"), "{}", run.out);

    net.lab
        .ip(
            r,
            &format!("route add blackhole {} table 100", net.server_ip()),
        )
        .unwrap();
    net.lab
        .ip(
            r,
            &format!("rule add to {} table 100 pref 100", net.server_ip()),
        )
        .unwrap();
    let run = expect(&[&path, "--cmd", &cmd, "--color", "never"]);
    assert_eq!(run.code, 1, "{}\n{}", run.out, run.err);
    let out = &run.out;
    assert!(
        out.contains(&format!(
            "      expected: route 10.172.2.0/24 of type unicast in table main in netns {r}\n"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("it met fib_table_lookup in netns {r}: "))
            && out.contains("blackhole"),
        "{out}"
    );
    assert!(out.contains(&format!("dropped in netns {r}")), "{out}");
    std::fs::remove_dir_all(&dir).ok();
}
