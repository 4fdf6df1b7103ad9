//! The network as it is when tracing begins (`pktpath_core::network`):
//! each visible namespace's devices and addresses (`ip -j -d addr`), its
//! routes through gateways (`ip -j route`), and which namespace each veth's
//! other end is in (`ip -j netns list-id`, else the one pair of devices
//! whose indices point at each other), as iproute2 reads them over netlink.

use std::collections::HashMap;

use serde::Deserialize;

use crate::netns::{run_in, NetnsRef};
use pktpath_core::network::{Device, Namespace, Network, Peer};

#[derive(Deserialize)]
struct Link {
    ifindex: u32,
    ifname: String,
    #[serde(default)]
    link: Option<String>,
    #[serde(default)]
    link_index: Option<u32>,
    #[serde(default)]
    link_netnsid: Option<i64>,
    #[serde(default)]
    master: Option<String>,
    #[serde(default)]
    operstate: Option<String>,
    #[serde(default)]
    linkinfo: Option<LinkInfo>,
    #[serde(default)]
    addr_info: Vec<Addr>,
}

#[derive(Deserialize)]
struct LinkInfo {
    #[serde(default)]
    info_kind: Option<String>,
    #[serde(default)]
    info_data: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Addr {
    local: String,
    prefixlen: u8,
    #[serde(default)]
    scope: Option<String>,
}

#[derive(Deserialize)]
struct Route {
    dst: String,
    #[serde(default)]
    gateway: Option<String>,
    #[serde(default)]
    dev: Option<String>,
}

#[derive(Deserialize)]
struct NsId {
    nsid: i64,
    #[serde(default)]
    name: Option<String>,
}

/// What one namespace said: its devices, and its veths' peers as
/// (peer's netns id, peer's ifindex).
struct Read {
    ns: Namespace,
    index: Vec<u32>,
    peers: Vec<Option<(Option<i64>, u32)>>,
    ids: HashMap<i64, String>,
}

fn read_one(ns: &NetnsRef) -> Option<Read> {
    let links: Vec<Link> = run_in(ns, "ip", &["-j", "-d", "addr", "show"], None)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())?;
    let routes: Vec<Route> = run_in(ns, "ip", &["-j", "route", "show"], None)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let ids: HashMap<i64, String> = run_in(ns, "ip", &["-j", "netns", "list-id"], None)
        .ok()
        .and_then(|t| serde_json::from_str::<Vec<NsId>>(&t).ok())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|i| Some((i.nsid, i.name?)))
        .collect();
    let mut read = Read {
        ns: Namespace {
            name: ns.name.clone(),
            devices: Vec::new(),
            routes: routes
                .iter()
                .filter_map(|r| {
                    let gw = r.gateway.as_deref()?;
                    let dev = r
                        .dev
                        .as_deref()
                        .map(|d| format!(" dev {d}"))
                        .unwrap_or_default();
                    Some(format!("{} via {gw}{dev}", r.dst))
                })
                .collect(),
        },
        index: Vec::new(),
        peers: Vec::new(),
        ids,
    };
    for l in links {
        let kind = l.linkinfo.as_ref().and_then(|i| i.info_kind.clone());
        let data = l.linkinfo.as_ref().and_then(|i| i.info_data.as_ref());
        let field = |k: &str| data.and_then(|d| d.get(k));
        let text = |k: &str| field(k).and_then(|v| v.as_str()).map(str::to_string);
        let is_veth = kind.as_deref() == Some("veth");
        read.peers.push(
            is_veth
                .then(|| l.link_index.map(|i| (l.link_netnsid, i)))
                .flatten(),
        );
        read.index.push(l.ifindex);
        read.ns.devices.push(Device {
            id: field("id").and_then(|v| v.as_u64()).map(|v| v as u32),
            local: text("local"),
            remote: text("remote"),
            link: l.link.filter(|_| !is_veth),
            master: l.master,
            down: l.operstate.as_deref() == Some("DOWN"),
            addrs: l
                .addr_info
                .iter()
                .filter(|a| {
                    a.scope.as_deref() != Some("link") && a.scope.as_deref() != Some("host")
                })
                .map(|a| format!("{}/{}", a.local, a.prefixlen))
                .collect(),
            kind,
            name: l.ifname,
            peer: None,
        });
    }
    Some(read)
}

/// The network of `namespaces` (pktpath's own and the named ones), as it
/// is now. A namespace that cannot be read is left out.
pub fn read(namespaces: &[NetnsRef]) -> Network {
    let mut all: Vec<Read> = namespaces.iter().filter_map(read_one).collect();
    // Each veth's peer: in this namespace (no netns id), in the namespace
    // its id names, else the one device anywhere whose index and peer
    // index are this one's the other way round.
    let mut found = Vec::new();
    for (n, r) in all.iter().enumerate() {
        for (d, peer) in r.peers.iter().enumerate() {
            let Some((nsid, index)) = *peer else { continue };
            let me = r.index[d];
            let back = |m: usize| -> Option<usize> {
                let o = &all[m];
                o.index
                    .iter()
                    .position(|&i| i == index)
                    .filter(|&k| o.peers[k].is_some_and(|(_, i)| i == me))
            };
            let at = match nsid {
                None => back(n).map(|k| (n, k)),
                Some(id) => match r.ids.get(&id) {
                    Some(name) => all
                        .iter()
                        .position(|o| o.ns.name == *name)
                        .and_then(|m| back(m).map(|k| (m, k))),
                    None => {
                        let hits: Vec<(usize, usize)> = (0..all.len())
                            .filter(|&m| m != n)
                            .filter_map(|m| back(m).map(|k| (m, k)))
                            .collect();
                        (hits.len() == 1).then(|| hits[0])
                    }
                },
            };
            if let Some((m, k)) = at {
                found.push((
                    n,
                    d,
                    Peer {
                        netns: all[m].ns.name.clone(),
                        dev: all[m].ns.devices[k].name.clone(),
                    },
                ));
            }
        }
    }
    for (n, d, p) in found {
        all[n].ns.devices[d].peer = Some(p);
    }
    Network {
        namespaces: all.into_iter().map(|r| r.ns).collect(),
    }
}
