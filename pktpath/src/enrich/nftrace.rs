//! nftables rule-level tracing: which table, chain and rule saw a packet,
//! with the rule's text and its verdict.
//!
//! # Why
//!
//! On kernels where function probes work, the rules a packet met could be
//! read from `nft_do_chain` itself. Our own machines forbid kprobes and
//! fentry; only tracepoints work, and no tracepoint names a rule. The one
//! kernel interface that reports rule-level verdicts there is nftables
//! tracing: for a packet whose `skb->nf_trace` bit is set, every base chain
//! evaluation sends `NFT_MSG_TRACE` netlink messages to the
//! `NFNLGRP_NFTRACE` group of the packet's network namespace (what
//! `nft monitor trace` prints): table, chain, rule handle, verdict (or
//! the chain's policy), and, once per chain evaluation, the input and
//! output interfaces, the mark and the first bytes of the network and
//! transport headers.
//!
//! # What it does
//!
//! [`NftraceSession::start`] adds, in each given namespace, a table named
//! `pktpath_trace_<pid>` (families `inet` and `bridge`) whose base chains,
//! on prerouting and output at priority -500 (before raw, conntrack and
//! NAT), set `meta nftrace set 1` for the packets that match the
//! translation of the user's filter ([`translate_filter`]), or for every
//! packet when it cannot be translated. A netlink socket per namespace,
//! opened inside that namespace, receives the traces on a reader thread;
//! [`NftTrace`] is one decoded message. [`RulesetCache`] gives the text of a
//! rule as `nft -a list ruleset` prints it (stateless: counters without
//! their values), and the hook, priority and policy of base chains.
//!
//! `skb->nf_trace` is cleared when a packet changes namespace (veth,
//! `skb_scrub_packet`), so each namespace needs its own table. Netdev
//! (ingress/egress) chains run before prerouting and are not traced.
//!
//! # How traces tie to packets
//!
//! `NFTA_TRACE_ID` is not an skb address. In current kernels (since the
//! 2023 rework of `nft_traceinfo`; the 6.12 and 6.18 sources have it) it is
//! `siphash_3u32(hash32_ptr(skb), skb_get_hash_net(net, skb), skb->skb_iif,
//! key)`, computed once per base chain evaluation, with a key drawn at
//! random once per boot; older kernels used `jhash_2words` of the same three
//! values, without a secret. Neither user space nor BPF can compute the
//! siphash: the id only groups the messages of one packet in one namespace
//! (same skb, same flow hash, same input device). Messages after the first of a chain evaluation carry no
//! headers; the reader copies them from the last message with the same
//! namespace and id ([`NftTrace::headers_inherited`]). To tie a trace to a
//! journey step, match the namespace inode, the interfaces (`iif`/`oif`),
//! the mark, the L3/L4 header fields that do not change on the way (IP id
//! and length, addresses before NAT, ports, TCP sequence: see
//! [`NftTrace::l3_bytes`]) and time: [`NftTrace::received_ns`] is
//! `CLOCK_MONOTONIC`, the clock of `bpf_ktime_get_ns`, taken when the
//! message was read, so it comes shortly after the step.
//!
//! # What it leaves behind
//!
//! Nothing: the tables are deleted when the session is dropped (the caller
//! handles SIGINT and SIGTERM by returning normally, so drop runs). After a
//! SIGKILL, the next start deletes the tables of processes that no longer
//! exist ([`sweep_leftovers`]). Sockets close with the process.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Write;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use netlink_packet_core::{
    parse_string, parse_u16_be, parse_u32, parse_u32_be, parse_u64_be, NetlinkBuffer, NlaBuffer,
    NlasIterator,
};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

use pktpath_core::clock::monotonic_ns;

/// Prefix of the names of our tables; the pid (and a per-process counter
/// after the first session) follows.
pub const TABLE_PREFIX: &str = "pktpath_trace_";
/// Priority of our base chains: before conntrack defragmentation (-400),
/// raw (-300), conntrack (-200) and destination NAT (-100).
pub const CHAIN_PRIORITY: i32 = -500;

// include/uapi/linux/netfilter/nfnetlink.h, nf_tables.h
const NFNLGRP_NFTRACE: u32 = 9;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_TRACE: u16 = 17;
const NFTA_TRACE_TABLE: u16 = 1;
const NFTA_TRACE_CHAIN: u16 = 2;
const NFTA_TRACE_RULE_HANDLE: u16 = 3;
const NFTA_TRACE_TYPE: u16 = 4;
const NFTA_TRACE_VERDICT: u16 = 5;
const NFTA_TRACE_ID: u16 = 6;
const NFTA_TRACE_LL_HEADER: u16 = 7;
const NFTA_TRACE_NETWORK_HEADER: u16 = 8;
const NFTA_TRACE_TRANSPORT_HEADER: u16 = 9;
const NFTA_TRACE_IIF: u16 = 10;
const NFTA_TRACE_IIFTYPE: u16 = 11;
const NFTA_TRACE_OIF: u16 = 12;
const NFTA_TRACE_OIFTYPE: u16 = 13;
const NFTA_TRACE_MARK: u16 = 14;
const NFTA_TRACE_NFPROTO: u16 = 15;
const NFTA_TRACE_POLICY: u16 = 16;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;
/// Size of the `struct nfgenmsg` that precedes the attributes.
const NFGENMSG_LEN: usize = 4;

/// A network namespace to trace in: a path that can be entered with
/// `setns` and its inode (as events report it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetnsRef {
    /// A name under /run/netns, "host" for our own, or "netns:INODE".
    pub name: String,
    pub path: PathBuf,
    pub inode: u32,
}

impl NetnsRef {
    /// A namespace made with `ip netns add NAME`.
    pub fn named(name: &str) -> Result<NetnsRef> {
        let inode = super::netns::named_inode(name)
            .ok_or_else(|| anyhow!("no network namespace named {name}"))?;
        let path = super::netns::NETNS_DIRS
            .iter()
            .map(|d| PathBuf::from(d).join(name))
            .find(|p| p.exists())
            .ok_or_else(|| anyhow!("no network namespace named {name}"))?;
        Ok(NetnsRef {
            name: name.to_string(),
            path,
            inode,
        })
    }

    /// The namespace this process runs in.
    pub fn own() -> Result<NetnsRef> {
        let path = PathBuf::from("/proc/self/ns/net");
        let inode = std::fs::metadata(&path)
            .context("cannot read /proc/self/ns/net")?
            .ino() as u32;
        Ok(NetnsRef {
            name: "host".into(),
            path,
            inode,
        })
    }

    /// Namespace `inode`, found under /run/netns or through a process in it.
    pub fn from_inode(inode: u32) -> Result<NetnsRef> {
        let path = super::netns::path_of(inode)
            .ok_or_else(|| anyhow!("no way to enter network namespace {inode}"))?;
        let name = match path.parent().and_then(|p| p.to_str()) {
            Some(d) if super::netns::NETNS_DIRS.contains(&d) => path
                .file_name()
                .and_then(|f| f.to_str())
                .unwrap_or("?")
                .to_string(),
            _ => format!("netns:{inode}"),
        };
        Ok(NetnsRef { name, path, inode })
    }

    fn is_own(&self) -> bool {
        super::netns::own_inode() == Some(self.inode)
    }
}

/// Runs `nft ARGS` inside namespace `ns`, with `input` on its standard input.
pub fn nft_in(ns: &NetnsRef, args: &[&str], input: Option<&str>) -> Result<String> {
    run_in(ns, "nft", args, input)
}

