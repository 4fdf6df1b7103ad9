//! Bridges a journey crossed: the port a packet came in on, the ports it
//! left by, and why those: a forwarding database (FDB) entry for its
//! destination MAC (hit), or none, so the bridge flooded it (miss, or a
//! broadcast/multicast), and its VLAN (bridge_vlan.rs). Read from the
//! namespace's own `ip -j -d link`, `bridge -j fdb` and `bridge -j vlan`
//! (cached a moment), and added to the journey as a step after the packet
//! entered the bridge.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::bridge_vlan::{self, Entry};
use crate::netns::{run_in, NetnsRef};
use pktpath_core::diagnosis::{self, End};
use pktpath_core::journey::Journey;
use pktpath_core::model::{BridgeCross, Cause, Detail, SiteKind, Step};
use pktpath_core::packet::mac;

/// How long a namespace's bridge view is reused.
const FRESH: Duration = Duration::from_secs(2);

#[derive(Debug, Deserialize)]
struct Link {
    ifname: String,
    #[serde(default)]
    master: Option<String>,
    #[serde(default)]
    linkinfo: Option<LinkInfo>,
}

#[derive(Debug, Deserialize)]
struct LinkInfo {
    #[serde(default)]
    info_kind: Option<String>,
    #[serde(default)]
    info_slave_kind: Option<String>,
    #[serde(default)]
    info_data: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Deserialize)]
struct Fdb {
    mac: String,
    ifname: String,
    #[serde(default)]
    vlan: Option<u16>,
    #[serde(default)]
    master: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    flags: Vec<String>,
}

/// What one namespace's bridges look like.
#[derive(Default)]
struct View {
    /// Port name -> bridge name.
    port_of: HashMap<String, String>,
    bridges: Vec<String>,
    /// Bridges with vlan_filtering on.
    filtering: Vec<String>,
    /// Port name -> its VLANs (bridges that filter).
    vlans: HashMap<String, Vec<Entry>>,
    fdb: Vec<Fdb>,
}

impl View {
    fn read(ns: &NetnsRef) -> View {
        let links: Vec<Link> = run_in(ns, "ip", &["-j", "-d", "link", "show"], None)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let mut v = View::default();
        for l in &links {
            let info = l.linkinfo.as_ref();
            if info.and_then(|i| i.info_kind.as_deref()) == Some("bridge") {
                v.bridges.push(l.ifname.clone());
                let data = info.and_then(|i| i.info_data.as_ref());
                if data.is_some_and(|d| d["vlan_filtering"] == 1) {
                    v.filtering.push(l.ifname.clone());
                }
            }
            if let (Some(m), Some("bridge")) =
                (&l.master, info.and_then(|i| i.info_slave_kind.as_deref()))
            {
                v.port_of.insert(l.ifname.clone(), m.clone());
            }
        }
        if !v.bridges.is_empty() {
            v.fdb = run_in(ns, "bridge", &["-j", "fdb", "show"], None)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default();
        }
        if !v.filtering.is_empty() {
            v.vlans = run_in(ns, "bridge", &["-j", "vlan", "show"], None)
                .map(|t| bridge_vlan::parse(&t))
                .unwrap_or_default();
        }
        v
    }
}

/// Bridge views per namespace, read when a journey needs them.
#[derive(Default)]
pub struct Bridges {
    /// Per namespace, looked up per event: a fast hash.
    views: rustc_hash::FxHashMap<u32, (View, Instant)>,
}

impl Bridges {
    fn view(&mut self, netns: u32) -> Option<&View> {
        let stale = self
            .views
            .get(&netns)
            .is_none_or(|(_, at)| at.elapsed() > FRESH);
        if stale {
            let ns = NetnsRef::from_inode(netns).ok()?;
            self.views.insert(netns, (View::read(&ns), Instant::now()));
        }
        self.views.get(&netns).map(|(v, _)| v)
    }

