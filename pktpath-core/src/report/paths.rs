//! What all journeys did, counted: the hops each took between namespaces,
//! the distinct paths (namespaces and the subsystems in each) with how
//! many packets took each and how they ended, and the subsystem ->
//! subsystem transitions weighted by count (where flows split and die).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::diagnosis::End;
use crate::journey::Journey;
use crate::location::Location;
use crate::model::Step;

/// A move from one namespace to another: out of `from` by `out`, into
/// `to` by `into` (devices when seen).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Hop {
    pub from: String,
    pub out: Option<String>,
    pub to: String,
    pub into: Option<String>,
}

/// The steps that place a packet: not those tied to it by time and
/// addresses only (route lookups, rule verdicts), which say where a
/// decision was taken, not where the packet was.
fn placed(s: &Step) -> bool {
    !s.correlated && !s.netns_name.is_empty()
}

/// The namespaces a journey crossed, in order, and its hops between them.
pub fn hops(j: &Journey) -> Vec<Hop> {
    let mut out = Vec::new();
    let mut last: Option<&Step> = None;
    for s in j.steps.iter().filter(|s| placed(s)) {
        if let Some(p) = last {
            if p.netns_name != s.netns_name {
                out.push(Hop {
                    from: p.netns_name.to_string(),
                    out: p.dev.as_deref().map(str::to_string),
                    to: s.netns_name.to_string(),
                    into: s.dev.as_deref().map(str::to_string),
                });
            }
        }
        last = Some(s);
    }
    out
}

/// Namespaces in order, each with the subsystems that handled the packet
/// there.
pub type Places = Vec<(String, Vec<String>)>;

/// A journey's path: each namespace it was in, with the subsystems of the
/// source tree that handled it there (consecutive repeats merged), in
/// order.
pub fn path(j: &Journey) -> Places {
    let mut out: Places = Vec::new();
    for s in &j.steps {
        let ns = s.netns_name.to_string();
        let sub = Location::of(s, None).subsystem;
        match out.last_mut() {
            Some((n, subs)) if *n == ns || s.correlated => {
                if subs.last().map(String::as_str) != Some(sub) {
                    subs.push(sub.to_string());
                }
            }
            _ => out.push((ns, vec![sub.to_string()])),
        }
    }
    out
}

/// How a journey ended, in a word and where: "dropped in router".
pub fn end_words(end: &End) -> String {
    match end {
        End::Dropped { netns, benign, .. } => {
            let how = if *benign {
                "freed (not a loss)"
            } else {
                "dropped"
            };
            format!("{how} in {netns}")
        }
        End::Delivered { netns, .. } => format!("delivered in {netns}"),
        End::Transmitted { dev, netns } => format!("transmitted on {dev} in {netns}"),
        End::Consumed { netns, .. } => format!("consumed in {netns}"),
        End::Recorded { text } => text.split(',').next().unwrap_or(text).to_string(),
        End::Unknown { .. } => "no end seen".to_string(),
    }
}

/// One distinct path and the packets that took it.
#[derive(Clone, Debug, Serialize)]
pub struct DistinctPath {
    /// Namespaces with their subsystems: "client: routing, xmit".
    pub places: Places,
    pub count: usize,
    /// How its packets ended, with counts (most first).
    pub ends: Vec<(String, usize)>,
    /// The journeys that took it (ids), for the page's filter.
    pub journeys: Vec<u64>,
}

/// Distinct paths across journeys, most taken first.
pub fn distinct(journeys: &[Journey]) -> Vec<DistinctPath> {
    // Per path: the journeys that took it, and their ends counted.
    type Taken = (Vec<u64>, BTreeMap<String, usize>);
    let mut by: BTreeMap<Places, Taken> = BTreeMap::new();
    for j in journeys {
        let e = by.entry(path(j)).or_default();
        e.0.push(j.id);
        *e.1.entry(end_words(&j.end)).or_default() += 1;
    }
    let mut out: Vec<DistinctPath> = by
        .into_iter()
        .map(|(places, (ids, ends))| {
            let mut ends: Vec<(String, usize)> = ends.into_iter().collect();
            ends.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            DistinctPath {
                places,
                count: ids.len(),
                ends,
                journeys: ids,
            }
        })
        .collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then(a.places.cmp(&b.places)));
    out
}

