//! The kernel's raw ring-buffer records, decoded into the model's steps:
//! site names by slot and function id, BTF enums, errno and route-type
//! names, namespace names, kernel symbols, the socket's owner.

// Looked up per event: a fast hash, no need for SipHash's defence.
use rustc_hash::FxHashMap as HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use pktpath_core::model::*;
use pktpath_core::{packet, sites};

use crate::abi::{self, cstr, RawEvent};
use crate::enrich::{netns_names::NetnsNames, sockets::SocketOwners, symbols::Symbols};
use crate::kernel::btf::{ArgKind, Inventory, Tracepoint};

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

type FunctionNames = (Arc<str>, Option<Arc<str>>);
type SiteNames = (Arc<str>, Arc<str>, Option<Arc<str>>);

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
            ));
        }
        let (site, subsystem, source) = self.names.slots[key].clone()?;
        let mut step = self.step(raw, site, SiteKind::Tracepoint, subsystem, source);
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
        let (name, source) = self.names.functions[i]
            .get_or_insert_with(|| {
                let source = f.module.as_ref().map(|m| format!("module {m}").into());
                (f.name.as_str().into(), source)
            })
            .clone();
        let subsystem = self.names.subsystem(f.subsystem);
        let mut step = self.step(raw, name, kind, subsystem, source);
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
                .then(|| super::conntrack::from_raw(raw))
                .flatten()
                .map(Box::new),
            vlan: (has_packet && raw.vlan_proto != 0).then_some(raw.vlan_tci & 0xfff),
            detail: Detail::None,
            packet,
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
                    found: None,
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
