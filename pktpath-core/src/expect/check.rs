//! Checking journeys against an expectation: which packets showed it, and
//! for one that did not, the first step where it left the expected path
//! and what the diagnosis says there.

use serde::Serialize;

use super::file::{Count, EndSpec, Expectation, Place, Target};
use crate::diagnosis::End;
use crate::journey::Journey;
use crate::model::{Cause, Detail, SiteKind, Step};

/// What the run or the capture could see: an expectation on something it
/// could not see cannot be checked (and says so; it is not a pass).
#[derive(Clone, Debug)]
pub struct Scope {
    /// Kernel functions were traced (a function backend).
    pub functions: bool,
    /// nftables rules were traced: Some(false) when tracing was off or
    /// could not run, None when not known (a capture).
    pub rules: Option<bool>,
    /// Why functions were not traced, in words (for the verdict).
    pub functions_why: String,
    /// Why rules were not traced.
    pub rules_why: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    Fail,
    /// Names something this run could not see.
    Unchecked,
}

/// The verdict on one expectation.
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    pub name: String,
    pub line: usize,
    pub status: Status,
    /// Packets of its filter (and `from`) seen.
    pub packets: usize,
    /// Those whose journeys showed what it expects.
    pub showed: usize,
    pub count: Count,
    /// Why it failed or could not be checked, in one sentence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// The journeys that broke it (the first few), each with where.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub broken: Vec<Broken>,
    /// How many journeys broke it in all.
    pub broken_total: usize,
}

/// A journey that broke an expectation, and where.
#[derive(Clone, Debug, Serialize)]
pub struct Broken {
    /// What it was expected to show, in words.
    pub expected: String,
    /// The step where it left that (index into the journey's steps).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<usize>,
    /// What it did there instead, with the diagnosis.
    pub instead: String,
    /// What to check, when the diagnosis knows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    pub journey: Journey,
}

/// At most this many broken journeys are kept per verdict.
const SHOWN: usize = 3;

/// Checks `e` on `journeys`: those its filter selected (the caller runs
/// the filter; `from` is applied here).
pub fn check(e: &Expectation, journeys: &[&Journey], scope: &Scope) -> Verdict {
    let mut v = Verdict {
        name: e.name.clone(),
        line: e.line,
        status: Status::Pass,
        packets: 0,
        showed: 0,
        count: e.count,
        why: None,
        broken: Vec::new(),
        broken_total: 0,
    };
    if let Some(why) = unseeable(e, scope) {
        v.status = Status::Unchecked;
        v.why = Some(why);
        return v;
    }
    let mine: Vec<&Journey> = journeys
        .iter()
        .copied()
        .filter(|j| e.from.as_ref().is_none_or(|f| starts_at(j, f)))
        .collect();
    v.packets = mine.len();
    let mut showed = Vec::new();
    let mut broken = Vec::new();
    for j in &mine {
        match shows(e, j) {
            Ok(()) => showed.push(*j),
            Err(b) => broken.push(*b),
        }
    }
    v.showed = showed.len();
    let n = v.showed;
    let ok = match e.count {
        Count::All => v.packets > 0 && broken.is_empty(),
        Count::None => n == 0,
        Count::AtLeast(k) => n >= k,
        Count::AtMost(k) => n <= k,
        Count::Exactly(k) => n == k,
    };
    if ok {
        return v;
    }
    v.status = Status::Fail;
    let packets = packets_words(e);
    // Too many showed it: the offenders are those that did.
    let too_many = match e.count {
        Count::None => true,
        Count::AtMost(k) | Count::Exactly(k) => n > k,
        _ => false,
    };
    if too_many {
        v.why = Some(format!(
            "{n} of {} {packets} showed it; expected {}",
            v.packets, e.count
        ));
        v.broken_total = n;
        v.broken = showed
            .iter()
            .take(SHOWN)
            .map(|j| Broken {
                expected: format!("{} to show this", e.count),
                step: None,
                instead: format!("it showed it, and {}", j.end.line()),
                hint: None,
                journey: (*j).clone(),
            })
            .collect();
        return v;
    }
    v.why = Some(if v.packets == 0 {
        format!(
            "no {packets} were seen ({} journeys in all): was the traffic made, and does the \
             filter match it?",
            journeys.len().max(v.packets)
        )
    } else if e.count == Count::All {
        format!(
            "{} of {} {packets} did not show it",
            broken.len(),
            v.packets
        )
    } else {
        format!(
            "{n} of {} {packets} showed it; expected {}",
            v.packets, e.count
        )
    });
    v.broken_total = broken.len();
    broken.truncate(SHOWN);
    v.broken = broken;
    v
}

