//! Privilege checks, so that a missing capability is reported in words
//! instead of as EPERM from the middle of a load.

use anyhow::{bail, Result};

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// The effective capability set of this process.
pub fn effective() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

fn has(set: u64, cap: u32) -> bool {
    set & (1 << cap) != 0
}

/// Loading tracing programs needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN).
pub fn require_bpf() -> Result<()> {
    let eff = effective();
    if has(eff, CAP_SYS_ADMIN) || (has(eff, CAP_BPF) && has(eff, CAP_PERFMON)) {
        return Ok(());
    }
    bail!(
        "permission denied: pktpath needs root, or CAP_BPF and CAP_PERFMON \
         (e.g. sudo pktpath ...)"
    )
}

/// Entering other network namespaces and changing them needs CAP_SYS_ADMIN
/// and CAP_NET_ADMIN.
pub fn require_netns_admin(what: &str) -> Result<()> {
    let eff = effective();
    if has(eff, CAP_SYS_ADMIN) && has(eff, CAP_NET_ADMIN) {
        return Ok(());
    }
    bail!("permission denied: {what} needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN)")
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
