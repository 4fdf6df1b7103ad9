//! The model: one observation of one packet at one site (a `Step`), with
//! what was seen there (`Detail`).
//!
//! Steps are what every sink renders and what journeys are made of; they are
//! plain data (serde), so replaying or testing them needs no kernel. The
//! collector that decodes them from the kernel's records lives in the
//! binary crate (`pktpath::collect::decode`).

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::packet;
use crate::sites::{self, Role};

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
    /// What pktpath found out about this drop when it happened (the
    /// rp_filter setting and the route back, the MTU of the way out, the
    /// tc filters), as data; `diagnosis` puts it in words.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub found: Option<Cause>,
}

/// What decided a drop, as data: the configured object the explanation
/// names (a rule, a route, a filter, a setting), or the kernel's reason
/// alone. Found by the diagnosis from a journey's steps, or by an enricher
/// from the kernel's state when the drop happened; `diagnosis::words` says
/// it in words, a report links to it, an expectation compares with it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Cause {
    /// Nothing more than the kernel's drop reason.
    Reason { reason: String },
    /// An nftables rule (its handle and text, as `nft -a list ruleset`
    /// prints it).
    NftRule {
        family: String,
        table: String,
        chain: String,
        handle: Option<u64>,
        rule: Option<String>,
    },
    /// The policy of an nftables chain: no rule accepted the packet.
    NftPolicy {
        family: String,
        table: String,
        chain: String,
    },
    /// A rule of a table iptables-nft manages: its number in the chain and
    /// its `-A` line.
    Iptables {
        family: String,
        table: String,
        chain: String,
        number: u32,
        rule: String,
    },
    /// A rule of a legacy x_tables table, which has no trace interface:
    /// the tool that lists it and the table's code.
    LegacyTable {
        netns: String,
        tool: String,
        code: String,
    },
    /// A blackhole, unreachable or prohibit route.
    Route {
        netns: String,
        table: String,
        dst: String,
        prefix: Option<String>,
        route: String,
    },
    /// No route to the destination.
    NoRoute {
        netns: String,
        table: String,
        dst: String,
        src: String,
        iif: Option<String>,
    },
    /// The time to live (IPv6: hop limit) ran out at a router; the ICMP
    /// error sent back, and to whom, when seen.
    Ttl {
        v6: bool,
        icmp_sent: bool,
        to: Option<String>,
    },
    /// Too big for the device its route leaves by (`len` bytes; `mtu`
    /// when it could be read), and not to be fragmented; `route` when the
    /// route sets an MTU of its own.
    Mtu {
        netns: String,
        dev: String,
        mtu: Option<u32>,
        len: u32,
        route: Option<String>,
    },
    /// The reverse-path filter of `dev`: the sysctl values (the device's
    /// and `all`'s) and the route back to the source.
    RpFilter {
        netns: String,
        dev: String,
        src: String,
        here: Option<u32>,
        all: Option<u32>,
        back: Option<RouteBack>,
    },
    /// A tc filter of `dev` (the filters there, in words, and the ids of
    /// their BPF programs).
    Tc {
        netns: String,
        dev: String,
        direction: String,
        filters: Vec<String>,
        progs: Vec<u64>,
    },
    /// The VLAN filter of a bridge port.
    VlanFilter {
        netns: String,
        bridge: String,
        port: String,
        vid: Option<u16>,
        why: String,
    },
    /// Queued to a socket, and purged unread when the application closed
    /// it.
    Purged { socket: String },
}

/// The route back to a source, as the reverse-path filter saw it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RouteBack {
    /// As `ip route` prints it.
    pub route: String,
    /// The devices it leaves by.
    pub devs: Vec<String>,
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
pub const NEIGH_QUEUED: &str = "packet queued until the neighbour answers";

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
    /// Its bytes as an Ethernet frame (an Ethernet header is made up when
    /// the capture started at the IP header: one link type per file), and
    /// the original length.
    pub fn frame(&self, ip_len: u32) -> Option<(Vec<u8>, u32)> {
        let (l3, data) = self.packet.as_ref()?;
        if !*l3 {
            let orig = (ip_len + 14).max(data.len() as u32);
            return Some((data.to_vec(), orig));
        }
        let ethertype: u16 = match data.first().map(|b| b >> 4) {
            Some(6) => 0x86dd,
            _ => 0x0800,
        };
        let mut f = vec![0u8; 12];
        f.extend(ethertype.to_be_bytes());
        f.extend_from_slice(data);
        let orig = (ip_len + 14).max(f.len() as u32);
        Some((f, orig))
    }

    /// What this step means for the packet's life: a property of its site.
    pub fn role(&self) -> Role {
        match self.kind {
            SiteKind::Tracepoint => sites::info(&self.site).role,
            SiteKind::Function => sites::function_role(&self.site),
            SiteKind::Return => Role::Pass,
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

/// A step for tests of the kernel-free code (journeys, sinks).
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

#[cfg(any(test, feature = "testing"))]
pub fn test_step(ts_ns: u64, site: &str, netns: &str, detail: Detail) -> Step {
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
    }
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
