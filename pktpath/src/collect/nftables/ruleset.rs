//! The text of a rule as `nft -a list ruleset` prints it, and the hook,
//! priority and policy of base chains: read per namespace, cached.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::netns::NetnsRef;

use super::message::NftTrace;
use super::nft_in;

/// The hook line of a base chain, as nft prints it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BaseChain {
    /// filter, nat, route.
    pub chain_type: String,
    /// prerouting, input, forward, output, postrouting, ingress, egress.
    pub hook: String,
    pub device: Option<String>,
    /// As printed: `filter`, `-500`, `dstnat`, `mangle - 5`...
    pub priority: String,
    pub policy: Option<String>,
    /// The whole line: `type filter hook forward priority filter; policy accept;`.
    pub text: String,
}

/// One chain of a ruleset.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ChainInfo {
    pub family: String,
    pub table: String,
    pub name: String,
    pub handle: Option<u64>,
    pub base: Option<BaseChain>,
    /// Rule handle -> rule text without its `# handle N` comment.
    pub rules: BTreeMap<u64, String>,
    /// Rule handles in the order the chain evaluates them.
    pub order: Vec<u64>,
}

/// A parsed `nft -a -s list ruleset`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ruleset {
    /// (family, table, chain) -> chain.
    pub chains: HashMap<(String, String, String), ChainInfo>,
}

fn unquote(s: &str) -> String {
    s.trim_matches('"').to_string()
}

/// Splits a trailing `# handle N` off a line.
fn split_handle(line: &str) -> (&str, Option<u64>) {
    match line.rsplit_once("# handle ") {
        Some((head, n)) => match n.trim().parse() {
            Ok(h) => (head.trim_end(), Some(h)),
            Err(_) => (line, None),
        },
        None => (line, None),
    }
}

fn parse_base_chain(line: &str) -> Option<BaseChain> {
    let w: Vec<&str> = line.split_whitespace().collect();
    if w.first() != Some(&"type") {
        return None;
    }
    let at = |key: &str| w.iter().position(|x| *x == key);
    let chain_type = w.get(1)?.to_string();
    let hook = w.get(at("hook")? + 1)?.trim_end_matches(';').to_string();
    let device = at("device").and_then(|i| w.get(i + 1)).map(|d| unquote(d));
    let prio_start = at("priority")? + 1;
    let mut prio = Vec::new();
    for x in &w[prio_start..] {
        prio.push(x.trim_end_matches(';'));
        if x.ends_with(';') {
            break;
        }
    }
    let policy = at("policy")
        .and_then(|i| w.get(i + 1))
        .map(|p| p.trim_end_matches(';').to_string());
    Some(BaseChain {
        chain_type,
        hook,
        device,
        priority: prio.join(" "),
        policy,
        text: line.to_string(),
    })
}

impl Ruleset {
    /// Parses the output of `nft -a [-s] list ruleset`. Sets, maps,
    /// flowtables and stateful objects are skipped.
    pub fn parse(text: &str) -> Ruleset {
        let mut rs = Ruleset::default();
        let mut table: Option<(String, String)> = None;
        let mut chain: Option<ChainInfo> = None;
        // Depth of blocks we skip (sets, maps...), inside a table.
        let mut skip = 0usize;
        for raw in text.lines() {
            let (line, handle) = split_handle(raw.trim());
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            if skip > 0 {
                if line == "}" {
                    skip -= 1;
                } else if line.ends_with('{') {
                    skip += 1;
                }
                continue;
            }
            if line == "}" {
                if let Some(c) = chain.take() {
                    rs.chains
                        .insert((c.family.clone(), c.table.clone(), c.name.clone()), c);
                } else {
                    table = None;
                }
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            if chain.is_none() && line.ends_with('{') {
                match (table.as_ref(), words.as_slice()) {
                    (None, ["table", family, name, "{"]) => {
                        table = Some((family.to_string(), unquote(name)));
                    }
                    (Some((family, t)), ["chain", name, "{"]) => {
                        chain = Some(ChainInfo {
                            family: family.clone(),
                            table: t.clone(),
                            name: unquote(name),
                            handle,
                            ..ChainInfo::default()
                        });
                    }
                    _ => skip = 1,
                }
                continue;
            }
            if let Some(c) = chain.as_mut() {
                if let Some(h) = handle {
                    c.rules.insert(h, line.to_string());
                    c.order.push(h);
                } else if let Some(b) = parse_base_chain(line) {
                    c.base = Some(b);
                }
                // Other lines (comment, devices = {...}) are ignored.
            }
        }
        rs
    }

    pub fn chain(&self, family: &str, table: &str, chain: &str) -> Option<&ChainInfo> {
        self.chains
            .get(&(family.to_string(), table.to_string(), chain.to_string()))
    }
}

/// Rule texts per namespace, read with `nft -a -s list ruleset` and read
/// again when a chain or rule handle is not known (at most every
/// `min_refresh`).
pub struct RulesetCache {
    per_ns: HashMap<u32, (Ruleset, Instant)>,
    pub min_refresh: Duration,
}

impl Default for RulesetCache {
    fn default() -> Self {
        RulesetCache {
            per_ns: HashMap::new(),
            min_refresh: Duration::from_millis(200),
        }
    }
}

/// What a trace message refers to, in the user's terms.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RuleInfo {
    pub family: String,
    pub table: String,
    pub chain: String,
    /// The base chain's hook line, when the chain is a base chain.
    pub base: Option<BaseChain>,
    pub rule_handle: Option<u64>,
    /// The rule as nft prints it (without `# handle N`).
    pub rule_text: Option<String>,
}