/// Runs `program ARGS` inside namespace `ns`, with `input` on its standard
/// input; its standard output.
pub fn run_in(ns: &NetnsRef, program: &str, args: &[&str], input: Option<&str>) -> Result<String> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Kept open until the child has started.
    let ns_file = if ns.is_own() {
        None
    } else {
        Some(File::open(&ns.path).with_context(|| format!("cannot open {}", ns.path.display()))?)
    };
    if let Some(f) = &ns_file {
        let fd = f.as_raw_fd();
        // SAFETY: setns is a plain system call, safe between fork and exec;
        // it changes only the child.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot run {program} in netns {}", ns.name))?;
    drop(ns_file);
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "{program} {} in netns {} failed: {}",
            args.join(" "),
            ns.name,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

// ---------------------------------------------------------------------------
// pcap filter -> nft matches

/// Translates a pcap-filter expression into nft match expressions, one per
/// alternative: a packet matches the filter when it matches any of them.
/// Knows `host`, `src|dst host`, `net A/N`, `src|dst net`, `ip`, `ip6`,
/// `icmp`, `icmp6`, `tcp`, `udp`, `sctp`, `[tcp|udp|sctp] [src|dst] port N`,
/// joined with `and` (`&&`), `or` (`||`) and parentheses (expanded into
/// alternatives). Anything else (`not`, names) gives None: trace every
/// packet (the caller warns). The translation may select more packets than
/// the filter (ARP and non-IP frames aside, it selects the same); extra
/// traces only cost messages.
pub fn translate_filter(filter: &str) -> Option<Vec<String>> {
    let spaced = filter
        .replace("&&", " and ")
        .replace("||", " or ")
        .replace('(', " ( ")
        .replace(')', " ) ");
    let tokens: Vec<&str> = spaced.split_whitespace().collect();
    if tokens.is_empty() {
        return None;
    }
    let mut pos = 0;
    let dnf = or_expr(&tokens, &mut pos)?;
    if pos != tokens.len() || dnf.is_empty() {
        return None;
    }
    Some(dnf)
}

/// Alternatives past this many: trace everything instead.
const MAX_RULES: usize = 16;

fn or_expr(t: &[&str], pos: &mut usize) -> Option<Vec<String>> {
    let mut out = and_expr(t, pos)?;
    while t.get(*pos) == Some(&"or") {
        *pos += 1;
        out.extend(and_expr(t, pos)?);
        if out.len() > MAX_RULES {
            return None;
        }
    }
    Some(out)
}

fn and_expr(t: &[&str], pos: &mut usize) -> Option<Vec<String>> {
    let mut conj = factor(t, pos)?;
    while t.get(*pos) == Some(&"and") {
        *pos += 1;
        let rhs = factor(t, pos)?;
        let mut next = Vec::new();
        for c in &conj {
            for p in &rhs {
                next.push(format!("{c} {p}"));
            }
        }
        if next.len() > MAX_RULES {
            return None;
        }
        conj = next;
    }
    Some(conj)
}

fn factor(t: &[&str], pos: &mut usize) -> Option<Vec<String>> {
    if t.get(*pos) == Some(&"(") {
        *pos += 1;
        let inner = or_expr(t, pos)?;
        (t.get(*pos) == Some(&")")).then_some(())?;
        *pos += 1;
        return Some(inner);
    }
    let start = *pos;
    while t
        .get(*pos)
        .is_some_and(|w| !matches!(*w, "and" | "or" | "(" | ")"))
    {
        *pos += 1;
    }
    if start == *pos {
        return None;
    }
    primitive(&t[start..*pos])
}

/// One pcap primitive as nft alternatives.
fn primitive(tokens: &[&str]) -> Option<Vec<String>> {
    let mut t = tokens;
    // Protocol qualifier.
    let mut proto: Option<&str> = None;
    if let Some(first) = t.first() {
        if matches!(
            *first,
            "ip" | "ip6" | "tcp" | "udp" | "sctp" | "icmp" | "icmp6"
        ) {
            proto = Some(first);
            t = &t[1..];
        }
    }
    if t.is_empty() {
        return Some(vec![match proto? {
            "ip" => "meta protocol ip".into(),
            "ip6" => "meta protocol ip6".into(),
            "icmp" => "meta l4proto icmp".into(),
            "icmp6" => "meta l4proto ipv6-icmp".into(),
            p => format!("meta l4proto {p}"),
        }]);
    }
    // Direction qualifier.
    let mut dirs: &[&str] = &["saddr", "daddr"];
    let mut ports: &[&str] = &["sport", "dport"];
    match t[0] {
        "src" => {
            dirs = &["saddr"];
            ports = &["sport"];
            t = &t[1..];
        }
        "dst" => {
            dirs = &["daddr"];
            ports = &["dport"];
            t = &t[1..];
        }
        _ => {}
    }
    let (kind, value) = match t {
        [kind, value] => (*kind, *value),
        // `src 10.0.0.1`: host implied.
        [value] if dirs.len() == 1 => ("host", *value),
        _ => return None,
    };
    match kind {
        "host" | "net" => {
            if matches!(proto, Some(p) if !matches!(p, "ip" | "ip6")) {
                return None;
            }
            let (addr, prefix) = match value.split_once('/') {
                Some((a, p)) => (a, Some(p.parse::<u8>().ok()?)),
                None if kind == "net" => return None,
                None => (value, None),
            };
            let ip: IpAddr = addr.parse().ok()?;
            let family = match (ip, proto) {
                (IpAddr::V4(_), None | Some("ip")) => "ip",
                (IpAddr::V6(_), None | Some("ip6")) => "ip6",
                _ => return None,
            };
            let max = if ip.is_ipv4() { 32 } else { 128 };
            if prefix.is_some_and(|p| p > max) || (kind == "host" && prefix.is_some()) {
                return None;
            }
            let operand = match prefix {
                Some(p) => format!("{ip}/{p}"),
                None => ip.to_string(),
            };
            Some(
                dirs.iter()
                    .map(|d| format!("{family} {d} {operand}"))
                    .collect(),
            )
        }
        "port" => {
            let port: u16 = value.parse().ok()?;
            let l4 = match proto {
                None => "meta l4proto { tcp, udp, sctp } th".to_string(),
                Some(p @ ("tcp" | "udp" | "sctp")) => p.to_string(),
                _ => return None,
            };
            Some(ports.iter().map(|p| format!("{l4} {p} {port}")).collect())
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Trace messages

/// What a trace message reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TraceKind {
    /// A rule matched and gave a verdict (possibly `continue`).
    Rule,
    /// Return from a chain: by a `return` rule, or at the end of a
    /// non-base chain (verdict `continue`, no rule handle).
    Return,
    /// The end of a base chain: its policy decided.
    Policy,
    /// An unknown type number.
    Other(u32),
}

/// One decoded `NFT_MSG_TRACE` message.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct NftTrace {
    /// Inode of the namespace whose socket received it.
    pub netns_ino: u32,
    /// `NFTA_TRACE_ID`: the same for all messages of one packet in one
    /// namespace (see the module documentation).
    pub id: u32,
    /// Family of the table: ip, ip6, inet, arp, bridge, netdev. (Names
    /// are shared (`intern`): tens of thousands of messages a second
    /// repeat a few.)
    pub family: Arc<str>,
    /// Protocol the chain processed (`NFTA_TRACE_NFPROTO`): ipv4, ipv6...
    pub nfproto: Option<Arc<str>>,
    pub table: Arc<str>,
    pub chain: Arc<str>,
    pub rule_handle: Option<u64>,
    pub kind: TraceKind,
    /// accept, drop, continue, break, return, jump CHAIN, goto CHAIN,
    /// queue N, stolen, repeat, stop; for a policy: accept or drop.
    pub verdict: Arc<str>,
    /// Input and output interface indexes in this namespace.
    pub iif: Option<u32>,
    pub oif: Option<u32>,
    /// ARPHRD_* types of those interfaces.
    pub iif_type: Option<u16>,
    pub oif_type: Option<u16>,
    /// skb->mark (0 when the kernel did not send one).
    pub mark: u32,
    /// Up to 20 bytes of the link-layer header (a VLAN tag included).
    pub ll_header: Header<20>,
    /// Up to 40 bytes from the network header.
    pub network_header: Header<40>,
    /// Up to 20 bytes from the transport header.
    pub transport_header: Header<20>,
    /// Interfaces and headers were copied from an earlier message of the
    /// same packet and chain (the kernel sends them once per chain).
    pub headers_inherited: bool,
    /// CLOCK_MONOTONIC nanoseconds when the message was read.
    pub received_ns: u64,
}

impl NftTrace {
    /// Whether this message comes from one of our own tracing tables.
    pub fn is_own(&self) -> bool {
        parse_table_pid(&self.table).is_some()
    }

    /// The message 6.x kernels send when evaluation reaches the end of a
    /// chain's rules (the blob's last element): type rule, verdict
    /// continue, no handle. The return or policy message that follows says
    /// the same; the session does not pass these on.
    pub fn is_end_marker(&self) -> bool {
        self.kind == TraceKind::Rule && self.rule_handle.is_none() && &*self.verdict == "continue"
    }

    /// The network and transport headers as one buffer starting at the IP
    /// header, when they are contiguous (the IP header was no longer than
    /// what the kernel copied): for [`pktpath_core::packet::decode`] with `l3`.
    pub fn l3_bytes(&self) -> Option<Vec<u8>> {
        let nh = &self.network_header;
        let ip_hdr_len = match nh.first()? >> 4 {
            4 => ((nh[0] & 0xf) as usize) * 4,
            6 => 40,
            _ => return None,
        };
        if nh.len() != ip_hdr_len {
            return None;
        }
        let mut b = nh.to_vec();
        b.extend_from_slice(&self.transport_header);
        Some(b)
    }

    /// A one-line summary, in the manner of `nft monitor trace`.
    pub fn line(&self) -> String {
        let what = match self.kind {
            TraceKind::Rule => format!(
                "rule handle {} verdict {}",
                self.rule_handle.map_or("?".into(), |h| h.to_string()),
                self.verdict
            ),
            TraceKind::Return => match self.rule_handle {
                Some(h) => format!("rule handle {h} verdict {}", self.verdict),
                None => format!("end of chain, verdict {}", self.verdict),
            },
            TraceKind::Policy => format!("policy {}", self.verdict),
            TraceKind::Other(n) => format!("trace type {n} verdict {}", self.verdict),
        };
        format!(
            "trace id {:08x} {} {} {} {what}",
            self.id, self.family, self.table, self.chain
        )
    }
}

/// The name nft uses for an NFPROTO_* family number.
pub fn family_name(nfproto: u8) -> String {
    match nfproto {
        0 => "unspec".into(),
        1 => "inet".into(),
        2 => "ip".into(),
        3 => "arp".into(),
        5 => "netdev".into(),
        7 => "bridge".into(),
        10 => "ip6".into(),
        n => format!("family{n}"),
    }
}

fn nfproto_name(n: u32) -> String {
    match n {
        2 => "ipv4".into(),
        3 => "arp".into(),
        7 => "bridge".into(),
        10 => "ipv6".into(),
        n => format!("proto{n}"),
    }
}

/// A verdict code (`enum nft_verdicts` or NF_* with its upper bits) in
/// words; `chain` is the jump/goto target.
pub fn verdict_name(code: i32, chain: Option<&str>) -> String {
    let target = chain.unwrap_or("?");
    match code {
        -1 => "continue".into(),
        -2 => "break".into(),
        -3 => format!("jump {target}"),
        -4 => format!("goto {target}"),
        -5 => "return".into(),
        c if c < 0 => format!("verdict {c}"),
        c => match c & 0xff {
            0 => "drop".into(),
            1 => "accept".into(),
            2 => "stolen".into(),
            3 => format!("queue {}", (c as u32) >> 16),
            4 => "repeat".into(),
            5 => "stop".into(),
            _ => format!("verdict {c}"),
        },
    }
}

/// Decodes one netlink message (header included); Ok(None) when it is not
/// an nftables trace. Never panics on malformed input.
pub fn parse_trace(msg: &[u8], netns_ino: u32, received_ns: u64) -> Result<Option<NftTrace>> {
    let nl = NetlinkBuffer::new_checked(msg).map_err(|e| anyhow!("{e}"))?;
    if nl.message_type() != (NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_TRACE) {
        return Ok(None);
    }
    let payload = nl.payload();
    if payload.len() < NFGENMSG_LEN {
        bail!("trace message too short");
    }
    let mut t = NftTrace {
        netns_ino,
        id: 0,
        family: intern(&family_name(payload[0])),
        nfproto: None,
        table: intern(""),
        chain: intern(""),
        rule_handle: None,
        kind: TraceKind::Other(0),
        verdict: intern(""),
        iif: None,
        oif: None,
        iif_type: None,
        oif_type: None,
        mark: 0,
        ll_header: Header::default(),
        network_header: Header::default(),
        transport_header: Header::default(),
        headers_inherited: false,
        received_ns,
    };
    let mut policy = None;
    let mut verdict = None;
    for nla in NlasIterator::new(&payload[NFGENMSG_LEN..]) {
        let nla = nla.map_err(|e| anyhow!("bad attribute: {e}"))?;
        let v = nla.value();
        let e = |e: netlink_packet_core::DecodeError| anyhow!("attribute {}: {e}", nla.kind());
        match nla.kind() {
            NFTA_TRACE_TABLE => t.table = intern(nla_str(v)?),
            NFTA_TRACE_CHAIN => t.chain = intern(nla_str(v)?),
            NFTA_TRACE_RULE_HANDLE => t.rule_handle = Some(parse_u64_be(v).map_err(e)?),
            NFTA_TRACE_TYPE => {
                t.kind = match parse_u32_be(v).map_err(e)? {
                    1 => TraceKind::Policy,
                    2 => TraceKind::Return,
                    3 => TraceKind::Rule,
                    n => TraceKind::Other(n),
                }
            }
            NFTA_TRACE_VERDICT => verdict = Some(parse_verdict(v)?),
            // Put with nla_put_u32 (host order) since 6.4, before that as
            // be32 of a host-order hash: opaque either way.
            NFTA_TRACE_ID => t.id = parse_u32(v).map_err(e)?,
            NFTA_TRACE_LL_HEADER => t.ll_header = Header::from(v),
            NFTA_TRACE_NETWORK_HEADER => t.network_header = Header::from(v),
            NFTA_TRACE_TRANSPORT_HEADER => t.transport_header = Header::from(v),
            NFTA_TRACE_IIF => t.iif = Some(parse_u32_be(v).map_err(e)?),
            NFTA_TRACE_IIFTYPE => t.iif_type = Some(parse_u16_be(v).map_err(e)?),
            NFTA_TRACE_OIF => t.oif = Some(parse_u32_be(v).map_err(e)?),
            NFTA_TRACE_OIFTYPE => t.oif_type = Some(parse_u16_be(v).map_err(e)?),
            NFTA_TRACE_MARK => t.mark = parse_u32_be(v).map_err(e)?,
            NFTA_TRACE_NFPROTO => {
                t.nfproto = Some(intern(&nfproto_name(parse_u32_be(v).map_err(e)?)))
            }
            NFTA_TRACE_POLICY => policy = Some(parse_u32_be(v).map_err(e)? as i32),
            _ => {}
        }
    }
    t.verdict = intern(&match (t.kind, policy, verdict) {
        (TraceKind::Policy, Some(p), _) => verdict_name(p, None),
        (_, _, Some(v)) => v,
        (_, Some(p), None) => verdict_name(p, None),
        _ => String::new(),
    });
    Ok(Some(t))
}

/// A string attribute (NUL-terminated) without copying it.
fn nla_str(v: &[u8]) -> Result<&str> {
    let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
    std::str::from_utf8(&v[..end]).map_err(|_| anyhow!("a name that is not UTF-8"))
}

/// The shared copy of a name (table, chain, family, verdict): the reader
/// allocated five strings for each message. Bounded: names from a hostile
/// ruleset cannot grow it.
fn intern(s: &str) -> Arc<str> {
    thread_local! {
        static NAMES: std::cell::RefCell<std::collections::HashSet<Arc<str>>> =
            Default::default();
    }
    NAMES.with_borrow_mut(|names| {
        if let Some(n) = names.get(s) {
            return n.clone();
        }
        if names.len() >= 4096 {
            names.clear();
        }
        let n: Arc<str> = s.into();
        names.insert(n.clone());
        n
    })
}

/// Up to N bytes of a header, kept inline: a message is one allocation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Header<const N: usize> {
    len: u8,
    bytes: [u8; N],
}

impl<const N: usize> Default for Header<N> {
    fn default() -> Self {
        Header {
            len: 0,
            bytes: [0; N],
        }
    }
}

impl<const N: usize> From<&[u8]> for Header<N> {
    /// The first N bytes (the kernel sends at most that many).
    fn from(v: &[u8]) -> Self {
        let n = v.len().min(N);
        let mut h = Header::default();
        h.bytes[..n].copy_from_slice(&v[..n]);
        h.len = n as u8;
        h
    }
}

impl<const N: usize> std::ops::Deref for Header<N> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

impl<const N: usize> std::fmt::Debug for Header<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

impl<const N: usize> serde::Serialize for Header<N> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(s)
    }
}

