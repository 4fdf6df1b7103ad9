//! Fixtures for the root tests: a sandbox network per test (its own
//! namespaces and subnet, removed on drop even when the test fails) and the
//! real pktpath binary, started in the background and stopped with SIGINT.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub mod scenarios;

use pktpath::netlab::Lab;
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_pktpath");

/// Why this machine cannot run the root tests, if it cannot.
pub fn cannot_run() -> Option<String> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    for tool in ["ip", "nft", "ping", "tc"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .map(|s| !s.success())
            .unwrap_or(true)
        {
            return Some(format!("{tool} is not installed (run scripts/setup.sh)"));
        }
    }
    None
}

/// Fails the calling test, saying why, when the machine cannot run it. Root
/// tests are `#[ignore]`d, so a plain `cargo test` reports them as ignored
/// (skipped), with the reason; they run when asked for (`--include-ignored`,
/// as scripts/test.sh does), and then a machine that cannot run them fails.
#[macro_export]
macro_rules! require_root {
    () => {
        if let Some(why) = common::cannot_run() {
            panic!("cannot run here: {why}");
        }
    };
}

/// client -- router -- switch (bridge) -- server, on subnets
/// 10.N.1.0/24 and 10.N.2.0/24; namespaces named pt<N>-*.
pub struct Net {
    pub lab: Lab,
    pub n: u8,
    pub client: String,
    pub router: String,
    pub switch: String,
    pub server: String,
    /// Dropped after `lab`: the number is free once the namespaces are gone.
    _claim: Claim,
}

/// Sandbox numbers in use by this test binary's running tests.
static CLAIMED: Mutex<BTreeSet<u8>> = Mutex::new(BTreeSet::new());

/// Holds sandbox number N while a test uses it: two tests of one binary
/// (they run in parallel) given the same N would share subnets and
/// namespace names, and each one's set-up would remove the other's.
struct Claim(u8);

impl Claim {
    fn take(n: u8) -> Claim {
        let fresh = CLAIMED.lock().unwrap_or_else(|e| e.into_inner()).insert(n);
        assert!(
            fresh,
            "sandbox number {n} is in use by another test: pick a free one"
        );
        Claim(n)
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        CLAIMED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.0);
    }
}

/// IP version of a `router_lab`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

/// client - router - server over two veth pairs (client eth0 - in0
/// router out0 - eth0 server), the router .1 on both links and forwarding:
/// IPv4 10.N.1.0/24 and 10.N.2.0/24, IPv6 fd00:N:1::/64 and fd00:N:2::/64.
/// Returns the lab and the client, router and server namespaces.
pub fn router_lab(n: u8, family: Family) -> (Lab, String, String, String) {
    let mut lab = Lab::new(&format!("pt{n}-")).expect("lab");
    let client = lab.netns("client").unwrap();
    let router = lab.netns("router").unwrap();
    let server = lab.netns("server").unwrap();
    lab.veth(&client, "eth0", &router, "in0").unwrap();
    lab.veth(&router, "out0", &server, "eth0").unwrap();
    // Address of host `h` on link `l`, its prefix, and `ip`'s options.
    let (addr, len, opt, nodad): (&dyn Fn(u8, u8) -> String, u8, &str, &str) = match family {
        Family::V4 => (&|l, h| format!("10.{n}.{l}.{h}"), 24, "", ""),
        Family::V6 => (&|l, h| format!("fd00:{n}:{l}::{h}"), 64, "-6 ", " nodad"),
    };
    for (ns, cmd) in [
        (
            &client,
            format!("addr add {}/{len} dev eth0{nodad}", addr(1, 2)),
        ),
        (&client, format!("route add default via {}", addr(1, 1))),
        (
            &router,
            format!("addr add {}/{len} dev in0{nodad}", addr(1, 1)),
        ),
        (
            &router,
            format!("addr add {}/{len} dev out0{nodad}", addr(2, 1)),
        ),
        (
            &server,
            format!("addr add {}/{len} dev eth0{nodad}", addr(2, 2)),
        ),
        (&server, format!("route add default via {}", addr(2, 1))),
    ] {
        lab.ip(ns, &format!("{opt}{cmd}")).unwrap();
    }
    let forwarding = match family {
        Family::V4 => "net.ipv4.ip_forward",
        Family::V6 => "net.ipv6.conf.all.forwarding",
    };
    lab.sysctl(&router, forwarding, "1").unwrap();
    (lab, client, router, server)
}

