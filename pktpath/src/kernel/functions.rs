//! The function sites: every kernel function (vmlinux and loaded modules)
//! that takes a `struct sk_buff *` or returns one, found through BTF.
//!
//! Whether a function can really be traced is known only by trying (it may
//! be inlined, notrace, or blacklisted); `available_filter_functions` tells
//! in advance where it is readable, and names that several static functions
//! share are left out (a kprobe by name would pick one at random).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use btf_rs::{Btf, BtfType, Type};
use regex::Regex;
use serde::Serialize;

/// One function that handles packets.
#[derive(Clone, Debug, Serialize)]
pub struct FuncSite {
    pub name: String,
    /// The module that defines it, None for vmlinux.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// Index of the first `struct sk_buff *` parameter (or, without one,
    /// of a `struct sk_buff **`: see `skb_ptrptr`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skb_arg: Option<u8>,
    /// The packet comes as `struct sk_buff **` (br_handle_frame,
    /// __netif_receive_skb_core): read through the pointer.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub skb_ptrptr: bool,
    /// Index of a `struct nf_hook_state *` parameter (netfilter hook
    /// functions): the hook and family are recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nf_state_arg: Option<u8>,
    pub nargs: u8,
    /// Returns a `struct sk_buff *` (traced on return).
    pub returns_skb: bool,
    pub subsystem: &'static str,
    /// Listed in available_filter_functions (None: that file is unreadable).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traceable: Option<bool>,
}

/// All function sites, and what was left out.
#[derive(Clone, Debug, Default)]
pub struct FuncInventory {
    pub sites: Vec<FuncSite>,
    /// Names defined more than once (ambiguous for kprobes by name).
    pub ambiguous: Vec<String>,
    /// Found in BTF but not in available_filter_functions.
    pub untraceable: Vec<String>,
}

const AVAILABLE: &[&str] = &[
    "/sys/kernel/tracing/available_filter_functions",
    "/sys/kernel/debug/tracing/available_filter_functions",
];

/// A subsystem guess from the function name.
pub fn subsystem(name: &str, module: Option<&str>) -> &'static str {
    const PREFIXES: &[(&str, &str)] = &[
        ("br_", "bridge"),
        ("nbp_", "bridge"),
        ("nf_", "netfilter"),
        ("nft_", "netfilter"),
        ("ipt_", "netfilter"),
        ("ip6t_", "netfilter"),
        ("ebt_", "netfilter"),
        ("xt_", "netfilter"),
        ("ip6_", "ipv6"),
        ("ipv6_", "ipv6"),
        ("icmpv6_", "ipv6"),
        ("ndisc_", "ipv6"),
        ("fib6", "routing"),
        ("fib", "routing"),
        ("ip_route", "routing"),
        ("rt_", "routing"),
        ("ip_", "ipv4"),
        ("icmp", "ipv4"),
        ("arp_", "arp"),
        ("tcp", "tcp"),
        ("udp", "udp"),
        ("raw", "socket"),
        ("ping_", "socket"),
        ("sock_", "socket"),
        ("sk_", "socket"),
        ("skb_", "skbuff"),
        ("__skb", "skbuff"),
        ("pskb_", "skbuff"),
        ("kfree_skb", "free"),
        ("consume_skb", "free"),
        ("napi_", "gro"),
        ("gro_", "gro"),
        ("dev_gro", "gro"),
        ("inet_gro", "gro"),
        ("netif_", "dev"),
        ("__netif", "dev"),
        ("dev_", "dev"),
        ("__dev_", "dev"),
        ("neigh_", "neighbour"),
        ("qdisc", "qdisc"),
        ("sch_", "qdisc"),
        ("tcf_", "tc"),
        ("tc_", "tc"),
        ("xdp", "xdp"),
        ("bpf_", "bpf"),
        ("vxlan_", "vxlan"),
        ("udp_tunnel", "tunnel"),
        ("ip_tunnel", "tunnel"),
        ("gre", "tunnel"),
        ("xfrm", "xfrm"),
        ("esp", "xfrm"),
        ("veth_", "veth"),
        ("packet_", "packet"),
        ("tpacket_", "packet"),
        ("eth_", "ethernet"),
        ("vlan_", "vlan"),
        ("__vlan", "vlan"),
        ("ct_", "conntrack"),
        ("nla_", "netlink"),
        ("netlink_", "netlink"),
    ];
    let n = name.trim_start_matches('_');
    PREFIXES
        .iter()
        .find(|(p, _)| name.starts_with(p) || n.starts_with(p.trim_start_matches('_')))
        .map(|(_, s)| *s)
        .or_else(|| module.map(|_| "module"))
        .unwrap_or("other")
}

