//! Throwaway virtual networks in network namespaces, for the demo and the
//! tests: namespaces, veth pairs, bridges, addresses, routes and nftables
//! rules made with the system's own `ip` and `nft`, removed on drop (also
//! when a test panics) and swept on the next start after a crash.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};

/// A set of namespaces whose names share a prefix.
pub struct Lab {
    pub prefix: String,
    namespaces: Vec<String>,
}

fn run(cmd: &mut Command, input: Option<&str>) -> Result<String> {
    let shown = format!("{cmd:?}").replace('"', "");
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

/// Names of the namespaces under /run/netns.
pub fn list_netns() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect()
}

impl Lab {
    /// Starts a lab, first removing what a crashed run left with this prefix.
    pub fn new(prefix: &str) -> Result<Lab> {
        crate::kernel::caps::require_netns_admin("building a virtual network")?;
        for ns in list_netns().into_iter().filter(|n| n.starts_with(prefix)) {
            run(Command::new("ip").args(["netns", "del", &ns]), None).ok();
        }
        Ok(Lab {
            prefix: prefix.to_string(),
            namespaces: Vec::new(),
        })
    }

    /// Creates namespace PREFIX+short with loopback up; returns its name.
    pub fn netns(&mut self, short: &str) -> Result<String> {
        let name = format!("{}{short}", self.prefix);
        run(Command::new("ip").args(["netns", "add", &name]), None)?;
        self.namespaces.push(name.clone());
        self.ip(&name, "link set lo up")?;
        Ok(name)
    }

    /// `ip -n NS ARGS...` (arguments split on whitespace).
    pub fn ip(&self, ns: &str, args: &str) -> Result<String> {
        run(
            Command::new("ip")
                .args(["-n", ns])
                .args(args.split_whitespace()),
            None,
        )
    }

    /// Runs a command inside a namespace (`ip netns exec`).
    pub fn exec(&self, ns: &str, argv: &[&str]) -> Result<String> {
        run(
            Command::new("ip").args(["netns", "exec", ns]).args(argv),
            None,
        )
    }

    /// A veth pair: dev_a in ns_a, dev_b in ns_b, both up.
    pub fn veth(&self, ns_a: &str, dev_a: &str, ns_b: &str, dev_b: &str) -> Result<()> {
        self.ip(
            ns_a,
            &format!("link add {dev_a} type veth peer name {dev_b} netns {ns_b}"),
        )?;
        self.ip(ns_a, &format!("link set {dev_a} up"))?;
        self.ip(ns_b, &format!("link set {dev_b} up"))?;
        Ok(())
    }

    /// Loads an nftables ruleset in a namespace (`nft -f -`).
    pub fn nft(&self, ns: &str, ruleset: &str) -> Result<()> {
        run(
            Command::new("ip").args(["netns", "exec", ns, "nft", "-f", "-"]),
            Some(ruleset),
        )?;
        Ok(())
    }

    /// Sets a sysctl inside a namespace.
    pub fn sysctl(&self, ns: &str, key: &str, value: &str) -> Result<()> {
        self.exec(ns, &["sysctl", "-qw", &format!("{key}={value}")])?;
        Ok(())
    }

    /// The namespace's inode (as events report it).
    pub fn inode(&self, ns: &str) -> Result<u32> {
        crate::enrich::netns::named_inode(ns).ok_or_else(|| anyhow!("netns {ns} vanished"))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.namespaces.drain(..).rev() {
            let _ = Command::new("ip")
                .args(["netns", "del", &ns])
                .stderr(Stdio::null())
                .status();
        }
    }
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
