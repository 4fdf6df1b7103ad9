//! The event model: one observation of one packet at one site (a `Step`),
//! decoded from the raw ring buffer record and enriched with names.
//!
//! Steps are what every sink renders and what journeys are made of; they are
//! plain data (serde), so replaying or testing them needs no kernel.

use std::borrow::Cow;
// Looked up per event: a fast hash, no need for SipHash's defence.
use rustc_hash::FxHashMap as HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::enrich::{netns::NetnsNames, sockets::SocketOwners, symbols::Symbols};
use crate::kernel::abi::{self, cstr, RawEvent};
use crate::kernel::btf::{ArgKind, Inventory, Tracepoint};
use crate::packet;
use crate::sites;

/// What kind of site a step was observed at.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum SiteKind {
    #[default]
    Tracepoint,
    /// Entry of a kernel function that takes the packet.
    Function,
    /// Return of a function that gives a packet.
    Return,
}

/// One observation of a packet.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Step {
    /// Kernel monotonic time, ns.
    pub ts_ns: u64,
    /// Site name: the tracepoint or function.
    pub site: Arc<str>,
    #[serde(default)]
    pub kind: SiteKind,
    pub subsystem: Arc<str>,
    /// The kernel source file where it fires, where known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<Arc<str>>,
    /// Network namespace inode and name.
    pub netns: u32,
    pub netns_name: Arc<str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dev: Option<Arc<str>>,
    pub ifindex: u32,
    /// skb->len at this step.
    pub len: u32,
    pub mark: u32,
    pub cpu: u16,
    /// The skb address (the packet's identity while it lives), written
    /// "0xffff..." in JSON.
    #[serde(with = "hex_addr")]
    pub skb: u64,
    /// Tied to the packet by CPU and addresses (FIB, neighbour).
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub correlated: bool,
    /// Headers at this step, when captured ("10.0.1.2 > 10.0.2.2 ICMP ...").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<Arc<str>>,
    /// The packet's conntrack entry at this step, when it has one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ct: Option<Box<crate::conntrack::Conntrack>>,
    /// VLAN id of a tag held outside the packet data (skb->vlan_tci).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub vlan: Option<u16>,
    pub detail: Detail,
    /// Raw captured bytes and whether they start at L3 (not serialized).
    /// Shared between the steps that saw the same bytes.
    #[serde(skip)]
    pub packet: Option<(bool, Arc<[u8]>)>,
    /// The site's role, when the decoder knew it (else `role()` looks
    /// the site up by name).
    #[serde(skip)]
    pub role_hint: RoleHint,
}

/// A cached `Step::role()`: not part of what a step is (equality ignores it).
#[derive(Clone, Copy, Debug, Default)]
pub struct RoleHint(pub Option<u8>);

impl PartialEq for RoleHint {
    fn eq(&self, _: &RoleHint) -> bool {
        true
    }
}

/// An address as "0x..." text, as people read kernel pointers.
mod hex_addr {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{v:#x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let digits = text.trim_start_matches("0x");
        u64::from_str_radix(digits, 16).map_err(serde::de::Error::custom)
    }
}

/// What a site says beyond "the packet was here".
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Detail {
    None,
    /// kfree_skb: the packet was dropped.
    Drop(Box<DropInfo>),
    /// consume_skb: freed after use.
    Free {
        #[serde(skip_serializing_if = "Option::is_none")]
        location: Option<String>,
    },
    /// net_dev_xmit: driver return code.
    Xmit {
        rc: i64,
    },
    /// A queueing discipline took the packet.
    Qdisc(Box<QdiscInfo>),
    /// skb_copy_datagram_iovec: bytes copied to user space.
    Deliver {
        bytes: i64,
    },
    /// A FIB lookup.
    Route(Box<RouteLookup>),
    /// Next hop resolution on output.
    Neigh(Box<NeighInfo>),
    /// Queued to a datagram socket (sk_data_ready).
    Socket(Box<SocketInfo>),
    /// Other tracepoints: their arguments by name.
    Args {
        args: Vec<(String, String)>,
    },
    /// An nftables chain evaluated the packet (from nftables tracing): the
    /// rule that matched, or the chain's policy, and the verdict.
    Rule(Box<RuleMatch>),
    /// The packet crossed a bridge: in by one port, out by others, and
    /// what the forwarding database said of its destination MAC.
    Bridge(Box<BridgeCross>),
    /// A netfilter hook ran its chains (nf_hook_slow): which hook, and
    /// whether the packet went on (accept) or died there (drop).
    Hook(Box<HookRun>),
    /// What a capture file said of this step, in words (replayed comments,
    /// FreeBSD mbuf_trace strings).
    Text {
        text: String,
    },
    /// A function returned a packet; `from` is the packet it was given when
    /// that is another one (a clone or copy joins the journey).
    Return {
        #[serde(skip_serializing_if = "Option::is_none")]
        from: Option<String>,
    },
}