/// Whether `t` is `struct sk_buff *` (through typedefs and qualifiers).
fn is_skb_ptr(btf: &Btf, id: u32) -> bool {
    points_to(btf, id, 1, "sk_buff")
}

/// Whether `t` is `struct nf_hook_state *`.
fn is_nf_state_ptr(btf: &Btf, id: u32) -> bool {
    points_to(btf, id, 1, "nf_hook_state")
}

/// Whether `t` is `struct sk_buff **`.
fn is_skb_ptrptr(btf: &Btf, id: u32) -> bool {
    points_to(btf, id, 2, "sk_buff")
}

/// Whether type `id` is `struct NAME` behind `depth` pointers (through
/// typedefs and qualifiers).
fn points_to(btf: &Btf, id: u32, depth: u8, name: &str) -> bool {
    let mut t = btf.resolve_type_by_id(id).ok();
    for _ in 0..16 {
        match t {
            Some(Type::Ptr(ref p)) if depth > 0 => {
                return p
                    .get_type_id()
                    .is_some_and(|next| points_to(btf, next, depth - 1, name))
            }
            Some(Type::Struct(ref s)) => {
                return depth == 0 && btf.resolve_name(s).is_ok_and(|n| n == name)
            }
            Some(Type::Const(ref c)) | Some(Type::Volatile(ref c)) => {
                t = btf.resolve_chained_type(c).ok()
            }
            Some(Type::Typedef(ref td)) => t = btf.resolve_chained_type(td).ok(),
            Some(Type::TypeTag(ref tt)) => t = btf.resolve_chained_type(tt).ok(),
            _ => return false,
        }
    }
    false
}

/// Functions of the tracing machinery that take a tracepoint's skb argument
/// (its iterator, stub, and the BPF, perf and ftrace handlers): not places
/// the packet goes. Probing them would repeat every tracepoint hit as a
/// step (ours among them), at the cost of a run more per hit.
const TRACING_PLUMBING: &[&str] = &[
    "__traceiter_",
    "__probestub_",
    "__bpf_trace_",
    "perf_trace_",
    "trace_event_raw_event_",
    "trace_raw_output_",
    "bpf_trace_run",
];

fn is_tracing_plumbing(name: &str) -> bool {
    TRACING_PLUMBING.iter().any(|p| name.starts_with(p))
}

fn scan(btf: &Btf, module: Option<&str>, seen: &mut HashSet<String>, out: &mut Vec<FuncSite>) {
    let mut iter = btf.type_iter();
    while let Ok(Some(t)) = fallible_next(&mut iter) {
        let Type::Func(f) = t else { continue };
        let Ok(name) = btf.resolve_name(&f) else {
            continue;
        };
        if seen.contains(&name) || is_tracing_plumbing(&name) {
            continue;
        }
        let Ok(Type::FuncProto(proto)) = btf.resolve_chained_type(&f) else {
            continue;
        };
        let position = |test: fn(&Btf, u32) -> bool| {
            proto
                .parameters
                .iter()
                .position(|p| p.get_type_id().is_some_and(|id| test(btf, id)))
        };
        let direct = position(is_skb_ptr);
        let ptrptr = direct.is_none().then(|| position(is_skb_ptrptr)).flatten();
        let skb_arg = direct.or(ptrptr);
        let returns_skb = is_skb_ptr(btf, proto.return_type_id());
        if skb_arg.is_none() && !returns_skb {
            continue;
        }
        seen.insert(name.clone());
        out.push(FuncSite {
            subsystem: subsystem(&name, module),
            name,
            module: module.map(str::to_string),
            skb_arg: skb_arg.map(|i| i as u8),
            skb_ptrptr: ptrptr.is_some(),
            nf_state_arg: position(is_nf_state_ptr).map(|i| i as u8),
            nargs: proto.parameters.len() as u8,
            returns_skb,
            traceable: None,
        });
    }
}