/// The nested NFTA_TRACE_VERDICT attribute in words.
fn parse_verdict(nested: &[u8]) -> Result<String> {
    let mut code = None;
    let mut chain = None;
    for nla in NlasIterator::new(nested) {
        let nla: NlaBuffer<&[u8]> = nla.map_err(|e| anyhow!("bad verdict attribute: {e}"))?;
        match nla.kind() {
            NFTA_VERDICT_CODE => {
                code = Some(parse_u32_be(nla.value()).map_err(|e| anyhow!("verdict: {e}"))? as i32)
            }
            NFTA_VERDICT_CHAIN => {
                chain = Some(parse_string(nla.value()).map_err(|e| anyhow!("verdict: {e}"))?)
            }
            _ => {}
        }
    }
    let code = code.ok_or_else(|| anyhow!("verdict without code"))?;
    Ok(verdict_name(code, chain.as_deref()))
}

/// Decodes every trace message in one datagram; malformed ones are
/// skipped (counted in the second value).
pub fn parse_datagram(buf: &[u8], netns_ino: u32, received_ns: u64) -> (Vec<NftTrace>, usize) {
    let mut out = Vec::new();
    let mut bad = 0;
    let mut off = 0;
    while off < buf.len() {
        let rest = &buf[off..];
        let Ok(nl) = NetlinkBuffer::new_checked(rest) else {
            bad += 1;
            break;
        };
        let len = nl.length() as usize;
        match parse_trace(&rest[..len], netns_ino, received_ns) {
            Ok(Some(t)) => out.push(t),
            Ok(None) => {}
            Err(_) => bad += 1,
        }
        // NLMSG_ALIGN; a checked buffer has len >= 16, so this advances.
        off = off.saturating_add((len + 3) & !3);
    }
    (out, bad)
}