/// A drop (Detail::Drop). The details of the rarer steps are boxed: a
/// step's detail is then the size of the common ones (Step 296 -> 208
/// bytes: memory and copies when journeys are kept and moved).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DropInfo {
    pub reason: String,
    pub code: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// What pktpath found out about this drop when it happened (e.g.
    /// the rp_filter setting and the route back), in words.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub explanation: Option<String>,
    /// The fix that goes with `explanation`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub hint: Option<String>,
}

/// A queueing discipline (Detail::Qdisc).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct QdiscInfo {
    pub kind: String,
    pub handle: String,
}

/// Next hop resolution (Detail::Neigh).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct NeighInfo {
    pub addr: String,
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// NeighInfo::error of a packet the neighbour layer queued.
const NEIGH_QUEUED: &str = "packet queued until the neighbour answers";

impl NeighInfo {
    /// The packet waits in the neighbour's queue until it is resolved.
    pub fn queued(&self) -> bool {
        self.error.as_deref() == Some(NEIGH_QUEUED)
    }
}

/// The socket a datagram was queued to (Detail::Socket).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SocketInfo {
    /// UDP, UDP-Lite, ICMP or ICMPv6 (a ping socket).
    pub proto: String,
    /// The address and port it is bound to: `10.0.0.2:53`, `*:53`,
    /// `[fd00::2]:53`; a ping socket's address and echo id: `*, echo id
    /// 4660`.
    pub addr: String,
    /// Its inode (as in /proc/PID/fd, `ss -e`).
    pub inode: u64,
    /// The process holding it when it was seen: "comm (pid N)".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
}

impl SocketInfo {
    /// "UDP socket 10.0.0.2:53 of dnsmasq (pid 12)".
    pub fn describe(&self) -> String {
        match &self.process {
            Some(p) => format!("{} socket {} of {p}", self.proto, self.addr),
            None => format!("{} socket {}", self.proto, self.addr),
        }
    }
}

/// A bridge crossing (Detail::Bridge).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BridgeCross {
    pub bridge: String,
    pub in_port: String,
    pub out_ports: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fdb: Option<String>,
    /// The VLAN it is in on the bridge and whether the port lets it in.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub vlan: Option<String>,
}

/// A netfilter hook's run (Detail::Hook).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct HookRun {
    pub family: String,
    pub hook: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
}

/// A FIB lookup (Detail::Route; boxed: most steps have a smaller detail).
/// The fields after `kind` come from the namespace's routes (enrich::routes).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RouteLookup {
    pub family: u8,
    pub table: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub dst: String,
    pub src: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_dev: Option<String>,
    /// Route type: unicast, local, broadcast, anycast, multicast,
    /// blackhole, unreachable, prohibit, throw (none: no route matched,
    /// or not known).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub kind: Option<String>,
    /// The chosen route as `ip route` prints it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub route: Option<String>,
    /// The chosen route's prefix ("10.0.0.0/24", "default").
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub metric: Option<u64>,
    /// Who installed the route (kernel, static, boot, dhcp...).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub protocol: Option<String>,
    /// The `ip rule` that sent the lookup to this table, as `ip rule`
    /// prints it, when that is not just the default rules.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rule: Option<String>,
    /// The lookup found nothing here and no later rule can: the
    /// packet has no route (network unreachable).
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub unroutable: bool,
}

/// What an nftables chain did with the packet (Detail::Rule).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RuleMatch {
    pub family: String,
    pub table: String,
    pub chain: String,
    /// The base chain's hook (prerouting, input, forward...), if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hook: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    /// rule, policy or return.
    pub what: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handle: Option<u64>,
    /// The rule as `nft -a list ruleset` prints it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// For a table iptables-nft manages: the rule as `iptables -S`
    /// prints it, and its number in the chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iptables: Option<(u32, String)>,
    pub verdict: String,
}