/// The packets an expectation is about, in words.
fn packets_words(e: &Expectation) -> String {
    let filter = match e.packets.as_str() {
        "" => "packets".to_string(),
        f => format!("packets of `{f}`"),
    };
    match &e.from {
        Some(f) => format!("{filter} from {}", f.describe()),
        None => filter,
    }
}

/// Why the expectation names something the run could not see.
fn unseeable(e: &Expectation, scope: &Scope) -> Option<String> {
    let places = e.passes.iter().chain(&e.avoids).chain(&e.order);
    let mut functions = None;
    let mut rules = None;
    for p in places {
        if p.function.is_some() && functions.is_none() {
            functions = Some(p.describe());
        }
        if p.is_rule() && rules.is_none() {
            rules = Some(p.describe());
        }
    }
    if let Some(end) = &e.ends {
        let by_rule = end.rule.is_some()
            || end.policy_of.is_some()
            || matches!(
                end.cause.as_deref(),
                Some("nft_rule" | "nft_policy" | "iptables")
            );
        if by_rule && rules.is_none() {
            rules = Some("a drop by a rule".to_string());
        }
    }
    if let (Some(f), false) = (functions, scope.functions) {
        return Some(format!(
            "cannot be checked: it names {f}, and {}",
            scope.functions_why
        ));
    }
    if let (Some(r), Some(false)) = (rules, scope.rules) {
        return Some(format!(
            "cannot be checked: it names {r}, and {}",
            scope.rules_why
        ));
    }
    None
}

/// Whether the journey was first seen at `from`.
fn starts_at(j: &Journey, from: &Place) -> bool {
    let Some(first) = j.steps.iter().find(|s| !s.correlated) else {
        return false;
    };
    from.netns
        .as_deref()
        .is_none_or(|n| netns_is(n, &first.netns_name))
        && from
            .dev
            .as_deref()
            .is_none_or(|d| first.dev.as_deref() == Some(d))
}

/// Whether journey `j` shows all that `e` expects of one packet; else the
/// first thing it broke (along its path), and where.
fn shows(e: &Expectation, j: &Journey) -> Result<(), Box<Broken>> {
    let broken = |expected: String,
                  (step, instead, hint): (Option<usize>, String, Option<String>)| {
        Box::new(Broken {
            expected,
            step,
            instead,
            hint,
            journey: j.clone(),
        })
    };
    // In order: each after the step the one before it matched.
    let mut from = 0;
    let mut prev: Option<(usize, &Place)> = None;
    for p in &e.order {
        match j.steps[from..].iter().position(|s| p.matches(s)) {
            Some(i) => {
                prev = Some((from + i, p));
                from += i + 1;
            }
            None => {
                let mut expected = p.describe();
                if let Some((at, q)) = prev {
                    expected = format!("{expected} after {} (step {})", q.describe(), at + 1);
                }
                let earlier = j.steps[..from].iter().position(|s| p.matches(s));
                let mut found = diverged(j, p, from);
                if let Some(i) = earlier {
                    found.1 = format!("it passed it earlier, at step {} ({})", i + 1, found.1);
                }
                return Err(broken(expected, found));
            }
        }
    }
    for p in &e.passes {
        if !j.steps.iter().any(|s| p.matches(s)) {
            return Err(broken(p.describe(), diverged(j, p, 0)));
        }
    }
    for p in &e.avoids {
        if let Some(i) = j.steps.iter().position(|s| p.matches(s)) {
            let s = &j.steps[i];
            return Err(broken(
                format!("not {}", p.describe()),
                (Some(i), format!("it passed it: {}", step_words(s)), None),
            ));
        }
    }
    if let Some(want) = &e.ends {
        if !ends_as(want, &j.end) {
            return Err(broken(
                format!("to end {}", want.describe()),
                (end_step(j), j.end.line(), hint(&j.end)),
            ));
        }
    }
    Ok(())
}

