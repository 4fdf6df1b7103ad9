//! Network namespace names, for the steps: an inode becomes the name it has
//! under /run/netns, or that of a process living in it.
//!
//! A namespace made with `ip netns add NAME` is a bind mount under
//! /run/netns; it keeps its name there even with no process in it (network
//! emulators such as IMUNES create those). Other namespaces are named after
//! a process living in them.

// Looked up per event: a fast hash, no need for SipHash's defence.
use rustc_hash::FxHashMap as HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::netns::{own_inode, proc_scan, NETNS_DIRS};

/// Inode-to-name cache, rescanned when an unknown inode shows up.
#[derive(Debug, Default)]
pub struct NetnsNames {
    names: HashMap<u32, Arc<str>>,
    unnamed: HashMap<u32, Arc<str>>,
    /// The last name found (events come in runs from one namespace).
    last: Option<(u32, Arc<str>)>,
    scanned: Option<Instant>,
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