impl Step {
    /// What this step means for the packet's life (kernel::abi::ROLE_*).
    pub fn role(&self) -> u8 {
        if let Some(r) = self.role_hint.0 {
            return r;
        }
        match self.kind {
            SiteKind::Tracepoint => sites::info(&self.site).role,
            SiteKind::Function => sites::function_role(&self.site),
            SiteKind::Return => crate::kernel::abi::ROLE_PASS,
        }
    }

    /// The short words shown next to the site (borrowed where they are
    /// fixed words: most steps of a journey, written once per step).
    pub fn describe(&self) -> Cow<'_, str> {
        match &self.detail {
            Detail::None if self.kind == SiteKind::Function => "".into(),
            Detail::None => sites::info(&self.site).what.into(),
            Detail::Text { text } => text.as_str().into(),
            Detail::Free { location: None } => "freed".into(),
            Detail::Xmit { rc: 0 } => "transmitted".into(),
            Detail::Return { from: None } => "returned".into(),
            _ => self.describe_made().into(),
        }
    }

    /// `describe` for the details whose words are made from their fields.
    fn describe_made(&self) -> String {
        match &self.detail {
            Detail::None if self.kind == SiteKind::Function => String::new(),
            Detail::Return { from: Some(f) } => format!("returned a new packet made from {f}"),
            Detail::Return { from: None } => "returned".into(),
            Detail::Text { text } => text.clone(),
            Detail::Bridge(b) => {
                let BridgeCross {
                    bridge,
                    in_port,
                    out_ports,
                    fdb,
                    vlan,
                } = &**b;
                let flooded = fdb.as_deref().is_some_and(|f| f.ends_with("flooded"));
                let out = if out_ports.is_empty() && flooded {
                    // br_flood sends clones (new skbs) when the frame is
                    // also delivered locally, or to all but one port.
                    "flooded (the other ports get copies, not followed here)".to_string()
                } else if out_ports.is_empty() {
                    "not forwarded to another port".to_string()
                } else {
                    format!("out {}", out_ports.join(", "))
                };
                let fdb = fdb
                    .as_ref()
                    .map(|f| format!("; fdb: {f}"))
                    .unwrap_or_default();
                let vlan = vlan.as_ref().map(|v| format!("; {v}")).unwrap_or_default();
                format!("bridge {bridge}: in {in_port}, {out}{fdb}{vlan}")
            }
            Detail::Hook(h) => match &h.verdict {
                Some(v) => format!("netfilter {} {}: {v}", h.family, h.hook),
                None => format!("netfilter {} {}", h.family, h.hook),
            },
            Detail::Rule(r) => {
                let RuleMatch {
                    family,
                    table,
                    chain,
                    hook,
                    what,
                    handle,
                    rule,
                    iptables,
                    verdict,
                    ..
                } = &**r;
                if let Some((n, text)) = iptables {
                    return format!(
                        "iptables {family} {table} {chain} rule {n} `{text}`: {verdict}"
                    );
                }
                let hook = hook
                    .as_ref()
                    .map(|h| format!(" (hook {h})"))
                    .unwrap_or_default();
                let said = match (what.as_str(), rule, handle) {
                    ("policy", ..) => format!("policy {verdict}"),
                    (_, Some(r), Some(h)) => format!("rule `{r}` (handle {h}): {verdict}"),
                    (_, None, Some(h)) => format!("rule handle {h}: {verdict}"),
                    _ => format!("end of chain: {verdict}"),
                };
                format!("{family} {table} {chain}{hook}: {said}")
            }
            Detail::None => sites::info(&self.site).what.to_string(),
            Detail::Drop(d) => match &d.location {
                Some(l) => format!("drop: {} at {l}", d.reason),
                None => format!("drop: {}", d.reason),
            },
            Detail::Free { location } => match location {
                // A fragment's skb, its payload now part of the datagram.
                Some(l) if is_reassembly(l) => format!("joined its datagram (freed at {l})"),
                Some(l)
                    if l.starts_with("skb_release_data")
                        && self.flow().is_some_and(|f| f.fragment.is_some()) =>
                {
                    format!("freed with its datagram (at {l})")
                }
                Some(l) => format!("freed at {l}"),
                None => "freed".into(),
            },
            Detail::Xmit { rc } => match rc {
                0 => "transmitted".into(),
                rc => format!("transmit returned {rc}"),
            },
            Detail::Qdisc(q) => {
                format!("{} {} {}", sites::info(&self.site).what, q.kind, q.handle)
            }
            Detail::Deliver { bytes } => format!("{bytes} bytes copied to user space"),
            Detail::Route(r) => {
                let RouteLookup {
                    table,
                    error,
                    dst,
                    gateway,
                    out_dev,
                    kind,
                    route,
                    rule,
                    ..
                } = &**r;
                let mut text = format!("route to {dst}: table {table}");
                if let Some(r) = rule {
                    text += &format!(" (rule `{r}`)");
                }
                match error {
                    Some(e) => text += &format!(": {e}"),
                    None => {
                        if let Some(g) = gateway {
                            text += &format!(" via {g}");
                        }
                        if let Some(d) = out_dev {
                            text += &format!(" dev {d}");
                        }
                    }
                }
                if let Some(r) = route {
                    text += &format!(", route `{r}`");
                    // `ip route` names every type but unicast first.
                    if let Some(k) = kind.as_ref().filter(|k| !r.starts_with(k.as_str())) {
                        if k != "unicast" {
                            text += &format!(" ({k})");
                        }
                    }
                }
                text
            }
            Detail::Socket(k) => format!("queued to {}", k.describe()),
            Detail::Neigh(n) => match &n.error {
                Some(e) => format!("resolve next hop {}: {}, {e}", n.addr, n.state),
                None => format!("resolve next hop {}: {}", n.addr, n.state),
            },
            Detail::Args { args } if &*self.site == "icmp_send" => {
                let arg = |k: &str| {
                    args.iter()
                        .find(|(n, _)| n == k)
                        .and_then(|(_, v)| v.parse::<u8>().ok())
                };
                match (arg("type"), arg("code")) {
                    (Some(t), Some(c)) => {
                        let words = packet::icmp_error_words(false, t, c).unwrap_or("error");
                        format!("sends ICMP {words} (type {t} code {c}) to its sender")
                    }
                    _ => sites::info(&self.site).what.to_string(),
                }
            }
            Detail::Args { args } => {
                let what = sites::info(&self.site).what;
                let a: Vec<String> = args.iter().map(|(k, v)| format!("{k}={v}")).collect();
                [what.to_string(), a.join(" ")]
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ")
            }
        }
    }

    pub fn flow(&self) -> Option<packet::Flow> {
        let (l3, data) = self.packet.as_ref()?;
        packet::decode(data, *l3)
    }

    /// The fragment of a datagram its headers show, if any (without
    /// decoding the rest).
    pub fn fragment(&self) -> Option<packet::Fragment> {
        let (l3, data) = self.packet.as_ref()?;
        packet::fragment(data, *l3)
    }
}