/// Where a journey that did not pass `p` (looking from step `from`) left
/// the expected path: the step where the same chain, table or bridge did
/// something else, else its end.
fn diverged(j: &Journey, p: &Place, from: usize) -> (Option<usize>, String, Option<String>) {
    let steps = &j.steps[from.min(j.steps.len())..];
    let mate = steps.iter().position(|s| p.is_mate(s)).map(|i| i + from);
    let end = j.end.line();
    match mate {
        Some(i) => {
            let s = &j.steps[i];
            // What ended it, unless that is the step met.
            let then = match &j.end {
                End::Dropped {
                    explanation,
                    evidence,
                    ..
                } if !evidence.contains(&i) => format!("; then it was {explanation}"),
                End::Dropped { .. } => String::new(),
                _ => format!("; it was {end}"),
            };
            (
                Some(i),
                format!("at step {} it met {}{then}", i + 1, step_words(s)),
                hint(&j.end),
            )
        }
        None => match &j.end {
            End::Dropped { .. } => (end_step(j), format!("the packet was {end}"), hint(&j.end)),
            _ => (
                end_step(j),
                format!("it was {end}, without passing it"),
                None,
            ),
        },
    }
}

/// The step that shows how a journey ended: its drop (the first piece of
/// evidence, which is the drop or what decided it), else its last step.
fn end_step(j: &Journey) -> Option<usize> {
    match &j.end {
        End::Dropped { evidence, .. } if !evidence.is_empty() => evidence.first().copied(),
        _ => j.steps.len().checked_sub(1),
    }
}

fn hint(end: &End) -> Option<String> {
    match end {
        End::Dropped { hint, .. } => hint.clone(),
        _ => None,
    }
}

/// A step in words: "nft_trace in netns r, dev in0: inet f input: rule
/// `...` drop".
pub fn step_words(s: &Step) -> String {
    let dev = s
        .dev
        .as_deref()
        .map(|d| format!(", dev {d}"))
        .unwrap_or_default();
    let what = s.describe();
    let what = if what.is_empty() {
        String::new()
    } else {
        format!(": {what}")
    };
    format!("{} in netns {}{dev}{what}", s.site, s.netns_name)
}

/// Whether namespace `have` is the one named: by its name, or an IMUNES
/// node's by its node name (`pc1` for `i1a2.pc1`).
fn netns_is(want: &str, have: &str) -> bool {
    have.eq_ignore_ascii_case(want) || crate::imunes::label(have).eq_ignore_ascii_case(want)
}

/// Words equal once runs of whitespace are one space.
fn contains_words(have: &str, want: &str) -> bool {
    let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    norm(have).contains(&norm(want))
}

/// A function's name as written in source: `ip_rcv_core.isra.0` is
/// `ip_rcv_core`.
fn base_name(site: &str) -> &str {
    site.split_once('.').map_or(site, |(n, _)| n)
}

impl Place {
    /// Names an nftables or iptables rule, policy or verdict.
    pub fn is_rule(&self) -> bool {
        self.rule.is_some()
            || self.handle.is_some()
            || self.comment.is_some()
            || self.policy.is_some()
            || self.verdict.is_some()
            || self.iptables.is_some()
    }