/// Fills the interfaces and headers of messages that lack them from the
/// previous message of the same packet (namespace and id).
#[derive(Default)]
struct Inheritance {
    last: HashMap<(u32, u32), Lent>,
}

/// What a message lends the next ones of its packet.
struct Lent {
    iif: Option<u32>,
    oif: Option<u32>,
    iif_type: Option<u16>,
    oif_type: Option<u16>,
    ll_header: Header<20>,
    network_header: Header<40>,
    transport_header: Header<20>,
    nfproto: Option<Arc<str>>,
}

impl Inheritance {
    /// The messages of one evaluation come together: the packets of the
    /// last moment suffice (4,096 copies of a message were 2.2 MB).
    const MAX: usize = 1024;

    fn apply(&mut self, t: &mut NftTrace) {
        let key = (t.netns_ino, t.id);
        let has_packet = !t.network_header.is_empty() || t.iif.is_some() || t.oif.is_some();
        if has_packet {
            if self.last.len() >= Self::MAX {
                self.last.clear();
            }
            let lent = Lent {
                iif: t.iif,
                oif: t.oif,
                iif_type: t.iif_type,
                oif_type: t.oif_type,
                ll_header: t.ll_header,
                network_header: t.network_header,
                transport_header: t.transport_header,
                nfproto: t.nfproto.clone(),
            };
            self.last.insert(key, lent);
        } else if let Some(prev) = self.last.get(&key) {
            t.iif = prev.iif;
            t.oif = prev.oif;
            t.iif_type = prev.iif_type;
            t.oif_type = prev.oif_type;
            t.ll_header = prev.ll_header;
            t.network_header = prev.network_header;
            t.transport_header = prev.transport_header;
            if t.nfproto.is_none() {
                t.nfproto = prev.nfproto.clone();
            }
            t.headers_inherited = true;
        }
    }
}

// ---------------------------------------------------------------------------
// The session

/// The pid in one of our table names, `pktpath_trace_<pid>[_<n>]`.
pub fn parse_table_pid(table: &str) -> Option<u32> {
    let rest = table.strip_prefix(TABLE_PREFIX)?;
    let pid = rest.split_once('_').map_or(rest, |(p, _)| p);
    pid.parse().ok()
}

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Deletes, in namespace `ns`, our tables whose process no longer exists
/// (left by a pktpath killed with SIGKILL); returns the tables deleted as
/// "FAMILY NAME".
pub fn sweep_leftovers(ns: &NetnsRef) -> Result<Vec<String>> {
    let (gone, script, _) = leftovers(ns)?;
    if !gone.is_empty() {
        nft_in(ns, &["-f", "-"], Some(&script))?;
    }
    Ok(gone)
}

/// [`sweep_leftovers`] in each of `namespaces`, in parallel; the tables
/// deleted as (netns name, "FAMILY NAME"). A namespace that vanished or
/// cannot be entered is passed over: there is nothing of ours to delete
/// that this run could reach.
pub fn sweep_everywhere(namespaces: &[NetnsRef]) -> Vec<(String, String)> {
    in_parallel(namespaces, sweep_leftovers)
        .into_iter()
        .filter_map(|(ns, r)| Some(r.ok()?.into_iter().map(move |t| (ns.name.clone(), t))))
        .flatten()
        .collect()
}