/// Names of a netfilter protocol family and hook number (NFPROTO_*,
/// NF_INET_*, NF_BR_*, NF_ARP_*, NF_NETDEV_*), as iptables names hooks.
pub fn nf_hook_name(pf: u8, hook: u8) -> (String, String) {
    let family = match pf {
        1 => "inet",
        2 => "ipv4",
        3 => "arp",
        5 => "netdev",
        7 => "bridge",
        10 => "ipv6",
        _ => "",
    };
    let inet = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];
    let name = match pf {
        1 | 2 | 10 => inet.get(hook as usize).copied(),
        3 => ["IN", "OUT", "FORWARD"].get(hook as usize).copied(),
        5 => ["INGRESS", "EGRESS"].get(hook as usize).copied(),
        7 => [
            "PREROUTING",
            "INPUT",
            "FORWARD",
            "OUTPUT",
            "POSTROUTING",
            "BROUTING",
        ]
        .get(hook as usize)
        .copied(),
        _ => None,
    };
    (
        if family.is_empty() {
            format!("family {pf}")
        } else {
            family.to_string()
        },
        name.map_or(format!("hook {hook}"), str::to_string),
    )
}

/// A step for tests of the kernel-free code (journeys, sinks).
#[cfg(test)]
pub(crate) fn test_step(ts_ns: u64, site: &str, netns: &str, detail: Detail) -> Step {
    Step {
        ts_ns,
        site: site.into(),
        kind: SiteKind::Tracepoint,
        subsystem: sites::info(site).subsystem.into(),
        source: None,
        netns: 1,
        netns_name: netns.into(),
        dev: Some("eth0".into()),
        ifindex: 2,
        len: 84,
        mark: 0,
        cpu: 0,
        skb: 1,
        correlated: false,
        headers: None,
        ct: None,
        vlan: None,
        detail,
        packet: None,
        role_hint: RoleHint::default(),
    }
}