    /// Whether step `s` is this place: every key given holds there.
    pub fn matches(&self, s: &Step) -> bool {
        let eq = |want: &Option<String>, have: Option<&str>| {
            want.as_deref()
                .is_none_or(|w| have.is_some_and(|h| h.eq_ignore_ascii_case(w)))
        };
        let in_netns = self
            .netns
            .as_deref()
            .is_none_or(|n| netns_is(n, &s.netns_name));
        if !in_netns || !eq(&self.dev, s.dev.as_deref()) {
            return false;
        }
        if let Some(b) = &self.bridge {
            if !matches!(&s.detail, Detail::Bridge(x) if x.bridge == *b) {
                return false;
            }
        }
        if let Some(q) = &self.qdisc {
            if !matches!(&s.detail, Detail::Qdisc(x) if x.kind == *q || x.handle == *q) {
                return false;
            }
        }
        if self.is_rule() || self.family.is_some() || self.table.is_some() || self.chain.is_some() {
            let Detail::Rule(r) = &s.detail else {
                return false;
            };
            let text = r.rule.as_deref().unwrap_or("");
            let ok = eq(&self.family, Some(&r.family))
                && eq(&self.table, Some(&r.table))
                && eq(&self.chain, Some(&r.chain))
                && eq(&self.verdict, Some(&r.verdict))
                && self.handle.is_none_or(|h| r.handle == Some(h))
                && self
                    .rule
                    .as_deref()
                    .is_none_or(|w| r.what == "rule" && contains_words(text, w))
                && self
                    .comment
                    .as_deref()
                    .is_none_or(|c| text.contains(&format!("comment \"{c}\"")))
                && self
                    .policy
                    .as_deref()
                    .is_none_or(|v| r.what == "policy" && r.verdict.eq_ignore_ascii_case(v))
                && self.iptables.as_deref().is_none_or(|w| {
                    r.iptables
                        .as_ref()
                        .is_some_and(|(_, line)| contains_words(line, w))
                });
            if !ok {
                return false;
            }
        }
        if let Some(want) = &self.route {
            let Detail::Route(r) = &s.detail else {
                return false;
            };
            let prefix_ok = want == "*" || r.prefix.as_deref() == Some(want.as_str());
            if !prefix_ok
                || !eq(&self.route_table, Some(&r.table))
                || !eq(&self.route_type, r.kind.as_deref())
            {
                return false;
            }
        }
        if let Some(f) = &self.function {
            let is_function = matches!(s.kind, SiteKind::Function | SiteKind::Return);
            if !is_function || base_name(&s.site) != f {
                return false;
            }
        }
        if let Some(t) = &self.tracepoint {
            if s.kind != SiteKind::Tracepoint || *s.site != **t {
                return false;
            }
        }
        if let Some(state) = &self.ct {
            if !s
                .ct
                .as_ref()
                .is_some_and(|c| c.state.eq_ignore_ascii_case(state))
            {
                return false;
            }
        }
        if let Some(nat) = &self.nat {
            let seen = s.ct.as_ref().and_then(|c| c.nat.as_deref());
            if !seen.is_some_and(|n| n.contains(nat.as_str())) {
                return false;
            }
        }
        true
    }

