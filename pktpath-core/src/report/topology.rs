//! The network a report draws: its nodes (network namespaces, by the names
//! people gave them) and the links between them, from the journeys' hops
//! (what the packets crossed), and IMUNES's naming understood (`imunes`):
//! a link is a bridge in the experiment's namespace, drawn as the link
//! between the nodes it joins.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::paths::Hop;
use crate::imunes;
use crate::journey::Journey;
use crate::model::Detail;

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Topology {
    pub nodes: Vec<Node>,
    pub links: Vec<Link>,
}

/// A network namespace.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Node {
    /// Its namespace's name (what steps carry).
    pub id: String,
    /// What people call it: the IMUNES node name, else the namespace's.
    pub label: String,
    /// Devices seen in it.
    pub devices: Vec<String>,
    /// Bridges seen in it.
    pub bridges: Vec<String>,
}

/// Two namespaces joined (a veth pair, or an IMUNES link through its
/// experiment's bridge `via`), with how many packets crossed it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Link {
    pub a: String,
    pub a_dev: Option<String>,
    pub b: String,
    pub b_dev: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    pub count: usize,
}

/// The topology the journeys show: every namespace a step was in, every
/// device and bridge seen there, and a link per pair of namespaces a
/// packet moved between. An IMUNES experiment's namespace (`<eid>`, holding
/// only the links' bridges) becomes the links it implements.
pub fn from_journeys<'a>(journeys: impl IntoIterator<Item = &'a Journey>) -> Topology {
    let mut nodes: BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> = BTreeMap::new();
    let mut links: BTreeMap<LinkKey, usize> = BTreeMap::new();
    let mut experiments: BTreeSet<String> = BTreeSet::new();
    let journeys: Vec<&Journey> = journeys.into_iter().collect();
    for j in &journeys {
        for s in &j.steps {
            if s.netns_name.is_empty() {
                continue;
            }
            let n = nodes.entry(s.netns_name.to_string()).or_default();
            if let Some(d) = &s.dev {
                n.0.insert(d.to_string());
            }
            if let Detail::Bridge(b) = &s.detail {
                n.1.insert(b.bridge.clone());
            }
            if let Some((eid, _)) = imunes::node(&s.netns_name) {
                experiments.insert(eid.to_string());
            }
        }
    }
    for j in &journeys {
        let hops = super::paths::hops(j);
        let mut i = 0;
        while i < hops.len() {
            let h = &hops[i];
            // node -> <eid> -> node: one IMUNES link, through the bridge.
            if experiments.contains(&h.to) {
                if let Some(next) = hops.get(i + 1).filter(|n| n.from == h.to) {
                    let via = bridge_in(j, &h.to);
                    add(
                        &mut links,
                        h.from.clone(),
                        h.out.clone(),
                        next.to.clone(),
                        next.into.clone(),
                        via,
                    );
                    i += 2;
                    continue;
                }
            }
            let Hop {
                from,
                out,
                to,
                into,
            } = h.clone();
            add(&mut links, from, out, to, into, None);
            i += 1;
        }
    }
    // An experiment's namespace drawn as links is not a node (unless a
    // packet ended or began there).
    let ends_in: BTreeSet<String> = journeys
        .iter()
        .filter_map(|j| {
            let first = j.steps.first()?.netns_name.to_string();
            let last = j.steps.last()?.netns_name.to_string();
            Some([first, last])
        })
        .flatten()
        .collect();
    let hidden = |n: &str| experiments.contains(n) && !ends_in.contains(n);
    Topology {
        nodes: nodes
            .into_iter()
            .filter(|(id, _)| !hidden(id))
            .map(|(id, (devices, bridges))| Node {
                label: imunes::label(&id).to_string(),
                id,
                devices: devices.into_iter().collect(),
                bridges: bridges.into_iter().collect(),
            })
            .collect(),
        links: links
            .into_iter()
            .map(|((a, a_dev, b, b_dev, via), count)| Link {
                a,
                a_dev,
                b,
                b_dev,
                via,
                count,
            })
            .collect(),
    }
}

/// A journey's hops between the topology's nodes: through a namespace
/// that is not one (an IMUNES experiment's, holding its links' bridges),
/// two hops are one.
pub fn node_hops(j: &Journey, t: &Topology) -> Vec<Hop> {
    let is_node = |ns: &str| t.nodes.iter().any(|n| n.id == ns);
    let mut out: Vec<Hop> = Vec::new();
    for h in super::paths::hops(j) {
        match out.last_mut() {
            Some(last) if !is_node(&last.to) && last.to == h.from => {
                last.to = h.to;
                last.into = h.into;
            }
            _ => out.push(h),
        }
    }
    out
}

type LinkKey = (
    String,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
);

/// Counts a crossing; a link is the same both ways (a reply crosses the
/// link of its request).
fn add(
    links: &mut BTreeMap<LinkKey, usize>,
    a: String,
    a_dev: Option<String>,
    b: String,
    b_dev: Option<String>,
    via: Option<String>,
) {
    let key = if (&a, &a_dev) <= (&b, &b_dev) {
        (a, a_dev, b, b_dev, via)
    } else {
        (b, b_dev, a, a_dev, via)
    };
    *links.entry(key).or_default() += 1;
}

/// The bridge a journey crossed in namespace `ns`.
fn bridge_in(j: &Journey, ns: &str) -> Option<String> {
    j.steps.iter().find_map(|s| match &s.detail {
        Detail::Bridge(b) if &*s.netns_name == ns => Some(b.bridge.clone()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{test_step, BridgeCross, Step};

    fn at(ts: u64, ns: &str, dev: &str, site: &str) -> Step {
        let mut s = test_step(ts, site, ns, Detail::None);
        s.dev = Some(dev.into());
        s
    }

    /// pc1 -> i9.(bridge) -> router: one link pc1 - router, through the
    /// experiment's bridge; the experiment's namespace is no node.
    #[test]
    fn an_imunes_link_is_one_link_between_its_nodes() {
        let mut bridge = test_step(
            3,
            "bridge",
            "i9",
            Detail::Bridge(Box::new(BridgeCross {
                bridge: "i9-l0".into(),
                in_port: "pc1-eth0".into(),
                out_ports: vec!["router-eth0".into()],
                fdb: None,
                vlan: None,
            })),
        );
        bridge.correlated = true;
        let steps = vec![
            at(1, "i9.pc1", "eth0", "net_dev_start_xmit"),
            at(2, "i9", "pc1-eth0", "netif_receive_skb"),
            bridge,
            at(4, "i9", "router-eth0", "net_dev_start_xmit"),
            at(5, "i9.router", "eth0", "netif_receive_skb"),
        ];
        let j = Journey::from_steps(1, steps, true);
        let t = from_journeys([&j]);
        let ids: Vec<&str> = t.nodes.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids, ["i9.pc1", "i9.router"]);
        assert_eq!(t.nodes[0].label, "pc1");
        let hops = node_hops(&j, &t);
        assert_eq!(hops.len(), 1);
        assert_eq!(
            (hops[0].from.as_str(), hops[0].to.as_str()),
            ("i9.pc1", "i9.router")
        );
        assert_eq!(
            t.links,
            [Link {
                a: "i9.pc1".into(),
                a_dev: Some("eth0".into()),
                b: "i9.router".into(),
                b_dev: Some("eth0".into()),
                via: Some("i9-l0".into()),
                count: 1
            }]
        );
    }
}