/// Decodes raw events with what the run knows: the slots' tracepoints,
/// the BTF enums, namespace names and kernel symbols.
pub struct Decoder {
    slots: Vec<Tracepoint>,
    /// Function sites by site id.
    pub functions: Vec<crate::kernel::functions::FuncSite>,
    inv: Inventory,
    pub netns: NetnsNames,
    pub symbols: Symbols,
    names: Names,
    sockets: SocketOwners,
}

/// Shared strings, so that steps hold pointers, not copies: site names by
/// slot and function id, device names, and the last bytes seen per skb
/// with their header line (a packet shows the same bytes at most sites).
#[derive(Default)]
struct Names {
    /// Site, subsystem and source: FIB4, FIB6, neighbour, then by slot.
    slots: Vec<Option<SiteNames>>,
    /// Function site name and source ("module NAME"), by site id.
    functions: Vec<Option<FunctionNames>>,
    subsystems: HashMap<&'static str, Arc<str>>,
    devs: HashMap<[u8; 16], Arc<str>>,
    packets: Vec<Option<SeenBytes>>,
}

type FunctionNames = (Arc<str>, Option<Arc<str>>, u8);
type SiteNames = (Arc<str>, Arc<str>, Option<Arc<str>>, u8);

struct SeenBytes {
    skb: u64,
    l3: bool,
    bytes: Arc<[u8]>,
    headers: Option<Arc<str>>,
}

/// Slots of the per-skb bytes cache (direct-mapped by skb address).
const PACKET_CACHE: usize = 1024;

impl Names {
    fn subsystem(&mut self, name: &'static str) -> Arc<str> {
        self.subsystems
            .entry(name)
            .or_insert_with(|| name.into())
            .clone()
    }

    fn dev(&mut self, raw: &[u8; 16]) -> Option<Arc<str>> {
        if raw[0] == 0 {
            return None;
        }
        if let Some(d) = self.devs.get(raw) {
            return Some(d.clone());
        }
        let d: Arc<str> = cstr(raw).into();
        self.devs.insert(*raw, d.clone());
        Some(d)
    }

    /// The bytes (shared with the previous step of this skb when equal)
    /// and their header line.
    fn packet(&mut self, skb: u64, l3: bool, data: &[u8]) -> (Arc<[u8]>, Option<Arc<str>>) {
        if self.packets.is_empty() {
            self.packets.resize_with(PACKET_CACHE, || None);
        }
        // skbs come from slab caches: the low bits are alignment.
        let slot = ((skb >> 8) ^ (skb >> 18)) as usize % PACKET_CACHE;
        if let Some(seen) = &self.packets[slot] {
            if seen.skb == skb && seen.l3 == l3 && *seen.bytes == *data {
                return (seen.bytes.clone(), seen.headers.clone());
            }
        }
        let bytes: Arc<[u8]> = data.into();
        let headers = packet::decode(data, l3).map(|f| Arc::from(f.line()));
        self.packets[slot] = Some(SeenBytes {
            skb,
            l3,
            bytes: bytes.clone(),
            headers: headers.clone(),
        });
        (bytes, headers)
    }
}

fn table_name(id: u64) -> String {
    match id {
        255 => "local".into(),
        254 => "main".into(),
        253 => "default".into(),
        n => n.to_string(),
    }
}

fn errno_name(err: i64) -> String {
    match -err {
        // fib_table_lookup's err is fib_props[type].error
        // (net/ipv4/fib_semantics.c): a throw route and no match at all
        // both give -EAGAIN.
        11 => "no match in this table (EAGAIN)".into(),
        101 => "network unreachable (ENETUNREACH)".into(),
        113 => "unreachable route (EHOSTUNREACH)".into(),
        22 => "blackhole route (EINVAL)".into(),
        1 => "prohibited (EPERM)".into(),
        13 => "prohibit route (EACCES)".into(),
        e => format!("error {}", -e),
    }
}

/// The route type an IPv4 lookup's error stands for (fib_props[]).
fn kind_of_errno(err: i64) -> Option<String> {
    match -err {
        22 => Some("blackhole".into()),
        113 => Some("unreachable".into()),
        13 => Some("prohibit".into()),
        _ => None,
    }
}

/// The name of an RTN_* route type.
pub fn rtn_name(t: u64) -> Option<&'static str> {
    Some(match t {
        1 => "unicast",
        2 => "local",
        3 => "broadcast",
        4 => "anycast",
        5 => "multicast",
        6 => "blackhole",
        7 => "unreachable",
        8 => "prohibit",
        9 => "throw",
        _ => return None,
    })
}

