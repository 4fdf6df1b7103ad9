//! Network namespaces: finding them (by name under /run/netns, by inode,
//! through a process in them) and entering them, the one way the rest of
//! pktpath does: a program run inside one (`run_in`), or a thread that
//! entered one (`in_netns`).

use std::fs::{self, File};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};

pub const NETNS_DIRS: &[&str] = &["/run/netns", "/var/run/netns"];

/// The inode of the network namespace this process runs in.
pub fn own_inode() -> Option<u32> {
    fs::metadata("/proc/self/ns/net")
        .ok()
        .map(|m| m.ino() as u32)
}

/// The inode behind `/run/netns/NAME`.
pub fn named_inode(name: &str) -> Option<u32> {
    if name.contains('/') {
        return None;
    }
    NETNS_DIRS
        .iter()
        .find_map(|d| fs::metadata(Path::new(d).join(name)).ok())
        .map(|m| m.ino() as u32)
}

/// Inode from a name under /run/netns, or a number given as is.
pub fn resolve(spec: &str) -> Option<u32> {
    named_inode(spec).or_else(|| spec.parse().ok())
}

/// A path that can be opened to enter namespace `inode` (for setns).
pub fn path_of(inode: u32) -> Option<std::path::PathBuf> {
    for d in NETNS_DIRS {
        for e in fs::read_dir(d).into_iter().flatten().flatten() {
            if fs::metadata(e.path()).is_ok_and(|m| m.ino() as u32 == inode) {
                return Some(e.path());
            }
        }
    }
    if own_inode() == Some(inode) {
        return Some("/proc/self/ns/net".into());
    }
    proc_scan()
        .into_iter()
        .find(|(ino, _, _)| *ino == inode)
        .map(|(_, pid, _)| format!("/proc/{pid}/ns/net").into())
}

/// (netns inode, pid, comm) of every process we can see.
pub(crate) fn proc_scan() -> Vec<(u32, u32, String)> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(link) = fs::read_link(e.path().join("ns/net")) else {
            continue;
        };
        // "net:[4026531840]"
        let Some(ino) = link
            .to_str()
            .and_then(|s| s.strip_prefix("net:["))
            .and_then(|s| s.strip_suffix(']'))
            .and_then(|s| s.parse().ok())
        else {
            continue;
        };
        let comm = fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        out.push((ino, pid, comm.trim().to_string()));
    }
    out
}

/// Names of the namespaces under /run/netns.
pub fn list_netns() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect()
}

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
        let inode =
            named_inode(name).ok_or_else(|| anyhow!("no network namespace named {name}"))?;
        let path = NETNS_DIRS
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
        let path =
            path_of(inode).ok_or_else(|| anyhow!("no way to enter network namespace {inode}"))?;
        let name = match path.parent().and_then(|p| p.to_str()) {
            Some(d) if NETNS_DIRS.contains(&d) => path
                .file_name()
                .and_then(|f| f.to_str())
                .unwrap_or("?")
                .to_string(),
            _ => format!("netns:{inode}"),
        };
        Ok(NetnsRef { name, path, inode })
    }

    pub fn is_own(&self) -> bool {
        own_inode() == Some(self.inode)
    }
}

/// Runs `program ARGS` inside namespace `ns`, with `input` on its standard
/// input; its standard output.
pub fn run_in(ns: &NetnsRef, program: &str, args: &[&str], input: Option<&str>) -> Result<String> {
    let mut cmd = Command::new(program);
    cmd.args(args);
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
    let shown = format!("{program} {} in netns {}", args.join(" "), ns.name);
    output(&mut cmd, input, &shown)
}

/// Runs `cmd` with `input` on its standard input: its standard output, or
/// an error naming it (`shown`) with what it wrote on standard error.
pub fn output(cmd: &mut Command, input: Option<&str>, shown: &str) -> Result<String> {
    let mut child = cmd
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {shown}"))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "{shown} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A thread running inside another network namespace.
pub struct NsThread<T>(std::thread::JoinHandle<Option<T>>);

impl<T> NsThread<T> {
    /// Waits for the thread; an error if it panicked.
    pub fn join(self) -> Result<T> {
        self.0
            .join()
            .map_err(|_| anyhow!("thread in netns panicked"))?
            .ok_or_else(|| anyhow!("thread could not enter its netns"))
    }
}

/// Runs `f` on a thread that entered network namespace `ns` (a name under
/// /run/netns or a path), so sockets it opens live there.
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<NsThread<T>> {
    let path = if ns.starts_with('/') {
        ns.to_string()
    } else {
        format!("/run/netns/{ns}")
    };
    let file = File::open(&path).with_context(|| format!("cannot open {path}"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        // SAFETY: setns on a valid namespace fd only changes this thread.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            tx.send(Err(std::io::Error::last_os_error())).ok();
            return None;
        }
        tx.send(Ok(())).ok();
        Some(f())
    });
    match rx.recv() {
        Ok(Ok(())) => Ok(NsThread(handle)),
        Ok(Err(e)) => Err(anyhow!("cannot enter netns {ns}: {e}")),
        Err(_) => Err(anyhow!("cannot enter netns {ns}")),
    }
}

/// The index of device `name` in namespace `ns_path` (None: ours).
pub fn ifindex_in(ns_path: Option<&str>, name: &str) -> Result<Option<u32>> {
    let name = std::ffi::CString::new(name)?;
    // SAFETY: if_nametoindex reads a NUL-terminated string.
    let lookup = move || unsafe { libc::if_nametoindex(name.as_ptr()) };
    let idx = match ns_path {
        None => lookup(),
        Some(p) => in_netns(p, lookup)?.join()?,
    };
    Ok((idx != 0).then_some(idx))
}

/// The namespaces pktpath can see: its own and every named one.
pub fn visible() -> Vec<NetnsRef> {
    NetnsRef::own()
        .into_iter()
        .chain(list_netns().iter().filter_map(|n| NetnsRef::named(n).ok()))
        .collect()
}