    /// A step of the same kind and scope that is not this place: the rule
    /// or policy that decided in the same chain (or, with no chain named,
    /// a rule that dropped the packet), the route taken in the same table,
    /// the same bridge or device doing something else.
    fn is_mate(&self, s: &Step) -> bool {
        if self.matches(s) {
            return false;
        }
        let eq = |want: &Option<String>, have: Option<&str>| {
            want.as_deref()
                .is_none_or(|w| have.is_some_and(|h| h.eq_ignore_ascii_case(w)))
        };
        if !self
            .netns
            .as_deref()
            .is_none_or(|n| netns_is(n, &s.netns_name))
        {
            return false;
        }
        match &s.detail {
            Detail::Rule(r) if self.is_rule() => {
                let same = eq(&self.family, Some(&r.family))
                    && eq(&self.table, Some(&r.table))
                    && eq(&self.chain, Some(&r.chain));
                let decisive = matches!(r.verdict.as_str(), "drop" | "reject")
                    || r.rule.as_deref().is_some_and(|t| t.contains("reject"));
                let scoped = self.chain.is_some() || self.table.is_some() || self.netns.is_some();
                same && (scoped || decisive)
            }
            // In the namespace named, the lookup made there (whatever
            // table a rule sent it to); else one that stopped the packet.
            Detail::Route(r) if self.route.is_some() => {
                self.netns.is_some()
                    || r.unroutable
                    || matches!(
                        r.kind.as_deref(),
                        Some("blackhole" | "unreachable" | "prohibit")
                    )
            }
            Detail::Qdisc(_) if self.qdisc.is_some() => eq(&self.dev, s.dev.as_deref()),
            _ => false,
        }
    }

    /// The place in words: "nftables rule `tcp dport 22 accept` in chain
    /// input in netns fw".
    pub fn describe(&self) -> String {
        let mut what = Vec::new();
        // "chain input", or "inet filter input" as nft names a chain.
        let chain = || {
            let words: Vec<&str> = [&self.family, &self.table, &self.chain]
                .into_iter()
                .flatten()
                .map(String::as_str)
                .collect();
            match words.as_slice() {
                [] => None,
                [chain] if self.chain.is_some() => Some(format!("chain {chain}")),
                _ => Some(words.join(" ")),
            }
        };
        let scope = || chain().map(|c| format!(" in {c}")).unwrap_or_default();
        if let Some(r) = &self.rule {
            what.push(format!("nftables rule `{r}`{}", scope()));
        } else if let Some(p) = &self.policy {
            let of = chain().unwrap_or_else(|| "a chain".into());
            what.push(format!("the {p} policy of {of}"));
        } else if let Some(i) = &self.iptables {
            what.push(format!("iptables rule `{i}`{}", scope()));
        } else if self.handle.is_some() || self.comment.is_some() || self.verdict.is_some() {
            what.push(format!("an nftables rule{}", scope()));
        }
        if let Some(h) = self.handle {
            what.push(format!("handle {h}"));
        }
        if let Some(c) = &self.comment {
            what.push(format!("comment \"{c}\""));
        }
        if let (Some(v), None) = (&self.verdict, &self.policy) {
            what.push(format!("verdict {v}"));
        }
        if let Some(r) = &self.route {
            let mut s = match r.as_str() {
                "*" => "a route".to_string(),
                p => format!("route {p}"),
            };
            if let Some(t) = &self.route_type {
                s = format!("{s} of type {t}");
            }
            if let Some(t) = &self.route_table {
                s = format!("{s} in table {t}");
            }
            what.push(s);
        }
        if let Some(b) = &self.bridge {
            what.push(format!("bridge {b}"));
        }
        if let Some(q) = &self.qdisc {
            what.push(format!("qdisc {q}"));
        }
        if let Some(f) = &self.function {
            what.push(format!("function {f}"));
        }
        if let Some(t) = &self.tracepoint {
            what.push(format!("tracepoint {t}"));
        }
        if let Some(c) = &self.ct {
            what.push(format!("conntrack state {c}"));
        }
        if let Some(n) = &self.nat {
            what.push(format!("NAT {n}"));
        }
        if let Some(d) = &self.dev {
            what.push(format!("device {d}"));
        }
        let mut s = what.join(", ");
        if let Some(n) = &self.netns {
            s = if s.is_empty() {
                format!("netns {n}")
            } else {
                format!("{s} in netns {n}")
            };
        }
        s
    }
}

