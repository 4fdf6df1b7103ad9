//! Which process holds a socket: the kernel gives its inode, /proc gives
//! the processes whose descriptors point at `socket:[INODE]` (as `ss -p`).

use std::collections::HashMap;

/// Socket inodes to "comm (pid N)", filled by one scan of /proc for the
/// first inode not known (a flood to one socket scans once).
#[derive(Default)]
pub struct SocketOwners {
    known: HashMap<u64, Option<String>>,
}

/// At most this many inodes remembered (a long run on a busy host).
const MAX_KNOWN: usize = 4096;

impl SocketOwners {
    /// The process holding socket `inode`, if one still does.
    pub fn owner(&mut self, inode: u64) -> Option<String> {
        if inode == 0 {
            return None;
        }
        if let Some(known) = self.known.get(&inode) {
            return known.clone();
        }
        if self.known.len() >= MAX_KNOWN {
            self.known.clear();
        }
        for (ino, owner) in scan() {
            self.known.entry(ino).or_insert(Some(owner));
        }
        self.known.entry(inode).or_insert(None).clone()
    }
}

/// Every socket inode of every process, with "comm (pid N)".
fn scan() -> Vec<(u64, String)> {
    let mut found = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return found;
    };
    for p in procs.flatten() {
        let name = p.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        let mut comm = None;
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let Some(ino) = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse().ok())
            else {
                continue;
            };
            let comm = comm.get_or_insert_with(|| {
                std::fs::read_to_string(p.path().join("comm"))
                    .map(|c| c.trim_end().to_string())
                    .unwrap_or_default()
            });
            found.push((ino, format!("{comm} (pid {pid})")));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// A socket of this test process is found with its pid.
    #[test]
    fn finds_the_process_of_a_socket() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&s);
        let ino = std::fs::metadata(format!("/proc/self/fd/{fd}"))
            .unwrap()
            .ino();
        let owner = SocketOwners::default().owner(ino).expect("found");
        assert!(
            owner.ends_with(&format!("(pid {})", std::process::id())),
            "{owner}"
        );
        assert_eq!(SocketOwners::default().owner(0), None);
    }
}