fn fallible_next(it: &mut btf_rs::TypeIter<'_>) -> btf_rs::Result<Option<Type>> {
    use fallible_iterator::FallibleIterator;
    it.next()
}

/// Function name -> how many times it is defined, from
/// available_filter_functions ("name" or "name [module]" per line).
fn available() -> Option<HashMap<String, usize>> {
    let text = AVAILABLE.iter().find_map(|p| fs::read_to_string(p).ok())?;
    let mut m = HashMap::new();
    for l in text.lines() {
        if let Some(name) = l.split_whitespace().next() {
            *m.entry(name.to_string()).or_insert(0) += 1;
        }
    }
    Some(m)
}

impl FuncInventory {
    /// Reads vmlinux and module BTF under /sys/kernel/btf.
    pub fn load() -> Result<FuncInventory> {
        let base = Btf::from_file("/sys/kernel/btf/vmlinux")
            .context("cannot read /sys/kernel/btf/vmlinux")?;
        let mut seen = HashSet::new();
        let mut sites = Vec::new();
        scan(&base, None, &mut seen, &mut sites);
        let mut modules: Vec<_> = fs::read_dir("/sys/kernel/btf")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| n != "vmlinux")
            .collect();
        modules.sort();
        for m in modules {
            if let Ok(btf) = Btf::from_split_file(Path::new("/sys/kernel/btf").join(&m), &base) {
                scan(&btf, Some(&m), &mut seen, &mut sites);
            }
        }
        let mut inv = FuncInventory::default();
        let avail = available();
        for mut s in sites {
            if let Some(a) = &avail {
                match a.get(&s.name) {
                    None => {
                        s.traceable = Some(false);
                        inv.untraceable.push(s.name.clone());
                    }
                    Some(&n) if n > 1 => {
                        inv.ambiguous.push(s.name.clone());
                        continue;
                    }
                    Some(_) => s.traceable = Some(true),
                }
            }
            inv.sites.push(s);
        }
        inv.sites.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(inv)
    }

    /// The sites to attach: traceable (or unknown), matching `only` and not
    /// `except`.
    pub fn select(&self, only: Option<&Regex>, except: Option<&Regex>) -> Vec<FuncSite> {
        self.sites
            .iter()
            .filter(|s| s.traceable != Some(false))
            .filter(|s| only.is_none_or(|r| r.is_match(&s.name)))
            .filter(|s| except.is_none_or(|r| !r.is_match(&s.name)))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsystems_from_names() {
        assert_eq!(subsystem("br_handle_frame", Some("bridge")), "bridge");
        assert_eq!(subsystem("ip_rcv", None), "ipv4");
        assert_eq!(subsystem("ip6_rcv_core", None), "ipv6");
        assert_eq!(subsystem("__netif_receive_skb_core", None), "dev");
        assert_eq!(subsystem("nf_hook_slow", None), "netfilter");
        assert_eq!(subsystem("tcp_v4_rcv", None), "tcp");
        assert_eq!(subsystem("veth_xmit", Some("veth")), "veth");
        assert_eq!(subsystem("mystery", Some("foo")), "module");
    }

    #[test]
    #[ignore = "reads the running kernel's BTF: scripts/test.sh runs it with --include-ignored"]
    fn finds_core_functions_in_the_running_kernel() {
        assert!(
            Path::new("/sys/kernel/btf/vmlinux").exists(),
            "this kernel has no BTF"
        );
        let inv = FuncInventory::load().unwrap();
        let get = |n: &str| inv.sites.iter().find(|s| s.name == n);
        let rcv = get("ip_rcv").expect("ip_rcv takes an skb");
        assert_eq!(rcv.skb_arg, Some(0));
        assert!(get("skb_clone").expect("skb_clone").returns_skb);
        // The tracepoint machinery is not a place packets go.
        assert!(get("netif_receive_skb").is_some());
        assert!(get("__traceiter_netif_receive_skb").is_none());
        assert!(get("__bpf_trace_netif_receive_skb").is_none());
        assert!(inv.sites.len() > 500, "{}", inv.sites.len());
    }
}