impl Net {
    pub fn new(n: u8) -> Net {
        let claim = Claim::take(n);
        let mut lab = Lab::new(&format!("pt{n}-")).expect("lab");
        let client = lab.netns("client").unwrap();
        let router = lab.netns("router").unwrap();
        let switch = lab.netns("switch").unwrap();
        let server = lab.netns("server").unwrap();
        lab.veth(&client, "eth0", &router, "in0").unwrap();
        lab.veth(&router, "out0", &switch, "p-router").unwrap();
        lab.veth(&switch, "p-server", &server, "eth0").unwrap();
        lab.ip(&switch, "link add br0 type bridge").unwrap();
        lab.ip(&switch, "link set p-router master br0").unwrap();
        lab.ip(&switch, "link set p-server master br0").unwrap();
        lab.ip(&switch, "link set br0 up").unwrap();
        lab.ip(&client, &format!("addr add 10.{n}.1.2/24 dev eth0"))
            .unwrap();
        lab.ip(&client, &format!("route add default via 10.{n}.1.1"))
            .unwrap();
        lab.ip(&router, &format!("addr add 10.{n}.1.1/24 dev in0"))
            .unwrap();
        lab.ip(&router, &format!("addr add 10.{n}.2.1/24 dev out0"))
            .unwrap();
        lab.sysctl(&router, "net.ipv4.ip_forward", "1").unwrap();
        lab.ip(&server, &format!("addr add 10.{n}.2.2/24 dev eth0"))
            .unwrap();
        lab.ip(&server, &format!("route add default via 10.{n}.2.1"))
            .unwrap();
        // Resolve neighbours before tracing, so journeys are not delayed by ARP.
        lab.exec(&client, &["ping", "-c1", "-W2", &format!("10.{n}.2.2")])
            .expect("the sandbox network forwards");
        Net {
            lab,
            n,
            client,
            router,
            switch,
            server,
            _claim: claim,
        }
    }

    /// `expr` restricted to this sandbox's addresses, so that tests running
    /// in parallel do not see each other's traffic.
    pub fn only(&self, expr: &str) -> String {
        format!("({expr}) and net 10.{}.0.0/16", self.n)
    }

    pub fn client_ip(&self) -> String {
        format!("10.{}.1.2", self.n)
    }
    pub fn server_ip(&self) -> String {
        format!("10.{}.2.2", self.n)
    }
    pub fn ping(&self) {
        self.lab
            .exec(&self.client, &["ping", "-c1", "-W2", &self.server_ip()])
            .expect("ping");
    }
    /// A TCP listener on the server's `port`, listening when this returns;
    /// joining it gives what one connection sent, to its end.
    pub fn tcp_server(&self, port: u16) -> pktpath::netns::NsThread<Vec<u8>> {
        let bind = format!("{}:{port}", self.server_ip());
        listening(&self.server, move |ready| {
            use std::io::Read;
            let l = std::net::TcpListener::bind(bind).unwrap();
            ready();
            let (mut s, _) = l.accept().unwrap();
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).unwrap();
            buf
        })
    }
    /// One TCP connection from the client to the server's `port`, sending
    /// `data` and closing.
    pub fn tcp_send(&self, port: u16, data: &[u8]) {
        let dst = format!("{}:{port}", self.server_ip());
        let data = data.to_vec();
        pktpath::netns::in_netns(&self.client, move || {
            use std::io::Write;
            let mut s = std::net::TcpStream::connect(dst).unwrap();
            s.write_all(&data).unwrap();
        })
        .unwrap()
        .join()
        .unwrap();
    }
    /// One UDP datagram from the client to the server's port.
    pub fn udp(&self, port: u16) {
        let dst = format!("{}:{port}", self.server_ip());
        pktpath::netns::in_netns(&self.client, move || {
            let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
            s.send_to(b"pktpath test", dst).unwrap();
        })
        .unwrap()
        .join()
        .unwrap();
    }
}

/// Runs `f` on a thread in network namespace `ns` and returns once `f`
/// calls the `ready` it is given (its socket bound and set up), so traffic
/// sent after this finds it. Start receivers after `Pktpath::start`: a read
/// timeout then counts from the test's own traffic, never from how long
/// pktpath took to be ready.
pub fn listening<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce(&dyn Fn()) -> T + Send + 'static,
) -> pktpath::netns::NsThread<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    let t = pktpath::netns::in_netns(ns, move || {
        f(&move || {
            tx.send(()).ok();
        })
    })
    .unwrap();
    rx.recv()
        .expect("the receiver thread failed before it was ready");
    t
}

/// A running pktpath.
pub struct Pktpath {
    child: Option<Child>,
    out: PathBuf,
    err: PathBuf,
    dir: PathBuf,
}

fn scratch_dir() -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "pktpath-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

