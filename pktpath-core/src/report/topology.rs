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
    /// Where IMUNES draws it (its `iconcoords`), when a lab's topology file
    /// was given: the page lays nodes out as the lab's author did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<f64>,
    /// The IMUNES node type (`router`, `pc`, `lanswitch`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
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

/// Lays the network out as its IMUNES lab file does: each node whose
/// namespace is `<eid>.<node>` gets the lab node's coordinates, type and
/// hostname (its label, else the node's name); the lab's nodes no packet
/// reached are added (as `<eid>.<node>` with the experiment seen in the
/// trace, else by the bare name), and its links that no packet crossed
/// (count 0), so that the page shows the whole lab. Canvases after the
/// first are placed to the right of the one before, as each has its own
/// origin.
pub fn with_lab(t: &mut Topology, lab: &imunes::LabTopology) {
    let eids: BTreeSet<String> = t
        .nodes
        .iter()
        .filter_map(|n| imunes::node(&n.id).map(|(e, _)| e.to_string()))
        .collect();
    let eid = eids.iter().next().cloned();
    // The namespaces of a lab node: those the trace saw, else a new one.
    let ids_of = |t: &Topology, name: &str| -> Vec<String> {
        t.nodes
            .iter()
            .filter(|n| n.id == name || imunes::node(&n.id).is_some_and(|(_, x)| x == name))
            .map(|n| n.id.clone())
            .collect()
    };
    let offsets = canvas_offsets(lab);
    for ln in &lab.nodes {
        let mut ids = ids_of(t, &ln.name);
        if ids.is_empty() {
            let id = eid
                .as_ref()
                .map_or_else(|| ln.name.clone(), |e| format!("{e}.{}", ln.name));
            t.nodes.push(Node {
                id: id.clone(),
                ..Node::default()
            });
            ids.push(id);
        }
        let dx = ln
            .canvas
            .as_ref()
            .and_then(|c| offsets.get(c))
            .copied()
            .unwrap_or(0.0);
        for n in t.nodes.iter_mut().filter(|n| ids.contains(&n.id)) {
            n.label = ln.hostname.clone().unwrap_or_else(|| ln.name.clone());
            n.kind = (!ln.kind.is_empty()).then(|| ln.kind.clone());
            if let Some((x, y)) = ln.coords {
                n.x = Some(x + dx);
                n.y = Some(y);
            }
        }
    }
    t.nodes.sort_by(|a, b| a.id.cmp(&b.id));
    // A lab link is already drawn when the journeys crossed it: the same
    // two namespaces, by the same devices where both sides say.
    let same = |x: &Option<String>, y: &Option<String>| x.is_none() || y.is_none() || x == y;
    for ll in &lab.links {
        let (Some(a), Some(b)) = (
            ids_of(t, &ll.nodes.0).into_iter().next(),
            ids_of(t, &ll.nodes.1).into_iter().next(),
        ) else {
            continue;
        };
        let (a_dev, b_dev) = ll.ifaces.clone();
        let seen = t.links.iter().any(|l| {
            (l.a == a && l.b == b && same(&l.a_dev, &a_dev) && same(&l.b_dev, &b_dev))
                || (l.a == b && l.b == a && same(&l.a_dev, &b_dev) && same(&l.b_dev, &a_dev))
        });
        if !seen {
            t.links.push(Link {
                a,
                a_dev,
                b,
                b_dev,
                via: (!ll.direct).then(|| ll.name.clone()),
                count: 0,
            });
        }
    }
}

