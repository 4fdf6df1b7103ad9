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
use crate::network::Network;

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
    /// Addresses of its devices, as recorded when the trace began:
    /// "eth0 10.0.1.2/24".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addrs: Vec<String>,
    /// Its routes through gateways, as recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<String>,
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
                ..Node::default()
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

/// Adds what was recorded when the trace began: every namespace, its
/// devices, bridges, addresses and routes, and a link per veth pair (count
/// 0 where no packet crossed it). An IMUNES experiment's namespace is drawn
/// as the links its bridges make between the nodes whose veths are ports.
pub fn with_network(t: &mut Topology, n: &Network) {
    let hidden: BTreeSet<String> = n
        .namespaces
        .iter()
        .filter(|ns| imunes::experiment(&ns.name) && !t.nodes.iter().any(|x| x.id == ns.name))
        .map(|ns| ns.name.clone())
        .collect();
    // Veth pairs between drawn namespaces; the ports of a hidden
    // namespace's bridges, by bridge, linked to each other.
    let mut new: Vec<Link> = Vec::new();
    let mut add = |a: &str, a_dev: &str, b: &str, b_dev: &str, via: Option<String>| {
        new.push(Link {
            a: a.to_string(),
            a_dev: Some(a_dev.to_string()),
            b: b.to_string(),
            b_dev: Some(b_dev.to_string()),
            via,
            count: 0,
        })
    };
    let mut ports: BTreeMap<(String, String), Vec<(String, String)>> = BTreeMap::new();
    for ns in &n.namespaces {
        for d in &ns.devices {
            let Some(p) = &d.peer else { continue };
            match (hidden.contains(&ns.name), hidden.contains(&p.netns)) {
                (false, false) if (&ns.name, &d.name) < (&p.netns, &p.dev) => {
                    add(&ns.name, &d.name, &p.netns, &p.dev, None)
                }
                (true, false) => {
                    if let Some(br) = &d.master {
                        ports
                            .entry((ns.name.clone(), br.clone()))
                            .or_default()
                            .push((p.netns.clone(), p.dev.clone()));
                    }
                }
                _ => {}
            }
        }
    }
    for ((_, bridge), ends) in ports {
        for (i, a) in ends.iter().enumerate() {
            for b in &ends[i + 1..] {
                add(&a.0, &a.1, &b.0, &b.1, Some(bridge.clone()));
            }
        }
    }
    // Only the network the journeys were in: the namespaces linked to one
    // they crossed (a machine's other namespaces are someone else's).
    let mut reach: BTreeSet<String> = t.nodes.iter().map(|x| x.id.clone()).collect();
    if reach.is_empty() {
        reach = n.namespaces.iter().map(|ns| ns.name.clone()).collect();
    }
    loop {
        let before = reach.len();
        for l in &new {
            if reach.contains(&l.a) || reach.contains(&l.b) {
                reach.insert(l.a.clone());
                reach.insert(l.b.clone());
            }
        }
        if reach.len() == before {
            break;
        }
    }
    for ns in n
        .namespaces
        .iter()
        .filter(|ns| reach.contains(&ns.name) && !hidden.contains(&ns.name))
    {
        let at = match t.nodes.iter().position(|x| x.id == ns.name) {
            Some(i) => i,
            None => {
                t.nodes.push(Node {
                    id: ns.name.clone(),
                    label: imunes::label(&ns.name).to_string(),
                    ..Node::default()
                });
                t.nodes.len() - 1
            }
        };
        let node = &mut t.nodes[at];
        for d in ns.devices.iter().filter(|d| d.name != "lo") {
            if !node.devices.contains(&d.name) {
                node.devices.push(d.name.clone());
            }
            if d.kind.as_deref() == Some("bridge") && !node.bridges.contains(&d.name) {
                node.bridges.push(d.name.clone());
            }
            for a in &d.addrs {
                node.addrs.push(format!("{} {a}", d.name));
            }
        }
        node.routes = ns.routes.clone();
    }
    t.nodes.sort_by(|a, b| a.id.cmp(&b.id));
    // A link the journeys drew already (the same namespaces, by one of the
    // same devices) keeps its count.
    let same = |l: &Link, m: &Link| {
        let end = |ns: &str, dev: &Option<String>, l: &Link| {
            (l.a == ns && l.a_dev == *dev) || (l.b == ns && l.b_dev == *dev)
        };
        let pair = (l.a == m.a && l.b == m.b) || (l.a == m.b && l.b == m.a);
        pair && (end(&m.a, &m.a_dev, l) || end(&m.b, &m.b_dev, l))
    };
    for m in new {
        if reach.contains(&m.a) && !t.links.iter().any(|l| same(l, &m)) {
            t.links.push(m);
        }
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

    /// What was recorded joins what the journeys showed: a namespace
    /// linked to one they crossed is drawn (with a link no packet
    /// crossed), an unrelated one is not, the IMUNES experiment's is links.
    #[test]
    fn the_recorded_network_adds_what_no_packet_crossed() {
        use crate::network::{Device, Namespace, Network, Peer};
        let veth = |name: &str, peer: (&str, &str), master: Option<&str>| Device {
            name: name.into(),
            kind: Some("veth".into()),
            peer: Some(Peer {
                netns: peer.0.into(),
                dev: peer.1.into(),
            }),
            master: master.map(Into::into),
            addrs: vec![],
            ..Device::default()
        };
        let ns = |name: &str, devices: Vec<Device>| Namespace {
            name: name.into(),
            devices,
            routes: vec![],
        };
        let net = Network {
            namespaces: vec![
                ns(
                    "i9.pc1",
                    vec![
                        veth("eth0", ("i9", "pc1-eth0"), None),
                        veth("eth1", ("i9.idle", "eth0"), None),
                    ],
                ),
                ns("i9.router", vec![veth("eth0", ("i9", "router-eth0"), None)]),
                ns("i9.idle", vec![veth("eth0", ("i9.pc1", "eth1"), None)]),
                ns(
                    "i9",
                    vec![
                        veth("pc1-eth0", ("i9.pc1", "eth0"), Some("l0")),
                        veth("router-eth0", ("i9.router", "eth0"), Some("l0")),
                    ],
                ),
                ns("elsewhere", vec![]),
            ],
        };
        let j = Journey::from_steps(
            1,
            vec![
                at(1, "i9.pc1", "eth0", "net_dev_start_xmit"),
                at(2, "i9.router", "eth0", "netif_receive_skb"),
            ],
            true,
        );
        let mut t = from_journeys([&j]);
        with_network(&mut t, &net);
        let ids: Vec<&str> = t.nodes.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids, ["i9.idle", "i9.pc1", "i9.router"]);
        let counts: Vec<(&str, &str, usize)> = t
            .links
            .iter()
            .map(|l| (l.a.as_str(), l.b.as_str(), l.count))
            .collect();
        assert_eq!(
            counts,
            [("i9.pc1", "i9.router", 1), ("i9.idle", "i9.pc1", 0)],
            "{:?}",
            t.links
        );
    }
}
