//! The expectations file: TOML a person writes by hand (docs/expect.md).
//! Each `[[expect]]` names packets by a tcpdump filter and says what their
//! journeys must show; every mistake is reported at its line and column.

use std::ops::Range;

use serde::{Deserialize, Serialize};
use toml::Spanned;

/// A file's expectations, in the order written.
#[derive(Clone, Debug, Default)]
pub struct Expectations {
    pub list: Vec<Expectation>,
}

/// What some packets must show.
#[derive(Clone, Debug, Serialize)]
pub struct Expectation {
    /// Its name in verdicts (`name`, else its filter).
    pub name: String,
    /// The packets, as a tcpdump filter ("" is every packet).
    pub packets: String,
    /// Only the journeys that start here (first seen in this namespace,
    /// on this device).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<Place>,
    /// Places every journey must pass, in any order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub passes: Vec<Place>,
    /// Places no journey may pass.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub avoids: Vec<Place>,
    /// Places every journey must pass in this order (others may come
    /// between them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub order: Vec<Place>,
    /// How every journey must end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ends: Option<EndSpec>,
    pub count: Count,
    /// Its line in the file (for verdicts and JUnit).
    pub line: usize,
}

/// One place a packet can pass: every key given must hold at one step.
/// `netns` and `dev` narrow the others (a rule in that namespace, a route
/// looked up there).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Place {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dev: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
    /// A queueing discipline: its kind (`fq_codel`) or handle (`1:`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qdisc: Option<String>,
    /// An nftables rule: words of its text as `nft list ruleset` prints it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handle: Option<u64>,
    /// The rule's `comment "..."`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// A chain's policy with this verdict (no rule decided).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain: Option<String>,
    /// The rule's or policy's verdict (accept, drop, jump ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    /// An iptables rule: words of its `-A` line, as `iptables -S` prints it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iptables: Option<String>,
    /// A route lookup's chosen route: its prefix (`10.0.2.0/24`,
    /// `default`), or `*` for any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route_table: Option<String>,
    /// unicast, local, blackhole, unreachable, prohibit, throw ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route_type: Option<String>,
    /// A kernel function (needs a function backend).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracepoint: Option<String>,
    /// A conntrack state: new, established, related, untracked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ct: Option<String>,
    /// Address translation: `snat`, `dnat`, or words of the rewrite
    /// (`10.0.2.1:8080`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nat: Option<String>,
}

/// How a journey must end: one of `delivered`, `transmitted`, `dropped`,
/// `consumed`, narrowed by the others.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EndSpec {
    /// Delivered to a socket (in this namespace, when a name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered: Option<Target>,
    /// Handed to this device's driver.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transmitted: Option<Target>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropped: Option<Target>,
    /// Freed by the kernel after use (an echo request answered).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumed: Option<Target>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// A drop's kernel reason (`NETFILTER_DROP`, `NO_SOCKET`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What decided a drop, as pktpath's JSON names it (`nft_rule`,
    /// `nft_policy`, `no_route`, `ttl`, `rp_filter` ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// Dropped by this nftables or iptables rule (words of its text).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Dropped by the policy of this chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_of: Option<String>,
}

/// `true` (anywhere) or a name (a namespace; a device for `transmitted`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum Target {
    Any(bool),
    Named(String),
}

/// How many of the packets must show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Count {
    /// Every one, and at least one packet seen.
    All,
    /// Not one (no packet of the filter at all, when nothing else is said).
    None,
    AtLeast(usize),
    AtMost(usize),
    Exactly(usize),
}

impl std::fmt::Display for Count {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Count::All => write!(f, "every packet"),
            Count::None => write!(f, "no packet"),
            Count::AtLeast(n) => write!(f, "at least {n} packets"),
            Count::AtMost(n) => write!(f, "at most {n} packets"),
            Count::Exactly(n) => write!(f, "exactly {n} packets"),
        }
    }
}

/// A mistake in the file: where, and what.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: {message}")]
pub struct FileError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    expect: Vec<Spanned<RawExpect>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    name: Option<String>,
    packets: Option<String>,
    from: Option<Spanned<Place>>,
    #[serde(default)]
    passes: Vec<Spanned<Place>>,
    #[serde(default)]
    avoids: Vec<Spanned<Place>>,
    #[serde(default)]
    order: Vec<Spanned<Place>>,
    ends: Option<Spanned<EndSpec>>,
    count: Option<Spanned<RawCount>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawCount {
    Number(i64),
    Words(String),
}