fn nud_state(s: u64) -> String {
    let names = [
        (0x01, "INCOMPLETE"),
        (0x02, "REACHABLE"),
        (0x04, "STALE"),
        (0x08, "DELAY"),
        (0x10, "PROBE"),
        (0x20, "FAILED"),
        (0x40, "NOARP"),
        (0x80, "PERMANENT"),
    ];
    let v: Vec<&str> = names
        .iter()
        .filter(|(b, _)| s & b != 0)
        .map(|(_, n)| *n)
        .collect();
    if v.is_empty() {
        "NONE".into()
    } else {
        v.join("|")
    }
}

impl Decoder {
    pub fn new(slots: Vec<Tracepoint>, inv: Inventory) -> Decoder {
        Decoder {
            slots,
            functions: Vec::new(),
            inv,
            netns: NetnsNames::new(),
            symbols: Symbols::default(),
            names: Names::default(),
            sockets: SocketOwners::default(),
        }
    }

    pub fn decode(&mut self, raw: &RawEvent) -> Option<Step> {
        if raw.kind == abi::EVENT_FUNC || raw.kind == abi::EVENT_FUNC_RET {
            return self.decode_function(raw);
        }
        // Site names by slot (EVENT_SKB) or by kind (FIB, neighbour).
        let key = match raw.kind {
            abi::EVENT_SKB if (raw.site as usize) < self.slots.len() => raw.site as usize + 4,
            abi::EVENT_FIB4 => 0,
            abi::EVENT_FIB6 => 1,
            abi::EVENT_NEIGH => 2,
            abi::EVENT_SOCK => 3,
            _ => return None,
        };
        if self.names.slots.len() <= key {
            self.names.slots.resize(key + 1, None);
        }
        if self.names.slots[key].is_none() {
            let info = match key {
                0 => sites::FIB4,
                1 => sites::FIB6,
                2 => sites::NEIGH,
                3 => sites::SOCK_READY,
                _ => sites::info(&self.slots[key - 4].name),
            };
            let subsystem = match info.subsystem {
                "" => "other",
                s => s,
            };
            self.names.slots[key] = Some((
                match key {
                    0..=3 => info.name.into(),
                    _ => self.slots[key - 4].name.as_str().into(),
                },
                self.names.subsystem(subsystem),
                (!info.source.is_empty()).then(|| info.source.into()),
                info.role,
            ));
        }
        let (site, subsystem, source, role) = self.names.slots[key].clone()?;
        let mut step = self.step(raw, site, SiteKind::Tracepoint, subsystem, source);
        step.role_hint = RoleHint(Some(role));
        step.detail = match raw.kind {
            abi::EVENT_SKB => self.skb_detail(raw),
            abi::EVENT_FIB4 => Detail::Route(Box::new(RouteLookup {
                family: 4,
                table: table_name(raw.args[0]),
                error: (raw.args[1] as i64 != 0).then(|| errno_name(raw.args[1] as i64)),
                dst: packet::ipv4_text((raw.args[2] as u32).to_ne_bytes()),
                src: packet::ipv4_text((raw.args[3] as u32).to_ne_bytes()),
                gateway: (raw.args[4] != 0)
                    .then(|| packet::ipv4_text((raw.args[4] as u32).to_ne_bytes())),
                out_dev: step.dev.as_deref().map(str::to_string),
                kind: kind_of_errno(raw.args[1] as i32 as i64),
                ..RouteLookup::default()
            })),
            abi::EVENT_FIB6 => {
                let addr = |i: usize| {
                    let b: [u8; 16] = raw.data[i * 16..i * 16 + 16].try_into().unwrap_or([0; 16]);
                    Ipv6Addr::from(b)
                };
                let gw = addr(2);
                // fib6_type is RTN_*: 1 unicast, 2 local, 6 blackhole, 7 unreachable, 8 prohibit.
                let error = match raw.args[1] {
                    6 => Some("blackhole route".to_string()),
                    7 => Some("unreachable route".to_string()),
                    8 => Some("prohibit route".to_string()),
                    _ => None,
                };
                Detail::Route(Box::new(RouteLookup {
                    family: 6,
                    table: table_name(raw.args[0]),
                    error,
                    dst: addr(0).to_string(),
                    src: addr(1).to_string(),
                    gateway: (!gw.is_unspecified()).then(|| gw.to_string()),
                    out_dev: step.dev.as_deref().map(str::to_string),
                    kind: rtn_name(raw.args[1]).map(str::to_string),
                    ..RouteLookup::default()
                }))
            }
            abi::EVENT_SOCK => Detail::Socket(Box::new(self.socket(raw))),
            _ => Detail::Neigh(Box::new(NeighInfo {
                // args[2]: the neighbour table's family (AF_INET6: 10).
                addr: if raw.args[2] == 10 {
                    let b: [u8; 16] = raw.data[..16].try_into().unwrap_or([0; 16]);
                    Ipv6Addr::from(b).to_string()
                } else {
                    Ipv4Addr::from(<[u8; 4]>::try_from(&raw.data[..4]).unwrap_or([0; 4]))
                        .to_string()
                },
                state: nud_state(raw.args[0]),
                // __neigh_event_send: 0 send now, 1 queued until resolved.
                error: match raw.args[1] as i64 {
                    0 => None,
                    1 => Some(NEIGH_QUEUED.into()),
                    e => Some(errno_name(e)),
                },
            })),
        };
        // FIB and neighbour steps have no device of the packet itself.
        if raw.kind != abi::EVENT_SKB {
            step.dev = None;
        }
        Some(step)
    }

