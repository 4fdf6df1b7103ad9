//! `pktpath doctor`: what this kernel allows, found by trying.
//!
//! Each backend is probed by loading and attaching an empty program of its
//! attach type (bpf/probe.bpf.c); nftables tracing by joining the
//! NFNLGRP_NFTRACE netlink group. Config files are only read to explain.

use std::io::Write;

use anyhow::Result;
use libbpf_rs::ObjectBuilder;
use serde::Serialize;

use super::btf::Inventory;
use super::{caps, objects, tracepoint};

/// The outcome of one probe.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    pub name: &'static str,
    pub works: bool,
    /// The failing stage and errno, with the likely cause.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub kernel: String,
    pub btf: Result<String, String>,
    pub lockdown: String,
    pub privileges: String,
    pub backends: Vec<Probe>,
    pub nftrace: Probe,
    /// Whether this process has root's privileges (without, every probe
    /// fails for that reason alone, whatever the kernel allows).
    pub root: bool,
    /// Drop reasons of this kernel that pktpath has no words for (a newer
    /// kernel than its table): journeys show them by their kernel name.
    pub undescribed_drop_reasons: Vec<String>,
}

impl Report {
    /// Whether pktpath can trace as this user: some backend works (never
    /// without root, whatever a probe said).
    pub fn any_backend(&self) -> bool {
        self.root && self.backends.iter().any(|b| b.works)
    }
}

fn errno_name(e: i32) -> &'static str {
    match e {
        libc::EPERM => "EPERM",
        libc::EACCES => "EACCES",
        libc::ENOENT => "ENOENT",
        libc::EINVAL => "EINVAL",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ESRCH => "ESRCH",
        libc::E2BIG => "E2BIG",
        libc::ENOSYS => "ENOSYS",
        524 => "ENOTSUPP",
        _ => "errno",
    }
}

/// The likely cause of `errno` when `stage` of backend `name` fails.
fn cause(name: &str, stage: &str, errno: i32) -> &'static str {
    match (name, stage, errno) {
        (_, _, libc::EPERM | libc::EACCES) if !is_root() => "not running as root",
        ("fentry" | "fexit", _, libc::EPERM) => {
            "the kernel refuses BPF trampolines (lockdown or a security policy)"
        }
        ("fentry" | "fexit", _, 524) => "BPF trampolines are not supported on this kernel/arch",
        ("kprobe-multi", _, libc::EOPNOTSUPP | 524) => {
            "kernel built without CONFIG_FPROBE (kprobe-multi links)"
        }
        ("kprobe" | "kprobe-multi", _, libc::ENOENT | libc::EOPNOTSUPP | libc::ENOSYS) => {
            "kernel built without CONFIG_KPROBES (or kprobes disabled)"
        }
        ("kprobe" | "kprobe-multi", _, libc::EPERM) => "kprobes forbidden (lockdown)",
        (_, "load", libc::EINVAL) => "the kernel does not know this program type or target",
        _ => "see dmesg",
    }
}

fn is_root() -> bool {
    caps::effective() & (1 << 21) != 0
}

fn probe_backend(label: &'static str, prog_name: &str) -> Probe {
    let fail = |stage: &str, e: &libbpf_rs::Error| {
        let errno = errno_of(e);
        Probe {
            name: label,
            works: false,
            why: Some(format!(
                "{stage} failed: {} ({}): {}",
                std::io::Error::from_raw_os_error(errno),
                errno_name(errno),
                cause(label, stage, errno)
            )),
        }
    };
    let mut open = match ObjectBuilder::default().open_memory(objects::PROBE) {
        Ok(o) => o,
        Err(e) => return fail("open", &e),
    };
    for mut p in open.progs_mut() {
        p.set_autoload(p.name() == prog_name);
    }
    let obj = match open.load() {
        Ok(o) => o,
        Err(e) => return fail("load", &e),
    };
    let Some(prog) = obj.progs_mut().find(|p| p.name() == prog_name) else {
        return Probe {
            name: label,
            works: false,
            why: Some("probe program missing".into()),
        };
    };
    match prog.attach() {
        Ok(_link) => Probe {
            name: label,
            works: true,
            why: None,
        },
        Err(e) => fail("attach", &e),
    }
}

