//! A journey as the subsystems it went through, in order
//! (`veth → core → bridge → netfilter(prerouting) → routing → ipv4 →
//! icmp`): when each part of the stack comes into play, without the
//! steps (`--view subsystems`).

use std::fmt;

use super::Location;
use crate::journey::Journey;
use crate::model::Detail;

/// Consecutive steps of a journey in one subsystem (and, for netfilter,
/// one hook).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stage {
    /// The source tree's subsystem ([`super::subsystems`]).
    pub subsystem: &'static str,
    /// The netfilter hook (prerouting, input, forward...), lower case,
    /// when the steps say it.
    pub hook: Option<String>,
    /// How many steps it merges.
    pub steps: usize,
}

/// `netfilter(prerouting)`, `routing`.
impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.hook {
            Some(h) => write!(f, "{}({h})", self.subsystem),
            None => f.write_str(self.subsystem),
        }
    }
}

/// The stages of `journey`, in the order of its steps: each step's
/// subsystem (where it was handled: [`Location::of`]), consecutive repeats
/// merged (a step without a hook joins the stage of its subsystem before
/// it, whatever that stage's hook). The subsystems do not depend on the
/// release: no version is needed.
pub fn stages(journey: &Journey) -> Vec<Stage> {
    let mut out: Vec<Stage> = Vec::new();
    for step in &journey.steps {
        let subsystem = Location::of(step, None).subsystem;
        let hook = match &step.detail {
            Detail::Rule(r) => r.hook.as_deref(),
            Detail::Hook(h) => Some(h.hook.as_str()),
            _ => None,
        }
        .filter(|h| !h.is_empty() && subsystem == "netfilter")
        .map(str::to_ascii_lowercase);
        match out.last_mut() {
            // A netfilter step that does not say its hook (a drop in
            // nft_do_chain) is in the hook before it.
            Some(last) if last.subsystem == subsystem && (last.hook == hook || hook.is_none()) => {
                last.steps += 1
            }
            _ => out.push(Stage {
                subsystem,
                hook,
                steps: 1,
            }),
        }
    }
    out
}

/// The stages as one line: `veth → core → netfilter(forward) → icmp`.
pub fn stages_text(stages: &[Stage]) -> String {
    let mut out = String::new();
    for (i, s) in stages.iter().enumerate() {
        if i > 0 {
            out.push_str(" → ");
        }
        out.push_str(&s.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{test_step, HookRun, RuleMatch, SiteKind, Step};

    fn function(name: &str, module: Option<&str>, detail: Detail) -> Step {
        let mut s = test_step(1, name, "ns", detail);
        s.kind = SiteKind::Function;
        s.source = module.map(|m| format!("module {m}").into());
        s
    }

    fn hook(h: &str) -> Detail {
        Detail::Hook(Box::new(HookRun {
            family: "ipv4".into(),
            hook: h.into(),
            verdict: Some("accept".into()),
        }))
    }

    #[test]
    fn consecutive_subsystems_merge_and_hooks_part_netfilter() {
        let steps = vec![
            function("veth_xmit", Some("veth"), Detail::None),
            function("__netif_receive_skb_core", None, Detail::None),
            function("netif_receive_skb", None, Detail::None),
            function("br_handle_frame", Some("bridge"), Detail::None),
            function("nf_hook_slow", None, hook("PREROUTING")),
            function("ip_route_input_noref", None, Detail::None),
            function("nf_hook_slow", None, hook("INPUT")),
            function("nf_hook_slow", None, hook("INPUT")),
            function("ip_local_deliver", None, Detail::None),
            function("icmp_rcv", None, Detail::None),
        ];
        let steps = steps
            .into_iter()
            .enumerate()
            .map(|(i, s)| Step {
                ts_ns: i as u64,
                ..s
            })
            .collect();
        let j = Journey::from_steps(1, steps, false);
        let s = stages(&j);
        assert_eq!(
            stages_text(&s),
            "veth → core → bridge → netfilter(prerouting) → routing → netfilter(input) → ipv4 → icmp"
        );
        assert_eq!(s[1].steps, 2);
        assert_eq!(s[5].steps, 2);
        assert_eq!(s.iter().map(|s| s.steps).sum::<usize>(), j.steps.len());
    }

    #[test]
    fn an_nftables_rule_step_carries_its_hook() {
        let rule = Detail::Rule(Box::new(RuleMatch {
            family: "inet".into(),
            table: "t".into(),
            chain: "c".into(),
            hook: Some("forward".into()),
            priority: None,
            what: "policy".into(),
            handle: None,
            rule: None,
            iptables: None,
            verdict: "accept".into(),
        }));
        let j = Journey::from_steps(1, vec![test_step(1, "nft_trace", "ns", rule)], false);
        assert_eq!(stages_text(&stages(&j)), "netfilter(forward)");
    }
}