    /// Adds a bridge step where the journey entered a bridge port.
    fn annotate(&mut self, j: &mut Journey) {
        let mut added = Vec::new();
        let mut vlan_drop = None;
        let mut done: Vec<(u32, String)> = Vec::new();
        for (i, s) in j.steps.iter().enumerate() {
            let Some(dev) = s.dev.as_deref() else {
                continue;
            };
            if s.correlated || &*s.subsystem == "xmit" || &*s.subsystem == "qdisc" {
                continue;
            }
            let Some(view) = self.view(s.netns) else {
                continue;
            };
            let Some(bridge) = view.port_of.get(dev).cloned() else {
                continue;
            };
            if done.contains(&(s.netns, bridge.clone())) {
                continue;
            }
            done.push((s.netns, bridge.clone()));
            // Where it left: transmits on other ports of that bridge, in
            // this namespace, until it comes into the bridge again.
            let mut out: Vec<String> = Vec::new();
            for t in &j.steps[i + 1..] {
                if t.netns != s.netns {
                    continue;
                }
                let Some(d) = t.dev.as_deref() else { continue };
                if &*t.subsystem == "receive" && d != dev && view.port_of.contains_key(d) {
                    break;
                }
                if &*t.subsystem == "xmit"
                    && d != dev
                    && (view.port_of.get(d) == Some(&bridge) || d == bridge)
                    && !out.iter().any(|o| o == d)
                {
                    out.push(d.to_string());
                }
            }
            let vlan = bridge_vlan::ingress(
                dev,
                s.vlan,
                view.filtering.contains(&bridge),
                view.vlans.get(dev).map_or(&[], Vec::as_slice),
            );
            if let Some(v) = vlan.as_ref().filter(|v| !v.allowed) {
                vlan_drop = Some(Cause::VlanFilter {
                    netns: s.netns_name.to_string(),
                    bridge: bridge.clone(),
                    port: dev.to_string(),
                    vid: v.vid,
                    why: v.text.clone(),
                });
            }
            // The FDB is looked up in the frame's VLAN, if it got in at all.
            let vid = vlan.as_ref().and_then(|v| v.vid).or(s.vlan);
            let allowed = vlan.as_ref().is_none_or(|v| v.allowed);
            let dst = j.steps[..=i].iter().rev().find_map(|t| match &t.packet {
                Some((false, data)) if data.len() >= 6 => Some(mac(&data[..6])),
                _ => None,
            });
            let fdb = dst.as_ref().filter(|_| allowed).map(|m| {
                let first = u8::from_str_radix(&m[..2], 16).unwrap_or(0);
                if first & 1 == 1 {
                    return "broadcast/multicast: flooded".to_string();
                }
                let hit = view.fdb.iter().find(|e| {
                    e.mac == *m
                        && (e.master.as_deref() == Some(&bridge) || e.ifname == bridge)
                        && vid.is_none_or(|v| e.vlan.is_none_or(|ev| ev == v))
                });
                match hit {
                    Some(e) if e.ifname == bridge => format!("{m} is the bridge's own: local"),
                    Some(e) => format!(
                        "{m} on {} ({}{})",
                        e.ifname,
                        match e.state.as_deref() {
                            Some(st) if !st.is_empty() => st,
                            _ if e.flags.iter().any(|f| f == "static") => "static",
                            _ => "learned",
                        },
                        e.vlan.map(|v| format!(", vlan {v}")).unwrap_or_default()
                    ),
                    None => format!("no entry for {m}: flooded"),
                }
            });
            added.push(Step {
                ts_ns: s.ts_ns + 1,
                site: "bridge".into(),
                kind: SiteKind::Tracepoint,
                subsystem: "bridge".into(),
                source: None,
                netns: s.netns,
                netns_name: s.netns_name.clone(),
                dev: Some(bridge.as_str().into()),
                ifindex: 0,
                len: s.len,
                mark: s.mark,
                cpu: s.cpu,
                skb: s.skb,
                correlated: true,
                headers: None,
                ct: None,
                vlan: vid,
                detail: Detail::Bridge(Box::new(BridgeCross {
                    bridge,
                    in_port: dev.to_string(),
                    out_ports: out,
                    fdb,
                    vlan: vlan.map(|v| v.text),
                })),
                packet: None,
            });
        }
        if !added.is_empty() {
            j.steps.extend(added);
            j.steps.sort_by_key(|s| s.ts_ns);
        }
        // The kernel gives such drops no reason of their own: the bridge's
        // VLAN filter is the cause.
        if let (
            Some(cause),
            End::Dropped {
                explanation,
                hint,
                location,
                netns,
                cause: found,
                ..
            },
        ) = (vlan_drop, &mut j.end)
        {
            let in_bridge = |l: &str| l.starts_with("br_") || l.contains("allowed_ingress");
            let here = matches!(&cause, Cause::VlanFilter { netns: ns, .. } if ns == netns);
            if here && location.as_deref().is_none_or(in_bridge) {
                (*explanation, *hint) = diagnosis::words(&cause);
                *found = Some(Box::new(cause));
            }
        }
        j.end.place_evidence(&j.steps);
    }
}
impl super::Enricher for Bridges {
    fn journey(&mut self, j: &mut Journey) {
        self.annotate(j);
    }
}