/// How far right each canvas is drawn: past the widest node of the ones
/// before it, in the order of their names (`c0`, `c1`, ...).
fn canvas_offsets(lab: &imunes::LabTopology) -> BTreeMap<String, f64> {
    let mut widest: BTreeMap<&str, f64> = BTreeMap::new();
    for n in &lab.nodes {
        if let (Some(c), Some((x, _))) = (&n.canvas, n.coords) {
            let w = widest.entry(c).or_insert(x);
            *w = w.max(x);
        }
    }
    let mut at = 0.0;
    widest
        .into_iter()
        .map(|(c, w)| {
            let here = at;
            at += w + 200.0;
            (c.to_string(), here)
        })
        .collect()
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

    /// pc1 (n2) pinged through the switch (n1) to the router (n0): the lab
    /// file places those three, adds the server no packet reached and the
    /// links none crossed, and keeps the crossed one's count.
    #[test]
    fn a_lab_file_lays_the_network_out() {
        let node = |id: &str, devices: &[&str]| Node {
            id: id.into(),
            label: imunes::label(id).into(),
            devices: devices.iter().map(|d| d.to_string()).collect(),
            ..Node::default()
        };
        let mut t = Topology {
            nodes: vec![
                node("i1a2.n0", &["eth0"]),
                node("i1a2.n1", &["e0", "e1", "n1"]),
                node("i1a2.n2", &["eth0"]),
                node("root", &["veth0"]),
            ],
            links: vec![Link {
                a: "i1a2.n1".into(),
                a_dev: Some("e1".into()),
                b: "i1a2.n2".into(),
                b_dev: Some("eth0".into()),
                via: Some("l1".into()),
                count: 3,
            }],
        };
        let lab =
            imunes::parse_topology(include_str!("../../tests/fixtures/imunes-lab.imn")).unwrap();
        with_lab(&mut t, &lab);
        let ids: Vec<&str> = t.nodes.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids, ["i1a2.n0", "i1a2.n1", "i1a2.n2", "i1a2.n3", "root"]);
        let n1 = &t.nodes[1];
        assert_eq!(
            (n1.label.as_str(), n1.kind.as_deref(), n1.x, n1.y),
            ("switch1", Some("lanswitch"), Some(456.0), Some(288.0))
        );
        assert_eq!(n1.devices, ["e0", "e1", "n1"], "what the trace saw stays");
        assert_eq!(t.nodes[3].label, "server");
        assert_eq!(t.nodes[3].kind.as_deref(), Some("host"));
        assert_eq!((t.nodes[4].x, t.nodes[4].kind.as_deref()), (None, None));
        assert_eq!(t.nodes[4].label, "root");
        let links: Vec<(&str, &str, Option<&str>, usize)> = t
            .links
            .iter()
            .map(|l| (l.a.as_str(), l.b.as_str(), l.via.as_deref(), l.count))
            .collect();
        assert_eq!(
            links,
            [
                ("i1a2.n1", "i1a2.n2", Some("l1"), 3),
                ("i1a2.n0", "i1a2.n1", Some("l0"), 0),
                ("i1a2.n1", "i1a2.n3", Some("l2"), 0),
            ]
        );
        assert_eq!(t.links[1].a_dev.as_deref(), Some("eth0"));
        assert_eq!(t.links[1].b_dev.as_deref(), Some("e0"));
        // The page gets the coordinates; a node without them says nothing.
        let json = serde_json::to_value(&t).unwrap();
        assert_eq!(json["nodes"][1]["x"], 456.0);
        assert_eq!(json["nodes"][1]["kind"], "lanswitch");
        assert!(json["nodes"][4].get("x").is_none());
        assert!(json["nodes"][4].get("kind").is_none());
    }

    /// With no IMUNES namespace in the trace, the lab's nodes go by their
    /// bare names.
    #[test]
    fn a_lab_without_a_trace_is_drawn_by_its_names() {
        let mut t = Topology::default();
        let lab = imunes::parse_topology(include_str!("../../tests/fixtures/imunes-lab.json.imn"))
            .unwrap();
        with_lab(&mut t, &lab);
        let ids: Vec<&str> = t.nodes.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids, ["n0", "n1", "n2", "n3"]);
        assert_eq!(t.links.len(), 3);
        assert!(t.links.iter().all(|l| l.count == 0));
        assert_eq!((t.nodes[2].x, t.nodes[2].y), (Some(264.0), Some(432.0)));
    }
}