    fn socket(&mut self, raw: &RawEvent) -> SocketInfo {
        let port = raw.args[2] as u16;
        let addr = if raw.args[0] == 10 {
            let b: [u8; 16] = raw.data[..16].try_into().unwrap_or([0; 16]);
            let a = Ipv6Addr::from(b);
            match a.to_ipv4_mapped() {
                Some(v4) if !v4.is_unspecified() => format!("{v4}:{port}"),
                _ if a.is_unspecified() => format!("*:{port}"),
                _ => format!("[{a}]:{port}"),
            }
        } else {
            let a = Ipv4Addr::from(<[u8; 4]>::try_from(&raw.data[..4]).unwrap_or([0; 4]));
            if a.is_unspecified() {
                format!("*:{port}")
            } else {
                format!("{a}:{port}")
            }
        };
        let proto = match raw.args[1] {
            136 => "UDP-Lite",
            1 => "ICMP",
            58 => "ICMPv6",
            _ => "UDP",
        };
        // A ping socket's "port" is the echo id it is bound to.
        let addr = match proto {
            "ICMP" | "ICMPv6" => match addr.rsplit_once(':') {
                Some((a, _)) => format!("{a}, echo id {port}"),
                None => addr,
            },
            _ => addr,
        };
        SocketInfo {
            proto: proto.into(),
            addr,
            inode: raw.args[3],
            process: self.sockets.owner(raw.args[3]),
        }
    }

    fn decode_function(&mut self, raw: &RawEvent) -> Option<Step> {
        let f = self.functions.get(raw.site as usize)?;
        let ret = raw.kind == abi::EVENT_FUNC_RET;
        let kind = if ret {
            SiteKind::Return
        } else {
            SiteKind::Function
        };
        let i = raw.site as usize;
        if self.names.functions.len() <= i {
            self.names.functions.resize(i + 1, None);
        }
        let (name, source, role) = self.names.functions[i]
            .get_or_insert_with(|| {
                let source = f.module.as_ref().map(|m| format!("module {m}").into());
                (
                    f.name.as_str().into(),
                    source,
                    sites::function_role(&f.name),
                )
            })
            .clone();
        let subsystem = self.names.subsystem(f.subsystem);
        let mut step = self.step(raw, name, kind, subsystem, source);
        step.role_hint = RoleHint(Some(if ret {
            crate::kernel::abi::ROLE_PASS
        } else {
            role
        }));
        if ret {
            step.detail = Detail::Return {
                from: (raw.args[1] != 0 && raw.args[1] != raw.skb)
                    .then(|| format!("{:#x}", raw.args[1])),
            };
        } else if raw.args[2] & 0x100 != 0 {
            let (family, hook) = nf_hook_name(raw.args[2] as u8, raw.args[1] as u8);
            step.detail = Detail::Hook(Box::new(HookRun {
                family,
                hook,
                verdict: None,
            }));
        }
        Some(step)
    }