/// Reads an expectations file's text.
pub fn parse(text: &str) -> Result<Expectations, FileError> {
    let at = |span: Option<Range<usize>>, message: String| {
        let (line, column) = position(text, span.map_or(0, |s| s.start));
        FileError {
            line,
            column,
            message,
        }
    };
    let raw: Raw = toml::from_str(text).map_err(|e| at(e.span(), one_line(e.message())))?;
    if raw.expect.is_empty() {
        return Err(at(
            None,
            "no expectations: write at least one [[expect]] table (see docs/expect.md)".into(),
        ));
    }
    let mut list = Vec::new();
    for e in raw.expect {
        let span = e.span();
        let line = position(text, span.start).0;
        let r = e.into_inner();
        let Some(packets) = r.packets else {
            return Err(at(
                Some(span),
                "this [[expect]] has no `packets` (a tcpdump filter; \"\" for every packet)".into(),
            ));
        };
        let place = |p: Spanned<Place>, whose: &str| -> Result<Place, FileError> {
            let span = p.span();
            let p = p.into_inner();
            check_place(&p, whose).map_err(|m| at(Some(span), m))?;
            Ok(p)
        };
        let from = match r.from {
            Some(f) => {
                let span = f.span();
                let f = place(f, "from")?;
                if f != (Place {
                    netns: f.netns.clone(),
                    dev: f.dev.clone(),
                    ..Place::default()
                }) {
                    return Err(at(
                        Some(span),
                        "`from` takes only `netns` and `dev` (where the packets are first seen)"
                            .into(),
                    ));
                }
                Some(f)
            }
            None => None,
        };
        let all = |v: Vec<Spanned<Place>>, whose: &str| -> Result<Vec<Place>, FileError> {
            v.into_iter().map(|p| place(p, whose)).collect()
        };
        let passes = all(r.passes, "passes")?;
        let avoids = all(r.avoids, "avoids")?;
        let order = all(r.order, "order")?;
        let ends = match r.ends {
            Some(s) => {
                let span = s.span();
                let s = s.into_inner();
                check_end(&s).map_err(|m| at(Some(span), m))?;
                Some(s)
            }
            None => None,
        };
        let count = match r.count {
            Some(c) => {
                let span = c.span();
                count(c.into_inner()).map_err(|m| at(Some(span), m))?
            }
            None => Count::All,
        };
        if passes.is_empty()
            && avoids.is_empty()
            && order.is_empty()
            && ends.is_none()
            && count == Count::All
        {
            return Err(at(
                Some(span),
                "this [[expect]] expects nothing: give `passes`, `avoids`, `order`, `ends` or \
                 a `count`"
                    .into(),
            ));
        }
        list.push(Expectation {
            name: r.name.unwrap_or_else(|| match packets.as_str() {
                "" => "every packet".into(),
                p => p.to_string(),
            }),
            packets,
            from,
            passes,
            avoids,
            order,
            ends,
            count,
            line,
        });
    }
    Ok(Expectations { list })
}

/// toml's messages may span lines (with the offending text quoted): the
/// first line is the message.
fn one_line(m: &str) -> String {
    m.lines().next().unwrap_or(m).trim().to_string()
}

/// 1-based line and column (in characters) of a byte offset.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[start..].chars().count() + 1)
}

fn check_place(p: &Place, whose: &str) -> Result<(), String> {
    let nft = p.rule.is_some()
        || p.handle.is_some()
        || p.comment.is_some()
        || p.policy.is_some()
        || p.verdict.is_some();
    let scope = p.family.is_some() || p.table.is_some() || p.chain.is_some();
    if scope && !nft && p.iptables.is_none() {
        return Err(format!(
            "a place of `{whose}` names a family, table or chain but no rule: add `rule`, \
             `handle`, `comment`, `policy`, `verdict` or `iptables` (a routing table is \
             `route_table`)"
        ));
    }
    if p.iptables.is_some() && (p.rule.is_some() || p.handle.is_some() || p.policy.is_some()) {
        return Err(
            "`iptables` and an nftables `rule`, `handle` or `policy` are two places: \
                    give them as two"
                .into(),
        );
    }
    if p.rule.is_some() && p.policy.is_some() {
        return Err(
            "`rule` and `policy` cannot both decide at one step: give them as two places".into(),
        );
    }
    if (p.route_table.is_some() || p.route_type.is_some()) && p.route.is_none() {
        return Err(
            "`route_table` and `route_type` narrow a `route`: add `route = \"*\"` for \
                    any route"
                .into(),
        );
    }
    if p.function.is_some() && p.tracepoint.is_some() {
        return Err(
            "a step is a function or a tracepoint, not both: give them as two places".into(),
        );
    }
    if *p == Place::default() {
        return Err(format!(
            "an empty place in `{whose}`: name a netns, dev, bridge, qdisc, rule, policy, \
             iptables, route, function, tracepoint, ct or nat"
        ));
    }
    Ok(())
}

