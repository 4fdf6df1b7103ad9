//! What the running kernel offers, read from its BTF: the tracepoints and
//! their arguments (`btf_trace_*` typedefs), and enums such as
//! `skb_drop_reason` whose names explain events.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Context, Result};
use libbpf_rs::btf::types::{Enum, Enum64, Func, FuncProto, Int, Ptr, Typedef};
use libbpf_rs::btf::{Btf, BtfKind, BtfType, ReferencesType};
use serde::Serialize;

/// What a tracepoint argument is, as far as pktpath cares.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum ArgKind {
    Skb,
    Qdisc,
    Pointer(String),
    Enum(String),
    Int { signed: bool },
    Other,
}

#[derive(Clone, Debug, Serialize)]
pub struct Param {
    pub name: String,
    pub kind: ArgKind,
}

/// A tracepoint of the running kernel, with its arguments (without the
/// leading `void *__data` of the btf_trace_ prototype).
#[derive(Clone, Debug, Serialize)]
pub struct Tracepoint {
    pub name: String,
    pub params: Vec<Param>,
}

impl Tracepoint {
    /// Index of the first `struct sk_buff *` argument.
    pub fn skb_arg(&self) -> Option<usize> {
        self.params.iter().position(|p| p.kind == ArgKind::Skb)
    }
    pub fn qdisc_arg(&self) -> Option<usize> {
        self.params.iter().position(|p| p.kind == ArgKind::Qdisc)
    }
    /// Index of the first `struct net_device *` argument.
    pub fn dev_arg(&self) -> Option<usize> {
        self.params
            .iter()
            .position(|p| p.kind == ArgKind::Pointer("net_device".into()))
    }
    /// Index of the first `struct sock *` argument.
    pub fn sock_arg(&self) -> Option<usize> {
        self.params
            .iter()
            .position(|p| p.kind == ArgKind::Pointer("sock".into()))
    }
}

/// The BTF facts pktpath uses, copied out of the kernel's BTF.
#[derive(Clone, Debug, Default)]
pub struct Inventory {
    pub tracepoints: BTreeMap<String, Tracepoint>,
    /// Enum name -> value -> variant name, for the enums tracepoints use.
    pub enums: HashMap<String, BTreeMap<i64, String>>,
}

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

impl Inventory {
    /// Reads the running kernel's BTF.
    pub fn load() -> Result<Inventory> {
        if !Path::new(VMLINUX_BTF).exists() {
            anyhow::bail!(
                "{VMLINUX_BTF} is missing: this kernel was built without CONFIG_DEBUG_INFO_BTF, \
                 which pktpath needs to find tracepoints and read kernel structures"
            );
        }
        let btf = Btf::from_vmlinux().context("cannot read the kernel's BTF")?;
        Ok(Self::from_btf(&btf))
    }

    /// The kernel's drop reasons (enum skb_drop_reason) by name, without
    /// the `SKB_DROP_REASON_` prefix and the enum's bookkeeping entries.
    pub fn drop_reasons(&self) -> Vec<&str> {
        self.enums
            .get("skb_drop_reason")
            .into_iter()
            .flat_map(|e| e.values())
            .filter_map(|r| r.strip_prefix("SKB_DROP_REASON_"))
            .filter(|r| !matches!(*r, "MAX" | "SUBSYS_MASK"))
            .collect()
    }

    pub fn from_btf(btf: &Btf<'_>) -> Inventory {
        let mut inv = Inventory::default();
        // btf_trace_* prototypes have anonymous parameters; the
        // __bpf_trace_<class> functions have the same parameter types, named.
        let mut names: HashMap<Vec<u32>, Vec<String>> = HashMap::new();
        for f in btf.type_by_kind::<Func>() {
            if !f
                .name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("__bpf_trace_"))
            {
                continue;
            }
            let Ok(proto) = FuncProto::try_from(f.referenced_type()) else {
                continue;
            };
            let types = proto.iter().map(|p| u32::from(p.ty)).collect();
            let pnames = proto
                .iter()
                .map(|p| p.name.and_then(|n| n.to_str()).unwrap_or("").to_string())
                .collect();
            names.entry(types).or_insert(pnames);
        }
        for td in btf.type_by_kind::<Typedef>() {
            let Some(name) = td.name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(tp) = name.strip_prefix("btf_trace_") else {
                continue;
            };
            let Some(proto) = Ptr::try_from(td.referenced_type())
                .ok()
                .and_then(|p| FuncProto::try_from(p.referenced_type()).ok())
            else {
                continue;
            };
            let types: Vec<u32> = proto.iter().map(|p| u32::from(p.ty)).collect();
            let known = names.get(&types);
            let mut params = Vec::new();
            for (i, p) in proto.iter().enumerate().skip(1) {
                let name = known
                    .and_then(|n| n.get(i))
                    .filter(|n| !n.is_empty())
                    .cloned()
                    .unwrap_or_else(|| format!("arg{}", i - 1));
                let kind = btf
                    .type_by_id::<BtfType>(p.ty)
                    .map(|t| arg_kind(&t, &mut inv.enums))
                    .unwrap_or(ArgKind::Other);
                params.push(Param { name, kind });
            }
            inv.tracepoints.insert(
                tp.to_string(),
                Tracepoint {
                    name: tp.to_string(),
                    params,
                },
            );
        }
        for name in ["skb_drop_reason"] {
            if let Some(e) = btf.type_by_name::<BtfType>(name) {
                inv.enums.insert(name.to_string(), enum_values(&e));
            }
        }
        inv
    }

    /// The name of `value` in enum `name`, without the common prefix.
    pub fn enum_name(&self, name: &str, value: i64) -> Option<&str> {
        let s = self.enums.get(name)?.get(&value)?;
        let prefix = match name {
            "skb_drop_reason" => "SKB_DROP_REASON_",
            _ => "",
        };
        Some(s.strip_prefix(prefix).unwrap_or(s))
    }
}