    /// The fields every step has, from the raw event.
    fn step(
        &mut self,
        raw: &RawEvent,
        site: Arc<str>,
        kind: SiteKind,
        subsystem: Arc<str>,
        source: Option<Arc<str>>,
    ) -> Step {
        let data_len = (raw.data_len as usize).min(raw.data.len());
        let has_packet = matches!(
            raw.kind,
            abi::EVENT_SKB | abi::EVENT_FUNC | abi::EVENT_FUNC_RET
        );
        let l3 = raw.flags & abi::EVENT_F_L3 != 0;
        let (packet, headers) = if has_packet && data_len > 0 {
            let (bytes, headers) = self.names.packet(raw.skb, l3, &raw.data[..data_len]);
            (Some((l3, bytes)), headers)
        } else {
            (None, None)
        };
        Step {
            ts_ns: raw.ts,
            site,
            kind,
            subsystem,
            source,
            netns: raw.netns,
            netns_name: self.netns.name(raw.netns),
            dev: self.names.dev(&raw.dev),
            ifindex: raw.ifindex,
            len: raw.len,
            mark: raw.mark,
            cpu: raw.cpu,
            skb: raw.skb,
            correlated: raw.flags & abi::EVENT_F_CORRELATED != 0,
            headers,
            ct: has_packet
                .then(|| crate::conntrack::Conntrack::from_raw(raw))
                .flatten()
                .map(Box::new),
            vlan: (has_packet && raw.vlan_proto != 0).then_some(raw.vlan_tci & 0xfff),
            detail: Detail::None,
            packet,
            role_hint: RoleHint::default(),
        }
    }

    fn skb_detail(&mut self, raw: &RawEvent) -> Detail {
        let tp = &self.slots[raw.site as usize];
        let arg = |name: &str| {
            tp.params
                .iter()
                .position(|p| p.name == name)
                .filter(|&i| i < abi::MAX_ARGS)
                .map(|i| raw.args[i])
        };
        match tp.name.as_str() {
            "kfree_skb" => {
                let code = arg("reason").unwrap_or(0) as u32;
                let reason = self
                    .inv
                    .enum_name("skb_drop_reason", code as i64)
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("reason {code}"));
                let location = arg("location").and_then(|a| self.symbols.resolve(a));
                Detail::Drop(Box::new(DropInfo {
                    reason,
                    code,
                    location,
                    explanation: None,
                    hint: None,
                }))
            }
            "consume_skb" => Detail::Free {
                location: arg("location").and_then(|a| self.symbols.resolve(a)),
            },
            "net_dev_xmit" => Detail::Xmit {
                rc: arg("rc").unwrap_or(0) as i32 as i64,
            },
            "skb_copy_datagram_iovec" => Detail::Deliver {
                bytes: arg("len").unwrap_or(0) as i32 as i64,
            },
            _ if raw.qdisc_kind[0] != 0 => Detail::Qdisc(Box::new(QdiscInfo {
                kind: cstr(&raw.qdisc_kind),
                handle: format!(
                    "{:x}:{:x}",
                    raw.qdisc_handle >> 16,
                    raw.qdisc_handle & 0xffff
                ),
            })),
            _ => {
                let mut args = Vec::new();
                for (i, p) in tp.params.iter().enumerate().take(abi::MAX_ARGS) {
                    let v = raw.args[i];
                    let text = match &p.kind {
                        ArgKind::Int { signed: true } => (v as i32 as i64).to_string(),
                        ArgKind::Int { signed: false } => v.to_string(),
                        ArgKind::Enum(e) => self
                            .inv
                            .enum_name(e, v as i64)
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string()),
                        _ => continue,
                    };
                    args.push((p.name.clone(), text));
                }
                if args.is_empty() {
                    Detail::None
                } else {
                    Detail::Args { args }
                }
            }
        }
    }
}

/// Whether a free at `location` is reassembly's: IPv4 and IPv6 fragments,
/// and conntrack's defragmentation.
fn is_reassembly(location: &str) -> bool {
    [
        "inet_frag_reasm",
        "ip_frag_reasm",
        "ip6_frag_reasm",
        "ip_defrag",
        "nf_ct_frag6",
    ]
    .iter()
    .any(|f| location.starts_with(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Journeys keep every step until they end (tens of thousands at a
    /// time) and move them as they grow: the rarer details are boxed so
    /// that a step stays this small.
    #[test]
    fn a_step_stays_small() {
        assert!(
            std::mem::size_of::<Detail>() <= 32,
            "{}",
            std::mem::size_of::<Detail>()
        );
        assert!(
            std::mem::size_of::<Step>() <= 208,
            "{}",
            std::mem::size_of::<Step>()
        );
    }
}