fn check_end(e: &EndSpec) -> Result<(), String> {
    let hows = [&e.delivered, &e.transmitted, &e.dropped, &e.consumed]
        .iter()
        .filter(|t| t.is_some())
        .count();
    if hows != 1 {
        return Err(
            "`ends` takes one of `delivered`, `transmitted`, `dropped` or `consumed`".into(),
        );
    }
    for t in [&e.delivered, &e.transmitted, &e.dropped, &e.consumed]
        .into_iter()
        .flatten()
    {
        if *t == Target::Any(false) {
            return Err(
                "`ends` says how a packet ends: `false` says nothing (use `avoids`, or \
                        `count = \"none\"`)"
                    .into(),
            );
        }
    }
    let drop_words = e.reason.is_some() || e.cause.is_some() || e.rule.is_some();
    if (drop_words || e.policy_of.is_some()) && e.dropped.is_none() {
        return Err(
            "`reason`, `cause`, `rule` and `policy_of` describe a drop: they go with \
                    `dropped`"
                .into(),
        );
    }
    if let Some(c) = &e.cause {
        if !CAUSES.contains(&c.as_str()) {
            return Err(format!("unknown cause `{c}`: one of {}", CAUSES.join(", ")));
        }
    }
    Ok(())
}

/// The kinds of `model::Cause`, as its JSON names them.
pub const CAUSES: &[&str] = &[
    "reason",
    "nft_rule",
    "nft_policy",
    "iptables",
    "legacy_table",
    "route",
    "no_route",
    "ttl",
    "mtu",
    "rp_filter",
    "tc",
    "vlan_filter",
    "purged",
];