/// The errno inside a libbpf error ("... (os error 13)").
fn errno_of(e: &libbpf_rs::Error) -> i32 {
    let text = format!("{e:#}");
    text.rsplit("(os error ")
        .next()
        .and_then(|t| t.split(')').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Joins the nftables trace multicast group, as `nft monitor trace` does.
fn probe_nftrace() -> Probe {
    const NETLINK_NETFILTER: i32 = 12;
    const NFNLGRP_NFTRACE: i32 = 9;
    const SOL_NETLINK: i32 = 270;
    const NETLINK_ADD_MEMBERSHIP: i32 = 1;
    // An nfnetlink socket would load the modules.
    if !crate::kernel::caps::nftables_loaded() {
        return Probe {
            name: "nftables trace",
            works: false,
            why: Some(
                "nf_tables is not loaded, so no namespace has a ruleset to trace (pktpath \
                 loads no kernel module; adding a ruleset loads it)"
                    .into(),
            ),
        };
    }
    // SAFETY: plain socket calls on a descriptor we own and close.
    let (fd, rc, err) = unsafe {
        let fd = libc::socket(libc::AF_NETLINK, libc::SOCK_RAW, NETLINK_NETFILTER);
        if fd < 0 {
            (fd, -1, std::io::Error::last_os_error())
        } else {
            let g = NFNLGRP_NFTRACE;
            let rc = libc::setsockopt(
                fd,
                SOL_NETLINK,
                NETLINK_ADD_MEMBERSHIP,
                &g as *const i32 as *const libc::c_void,
                4,
            );
            (fd, rc, std::io::Error::last_os_error())
        }
    };
    if fd >= 0 {
        // SAFETY: fd is ours.
        unsafe { libc::close(fd) };
    }
    let nft = std::process::Command::new("nft")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match (rc == 0, nft) {
        (true, Some(v)) => Probe {
            name: "nftables trace",
            works: true,
            why: Some(format!("NFNLGRP_NFTRACE joined; {v}")),
        },
        (true, None) => Probe {
            name: "nftables trace",
            works: false,
            why: Some(
                "the kernel allows it, but the nft command is missing (apt install nftables)"
                    .into(),
            ),
        },
        (false, _) => Probe {
            name: "nftables trace",
            works: false,
            why: Some(format!(
                "cannot join NFNLGRP_NFTRACE: {err} ({})",
                if is_root() {
                    "nf_tables or nfnetlink missing?"
                } else {
                    "not running as root"
                }
            )),
        },
    }
}

fn lockdown() -> String {
    if let Ok(s) = std::fs::read_to_string("/sys/kernel/security/lockdown") {
        // "none [integrity] confidentiality"
        if let Some(active) = s.split('[').nth(1).and_then(|r| r.split(']').next()) {
            return active.to_string();
        }
    }
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    if let Some(mode) = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("lockdown="))
    {
        return format!("{mode} (from the kernel command line)");
    }
    "unknown (securityfs not mounted at /sys/kernel/security)".into()
}

fn privileges() -> String {
    let eff = caps::effective();
    let names = [
        (21, "CAP_SYS_ADMIN"),
        (39, "CAP_BPF"),
        (38, "CAP_PERFMON"),
        (12, "CAP_NET_ADMIN"),
        (24, "CAP_SYS_RESOURCE"),
    ];
    let have: Vec<&str> = names
        .iter()
        .filter(|(b, _)| eff & (1u64 << b) != 0)
        .map(|(_, n)| *n)
        .collect();
    let missing: Vec<&str> = names
        .iter()
        .filter(|(b, _)| eff & (1u64 << b) == 0)
        .map(|(_, n)| *n)
        .collect();
    format!(
        "uid {}; has {}; lacks {}",
        // SAFETY: geteuid cannot fail.
        unsafe { libc::geteuid() },
        if have.is_empty() {
            "none".into()
        } else {
            have.join(", ")
        },
        if missing.is_empty() {
            "none".into()
        } else {
            missing.join(", ")
        }
    )
}

/// The function-level backend to use by default: the first that works of
/// kprobe-multi (one link for all), fentry, kprobe.
pub fn best_function_backend() -> Option<super::tracepoint::FuncBackend> {
    use super::tracepoint::FuncBackend;
    libbpf_rs::set_print(None);
    [
        (
            FuncBackend::KprobeMulti,
            "kprobe-multi",
            "probe_kprobe_multi",
        ),
        (FuncBackend::Fentry, "fentry", "probe_fentry"),
        (FuncBackend::Kprobe, "kprobe", "probe_kprobe"),
    ]
    .into_iter()
    .find(|(_, label, prog)| probe_backend(label, prog).works)
    .map(|(b, _, _)| b)
}

/// Runs every probe.
pub fn examine() -> Report {
    let uts = nix_uname();
    let inv = Inventory::load();
    let btf = inv.as_ref().map(|inv| {
        let plan = tracepoint::plan(inv);
        format!(
            "{} present: {} tracepoints, {} of them take a packet",
            super::btf::VMLINUX_BTF,
            inv.tracepoints.len(),
            plan.slots.len() + plan.skipped.len()
        )
    });
    let undescribed_drop_reasons = inv
        .as_ref()
        .map(|inv| {
            pktpath_core::diagnosis::drop_reasons::undescribed(inv.drop_reasons())
                .into_iter()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    // libbpf's own messages would repeat what the probes say.
    libbpf_rs::set_print(None);
    let backends = vec![
        probe_backend("fentry", "probe_fentry"),
        probe_backend("fexit", "probe_fexit"),
        probe_backend("kprobe-multi", "probe_kprobe_multi"),
        probe_backend("kprobe", "probe_kprobe"),
        probe_backend("tp_btf", "probe_tp_btf"),
        probe_backend("raw_tp", "probe_raw_tp"),
    ];
    Report {
        kernel: uts,
        btf: btf.map_err(|e| format!("{e:#}")),
        lockdown: lockdown(),
        privileges: privileges(),
        backends,
        nftrace: probe_nftrace(),
        root: is_root(),
        undescribed_drop_reasons,
    }
}

fn nix_uname() -> String {
    // SAFETY: utsname is plain data filled by the kernel.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut u) } != 0 {
        return "unknown".into();
    }
    let s = |f: &[libc::c_char]| {
        let b: Vec<u8> = f
            .iter()
            .take_while(|c| **c != 0)
            .map(|c| *c as u8)
            .collect();
        String::from_utf8_lossy(&b).into_owned()
    };
    format!("{} {} ({})", s(&u.sysname), s(&u.release), s(&u.machine))
}

/// Prints the report for a person.
pub fn print(r: &Report, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "kernel          {}", r.kernel)?;
    match &r.btf {
        Ok(s) => writeln!(out, "BTF             {s}")?,
        Err(e) => writeln!(out, "BTF             missing: {e}")?,
    }
    writeln!(out, "lockdown        {}", r.lockdown)?;
    writeln!(out, "privileges      {}", r.privileges)?;
    writeln!(out, "backends (tried by loading and attaching a program):")?;
    for p in r.backends.iter().chain([&r.nftrace]) {
        let verdict = if p.works { "works" } else { "NO" };
        let why = p
            .why
            .as_deref()
            .map(|w| format!("  {w}"))
            .unwrap_or_default();
        writeln!(out, "  {:<15} {verdict:<5}{why}", p.name)?;
    }
    let tracepoints = r
        .backends
        .iter()
        .find(|p| p.works && matches!(p.name, "tp_btf" | "raw_tp"));
    let functions = r
        .backends
        .iter()
        .find(|p| p.works && matches!(p.name, "kprobe-multi" | "fentry" | "kprobe"));
    match (functions, tracepoints) {
        _ if !r.root => writeln!(
            out,
            "not running as root: pktpath needs root (CAP_BPF and CAP_PERFMON, or \
             CAP_SYS_ADMIN) to trace; run pktpath doctor as root to see what this kernel allows"
        )?,
        (Some(f), Some(t)) => writeln!(
            out,
            "pktpath will trace every function that takes a packet with {} and the network \
             tracepoints with {}",
            f.name, t.name
        )?,
        (None, Some(t)) => writeln!(
            out,
            "pktpath will trace the network tracepoints with {} (no function-level backend \
             works here: subsystem-level paths only)",
            t.name
        )?,
        _ => writeln!(
            out,
            "no backend works here: pktpath cannot trace on this kernel"
        )?,
    }
    if r.nftrace.works {
        writeln!(out, "nftables tracing is usable")?;
    }
    source_locations(out)?;
    if !r.undescribed_drop_reasons.is_empty() {
        writeln!(
            out,
            "reasons without a description on this kernel (shown by their kernel name): {}",
            r.undescribed_drop_reasons.join(", ")
        )?;
    }
    Ok(())
}

/// What pktpath can say of where in the source each step was handled, on
/// this kernel.
fn source_locations(out: &mut impl Write) -> std::io::Result<()> {
    use pktpath_core::location::{tracepoints::RELEASES, KernelVersion};
    match KernelVersion::running() {
        Some(v) => {
            let lines = if RELEASES.contains(&v) {
                "and the line where each tracepoint fires"
            } else {
                "not their lines (pktpath's table of where tracepoints fire has the lines of \
                 6.1.192, 6.12.107 and 6.18 only)"
            };
            writeln!(
                out,
                "source          release {v}: links to Elixir ({}/{}), each step's file and \
                 subsystem, {lines}",
                pktpath_core::location::ELIXIR,
                v.tag()
            )?;
        }
        None => writeln!(
            out,
            "source          the upstream release is not known (/proc/version_signature, \
             uname -v, uname -r): files and subsystems, no links"
        )?,
    }
    writeln!(
        out,
        "                function file:line (from the kernel's debug info) is not read yet: \
         functions are named and linked by identifier"
    )
}