/// `f` on each namespace, eight at a time (each runs nft, a process).
fn in_parallel<T: Send>(
    namespaces: &[NetnsRef],
    f: impl Fn(&NetnsRef) -> T + Sync,
) -> Vec<(NetnsRef, T)> {
    std::thread::scope(|scope| {
        namespaces
            .chunks(8)
            .flat_map(|chunk| {
                let handles: Vec<_> = chunk
                    .iter()
                    .map(|ns| {
                        let f = &f;
                        scope.spawn(move || (ns.clone(), f(ns)))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("nft thread"))
                    .collect::<Vec<_>>()
            })
            .collect()
    })
}

/// Whether nf_tables is part of the running kernel. Where it is a module
/// that is not loaded, no namespace has a ruleset, and running nft (even
/// `nft --version`, which opens an nfnetlink socket) would load modules:
/// pktpath promises to change nothing, so it then leaves nftables alone.
pub fn nftables_loaded() -> bool {
    let Ok(modules) = std::fs::read_to_string("/proc/modules") else {
        // A kernel without module support: built in or absent, and
        // nothing can be loaded.
        return true;
    };
    if modules
        .lines()
        .any(|l| l.split_whitespace().next() == Some("nf_tables"))
    {
        return true;
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    std::fs::read_to_string(format!("/lib/modules/{}/modules.builtin", release.trim()))
        .is_ok_and(|b| b.lines().any(|l| l.ends_with("/nf_tables.ko")))
}

/// A namespace set up: the leftover tables swept, and the listener (none
/// where there is no ruleset to trace).
type Prepared = (Vec<String>, Option<Socket>);

/// Sets up one namespace: sweeps leftovers, opens the listener, adds
/// `script` (our table). Returns the tables swept and the socket; no
/// socket where the namespace has no nftables table of its own: no rule
/// there to report, and tracing costs every packet netlink messages.
fn setup_one(ns: &NetnsRef, script: &str) -> Result<Prepared> {
    let (gone, mut all, ruleset) = leftovers(ns)?;
    if !ruleset {
        if !gone.is_empty() {
            nft_in(ns, &["-f", "-"], Some(&all))?;
        }
        return Ok((gone, None));
    }
    let socket = open_listener(ns)?;
    all.push_str(script);
    nft_in(ns, &["-f", "-"], Some(&all))
        .with_context(|| format!("cannot add the tracing table in netns {}", ns.name))?;
    Ok((gone, Some(socket)))
}

/// Tables of dead pktpath runs in `ns`, the nft script deleting them, and
/// whether `ns` has tables other than pktpath's (a ruleset to trace).
fn leftovers(ns: &NetnsRef) -> Result<(Vec<String>, String, bool)> {
    let listing = nft_in(ns, &["list", "tables"], None)?;
    let mut gone = Vec::new();
    let mut script = String::new();
    let mut ruleset = false;
    for line in listing.lines() {
        let mut w = line.split_whitespace();
        let (Some("table"), Some(family), Some(name)) = (w.next(), w.next(), w.next()) else {
            continue;
        };
        let Some(pid) = parse_table_pid(name) else {
            ruleset = true;
            continue;
        };
        if pid_alive(pid) {
            continue;
        }
        // Declaring it first makes the delete succeed even if another
        // process swept it meanwhile.
        script.push_str(&format!(
            "table {family} {name}\ndelete table {family} {name}\n"
        ));
        gone.push(format!("{family} {name}"));
    }
    Ok((gone, script, ruleset))
}

/// The nft script adding our tracing table; `matches` as from
/// [`translate_filter`] (None: every packet).
pub fn table_script(table: &str, matches: Option<&[String]>) -> String {
    let all = [String::new()];
    let matches = matches.filter(|m| !m.is_empty()).unwrap_or(&all);
    let rules: String = matches
        .iter()
        .map(|m| {
            if m.is_empty() {
                "\t\tmeta nftrace set 1\n".to_string()
            } else {
                format!("\t\t{m} meta nftrace set 1\n")
            }
        })
        .collect();
    let chain = |name: &str, hook: &str| {
        format!(
            "\tchain {name} {{\n\t\ttype filter hook {hook} priority {CHAIN_PRIORITY}; policy accept;\n{rules}\t}}\n"
        )
    };
    format!(
        "table inet {table} {{\n{}{}}}\ntable bridge {table} {{\n{}{}}}\n",
        chain("pre", "prerouting"),
        chain("out", "output"),
        chain("pre", "prerouting"),
        chain("out", "output"),
    )
}

fn delete_script(table: &str) -> String {
    format!(
        "table inet {table}\ndelete table inet {table}\ntable bridge {table}\ndelete table bridge {table}\n"
    )
}

static SESSIONS: AtomicUsize = AtomicUsize::new(0);

/// Temporary tracing tables in some namespaces and the listener of their
/// traces. Dropping it removes the tables and stops the listener.
pub struct NftraceSession {
    table: String,
    namespaces: Vec<NetnsRef>,
    installed: Vec<NetnsRef>,
    rx: Receiver<Box<NftTrace>>,
    stop: Arc<AtomicBool>,
    stats: Arc<Stats>,
    reader: Option<JoinHandle<()>>,
    swept: Vec<(String, String)>,
    /// Namespaces left out because setting up there failed: (name, why).
    skipped: Vec<(String, String)>,
    /// Namespaces not traced: no nftables table there.
    without_rules: Vec<String>,
}

#[derive(Default)]
struct Stats {
    /// ENOBUFS from the kernel (messages lost) and messages we could not
    /// queue because the consumer did not keep up.
    lost: AtomicU64,
    malformed: AtomicU64,
    /// CLOCK_MONOTONIC time before which every message sent has been
    /// queued to the consumer (or counted lost).
    drained_ns: AtomicU64,
}

fn open_listener(ns: &NetnsRef) -> Result<Socket> {
    let open = || -> std::io::Result<Socket> {
        let mut s = Socket::new(NETLINK_NETFILTER)?;
        s.bind(&SocketAddr::new(0, 0))?;
        s.add_membership(NFNLGRP_NFTRACE)?;
        s.set_non_blocking(true)?;
        let size: libc::c_int = 8 << 20;
        // SAFETY: setsockopt with a pointer to a c_int of that size.
        unsafe {
            let p = &size as *const libc::c_int as *const libc::c_void;
            let n = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            if libc::setsockopt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, p, n) != 0 {
                libc::setsockopt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, p, n);
            }
        }
        Ok(s)
    };
    let socket = if ns.is_own() {
        open()
    } else {
        let path = ns.path.to_str().ok_or_else(|| anyhow!("bad netns path"))?;
        crate::netlab::in_netns(path, open)?.join()?
    };
    socket.with_context(|| format!("cannot join NFNLGRP_NFTRACE in netns {}", ns.name))
}

/// Messages the reader queues for the consumer at most.
pub const QUEUE_LEN: usize = 1 << 14;

impl NftraceSession {
    /// Sweeps leftovers of dead processes, opens a trace listener in each
    /// namespace, then adds the tracing table there. `matches`: nft match
    /// expressions from [`translate_filter`], one rule each; None traces
    /// every packet.
    pub fn start(namespaces: &[NetnsRef], matches: Option<Vec<String>>) -> Result<NftraceSession> {
        let n = SESSIONS.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let table = if n == 0 {
            format!("{TABLE_PREFIX}{pid}")
        } else {
            format!("{TABLE_PREFIX}{pid}_{n}")
        };
        // Each namespace: list tables (to sweep leftovers of dead runs),
        // open the listener, then one nft script deleting the leftovers
        // and adding our table. Namespaces are set up in parallel (two nft
        // runs each); one can vanish meanwhile (others' test networks,
        // containers stopping): skip it, fail only when none is left.
        let script = table_script(&table, matches.as_deref());
        let results = in_parallel(namespaces, |ns| setup_one(ns, &script));
        let mut swept = Vec::new();
        let mut skipped = Vec::new();
        let mut sockets = Vec::new();
        let mut traced = Vec::new();
        let mut without_rules = Vec::new();
        for (ns, r) in results {
            match r {
                Ok((tables, socket)) => {
                    swept.extend(tables.into_iter().map(|t| (ns.name.clone(), t)));
                    match socket {
                        Some(socket) => {
                            sockets.push((ns.inode, socket));
                            traced.push(ns);
                        }
                        None => without_rules.push(ns.name),
                    }
                }
                Err(e) => skipped.push((ns.name.clone(), format!("{e:#}"))),
            }
        }
        // Bounded: a reader that outruns the consumer loses messages
        // (counted), it does not grow the heap. Boxed: the queue's slots
        // are allocated up front (16,384 messages of 272 bytes were
        // 4.5 MB), the messages only while they are in it.
        let (tx, rx) = sync_channel(QUEUE_LEN);
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Stats::default());
        let reader = {
            let (stop, stats) = (stop.clone(), stats.clone());
            std::thread::Builder::new()
                .name("nftrace".into())
                .spawn(move || read_loop(sockets, tx, &stop, &stats))?
        };
        let session = NftraceSession {
            table,
            installed: traced.clone(),
            namespaces: traced,
            rx,
            stop,
            stats,
            reader: Some(reader),
            swept,
            skipped,
            without_rules,
        };
        if session.namespaces.is_empty() && !session.skipped.is_empty() {
            let why = session
                .skipped
                .first()
                .map_or("no namespace given".to_string(), |(n, e)| {
                    format!("netns {n}: {e}")
                });
            bail!("cannot add the tracing table: {why}");
        }
        Ok(session)
    }

    /// The name of our tables (families inet and bridge).
    pub fn table_name(&self) -> &str {
        &self.table
    }

    /// The namespaces traced.
    pub fn namespaces(&self) -> &[NetnsRef] {
        &self.namespaces
    }

    /// Namespaces left out because setting up there failed: (name, why).
    pub fn skipped(&self) -> &[(String, String)] {
        &self.skipped
    }

    /// Namespaces not traced because they have no nftables table.
    pub fn without_rules(&self) -> &[String] {
        &self.without_rules
    }

    /// Tables of dead processes removed at start: (netns name, "FAMILY NAME").
    pub fn swept(&self) -> &[(String, String)] {
        &self.swept
    }

    /// The next trace, if one is waiting.
    pub fn try_recv(&self) -> Option<NftTrace> {
        self.rx.try_recv().ok().map(|t| *t)
    }

    /// The next trace, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<NftTrace> {
        self.rx.recv_timeout(timeout).ok().map(|t| *t)
    }

    /// Up to `max` of the traces waiting now.
    pub fn drain(&self, max: usize) -> Vec<Box<NftTrace>> {
        self.rx.try_iter().take(max).collect()
    }

    /// Traces collected until `pred` holds for one of them or `timeout`
    /// passes (tests, and callers that wait for a known packet).
    pub fn collect_until(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&NftTrace) -> bool,
    ) -> Vec<NftTrace> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Some(t) = self.recv_timeout(left) else {
                break;
            };
            let done = pred(&t);
            out.push(t);
            if done {
                break;
            }
        }
        out
    }

    /// Messages lost: dropped by the kernel (socket buffer full) or not
    /// queued because nobody read them.
    pub fn lost(&self) -> u64 {
        self.stats.lost.load(Ordering::Relaxed)
    }

    /// CLOCK_MONOTONIC time before which every trace message the kernel
    /// sent is in the queue `drain` reads (or was counted lost). Read it
    /// before `drain`.
    pub fn drained_ns(&self) -> u64 {
        self.stats.drained_ns.load(Ordering::Acquire)
    }

    /// Messages that could not be decoded.
    pub fn malformed(&self) -> u64 {
        self.stats.malformed.load(Ordering::Relaxed)
    }

    /// Removes the tables and stops the listener; errors are returned here,
    /// where drop would ignore them.
    pub fn stop(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        let mut first_err = None;
        let script = delete_script(&self.table);
        for ns in self.installed.drain(..) {
            if let Err(e) = nft_in(&ns, &["-f", "-"], Some(&script)) {
                first_err.get_or_insert(e);
            }
        }
        self.stop.store(true, Ordering::Relaxed);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for NftraceSession {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            eprintln!("pktpath: removing the nftables tracing table: {e:#}");
        }
    }
}

