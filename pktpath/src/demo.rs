//! `pktpath demo`: a small network in its own namespaces, some traffic
//! through it, and the journeys of that traffic.
//!
//! ```text
//!  client ---- router ---------------- switch ------------ server
//!  10.99.1.2   10.99.1.1 | 10.99.2.1   br0 (bridge)        10.99.2.2
//!              nftables: drop udp dport 9999,
//!              masquerade out of out0
//! ```
//!
//! Traffic: a ping (forwarded, NATed, bridged, answered), a TCP exchange
//! (delivered to a socket), a UDP datagram the router's nftables rule drops,
//! and one to a port nobody listens on (ICMP port unreachable comes back).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::netlab::Lab;
use crate::netns::in_netns;

pub const PREFIX: &str = "ppdemo-";
/// The filter the demo traces with.
pub const FILTER: &str = "ip net 10.99.0.0/16";

/// The demo network's namespaces.
pub struct DemoNet {
    pub lab: Lab,
    pub client: String,
    pub router: String,
    pub switch: String,
    pub server: String,
}

const ROUTER_RULES: &str = r#"
table inet ppdemo {
    chain forward {
        type filter hook forward priority filter; policy accept;
        udp dport 9999 counter drop
    }
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "out0" masquerade
    }
}
"#;

/// Builds the network (removing a previous demo's leftovers first).
pub fn build() -> Result<DemoNet> {
    let mut lab = Lab::new(PREFIX)?;
    let client = lab.netns("client")?;
    let router = lab.netns("router")?;
    let switch = lab.netns("switch")?;
    let server = lab.netns("server")?;
    lab.veth(&client, "eth0", &router, "in0")?;
    lab.veth(&router, "out0", &switch, "p-router")?;
    lab.veth(&switch, "p-server", &server, "eth0")?;
    lab.ip(&switch, "link add br0 type bridge")?;
    lab.ip(&switch, "link set p-router master br0")?;
    lab.ip(&switch, "link set p-server master br0")?;
    lab.ip(&switch, "link set br0 up")?;
    lab.ip(&client, "addr add 10.99.1.2/24 dev eth0")?;
    lab.ip(&client, "route add default via 10.99.1.1")?;
    lab.ip(&router, "addr add 10.99.1.1/24 dev in0")?;
    lab.ip(&router, "addr add 10.99.2.1/24 dev out0")?;
    lab.sysctl(&router, "net.ipv4.ip_forward", "1")?;
    lab.ip(&server, "addr add 10.99.2.2/24 dev eth0")?;
    lab.ip(&server, "route add default via 10.99.2.1")?;
    lab.nft(&router, ROUTER_RULES)
        .context("loading the router's nftables rules (is nftables installed?)")?;
    // A shaping qdisc on the router's way out (tbf never bypasses its
    // queue, unlike pfifo), so qdisc steps show. Optional: tbf may be missing.
    lab.ip(&router, "link set out0 txqueuelen 1000").ok();
    lab.exec(
        &router,
        &[
            "tc", "qdisc", "replace", "dev", "out0", "root", "tbf", "rate", "1gbit", "burst",
            "32k", "latency", "10ms",
        ],
    )
    .ok();
    Ok(DemoNet {
        lab,
        client,
        router,
        switch,
        server,
    })
}

/// Sends the demo traffic; returns once everything was sent and answered.
pub fn traffic(net: &DemoNet) -> Result<()> {
    let ready = Arc::new(AtomicBool::new(false));
    let flag = ready.clone();
    // TCP server: read one message, answer, close.
    let server = in_netns(&net.server, move || -> std::io::Result<String> {
        let l = TcpListener::bind("10.99.2.2:8080")?;
        flag.store(true, Ordering::SeqCst);
        let (mut s, _) = l.accept()?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf)?;
        s.write_all(b"hello back")?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    })?;
    while !ready.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(10));
    }
    net.lab
        .exec(&net.client, &["ping", "-c", "1", "-W", "2", "10.99.2.2"])
        .context("ping from client to server")?;
    let client = in_netns(&net.client, || -> std::io::Result<()> {
        let addr: SocketAddr = "10.99.2.2:8080".parse().expect("address");
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
        s.write_all(b"hello pktpath")?;
        let mut buf = [0u8; 64];
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        let _ = s.read(&mut buf)?;
        let u = UdpSocket::bind("10.99.1.2:0")?;
        u.send_to(b"dropped by the router", "10.99.2.2:9999")?;
        u.send_to(b"nobody listens here", "10.99.2.2:7777")?;
        Ok(())
    })?;
    client.join()?.context("client traffic")?;
    server.join()?.context("server")?;
    Ok(())
}