impl Pktpath {
    /// Starts `pktpath --json ARGS` and waits until its probes are attached.
    pub fn start(args: &[&str]) -> Pktpath {
        let dir = scratch_dir();
        let (out, err, ready) = (dir.join("out"), dir.join("err"), dir.join("ready"));
        let idle: &[&str] = if args.contains(&"--idle-timeout") {
            &[]
        } else {
            &["--idle-timeout", "0.5"]
        };
        let child = Command::new(BIN)
            .arg("--json")
            .arg("--ready-file")
            .arg(&ready)
            .args(idle)
            .args(args)
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .expect("pktpath starts");
        let mut p = Pktpath {
            child: Some(child),
            out,
            err,
            dir,
        };
        // Scaled up under software emulation (tests/vm/run.sh).
        let limit = std::env::var("PKTPATH_TEST_READY_S")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(60);
        let t = Instant::now();
        while !ready.exists() {
            if let Some(st) = p.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("pktpath exited ({st}) before ready: {}", p.stderr());
            }
            assert!(
                t.elapsed() < Duration::from_secs(limit),
                "pktpath never ready in {limit} s: {}",
                p.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("pktpath ready in {:.1} s", t.elapsed().as_secs_f64());
        p
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Sends `signal`, waits for the exit; returns the status, the JSON
    /// lines printed and stderr.
    pub fn stop_with(mut self, signal: i32) -> (std::process::ExitStatus, Vec<Value>, String) {
        // Let the last events arrive (slower under emulation).
        let settle = std::env::var("PKTPATH_TEST_SETTLE_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(800);
        std::thread::sleep(Duration::from_millis(settle));
        let mut child = self.child.take().unwrap();
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, signal) };
        let t = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "pktpath did not stop"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let text = std::fs::read_to_string(&self.out).unwrap();
        // The journeys: the network's line (the first) is not one.
        let lines = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON {l}: {e}")))
            .filter(|v: &Value| v.get("network").is_none())
            .collect();
        (status, lines, self.stderr())
    }

    pub fn stop(self) -> Vec<Value> {
        let (status, lines, stderr) = self.stop_with(libc::SIGINT);
        assert!(status.success(), "pktpath failed: {stderr}");
        assert!(stderr.contains("journeys"), "no summary: {stderr}");
        lines
    }
}

impl Drop for Pktpath {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Journeys whose packet line contains all of `words`: in the packet's own
/// headers, not in those of the packet an ICMP error is about (", for ...").
pub fn journeys_with<'a>(all: &'a [Value], words: &[&str]) -> Vec<&'a Value> {
    all.iter()
        .filter(|j| {
            let p = j["packet"].as_str().unwrap_or("");
            let p = p.split_once(", for ").map_or(p, |(own, _)| own);
            words.iter().all(|w| p.contains(w))
        })
        .collect()
}

/// (site, netns name, device) of each step.
pub fn path(j: &Value) -> Vec<(String, String, String)> {
    j["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["site"].as_str().unwrap().to_string(),
                s["netns_name"].as_str().unwrap().to_string(),
                s["dev"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// The journey's first step on a device (route lookups and the like have
/// none).
pub fn first_on_a_device(j: &Value) -> &Value {
    j["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["dev"].as_str().is_some_and(|d| !d.is_empty()))
        .unwrap_or_else(|| panic!("no step on a device: {j:#}"))
}

/// Asserts that `expected` (site, netns, dev) appear in this order in the
/// journey (other steps may come between).
pub fn assert_in_order(j: &Value, expected: &[(&str, &str, &str)]) {
    let p = path(j);
    let mut i = 0;
    for want in expected {
        match p[i..]
            .iter()
            .position(|(s, n, d)| s == want.0 && n == want.1 && (want.2.is_empty() || d == want.2))
        {
            Some(k) => i += k + 1,
            None => panic!("step {want:?} missing (in order) from journey path:\n{p:#?}"),
        }
    }
}

/// A classic pcap (little-endian, microseconds, DLT_USER0) holding
/// `records`, each an mbuf_trace record with its (seconds, microseconds)
/// timestamp, as FreeBSD's `tcpdump -i mbuf_trace -w` writes them.
pub fn mbuf_trace_pcap(records: &[((u32, u32), Vec<u8>)]) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend(0xa1b2c3d4u32.to_le_bytes());
    p.extend(2u16.to_le_bytes());
    p.extend(4u16.to_le_bytes());
    p.extend([0u8; 8]);
    p.extend(65535u32.to_le_bytes());
    p.extend(147u32.to_le_bytes());
    for ((secs, usecs), rec) in records {
        p.extend(secs.to_le_bytes());
        p.extend(usecs.to_le_bytes());
        p.extend((rec.len() as u32).to_le_bytes());
        p.extend((rec.len() as u32).to_le_bytes());
        p.extend(rec);
    }
    p
}

/// An Ethernet frame of a UDP datagram 192.0.2.1:5000 > 192.0.2.2:`dport`.
pub fn udp_frame(dport: u16) -> Vec<u8> {
    let mut frame = vec![0u8; 12];
    frame.extend([0x08, 0x00, 0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0]);
    frame.extend([192, 0, 2, 1, 192, 0, 2, 2, 0x13, 0x88]);
    frame.extend(dport.to_be_bytes());
    frame.extend([0, 8, 0, 0]);
    frame
}
