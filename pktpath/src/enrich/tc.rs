//! The tc filters behind a TC_INGRESS or TC_EGRESS drop: the drop names
//! the device and the direction, `tc filter show` there names the filters
//! (kind, pref, handle, chain, BPF program name and id, actions).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::netns::{run_in, NetnsRef};
use pktpath_core::model::{Cause, Detail, Step};

/// One tc filter, as `tc -j filter show` gives it.
#[derive(Clone, Debug, PartialEq)]
pub struct Filter {
    pub kind: String,
    pub pref: u64,
    pub handle: Option<String>,
    pub chain: u64,
    /// A BPF classifier's program: name and id.
    pub prog: Option<(String, u64)>,
    pub direct_action: bool,
    /// Its actions: "gact drop", "mirred", ...
    pub actions: Vec<String>,
}

impl Filter {
    /// "bpf `drop_all` (prog id 42, direct-action), pref 49152 handle 0x1
    /// chain 0".
    pub fn describe(&self) -> String {
        let mut s = self.kind.clone();
        if let Some((name, id)) = &self.prog {
            let da = if self.direct_action {
                ", direct-action"
            } else {
                ""
            };
            s += &format!(" `{name}` (prog id {id}{da})");
        }
        s += &format!(", pref {}", self.pref);
        if let Some(h) = &self.handle {
            s += &format!(" handle {h}");
        }
        s += &format!(" chain {}", self.chain);
        if !self.actions.is_empty() {
            s += &format!(", actions: {}", self.actions.join(", "));
        }
        s
    }
}

/// The filters of `tc -j filter show` output (entries without options
/// head a pref and are not filters themselves).
pub fn parse(json: &str) -> Vec<Filter> {
    let Ok(serde_json::Value::Array(list)) = serde_json::from_str(json) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|f| {
            let o = f.get("options")?;
            let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
            let actions = o
                .get("actions")
                .and_then(|a| a.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|a| {
                            let kind = a.get("kind")?.as_str()?;
                            Some(
                                match a.pointer("/control_action/type").and_then(|t| t.as_str()) {
                                    Some(t) => format!("{kind} {t}"),
                                    None => kind.to_string(),
                                },
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            Some(Filter {
                kind: text(f.get("kind")?)?,
                pref: f.get("pref").and_then(|p| p.as_u64()).unwrap_or(0),
                handle: o.get("handle").and_then(text),
                chain: f.get("chain").and_then(|c| c.as_u64()).unwrap_or(0),
                prog: o
                    .get("prog")
                    .and_then(|p| Some((text(p.get("name")?)?, p.get("id")?.as_u64()?))),
                direct_action: o.get("direct-action").and_then(|d| d.as_bool()) == Some(true),
                actions,
            })
        })
        .collect()
}

/// How long the filters of one device and direction are reused.
const REFRESH: Duration = Duration::from_secs(1);

/// Names the tc filters of TC_INGRESS and TC_EGRESS drops.
#[derive(Default)]
pub struct TcDrops {
    netns: HashMap<u32, Option<NetnsRef>>,
    filters: HashMap<(u32, String, &'static str), (Instant, Vec<Filter>)>,
}

impl TcDrops {
    /// Explains a tc drop step with the filters of its device.
    fn annotate(&mut self, step: &mut Step) {
        let dir = match &step.detail {
            Detail::Drop(d) if d.reason == "TC_INGRESS" => "ingress",
            Detail::Drop(d) if d.reason == "TC_EGRESS" => "egress",
            _ => return,
        };
        let (Some(dev), true) = (step.dev.as_deref().map(str::to_string), step.netns != 0) else {
            return;
        };
        let Some(ns) = self
            .netns
            .entry(step.netns)
            .or_insert_with(|| NetnsRef::from_inode(step.netns).ok())
            .clone()
        else {
            return;
        };
        let key = (step.netns, dev.clone(), dir);
        let fresh = self
            .filters
            .get(&key)
            .is_some_and(|(at, _)| at.elapsed() < REFRESH);
        if !fresh {
            let found = run_in(&ns, "tc", &["-j", "filter", "show", "dev", &dev, dir], None)
                .map(|t| parse(&t))
                .unwrap_or_default();
            if self.filters.len() > 1024 {
                self.filters.clear();
            }
            self.filters.insert(key.clone(), (Instant::now(), found));
        }
        let filters = &self.filters[&key].1;
        let Detail::Drop(d) = &mut step.detail else {
            return;
        };
        d.found = Some(Cause::Tc {
            netns: ns.name.clone(),
            dev,
            direction: dir.into(),
            filters: filters.iter().map(Filter::describe).collect(),
            progs: filters
                .iter()
                .filter_map(|f| f.prog.as_ref().map(|(_, id)| *id))
                .collect(),
        });
    }
}

impl super::Enricher for TcDrops {
    fn step(&mut self, _journey: u64, step: &mut Step) {
        self.annotate(step);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What tc 6.1 prints for a BPF classifier and a u32 filter with a
    /// drop action (one head entry per pref, then the filters).
    #[test]
    fn names_the_filters_tc_lists() {
        let json = r#"[{"protocol":"all","pref":49152,"kind":"bpf","chain":0},
            {"protocol":"all","pref":49152,"kind":"bpf","chain":0,"options":{"handle":"0x1",
            "bpf_name":"tcdrop.o:[tc]","direct-action":true,"not_in_hw":true,
            "prog":{"id":42012,"name":"drop_all","tag":"614b434cd8324ecc","jited":1}}},
            {"protocol":"ip","pref":10,"kind":"u32","chain":0,"options":{"fh":"800::800",
            "handle":"800::800","actions":[{"order":1,"kind":"gact",
            "control_action":{"type":"drop"},"prob":{"random_type":"none"}}]}}]"#;
        let f = parse(json);
        assert_eq!(f.len(), 2, "{f:?}");
        assert_eq!(
            f[0].describe(),
            "bpf `drop_all` (prog id 42012, direct-action), pref 49152 handle 0x1 chain 0"
        );
        assert_eq!(
            f[1].describe(),
            "u32, pref 10 handle 800::800 chain 0, actions: gact drop"
        );
        assert!(parse("not json").is_empty());
        assert!(parse("{}").is_empty());
    }
}
