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