fn count(c: RawCount) -> Result<Count, String> {
    let bad = || {
        "`count` is \"all\", \"none\", \"any\", a number (at least that many), \"at least N\", \
         \"at most N\" or \"exactly N\""
            .to_string()
    };
    match c {
        RawCount::Number(n) if n >= 1 => Ok(Count::AtLeast(n as usize)),
        RawCount::Number(0) => Ok(Count::None),
        RawCount::Number(_) => Err(bad()),
        RawCount::Words(w) => {
            let w = w.trim().to_ascii_lowercase();
            let words: Vec<&str> = w.split_whitespace().collect();
            let n = |s: &str| s.parse::<usize>().map_err(|_| bad());
            match words.as_slice() {
                ["all"] | ["every"] => Ok(Count::All),
                ["none"] | ["no"] => Ok(Count::None),
                ["any"] => Ok(Count::AtLeast(1)),
                ["at", "least", k] => Ok(Count::AtLeast(n(k)?)),
                ["at", "most", k] => Ok(Count::AtMost(n(k)?)),
                ["exactly", k] => Ok(Count::Exactly(n(k)?)),
                [k] if k.parse::<usize>().is_ok() => Ok(Count::AtLeast(n(k)?)),
                _ => Err(bad()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> FileError {
        parse(text).expect_err("should not parse")
    }

    #[test]
    fn a_full_expectation_reads() {
        let e = parse(
            r#"
# the web server's firewall
[[expect]]
name = "HTTP reaches the server"
packets = "tcp dst port 80"
from = { netns = "client" }
passes = [
  { rule = "tcp dport 80 accept", chain = "forward" },
  { route = "10.0.2.0/24", route_table = "main", netns = "router" },
]
avoids = [{ netns = "dmz" }]
order = [{ netns = "client" }, { netns = "router" }, { netns = "server" }]
ends = { delivered = "server" }
count = "at least 3"

[[expect]]
packets = "tcp dst port 23"
ends = { dropped = true, rule = "tcp dport 23 drop" }
"#,
        )
        .unwrap();
        assert_eq!(e.list.len(), 2);
        let a = &e.list[0];
        assert_eq!(a.name, "HTTP reaches the server");
        assert_eq!(a.line, 3);
        assert_eq!(a.passes.len(), 2);
        assert_eq!(a.passes[1].route_table.as_deref(), Some("main"));
        assert_eq!(a.count, Count::AtLeast(3));
        assert_eq!(
            a.ends.as_ref().unwrap().delivered,
            Some(Target::Named("server".into()))
        );
        let b = &e.list[1];
        assert_eq!(b.name, "tcp dst port 23", "named after its filter");
        assert_eq!(b.count, Count::All);
        assert_eq!(b.line, 16);
    }

    #[test]
    fn syntax_errors_say_where() {
        let e = err("[[expect]]\npackets = \"icmp\nends = {}\n");
        assert_eq!(e.line, 2, "{e}");
        assert!(!e.message.contains('\n'));
    }

    #[test]
    fn an_unknown_key_is_named_at_its_place() {
        let e =
            err("[[expect]]\npackets = \"icmp\"\npasses = [{ netns = \"a\", rulez = \"x\" }]\n");
        assert_eq!((e.line, e.column), (3, 26), "at the key: {e}");
        assert!(e.message.contains("rulez"), "{e}");
        let e = err("[[expect]]\npackets = \"icmp\"\nend = { dropped = true }\n");
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("end"), "{e}");
    }

    #[test]
    fn meaningless_expectations_are_refused() {
        let e = err("[[expect]]\npackets = \"icmp\"\n");
        assert!(e.message.contains("expects nothing"), "{e}");
        assert_eq!(e.line, 1);
        let e = err("[[expect]]\nname = \"x\"\nends = { dropped = true }\n");
        assert!(e.message.contains("no `packets`"), "{e}");
        let e = err("[[expect]]\npackets = \"\"\npasses = [{}]\n");
        assert!(e.message.contains("empty place"), "{e}");
        assert_eq!((e.line, e.column), (3, 11));
        let e = err("[[expect]]\npackets = \"\"\npasses = [{ table = \"filter\" }]\n");
        assert!(e.message.contains("route_table"), "{e}");
        let e = err("[[expect]]\npackets = \"\"\nends = { delivered = true, dropped = true }\n");
        assert!(e.message.contains("one of"), "{e}");
        let e = err("[[expect]]\npackets = \"\"\nends = { delivered = true, reason = \"X\" }\n");
        assert!(e.message.contains("with `dropped`"), "{e}");
        let e = err("[[expect]]\npackets = \"\"\nends = { dropped = true, cause = \"fire\" }\n");
        assert!(e.message.contains("nft_policy"), "{e}");
        let e = err(
            "[[expect]]\npackets = \"\"\nfrom = { rule = \"x\" }\nends = { consumed = true }\n",
        );
        assert!(e.message.contains("`from` takes only"), "{e}");
        let e = err("[[expect]]\npackets = \"\"\ncount = \"lots\"\n");
        assert_eq!(e.line, 3);
        let e = err("# nothing\n");
        assert!(e.message.contains("no expectations"), "{e}");
        let e = err("[[expect]]\npackets = \"\"\nends = { dropped = 3 }\n");
        assert_eq!(e.line, 3, "{e}");
    }

    #[test]
    fn counts_read_as_people_write_them() {
        let c = |w: &str| count(RawCount::Words(w.into()));
        assert_eq!(c("all"), Ok(Count::All));
        assert_eq!(c("None"), Ok(Count::None));
        assert_eq!(c("any"), Ok(Count::AtLeast(1)));
        assert_eq!(c("at most 2"), Ok(Count::AtMost(2)));
        assert_eq!(c("exactly 5"), Ok(Count::Exactly(5)));
        assert_eq!(count(RawCount::Number(4)), Ok(Count::AtLeast(4)));
        assert_eq!(count(RawCount::Number(0)), Ok(Count::None));
        assert!(count(RawCount::Number(-1)).is_err());
        assert!(c("at least x").is_err());
    }

    #[test]
    fn columns_count_characters() {
        assert_eq!(position("ab\ncdé f", 9), (2, 6));
        assert_eq!(position("", 5), (1, 1));
    }
}
