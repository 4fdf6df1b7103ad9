//! Throwaway virtual networks in network namespaces, for the demo and the
//! tests: namespaces, veth pairs, bridges, addresses, routes and nftables
//! rules made with the system's own `ip` and `nft`, removed on drop (also
//! when a test panics) and swept on the next start after a crash.

use std::process::{Command, Stdio};

use anyhow::{anyhow, Result};

/// A set of namespaces whose names share a prefix.
pub struct Lab {
    pub prefix: String,
    namespaces: Vec<String>,
}

fn run(cmd: &mut Command, input: Option<&str>) -> Result<String> {
    let shown = format!("{cmd:?}").replace('"', "");
    crate::netns::output(cmd, input, &shown)
}

impl Lab {
    /// Starts a lab, first removing what a crashed run left with this prefix.
    pub fn new(prefix: &str) -> Result<Lab> {
        crate::kernel::caps::require_netns_admin("building a virtual network")?;
        for ns in crate::netns::list_netns()
            .into_iter()
            .filter(|n| n.starts_with(prefix))
        {
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
        crate::netns::named_inode(ns).ok_or_else(|| anyhow!("netns {ns} vanished"))
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