fn arg_kind(t: &BtfType<'_>, enums: &mut HashMap<String, BTreeMap<i64, String>>) -> ArgKind {
    let t = t.skip_mods_and_typedefs();
    match t.kind() {
        BtfKind::Ptr => {
            let target = t.next_type().map(|n| n.skip_mods_and_typedefs());
            let name = target
                .and_then(|n| n.name().and_then(|s| s.to_str()).map(str::to_string))
                .unwrap_or_else(|| "void".to_string());
            match name.as_str() {
                "sk_buff" => ArgKind::Skb,
                "Qdisc" => ArgKind::Qdisc,
                _ => ArgKind::Pointer(name),
            }
        }
        BtfKind::Enum | BtfKind::Enum64 => {
            let name = t.name().and_then(|s| s.to_str()).unwrap_or("").to_string();
            if !name.is_empty() && !enums.contains_key(&name) {
                enums.insert(name.clone(), enum_values(&t));
            }
            ArgKind::Enum(name)
        }
        BtfKind::Int => ArgKind::Int {
            signed: Int::try_from(t)
                .map(|i| matches!(i.encoding, libbpf_rs::btf::types::IntEncoding::Signed))
                .unwrap_or(false),
        },
        _ => ArgKind::Other,
    }
}

fn enum_values(t: &BtfType<'_>) -> BTreeMap<i64, String> {
    let name = |n: Option<&std::ffi::OsStr>| n.and_then(|s| s.to_str()).unwrap_or("").to_string();
    if let Ok(e) = Enum::try_from(*t) {
        e.iter().map(|m| (m.value, name(m.name))).collect()
    } else if let Ok(e) = Enum64::try_from(*t) {
        e.iter().map(|m| (m.value as i64, name(m.name))).collect()
    } else {
        BTreeMap::new()
    }
}

#[cfg(test)]
mod tests {
    use pktpath_core::diagnosis::drop_reasons;

    /// The running kernel may be newer than the table: its reasons without
    /// words are a warning, never a failure.
    #[test]
    #[ignore = "reads the running kernel's BTF: scripts/test.sh runs it with --include-ignored"]
    fn reasons_of_this_kernel_without_words_are_reported() {
        let inv = crate::kernel::btf::Inventory::load().expect("the running kernel's BTF");
        let reasons = inv.drop_reasons();
        if reasons.is_empty() {
            eprintln!("SKIPPED: this kernel has no enum skb_drop_reason");
            return;
        }
        // A kernel we test on: its list here is the kernel's own.
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        if let Some((_, listed)) = drop_reasons::tested_kernels()
            .into_iter()
            .find(|(k, _)| k == release.trim())
        {
            assert_eq!(
                reasons,
                listed.iter().map(String::as_str).collect::<Vec<_>>(),
                "pktpath-core/src/diagnosis/drop_reasons/{} is stale",
                release.trim()
            );
        }
        let missing = drop_reasons::undescribed(reasons.iter().copied());
        if !missing.is_empty() {
            eprintln!(
                "WARNING: this kernel's drop reasons without a description (shown by their \
                 kernel name): {missing:?}"
            );
        }
        for r in missing {
            let (what, hint) = drop_reasons::explain(r);
            assert_eq!(what, r.to_lowercase().replace('_', " "));
            assert!(hint.contains(&format!("SKB_DROP_REASON_{r}")), "{hint}");
        }
    }
}