impl RulesetCache {
    pub fn new() -> RulesetCache {
        RulesetCache::default()
    }

    /// Reads the ruleset of `ns` now.
    pub fn refresh(&mut self, ns: &NetnsRef) -> Result<&Ruleset> {
        let text = nft_in(ns, &["-a", "-s", "list", "ruleset"], None)?;
        self.per_ns
            .insert(ns.inode, (Ruleset::parse(&text), Instant::now()));
        Ok(&self.per_ns[&ns.inode].0)
    }

    /// The chain, reading the ruleset again if it (or `handle` in it) is
    /// not known.
    pub fn chain(
        &mut self,
        ns: &NetnsRef,
        family: &str,
        table: &str,
        chain: &str,
        handle: Option<u64>,
    ) -> Option<&ChainInfo> {
        let known = |rs: &Ruleset| {
            rs.chain(family, table, chain)
                .is_some_and(|c| handle.is_none_or(|h| c.rules.contains_key(&h)))
        };
        let stale = match self.per_ns.get(&ns.inode) {
            None => true,
            Some((rs, at)) => !known(rs) && at.elapsed() >= self.min_refresh,
        };
        if stale && self.refresh(ns).is_err() {
            return None;
        }
        self.per_ns.get(&ns.inode)?.0.chain(family, table, chain)
    }

    /// The text of a rule, as nft prints it.
    pub fn rule_text(
        &mut self,
        ns: &NetnsRef,
        family: &str,
        table: &str,
        chain: &str,
        handle: u64,
    ) -> Option<String> {
        self.chain(ns, family, table, chain, Some(handle))?
            .rules
            .get(&handle)
            .cloned()
    }

    /// Table, chain, hook and rule text of a trace message (`ns` is the
    /// namespace it came from).
    pub fn describe(&mut self, ns: &NetnsRef, t: &NftTrace) -> RuleInfo {
        let c = self.chain(ns, &t.family, &t.table, &t.chain, t.rule_handle);
        RuleInfo {
            family: t.family.to_string(),
            table: t.table.to_string(),
            chain: t.chain.to_string(),
            base: c.and_then(|c| c.base.clone()),
            rule_handle: t.rule_handle,
            rule_text: t
                .rule_handle
                .and_then(|h| c.and_then(|c| c.rules.get(&h).cloned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_ruleset_listing() {
        let text = r#"table inet pktpath_trace_1 { # handle 1
	chain pre { # handle 1
		type filter hook prerouting priority -500; policy accept;
		meta nftrace set 1 # handle 4
	}
}
table inet t { # handle 3
	set s { # handle 3
		type ipv4_addr
		elements = { 1.2.3.4, 5.6.7.8 }
	}

	map m { # handle 9
		type ipv4_addr : verdict
		elements = { 1.2.3.4 : accept,
			     5.6.7.8 : drop }
	}

	chain mychain { # handle 1
		udp dport 9999 counter drop comment "x { y" # handle 4
	}

	chain fw { # handle 2
		type filter hook forward priority filter; policy drop;
		ip daddr @s counter accept # handle 5
		jump mychain # handle 6
	}
}
table netdev n { # handle 4
	chain ing { # handle 1
		type filter hook ingress device "lo" priority filter - 5; policy accept;
	}
}
"#;
        let rs = Ruleset::parse(text);
        assert_eq!(rs.chains.len(), 4, "{rs:#?}");
        let my = rs.chain("inet", "t", "mychain").unwrap();
        assert_eq!(my.base, None);
        assert_eq!(
            my.rules[&4],
            r#"udp dport 9999 counter drop comment "x { y""#
        );
        let fw = rs.chain("inet", "t", "fw").unwrap();
        let b = fw.base.as_ref().unwrap();
        assert_eq!(
            (b.chain_type.as_str(), b.hook.as_str(), b.priority.as_str()),
            ("filter", "forward", "filter")
        );
        assert_eq!(b.policy.as_deref(), Some("drop"));
        assert_eq!(
            b.text,
            "type filter hook forward priority filter; policy drop;"
        );
        assert_eq!(fw.rules[&5], "ip daddr @s counter accept");
        assert_eq!(fw.rules[&6], "jump mychain");
        assert_eq!(fw.handle, Some(2));
        let ing = rs
            .chain("netdev", "n", "ing")
            .unwrap()
            .base
            .clone()
            .unwrap();
        assert_eq!(ing.device.as_deref(), Some("lo"));
        assert_eq!(ing.priority, "filter - 5");
        let pre = rs.chain("inet", "pktpath_trace_1", "pre").unwrap();
        assert_eq!(pre.base.as_ref().unwrap().priority, "-500");
    }
}