fn read_loop(
    sockets: Vec<(u32, Socket)>,
    tx: SyncSender<Box<NftTrace>>,
    stop: &AtomicBool,
    stats: &Stats,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
    let mut inherit = Inheritance::default();
    let mut fds: Vec<libc::pollfd> = sockets
        .iter()
        .map(|(_, s)| libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    while !stop.load(Ordering::Relaxed) {
        // A socket that poll finds empty had nothing sent before this
        // (taken before it looks); the others are read below until they
        // are empty.
        let polled = monotonic_ns();
        // SAFETY: fds is a valid array of pollfd of that length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 20) };
        if n < 0 {
            continue;
        }
        if n > 0 {
            // Let a few milliseconds of messages gather: woken for each
            // one, the thread spent more time switching than reading (the
            // 8 MiB socket buffer holds a hundred times more; the
            // consumer waits for them 200 ms anyway).
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        for (i, (ino, sock)) in sockets.iter().enumerate() {
            if fds[i].revents == 0 {
                continue;
            }
            fds[i].revents = 0;
            loop {
                buf.clear();
                match sock.recv(&mut buf, 0) {
                    Ok(_) => {
                        let now = monotonic_ns();
                        let (traces, bad) = parse_datagram(&buf, *ino, now);
                        stats.malformed.fetch_add(bad as u64, Ordering::Relaxed);
                        for mut t in traces {
                            // Our own chain's messages are not passed on,
                            // nor need they lend their headers: the next
                            // chain's first message has its own.
                            if t.is_own() {
                                continue;
                            }
                            inherit.apply(&mut t);
                            if t.is_end_marker() {
                                continue;
                            }
                            match tx.try_send(Box::new(t)) {
                                Ok(()) => {}
                                Err(TrySendError::Full(_)) => {
                                    stats.lost.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(TrySendError::Disconnected(_)) => return,
                            }
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                        stats.lost.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        }
        stats.drained_ns.store(polled, Ordering::Release);
    }
}

// ---------------------------------------------------------------------------
// Rule text

/// The hook line of a base chain, as nft prints it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BaseChain {
    /// filter, nat, route.
    pub chain_type: String,
    /// prerouting, input, forward, output, postrouting, ingress, egress.
    pub hook: String,
    pub device: Option<String>,
    /// As printed: `filter`, `-500`, `dstnat`, `mangle - 5`...
    pub priority: String,
    pub policy: Option<String>,
    /// The whole line: `type filter hook forward priority filter; policy accept;`.
    pub text: String,
}

/// One chain of a ruleset.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ChainInfo {
    pub family: String,
    pub table: String,
    pub name: String,
    pub handle: Option<u64>,
    pub base: Option<BaseChain>,
    /// Rule handle -> rule text without its `# handle N` comment.
    pub rules: BTreeMap<u64, String>,
    /// Rule handles in the order the chain evaluates them.
    pub order: Vec<u64>,
}

/// A parsed `nft -a -s list ruleset`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ruleset {
    /// (family, table, chain) -> chain.
    pub chains: HashMap<(String, String, String), ChainInfo>,
}

fn unquote(s: &str) -> String {
    s.trim_matches('"').to_string()
}

/// Splits a trailing `# handle N` off a line.
fn split_handle(line: &str) -> (&str, Option<u64>) {
    match line.rsplit_once("# handle ") {
        Some((head, n)) => match n.trim().parse() {
            Ok(h) => (head.trim_end(), Some(h)),
            Err(_) => (line, None),
        },
        None => (line, None),
    }
}

fn parse_base_chain(line: &str) -> Option<BaseChain> {
    let w: Vec<&str> = line.split_whitespace().collect();
    if w.first() != Some(&"type") {
        return None;
    }
    let at = |key: &str| w.iter().position(|x| *x == key);
    let chain_type = w.get(1)?.to_string();
    let hook = w.get(at("hook")? + 1)?.trim_end_matches(';').to_string();
    let device = at("device").and_then(|i| w.get(i + 1)).map(|d| unquote(d));
    let prio_start = at("priority")? + 1;
    let mut prio = Vec::new();
    for x in &w[prio_start..] {
        prio.push(x.trim_end_matches(';'));
        if x.ends_with(';') {
            break;
        }
    }
    let policy = at("policy")
        .and_then(|i| w.get(i + 1))
        .map(|p| p.trim_end_matches(';').to_string());
    Some(BaseChain {
        chain_type,
        hook,
        device,
        priority: prio.join(" "),
        policy,
        text: line.to_string(),
    })
}

impl Ruleset {
    /// Parses the output of `nft -a [-s] list ruleset`. Sets, maps,
    /// flowtables and stateful objects are skipped.
    pub fn parse(text: &str) -> Ruleset {
        let mut rs = Ruleset::default();
        let mut table: Option<(String, String)> = None;
        let mut chain: Option<ChainInfo> = None;
        // Depth of blocks we skip (sets, maps...), inside a table.
        let mut skip = 0usize;
        for raw in text.lines() {
            let (line, handle) = split_handle(raw.trim());
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            if skip > 0 {
                if line == "}" {
                    skip -= 1;
                } else if line.ends_with('{') {
                    skip += 1;
                }
                continue;
            }
            if line == "}" {
                if let Some(c) = chain.take() {
                    rs.chains
                        .insert((c.family.clone(), c.table.clone(), c.name.clone()), c);
                } else {
                    table = None;
                }
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            if chain.is_none() && line.ends_with('{') {
                match (table.as_ref(), words.as_slice()) {
                    (None, ["table", family, name, "{"]) => {
                        table = Some((family.to_string(), unquote(name)));
                    }
                    (Some((family, t)), ["chain", name, "{"]) => {
                        chain = Some(ChainInfo {
                            family: family.clone(),
                            table: t.clone(),
                            name: unquote(name),
                            handle,
                            ..ChainInfo::default()
                        });
                    }
                    _ => skip = 1,
                }
                continue;
            }
            if let Some(c) = chain.as_mut() {
                if let Some(h) = handle {
                    c.rules.insert(h, line.to_string());
                    c.order.push(h);
                } else if let Some(b) = parse_base_chain(line) {
                    c.base = Some(b);
                }
                // Other lines (comment, devices = {...}) are ignored.
            }
        }
        rs
    }

    pub fn chain(&self, family: &str, table: &str, chain: &str) -> Option<&ChainInfo> {
        self.chains
            .get(&(family.to_string(), table.to_string(), chain.to_string()))
    }
}

/// Rule texts per namespace, read with `nft -a -s list ruleset` and read
/// again when a chain or rule handle is not known (at most every
/// `min_refresh`).
pub struct RulesetCache {
    per_ns: HashMap<u32, (Ruleset, Instant)>,
    pub min_refresh: Duration,
}

impl Default for RulesetCache {
    fn default() -> Self {
        RulesetCache {
            per_ns: HashMap::new(),
            min_refresh: Duration::from_millis(200),
        }
    }
}

/// What a trace message refers to, in the user's terms.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RuleInfo {
    pub family: String,
    pub table: String,
    pub chain: String,
    /// The base chain's hook line, when the chain is a base chain.
    pub base: Option<BaseChain>,
    pub rule_handle: Option<u64>,
    /// The rule as nft prints it (without `# handle N`).
    pub rule_text: Option<String>,
}

impl RulesetCache {
    pub fn new() -> RulesetCache {
        RulesetCache::default()
    }

    /// Reads the ruleset of `ns` now.
    pub fn refresh(&mut self, ns: &NetnsRef) -> Result<&Ruleset> {
        let text = nft_in(ns, &["-a", "-s", "list", "ruleset"], None)?;
        self.per_ns
            .insert(ns.inode, (Ruleset::parse(&text), Instant::now()));
        Ok(&self.per_ns[&ns.inode].0)
    }

    /// The chain, reading the ruleset again if it (or `handle` in it) is
    /// not known.
    pub fn chain(
        &mut self,
        ns: &NetnsRef,
        family: &str,
        table: &str,
        chain: &str,
        handle: Option<u64>,
    ) -> Option<&ChainInfo> {
        let known = |rs: &Ruleset| {
            rs.chain(family, table, chain)
                .is_some_and(|c| handle.is_none_or(|h| c.rules.contains_key(&h)))
        };
        let stale = match self.per_ns.get(&ns.inode) {
            None => true,
            Some((rs, at)) => !known(rs) && at.elapsed() >= self.min_refresh,
        };
        if stale && self.refresh(ns).is_err() {
            return None;
        }
        self.per_ns.get(&ns.inode)?.0.chain(family, table, chain)
    }

    /// The text of a rule, as nft prints it.
    pub fn rule_text(
        &mut self,
        ns: &NetnsRef,
        family: &str,
        table: &str,
        chain: &str,
        handle: u64,
    ) -> Option<String> {
        self.chain(ns, family, table, chain, Some(handle))?
            .rules
            .get(&handle)
            .cloned()
    }

    /// Table, chain, hook and rule text of a trace message (`ns` is the
    /// namespace it came from).
    pub fn describe(&mut self, ns: &NetnsRef, t: &NftTrace) -> RuleInfo {
        let c = self.chain(ns, &t.family, &t.table, &t.chain, t.rule_handle);
        RuleInfo {
            family: t.family.to_string(),
            table: t.table.to_string(),
            chain: t.chain.to_string(),
            base: c.and_then(|c| c.base.clone()),
            rule_handle: t.rule_handle,
            rule_text: t
                .rule_handle
                .and_then(|h| c.and_then(|c| c.rules.get(&h).cloned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translates_common_filters() {
        let t = |f: &str| translate_filter(f);
        assert_eq!(
            t("host 10.0.0.1").unwrap(),
            ["ip saddr 10.0.0.1", "ip daddr 10.0.0.1"]
        );
        assert_eq!(t("src host fd00::1").unwrap(), ["ip6 saddr fd00::1"]);
        assert_eq!(t("dst 10.1.2.3").unwrap(), ["ip daddr 10.1.2.3"]);
        assert_eq!(
            t("net 10.0.0.0/8").unwrap(),
            ["ip saddr 10.0.0.0/8", "ip daddr 10.0.0.0/8"]
        );
        assert_eq!(t("icmp").unwrap(), ["meta l4proto icmp"]);
        assert_eq!(
            t("(udp port 5 or icmp) and net 10.2.0.0/16").unwrap(),
            [
                "udp sport 5 ip saddr 10.2.0.0/16",
                "udp sport 5 ip daddr 10.2.0.0/16",
                "udp dport 5 ip saddr 10.2.0.0/16",
                "udp dport 5 ip daddr 10.2.0.0/16",
                "meta l4proto icmp ip saddr 10.2.0.0/16",
                "meta l4proto icmp ip daddr 10.2.0.0/16"
            ]
        );
        assert!(t("(icmp").is_none() && t("icmp)").is_none() && t("()").is_none());
        assert_eq!(t("ip6").unwrap(), ["meta protocol ip6"]);
        assert_eq!(t("udp dst port 9999").unwrap(), ["udp dport 9999"]);
        assert_eq!(
            t("port 53").unwrap(),
            [
                "meta l4proto { tcp, udp, sctp } th sport 53",
                "meta l4proto { tcp, udp, sctp } th dport 53"
            ]
        );
        assert_eq!(
            t("icmp and host 10.9.1.2").unwrap(),
            [
                "meta l4proto icmp ip saddr 10.9.1.2",
                "meta l4proto icmp ip daddr 10.9.1.2"
            ]
        );
        assert_eq!(
            t("tcp port 80 && dst net 10.0.0.0/24").unwrap(),
            [
                "tcp sport 80 ip daddr 10.0.0.0/24",
                "tcp dport 80 ip daddr 10.0.0.0/24"
            ]
        );
        assert_eq!(
            t("udp or icmp").unwrap(),
            ["meta l4proto udp", "meta l4proto icmp"]
        );
    }

    #[test]
    fn refuses_what_it_cannot_translate() {
        for f in [
            "",
            "not host 10.0.0.1",
            "host example.com",
            "net 10.1",
            "port http",
            "tcp port 99999",
            "vlan and udp",
            "host 10.0.0.1/8",
            "net 10.0.0.0/33",
            "ip6 host 10.0.0.1",
            "tcp host 10.0.0.1",
            "src or dst host 10.0.0.1",
            "tcp[13] & 2 != 0",
            "ether host 00:11:22:33:44:55",
            "and",
        ] {
            assert_eq!(translate_filter(f), None, "{f}");
        }
        // Too many alternatives.
        assert_eq!(
            translate_filter("host 1.1.1.1 and host 2.2.2.2 and port 1 and port 2 and port 3"),
            None
        );
    }

    #[test]
    fn table_script_has_rules_in_both_families() {
        let s = table_script("pktpath_trace_7", Some(&["udp dport 9".to_string()]));
        assert!(s.contains("table inet pktpath_trace_7 {"));
        assert!(s.contains("table bridge pktpath_trace_7 {"));
        assert!(s.contains("type filter hook prerouting priority -500; policy accept;"));
        assert!(s.contains("type filter hook output priority -500; policy accept;"));
        assert_eq!(s.matches("\t\tudp dport 9 meta nftrace set 1\n").count(), 4);
        let all = table_script("t", None);
        assert_eq!(all.matches("\t\tmeta nftrace set 1\n").count(), 4);
    }

    #[test]
    fn table_names() {
        assert_eq!(parse_table_pid("pktpath_trace_123"), Some(123));
        assert_eq!(parse_table_pid("pktpath_trace_123_4"), Some(123));
        assert_eq!(parse_table_pid("pktpath_trace_x"), None);
        assert_eq!(parse_table_pid("filter"), None);
    }

    #[test]
    fn verdicts_in_words() {
        assert_eq!(verdict_name(0, None), "drop");
        assert_eq!(verdict_name(1, None), "accept");
        assert_eq!(verdict_name(-1, None), "continue");
        assert_eq!(verdict_name(-3, Some("c")), "jump c");
        assert_eq!(verdict_name(-4, Some("c")), "goto c");
        assert_eq!(verdict_name(-5, None), "return");
        assert_eq!(verdict_name((5 << 16) | 3, None), "queue 5");
        // NF_DROP_ERR(-EHOSTUNREACH)
        assert_eq!(verdict_name(113 << 16, None), "drop");
    }

    fn nla(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(value);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    fn message(family: u8, attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut payload = vec![family, 0, 0, 0];
        for a in attrs {
            payload.extend_from_slice(a);
        }
        let mut m = Vec::new();
        m.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&(NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_TRACE).to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&payload);
        m
    }

    fn sample() -> Vec<u8> {
        let mut verdict = nla(NFTA_VERDICT_CODE, &0u32.to_be_bytes());
        verdict.extend(nla(NFTA_VERDICT_CHAIN, b"x\0"));
        let ip = [
            0x45, 0, 0, 29, 0x12, 0x34, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        message(
            1,
            &[
                nla(NFTA_TRACE_NFPROTO, &2u32.to_be_bytes()),
                nla(NFTA_TRACE_TYPE, &3u32.to_be_bytes()),
                nla(NFTA_TRACE_ID, &0xdeadbeefu32.to_ne_bytes()),
                nla(NFTA_TRACE_CHAIN, b"filter_forward\0"),
                nla(NFTA_TRACE_TABLE, b"t\0"),
                nla(NFTA_TRACE_RULE_HANDLE, &7u64.to_be_bytes()),
                nla(NFTA_TRACE_VERDICT | 0x8000, &verdict),
                nla(NFTA_TRACE_MARK, &0x42u32.to_be_bytes()),
                nla(NFTA_TRACE_IIF, &3u32.to_be_bytes()),
                nla(NFTA_TRACE_IIFTYPE, &1u16.to_be_bytes()),
                nla(NFTA_TRACE_NETWORK_HEADER, &ip),
                nla(
                    NFTA_TRACE_TRANSPORT_HEADER,
                    &[0x9f, 0x59, 0x27, 0x0f, 0, 9, 0, 0],
                ),
            ],
        )
    }

    #[test]
    fn parses_a_trace_message() {
        let m = sample();
        let t = parse_trace(&m, 4026531840, 5).unwrap().unwrap();
        assert_eq!(&*t.family, "inet");
        assert_eq!(t.nfproto.as_deref(), Some("ipv4"));
        assert_eq!(t.kind, TraceKind::Rule);
        assert_eq!(t.id, 0xdeadbeef);
        assert_eq!((&*t.table, &*t.chain), ("t", "filter_forward"));
        assert_eq!(t.rule_handle, Some(7));
        assert_eq!(&*t.verdict, "drop");
        assert_eq!(t.mark, 0x42);
        assert_eq!((t.iif, t.iif_type, t.oif), (Some(3), Some(1), None));
        let flow = pktpath_core::packet::decode(&t.l3_bytes().unwrap(), true).unwrap();
        assert!(flow
            .line()
            .starts_with("10.0.0.1 > 10.0.0.2 UDP 40793 > 9999"));
        assert_eq!(
            t.line(),
            "trace id deadbeef inet t filter_forward rule handle 7 verdict drop"
        );

        // Two messages in one datagram, the second a policy without headers.
        let mut d = m.clone();
        d.extend(message(
            1,
            &[
                nla(NFTA_TRACE_TYPE, &1u32.to_be_bytes()),
                nla(NFTA_TRACE_ID, &0xdeadbeefu32.to_ne_bytes()),
                nla(NFTA_TRACE_CHAIN, b"c\0"),
                nla(NFTA_TRACE_TABLE, b"t\0"),
                nla(NFTA_TRACE_POLICY, &1u32.to_be_bytes()),
            ],
        ));
        let (mut ts, bad) = parse_datagram(&d, 1, 2);
        assert_eq!((ts.len(), bad), (2, 0));
        assert_eq!((ts[1].kind, &*ts[1].verdict), (TraceKind::Policy, "accept"));
        let mut inh = Inheritance::default();
        for t in ts.iter_mut() {
            inh.apply(t);
        }
        assert!(ts[1].headers_inherited);
        assert_eq!(ts[1].network_header, ts[0].network_header);
        assert_eq!(ts[1].iif, Some(3));
    }

    #[test]
    fn hostile_input_does_not_panic() {
        let m = sample();
        // Every truncation, and every single-byte corruption.
        for len in 0..m.len() {
            let _ = parse_datagram(&m[..len], 0, 0);
            let _ = parse_trace(&m[..len], 0, 0);
        }
        for i in 0..m.len() {
            for v in [0u8, 1, 3, 0x7f, 0x80, 0xff] {
                let mut c = m.clone();
                c[i] = v;
                let _ = parse_datagram(&c, 0, 0);
            }
        }
        // A pseudo-random soup.
        let mut x: u32 = 12345;
        for _ in 0..2000 {
            let mut c = m.clone();
            for _ in 0..4 {
                x = x.wrapping_mul(1103515245).wrapping_add(12345);
                let i = (x as usize >> 8) % c.len();
                c[i] = (x >> 3) as u8;
            }
            let _ = parse_datagram(&c, 0, 0);
        }
        assert_eq!(parse_datagram(&[], 0, 0).0.len(), 0);
    }

    #[test]
    fn parses_a_ruleset_listing() {
        let text = r#"table inet pktpath_trace_1 { # handle 1
	chain pre { # handle 1
		type filter hook prerouting priority -500; policy accept;
		meta nftrace set 1 # handle 4
	}
}
table inet t { # handle 3
	set s { # handle 3
		type ipv4_addr
		elements = { 1.2.3.4, 5.6.7.8 }
	}

	map m { # handle 9
		type ipv4_addr : verdict
		elements = { 1.2.3.4 : accept,
			     5.6.7.8 : drop }
	}

	chain mychain { # handle 1
		udp dport 9999 counter drop comment "x { y" # handle 4
	}

	chain fw { # handle 2
		type filter hook forward priority filter; policy drop;
		ip daddr @s counter accept # handle 5
		jump mychain # handle 6
	}
}
table netdev n { # handle 4
	chain ing { # handle 1
		type filter hook ingress device "lo" priority filter - 5; policy accept;
	}
}
"#;
        let rs = Ruleset::parse(text);
        assert_eq!(rs.chains.len(), 4, "{rs:#?}");
        let my = rs.chain("inet", "t", "mychain").unwrap();
        assert_eq!(my.base, None);
        assert_eq!(
            my.rules[&4],
            r#"udp dport 9999 counter drop comment "x { y""#
        );
        let fw = rs.chain("inet", "t", "fw").unwrap();
        let b = fw.base.as_ref().unwrap();
        assert_eq!(
            (b.chain_type.as_str(), b.hook.as_str(), b.priority.as_str()),
            ("filter", "forward", "filter")
        );
        assert_eq!(b.policy.as_deref(), Some("drop"));
        assert_eq!(
            b.text,
            "type filter hook forward priority filter; policy drop;"
        );
        assert_eq!(fw.rules[&5], "ip daddr @s counter accept");
        assert_eq!(fw.rules[&6], "jump mychain");
        assert_eq!(fw.handle, Some(2));
        let ing = rs
            .chain("netdev", "n", "ing")
            .unwrap()
            .base
            .clone()
            .unwrap();
        assert_eq!(ing.device.as_deref(), Some("lo"));
        assert_eq!(ing.priority, "filter - 5");
        let pre = rs.chain("inet", "pktpath_trace_1", "pre").unwrap();
        assert_eq!(pre.base.as_ref().unwrap().priority, "-500");
    }
}