/// Whether a journey's end is the one expected.
fn ends_as(want: &EndSpec, end: &End) -> bool {
    let named = |t: &Option<Target>, have: &str| match t {
        Some(Target::Named(n)) => netns_is(n, have),
        _ => true,
    };
    let netns_ok = |have: &str| want.netns.as_deref().is_none_or(|n| netns_is(n, have));
    match end {
        End::Delivered { netns, .. } if want.delivered.is_some() => {
            named(&want.delivered, netns) && netns_ok(netns)
        }
        End::Transmitted { dev, netns } if want.transmitted.is_some() => {
            named(&want.transmitted, dev) && netns_ok(netns)
        }
        End::Consumed { netns, .. } if want.consumed.is_some() => {
            named(&want.consumed, netns) && netns_ok(netns)
        }
        End::Dropped {
            reason,
            netns,
            cause,
            benign: false,
            ..
        } if want.dropped.is_some() => {
            let reason_ok = want.reason.as_deref().is_none_or(|r| {
                r.trim_start_matches("SKB_DROP_REASON_")
                    .eq_ignore_ascii_case(reason)
            });
            let kind = cause.as_deref().map(cause_kind);
            let cause_ok = want
                .cause
                .as_deref()
                .is_none_or(|c| kind == Some(c) || (c == "reason" && cause.is_none()));
            let rule_ok = want.rule.as_deref().is_none_or(|w| match cause.as_deref() {
                Some(Cause::NftRule { rule: Some(r), .. }) => contains_words(r, w),
                Some(Cause::Iptables { rule, .. }) => contains_words(rule, w),
                _ => false,
            });
            let policy_ok = want.policy_of.as_deref().is_none_or(
                |w| matches!(cause.as_deref(), Some(Cause::NftPolicy { chain, .. }) if chain == w),
            );
            named(&want.dropped, netns)
                && netns_ok(netns)
                && reason_ok
                && cause_ok
                && rule_ok
                && policy_ok
        }
        End::Recorded { text } => {
            // A capture that states the end only in words: its first word.
            let how = text.split_whitespace().next().unwrap_or("");
            let asked = if want.delivered.is_some() {
                "delivered"
            } else if want.transmitted.is_some() {
                "transmitted"
            } else if want.dropped.is_some() {
                "dropped"
            } else {
                "consumed"
            };
            how == asked && want.reason.is_none() && want.rule.is_none() && want.cause.is_none()
        }
        _ => false,
    }
}

/// A cause's kind as its JSON names it (`file::CAUSES`).
fn cause_kind(c: &Cause) -> &'static str {
    match c {
        Cause::Reason { .. } => "reason",
        Cause::NftRule { .. } => "nft_rule",
        Cause::NftPolicy { .. } => "nft_policy",
        Cause::Iptables { .. } => "iptables",
        Cause::LegacyTable { .. } => "legacy_table",
        Cause::Route { .. } => "route",
        Cause::NoRoute { .. } => "no_route",
        Cause::Ttl { .. } => "ttl",
        Cause::Mtu { .. } => "mtu",
        Cause::RpFilter { .. } => "rp_filter",
        Cause::Tc { .. } => "tc",
        Cause::VlanFilter { .. } => "vlan_filter",
        Cause::Purged { .. } => "purged",
    }
}