/// One edge of the transition graph.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Transition {
    pub from: String,
    pub to: String,
    pub count: usize,
}

/// The end of a journey as a node of the transition graph.
pub fn end_node(end: &End) -> String {
    match end {
        End::Dropped { benign: false, .. } => "(dropped)".into(),
        End::Dropped { .. } | End::Consumed { .. } => "(consumed)".into(),
        End::Delivered { .. } => "(delivered)".into(),
        End::Transmitted { .. } => "(transmitted)".into(),
        End::Recorded { .. } => "(recorded)".into(),
        End::Unknown { .. } => "(no end seen)".into(),
    }
}

/// Transitions between consecutive steps' keys (`key`: the subsystem, or
/// the site for a function graph), and from the last to the end, with how
/// many times each was taken; most taken first. Every step counts, the
/// route lookups and rule verdicts too: they are where routing and
/// netfilter came into play.
pub fn transitions(journeys: &[Journey], key: impl Fn(&Step) -> &str) -> Vec<Transition> {
    let mut count: BTreeMap<(String, String), usize> = BTreeMap::new();
    for j in journeys {
        let mut prev: Option<&str> = None;
        for s in &j.steps {
            let k = key(s);
            if let Some(p) = prev.filter(|p| *p != k) {
                *count.entry((p.to_string(), k.to_string())).or_default() += 1;
            }
            prev = Some(k);
        }
        if let Some(p) = prev {
            *count.entry((p.to_string(), end_node(&j.end))).or_default() += 1;
        }
    }
    let mut out: Vec<Transition> = count
        .into_iter()
        .map(|((from, to), count)| Transition { from, to, count })
        .collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then(a.from.cmp(&b.from)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{test_step, Detail};

    fn journey(id: u64, places: &[(&str, &str, &str)], dropped: bool) -> Journey {
        let mut steps: Vec<Step> = places
            .iter()
            .enumerate()
            .map(|(i, (ns, dev, site))| {
                let mut s = test_step(i as u64 * 10, site, ns, Detail::None);
                s.dev = (!dev.is_empty()).then(|| (*dev).into());
                s
            })
            .collect();
        if dropped {
            let mut d = test_step(
                1000,
                "kfree_skb",
                places.last().unwrap().0,
                Detail::Drop(Box::new(crate::model::DropInfo {
                    reason: "NETFILTER_DROP".into(),
                    code: 0,
                    location: None,
                    found: None,
                })),
            );
            d.subsystem = "drop".into();
            steps.push(d);
        }
        Journey::from_steps(id, steps, true)
    }

    #[test]
    fn hops_paths_and_transitions_count_what_journeys_did() {
        let through = [
            ("c", "eth0", "net_dev_start_xmit"),
            ("r", "in0", "netif_receive_skb"),
            ("r", "out0", "net_dev_start_xmit"),
            ("s", "eth0", "netif_receive_skb"),
        ];
        let a = journey(1, &through, false);
        let b = journey(2, &through, false);
        let c = journey(3, &through[..2], true);
        assert_eq!(
            hops(&a),
            [
                Hop {
                    from: "c".into(),
                    out: Some("eth0".into()),
                    to: "r".into(),
                    into: Some("in0".into())
                },
                Hop {
                    from: "r".into(),
                    out: Some("out0".into()),
                    to: "s".into(),
                    into: Some("eth0".into())
                }
            ]
        );
        let all = [a, b, c];
        let d = distinct(&all);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].count, 2);
        assert_eq!(d[0].journeys, [1, 2]);
        assert_eq!(d[1].ends, [("dropped in r".to_string(), 1)]);
        let t = transitions(&all, |s| &s.subsystem);
        let edge = |from: &str, to: &str| {
            t.iter()
                .find(|e| e.from == from && e.to == to)
                .map_or(0, |e| e.count)
        };
        // Two journeys cross both links, one the first only.
        assert_eq!(edge("xmit", "receive"), 5, "{t:?}");
        assert_eq!(edge("receive", "drop"), 1, "{t:?}");
        assert_eq!(edge("drop", "(dropped)"), 1, "{t:?}");
        assert_eq!(
            t[0],
            Transition {
                from: "xmit".into(),
                to: "receive".into(),
                count: 5
            }
        );
    }
}
