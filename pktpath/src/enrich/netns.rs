//! Network namespace names.
//!
//! A namespace made with `ip netns add NAME` is a bind mount under
//! /run/netns; it keeps its name there even with no process in it (network
//! emulators such as IMUNES create those). Other namespaces are named after
//! a process living in them.

// Looked up per event: a fast hash, no need for SipHash's defence.
use rustc_hash::FxHashMap as HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const NETNS_DIRS: &[&str] = &["/run/netns", "/var/run/netns"];

/// Inode-to-name cache, rescanned when an unknown inode shows up.
#[derive(Debug, Default)]
pub struct NetnsNames {
    names: HashMap<u32, Arc<str>>,
    unnamed: HashMap<u32, Arc<str>>,
    /// The last name found (events come in runs from one namespace).
    last: Option<(u32, Arc<str>)>,
    scanned: Option<Instant>,
}

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
fn proc_scan() -> Vec<(u32, u32, String)> {
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

impl NetnsNames {
    pub fn new() -> NetnsNames {
        let mut n = NetnsNames::default();
        n.scan();
        n
    }

    fn scan(&mut self) {
        self.scanned = Some(Instant::now());
        // Processes first, so that /run/netns names win.
        let mut seen = HashMap::default();
        for (ino, pid, comm) in proc_scan() {
            seen.entry(ino)
                .or_insert_with(|| format!("netns:{ino} (pid {pid} {comm})").into());
        }
        if let Some(own) = own_inode() {
            seen.insert(own, "host".into());
        }
        for d in NETNS_DIRS {
            for e in fs::read_dir(d).into_iter().flatten().flatten() {
                if let (Ok(m), Some(name)) = (fs::metadata(e.path()), e.file_name().to_str()) {
                    seen.insert(m.ino() as u32, name.into());
                }
            }
        }
        self.names = seen;
        self.last = None;
    }

    /// The name of namespace `inode`; "netns:INODE" when none is known.
    pub fn name(&mut self, inode: u32) -> Arc<str> {
        if inode == 0 {
            return "?".into();
        }
        if let Some((i, n)) = &self.last {
            if *i == inode {
                return n.clone();
            }
        }
        if !self.names.contains_key(&inode)
            && self
                .scanned
                .is_none_or(|t| t.elapsed() > Duration::from_millis(500))
        {
            self.scan();
        }
        if let Some(n) = self.names.get(&inode) {
            self.last = Some((inode, n.clone()));
            return n.clone();
        }
        // Shared by the steps until a scan finds a name.
        self.unnamed
            .entry(inode)
            .or_insert_with(|| format!("netns:{inode}").into())
            .clone()
    }
}