impl EndSpec {
    /// "delivered in netns server", "dropped by rule `tcp dport 23 drop`".
    pub fn describe(&self) -> String {
        let at = |t: &Option<Target>, word: &str| match t {
            Some(Target::Named(n)) => format!(" {word} {n}"),
            _ => String::new(),
        };
        let mut s = if self.delivered.is_some() {
            format!("delivered{}", at(&self.delivered, "in netns"))
        } else if self.transmitted.is_some() {
            format!("transmitted{}", at(&self.transmitted, "on"))
        } else if self.consumed.is_some() {
            format!("consumed{}", at(&self.consumed, "in netns"))
        } else {
            format!("dropped{}", at(&self.dropped, "in netns"))
        };
        if let Some(n) = &self.netns {
            s.push_str(&format!(" in netns {n}"));
        }
        if let Some(r) = &self.rule {
            s.push_str(&format!(" by rule `{r}`"));
        }
        if let Some(p) = &self.policy_of {
            s.push_str(&format!(" by the policy of chain {p}"));
        }
        if let Some(c) = &self.cause {
            s.push_str(&format!(" (cause {c})"));
        }
        if let Some(r) = &self.reason {
            s.push_str(&format!(" with reason {r}"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expect::file::parse;
    use crate::model::{test_step, RouteLookup, RuleMatch};

    fn rule(chain: &str, what: &str, text: Option<&str>, verdict: &str) -> Detail {
        Detail::Rule(Box::new(RuleMatch {
            family: "inet".into(),
            table: "fw".into(),
            chain: chain.into(),
            hook: Some(chain.into()),
            priority: None,
            what: what.into(),
            handle: text.map(|_| 4),
            rule: text.map(Into::into),
            iptables: None,
            verdict: verdict.into(),
        }))
    }

    fn route(prefix: &str) -> Detail {
        Detail::Route(Box::new(RouteLookup {
            table: "main".into(),
            prefix: Some(prefix.into()),
            kind: Some("unicast".into()),
            ..RouteLookup::default()
        }))
    }

    fn scope() -> Scope {
        Scope {
            functions: false,
            rules: Some(true),
            functions_why: "functions are not traced here".into(),
            rules_why: "nftables tracing was off".into(),
        }
    }

    /// client -> router (route, forward rule) -> server.
    fn journey(forward: Detail) -> Journey {
        let mut steps = vec![
            test_step(1, "net_dev_start_xmit", "client", Detail::None),
            test_step(2, "netif_receive_skb", "router", Detail::None),
            test_step(3, "fib_table_lookup", "router", route("10.0.2.0/24")),
            test_step(4, "nft_trace", "router", forward),
            test_step(5, "net_dev_start_xmit", "router", Detail::None),
            test_step(6, "netif_receive_skb", "server", Detail::None),
        ];
        steps[0].dev = Some("eth0".into());
        Journey::from_steps(1, steps, false)
    }

    fn verdict(text: &str, js: &[&Journey]) -> Verdict {
        let e = parse(text).unwrap();
        check(&e.list[0], js, &scope())
    }

    #[test]
    fn a_journey_that_shows_everything_passes() {
        let j = journey(rule(
            "forward",
            "rule",
            Some("tcp dport 22 accept"),
            "accept",
        ));
        let v = verdict(
            r#"[[expect]]
packets = "tcp"
from = { netns = "client", dev = "eth0" }
passes = [{ rule = "tcp  dport 22 accept", chain = "forward" }, { route = "10.0.2.0/24", route_table = "main" }]
avoids = [{ netns = "dmz" }]
order = [{ netns = "client" }, { netns = "router" }, { netns = "server" }]
"#,
            &[&j],
        );
        assert_eq!(v.status, Status::Pass, "{v:?}");
        assert_eq!((v.packets, v.showed), (1, 1));
    }

    #[test]
    fn a_missing_rule_names_the_one_met_instead() {
        let j = journey(rule("forward", "policy", None, "drop"));
        let v = verdict(
            "[[expect]]\npackets = \"tcp\"\npasses = [{ rule = \"tcp dport 22 accept\", chain = \"forward\" }]\n",
            &[&j],
        );
        assert_eq!(v.status, Status::Fail);
        let b = &v.broken[0];
        assert_eq!(
            b.expected,
            "nftables rule `tcp dport 22 accept` in chain forward"
        );
        assert_eq!(b.step, Some(3));
        assert!(
            b.instead
                .starts_with("at step 4 it met nft_trace in netns router"),
            "{}",
            b.instead
        );
        assert!(b.instead.contains("policy drop"), "{}", b.instead);
    }

    #[test]
    fn order_reports_the_step_after_the_last_matched() {
        let j = journey(rule("forward", "policy", None, "accept"));
        let v = verdict(
            "[[expect]]\npackets = \"\"\norder = [{ netns = \"router\" }, { netns = \"client\" }]\n",
            &[&j],
        );
        let b = &v.broken[0];
        assert_eq!(b.expected, "netns client after netns router (step 2)");
        assert!(
            b.instead.contains("passed it earlier, at step 1"),
            "{}",
            b.instead
        );
    }

    #[test]
    fn avoided_places_and_ends_are_checked() {
        let j = journey(rule("forward", "policy", None, "accept"));
        let v = verdict(
            "[[expect]]\npackets = \"\"\navoids = [{ route = \"*\", netns = \"router\" }]\n",
            &[&j],
        );
        assert_eq!(v.broken[0].step, Some(2));
        assert_eq!(v.broken[0].expected, "not a route in netns router");
        let v = verdict(
            "[[expect]]\npackets = \"\"\nends = { dropped = true, rule = \"x\" }\n",
            &[&j],
        );
        assert_eq!(v.status, Status::Fail);
        assert_eq!(v.broken[0].expected, "to end dropped by rule `x`");
    }

    #[test]
    fn counts_and_empty_runs() {
        let j = journey(rule("forward", "policy", None, "accept"));
        let v = verdict(
            "[[expect]]\npackets = \"\"\npasses = [{ netns = \"router\" }]\n",
            &[],
        );
        assert_eq!(v.status, Status::Fail, "every packet of none is not a pass");
        assert!(
            v.why.as_deref().unwrap().contains("no packets were seen")
                || v.why.as_deref().unwrap().starts_with("no packets")
        );
        let v = verdict("[[expect]]\npackets = \"\"\ncount = \"none\"\n", &[]);
        assert_eq!(v.status, Status::Pass);
        let v = verdict("[[expect]]\npackets = \"\"\ncount = \"none\"\n", &[&j]);
        assert_eq!(v.status, Status::Fail);
        assert_eq!(v.broken_total, 1);
        let v = verdict(
            "[[expect]]\npackets = \"\"\npasses = [{ netns = \"server\" }]\ncount = 2\n",
            &[&j, &j],
        );
        assert_eq!(v.status, Status::Pass);
    }

    #[test]
    fn what_the_run_could_not_see_is_not_a_pass() {
        let j = journey(rule("forward", "policy", None, "accept"));
        let v = verdict(
            "[[expect]]\npackets = \"\"\npasses = [{ function = \"ip_forward\" }]\n",
            &[&j],
        );
        assert_eq!(v.status, Status::Unchecked);
        assert!(v.why.unwrap().contains("functions are not traced here"));
        let e =
            parse("[[expect]]\npackets = \"\"\nends = { dropped = true, policy_of = \"input\" }\n")
                .unwrap();
        let mut s = scope();
        s.rules = Some(false);
        let v = check(&e.list[0], &[&j], &s);
        assert_eq!(v.status, Status::Unchecked);
    }

    #[test]
    fn an_imunes_node_is_named_by_its_node_name() {
        let s = test_step(1, "netif_receive_skb", "i1a2.pc1", Detail::None);
        let p = |ns: &str| Place {
            netns: Some(ns.into()),
            ..Place::default()
        };
        assert!(p("pc1").matches(&s));
        assert!(p("i1a2.pc1").matches(&s));
        assert!(!p("pc2").matches(&s));
    }

    #[test]
    fn functions_match_without_their_compiler_suffix() {
        let mut s = test_step(1, "ip_rcv_core.isra.0", "r", Detail::None);
        s.kind = SiteKind::Function;
        let p = Place {
            function: Some("ip_rcv_core".into()),
            ..Place::default()
        };
        assert!(p.matches(&s));
        s.kind = SiteKind::Tracepoint;
        assert!(!p.matches(&s));
    }
}
