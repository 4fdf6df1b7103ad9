//! Routing decisions in the user's terms.
//!
//! The FIB tracepoints say which table a lookup used, its error (for IPv4
//! `fib_props[type].error`: -EINVAL blackhole, -EHOSTUNREACH unreachable,
//! -EACCES prohibit, -EAGAIN throw *or* no match; see
//! net/ipv4/fib_semantics.c) or the route type (IPv6), and the next hop's
//! gateway and device; not the route itself. The route is found here by
//! looking up, in that namespace, the table the kernel used: `ip -j route
//! show table all` (and `ip rule`), cached per namespace and address family,
//! longest prefix match on the destination, and fetched again when the
//! cached tables do not agree with what the kernel said (a route added or
//! removed since).
//!
//! When the table is not main/local, or the rules are not the default ones,
//! the `ip rule` that sent the lookup there is named: the first rule whose
//! selector matches the packet (source, destination, input interface,
//! fwmark) and whose table is that table.
//!
//! Reverse-path filter drops (IP_RPFILTER) are explained with the
//! interface, the `rp_filter` sysctls read in that namespace, and the route
//! back to the source.

// Looked up per event: a fast hash, no need for SipHash's defence.
use rustc_hash::FxHashMap as HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::Value;

use crate::netns::NetnsRef;
use pktpath_core::model::{Cause, Detail, RouteBack, Step};

/// Do not fetch a namespace's routes again sooner than this.
const REFRESH: Duration = Duration::from_millis(100);
/// Journeys whose last device and route are remembered: what needs them
/// (a route lookup, an MTU drop) follows within microseconds; 16,384 of
/// each were 3 MB at 20,000 packets/s.
const CACHED_JOURNEYS: usize = 4096;

/// An address prefix ("10.0.0.0/24"; "default" is length 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prefix {
    pub addr: IpAddr,
    pub len: u8,
}

impl Prefix {
    /// Parses `ip -j` text: "default", "all", "10.0.0.0/24", "10.0.0.1"
    /// (a host), with the length given apart (`srclen`) or not.
    pub fn parse(text: &str, len: Option<u64>, v6: bool) -> Option<Prefix> {
        let unspecified = || -> IpAddr {
            if v6 {
                std::net::Ipv6Addr::UNSPECIFIED.into()
            } else {
                std::net::Ipv4Addr::UNSPECIFIED.into()
            }
        };
        if text == "default" || text == "all" {
            return Some(Prefix {
                addr: unspecified(),
                len: 0,
            });
        }
        let (a, l) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l.parse().ok()?)),
            None => (text, len.map(|l| l as u8)),
        };
        let addr: IpAddr = a.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        Some(Prefix {
            addr,
            len: l.unwrap_or(max).min(max),
        })
    }

    pub fn contains(&self, a: IpAddr) -> bool {
        let bits = |x: IpAddr| -> (u128, u32) {
            match x {
                IpAddr::V4(v) => (u32::from(v) as u128, 32),
                IpAddr::V6(v) => (u128::from(v), 128),
            }
        };
        let ((p, w), (x, wx)) = (bits(self.addr), bits(a));
        if w != wx {
            return false;
        }
        let len = self.len as u32;
        if len == 0 {
            return true;
        }
        let shift = w - len.min(w);
        (p >> shift) == (x >> shift)
    }

    /// As `ip` prints it ("default" for length 0, no "/32" for a host).
    pub fn text(&self) -> String {
        let max = if self.addr.is_ipv4() { 32 } else { 128 };
        match self.len {
            0 => "default".into(),
            l if l == max => self.addr.to_string(),
            l => format!("{}/{l}", self.addr),
        }
    }
}

/// The id of a routing table named as `ip` names it.
pub fn table_id(name: &str) -> Option<u32> {
    match name {
        "local" => Some(255),
        "main" => Some(254),
        "default" => Some(253),
        "unspec" => Some(0),
        n => n.parse().ok().or_else(|| {
            // Names from /etc/iproute2/rt_tables (and rt_tables.d/*.conf).
            let mut files = vec!["/etc/iproute2/rt_tables".to_string()];
            for d in [
                "/etc/iproute2/rt_tables.d",
                "/usr/share/iproute2/rt_tables.d",
            ] {
                for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
                    files.push(e.path().to_string_lossy().into_owned());
                }
            }
            files.iter().find_map(|f| {
                std::fs::read_to_string(f).ok()?.lines().find_map(|l| {
                    let mut w = l.split_whitespace();
                    let id = w.next()?.parse().ok()?;
                    (w.next()? == n).then_some(id)
                })
            })
        }),
    }
}

/// The name the FIB steps use for table `id`.
pub fn table_name(id: u32) -> String {
    match id {
        255 => "local".into(),
        254 => "main".into(),
        253 => "default".into(),
        n => n.to_string(),
    }
}

/// One route of `ip route show table all`.
#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    pub table: u32,
    /// unicast, local, broadcast, blackhole, unreachable, prohibit, throw...
    pub kind: String,
    pub prefix: Prefix,
    pub gateways: Vec<String>,
    pub devs: Vec<String>,
    pub metric: Option<u64>,
    pub protocol: Option<String>,
    /// As `ip route show table all` prints it.
    pub text: String,
}

/// One rule of `ip rule show`.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub priority: u32,
    pub not: bool,
    pub src: Option<Prefix>,
    pub dst: Option<Prefix>,
    pub iif: Option<String>,
    pub oif: Option<String>,
    /// (mark, mask)
    pub fwmark: Option<(u32, u32)>,
    /// The table it looks up (None: another action, e.g. blackhole, goto).
    pub table: Option<u32>,
    /// As `ip rule show` prints it ("100: from 10.0.1.2 lookup 100").
    pub text: String,
}

impl Rule {
    /// One of the three rules every namespace starts with.
    fn is_default(&self) -> bool {
        matches!(
            (self.priority, self.table),
            (0, Some(255)) | (32766, Some(254)) | (32767, Some(253))
        ) && self.src.as_ref().is_none_or(|p| p.len == 0)
            && self.dst.is_none()
            && self.iif.is_none()
            && self.oif.is_none()
            && self.fwmark.is_none()
            && !self.not
    }

    /// Whether the selector takes a packet (selectors pktpath cannot check,
    /// such as ipproto, ports, tos or uidrange, are taken as matching).
    pub fn matches(&self, p: &Packet) -> bool {
        let mut m = self.src.as_ref().is_none_or(|s| s.contains(p.src))
            && self.dst.as_ref().is_none_or(|d| d.contains(p.dst))
            && self.iif.as_ref().is_none_or(|i| *i == p.iif)
            && self.oif.is_none()
            && self.fwmark.is_none_or(|(mark, mask)| p.mark & mask == mark);
        if self.not {
            m = !m;
        }
        m
    }
}

/// What a rule selector sees of a packet.
#[derive(Clone, Debug)]
pub struct Packet {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// Input interface ("lo" for locally generated packets).
    pub iif: String,
    pub mark: u32,
}

fn text_lines(text: &str) -> Vec<String> {
    // Multipath routes continue on indented lines.
    let mut out: Vec<String> = Vec::new();
    for l in text.lines() {
        if l.starts_with(char::is_whitespace) {
            if let Some(last) = out.last_mut() {
                last.push(' ');
                last.push_str(l.trim());
            }
        } else if !l.trim().is_empty() {
            out.push(l.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
    out
}

fn str_of(v: &Value, k: &str) -> Option<String> {
    match v.get(k)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn hex(s: &str) -> Option<u32> {
    match s.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Routes from `ip -j route show table all` and the same dump as text.
pub fn parse_routes(json: &str, text: &str, v6: bool) -> Vec<Route> {
    let Ok(Value::Array(items)) = serde_json::from_str::<Value>(json) else {
        return Vec::new();
    };
    let lines = text_lines(text);
    let paired = lines.len() == items.len();
    items
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let kind = str_of(r, "type").unwrap_or_else(|| "unicast".into());
            let dst = str_of(r, "dst")?;
            let prefix = Prefix::parse(&dst, None, v6)?;
            let table = str_of(r, "table")
                .map(|t| table_id(&t))
                .unwrap_or(Some(254))?;
            let mut gateways: Vec<String> = str_of(r, "gateway").into_iter().collect();
            let mut devs: Vec<String> = str_of(r, "dev").into_iter().collect();
            for nh in r
                .get("nexthops")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                gateways.extend(str_of(nh, "gateway"));
                devs.extend(str_of(nh, "dev"));
            }
            let text = lines
                .get(i)
                .filter(|l| paired && l.contains(&dst))
                .cloned()
                .unwrap_or_else(|| {
                    let mut t = if kind == "unicast" {
                        dst.clone()
                    } else {
                        format!("{kind} {dst}")
                    };
                    if let Some(g) = gateways.first() {
                        t += &format!(" via {g}");
                    }
                    if let Some(d) = devs.first() {
                        t += &format!(" dev {d}");
                    }
                    if table != 254 {
                        t += &format!(" table {}", table_name(table));
                    }
                    t
                });
            Some(Route {
                table,
                kind,
                prefix,
                gateways,
                devs,
                metric: r.get("metric").and_then(Value::as_u64),
                protocol: str_of(r, "protocol"),
                text,
            })
        })
        .collect()
}

/// Rules from `ip -j rule show` and the same list as text.
pub fn parse_rules(json: &str, text: &str, v6: bool) -> Vec<Rule> {
    let Ok(Value::Array(items)) = serde_json::from_str::<Value>(json) else {
        return Vec::new();
    };
    let lines = text_lines(text);
    let paired = lines.len() == items.len();
    items
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let priority = r.get("priority").and_then(Value::as_u64)? as u32;
            let len = |k: &str| r.get(k).and_then(Value::as_u64);
            let src = str_of(r, "src")
                .filter(|s| s != "all")
                .and_then(|s| Prefix::parse(&s, len("srclen"), v6));
            let dst = str_of(r, "dst")
                .filter(|s| s != "all")
                .and_then(|s| Prefix::parse(&s, len("dstlen"), v6));
            let fwmark = str_of(r, "fwmark")
                .and_then(|m| hex(&m))
                .map(|m| (m, str_of(r, "fwmask").and_then(|k| hex(&k)).unwrap_or(!0)));
            let table = str_of(r, "table").and_then(|t| table_id(&t));
            let text = lines
                .get(i)
                .filter(|l| paired && l.starts_with(&format!("{priority}:")))
                .cloned()
                .unwrap_or_else(|| {
                    format!(
                        "{priority}: lookup {}",
                        table.map_or("?".into(), table_name)
                    )
                });
            Some(Rule {
                priority,
                not: r.get("not").is_some(),
                src,
                dst,
                iif: str_of(r, "iif"),
                oif: str_of(r, "oif"),
                fwmark,
                table,
                text,
            })
        })
        .collect()
}

/// The route a lookup in `table` finds for `dst`: longest prefix, then
/// lowest metric. With the default rules the kernel merges local into
/// main, and reports main for both.
pub fn best_route(routes: &[Route], table: u32, dst: IpAddr) -> Option<&Route> {
    routes
        .iter()
        .filter(|r| r.table == table || (table == 254 && r.table == 255))
        .filter(|r| r.prefix.contains(dst))
        .max_by(|a, b| {
            a.prefix
                .len
                .cmp(&b.prefix.len)
                .then(b.metric.unwrap_or(0).cmp(&a.metric.unwrap_or(0)))
                .then(a.table.cmp(&b.table))
        })
}

/// The first rule that takes this packet to `table`.
pub fn rule_for<'a>(rules: &'a [Rule], table: u32, p: &Packet) -> Option<&'a Rule> {
    rules
        .iter()
        .find(|r| r.table == Some(table) && r.matches(p))
}

/// Whether a lookup that found nothing in `table` was the last chance:
/// no later rule that matches the packet leads to another table that
/// exists (has routes; the kernel skips tables that do not).
pub fn is_last(rules: &[Rule], routes: &[Route], table: u32, p: &Packet) -> bool {
    if rules.is_empty() {
        return table != 255;
    }
    let after = rule_for(rules, table, p).map_or(0, |r| r.priority);
    !rules.iter().any(|r| {
        r.priority > after
            && r.matches(p)
            && r.table
                .is_some_and(|t| t != table && routes.iter().any(|x| x.table == t))
    })
}

/// What a FIB step said, as a route to look for.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect<'a> {
    /// A route of this type (IPv4: from the error; IPv6: fib6_type).
    Kind(&'a str),
    /// IPv4 -EAGAIN: a throw route, or nothing in this table.
    ThrowOrNothing,
    /// Found, type not said (IPv4 success).
    Found,
}

/// The route the kernel's answer corresponds to (Ok(None): none, as the
/// kernel said), or Err when the cached tables disagree with the kernel.
fn resolve<'a>(
    routes: &'a [Route],
    table: u32,
    dst: IpAddr,
    expect: Expect,
    gateway: Option<&str>,
    dev: Option<&str>,
) -> Result<Option<&'a Route>, ()> {
    let best = best_route(routes, table, dst);
    match (expect, best) {
        // IPv6 answers a miss with the null entry, an unreachable route.
        (Expect::Kind("unreachable"), None) if dst.is_ipv6() => Ok(None),
        (Expect::Kind(k), Some(r)) if r.kind == k => Ok(Some(r)),
        (Expect::ThrowOrNothing, None) => Ok(None),
        (Expect::ThrowOrNothing, Some(r)) if r.kind == "throw" => Ok(Some(r)),
        (Expect::Found, Some(r))
            if !matches!(
                r.kind.as_str(),
                "blackhole" | "unreachable" | "prohibit" | "throw"
            ) && gateway
                .is_none_or(|g| r.gateways.is_empty() || r.gateways.iter().any(|x| x == g))
                && dev.is_none_or(|d| r.devs.is_empty() || r.devs.iter().any(|x| x == d)) =>
        {
            Ok(Some(r))
        }
        _ => Err(()),
    }
}

/// Runs `program ARGS` inside namespace `ns`; its standard output.
fn run_in(ns: &NetnsRef, program: &str, args: &[&str]) -> Result<String> {
    crate::netns::run_in(ns, program, args, None)
}

/// The routes and rules of one namespace and family, when fetched.
struct Snapshot {
    routes: Vec<Route>,
    rules: Vec<Rule>,
    at: Instant,
}

impl Snapshot {
    fn fetch(ns: &NetnsRef, v6: bool) -> Result<Snapshot> {
        let fam: &[&str] = if v6 { &["-6"] } else { &["-4"] };
        let ip = |j: bool, what: &[&str]| {
            let mut a: Vec<&str> = fam.to_vec();
            if j {
                a.push("-j");
            }
            a.extend_from_slice(what);
            run_in(ns, "ip", &a)
        };
        let route = ["route", "show", "table", "all"];
        let rule = ["rule", "show"];
        Ok(Snapshot {
            routes: parse_routes(&ip(true, &route)?, &ip(false, &route)?, v6),
            rules: parse_rules(&ip(true, &rule)?, &ip(false, &rule)?, v6),
            at: Instant::now(),
        })
    }
}

/// Route and rule lookups for FIB steps, cached per namespace and family.
#[derive(Default)]
pub struct Routes {
    cache: HashMap<(u32, bool), Snapshot>,
    netns: HashMap<u32, Option<NetnsRef>>,
    /// The last step of each journey's own packet: netns, device (shared
    /// with the step, not copied: one per event).
    seen: HashMap<u64, (u32, Arc<str>)>,
    /// The last route each journey's packet was given: netns, device out,
    /// the route as `ip route` prints it.
    routed: HashMap<u64, (u32, String, Option<String>)>,
    /// Namespaces whose routes could not be read (said once).
    warned: Vec<String>,
}

impl Routes {
    fn netns_ref(&mut self, inode: u32) -> Option<NetnsRef> {
        if inode == 0 {
            return None;
        }
        self.netns
            .entry(inode)
            .or_insert_with(|| NetnsRef::from_inode(inode).ok())
            .clone()
    }

    /// The namespace's routes, fetched when missing or when `stale` and
    /// old enough.
    fn snapshot(&mut self, ns: &NetnsRef, v6: bool, stale: bool) -> Option<&Snapshot> {
        let key = (ns.inode, v6);
        let fetch = match self.cache.get(&key) {
            None => true,
            Some(s) => stale && s.at.elapsed() >= REFRESH,
        };
        if fetch {
            match Snapshot::fetch(ns, v6) {
                Ok(s) => {
                    self.cache.insert(key, s);
                }
                Err(e) => {
                    if !self.warned.contains(&ns.name) {
                        eprintln!(
                            "pktpath: warning: no route detail in netns {}: {e:#}",
                            ns.name
                        );
                        self.warned.push(ns.name.clone());
                    }
                }
            }
        }
        self.cache.get(&key)
    }

    /// Adds what the namespace's routes and rules tell to a step of
    /// journey `journey`: the route and rule of a FIB lookup, the
    /// rp_filter setting of a reverse-path drop.
    fn annotate(&mut self, journey: u64, step: &mut Step) {
        if !step.correlated && step.dev.is_some() && step.netns != 0 {
            // A lookup follows its packet's receive within a few events.
            if self.seen.len() > CACHED_JOURNEYS {
                self.seen.clear();
            }
            self.seen
                .insert(journey, (step.netns, step.dev.clone().unwrap_or_default()));
        }
        match &step.detail {
            Detail::Route(_) => {
                self.route_step(journey, step);
                if let Detail::Route(r) = &step.detail {
                    if let Some(dev) = &r.out_dev {
                        if self.routed.len() > CACHED_JOURNEYS {
                            self.routed.clear();
                        }
                        self.routed
                            .insert(journey, (step.netns, dev.clone(), r.route.clone()));
                    }
                }
            }
            Detail::Drop(d) if d.reason == "IP_RPFILTER" => self.rp_filter_step(step),
            Detail::Drop(d) if d.reason == "PKT_TOO_BIG" => self.mtu_step(journey, step),
            _ => {}
        }
    }

    /// A packet too big for the way out (don't-fragment set, or IPv6): the
    /// device its route leaves by and that device's MTU, read in its
    /// namespace (`ip link`: /sys shows pktpath's own namespace).
    fn mtu_step(&mut self, journey: u64, step: &mut Step) {
        let Some((_, dev, route)) = self
            .routed
            .get(&journey)
            .filter(|(ns, _, _)| *ns == step.netns)
            .cloned()
        else {
            return;
        };
        let Some(ns) = self.netns_ref(step.netns) else {
            return;
        };
        let mtu: Option<u32> = run_in(&ns, "ip", &["-o", "link", "show", "dev", &dev])
            .ok()
            .and_then(|t| {
                let mut w = t.split_whitespace();
                w.find(|x| *x == "mtu")?;
                w.next()?.parse().ok()
            });
        let len = step.flow().and_then(|f| f.ip_len).unwrap_or(step.len);
        let Detail::Drop(d) = &mut step.detail else {
            return;
        };
        d.found = Some(Cause::Mtu {
            netns: ns.name.clone(),
            dev,
            mtu,
            len,
            route: route.filter(|r| r.split_whitespace().any(|w| w == "mtu")),
        });
    }

    fn route_step(&mut self, journey: u64, step: &mut Step) {
        let netns = step.netns;
        // The mark is the lookup's own (the flow's): a rule may have set
        // it since the packet's last site.
        let mark = step.mark;
        let iif = match self.seen.get(&journey) {
            Some((ns, dev)) if *ns == netns => dev.to_string(),
            // Not received in this namespace: locally generated.
            _ => "lo".to_string(),
        };
        let Some(ns) = self.netns_ref(netns) else {
            return;
        };
        let Detail::Route(r) = &mut step.detail else {
            return;
        };
        let pktpath_core::model::RouteLookup {
            family,
            table,
            error,
            dst,
            src,
            gateway,
            out_dev,
            kind,
            route,
            prefix,
            metric,
            protocol,
            rule,
            unroutable,
        } = &mut **r;
        let (Ok(d), Some(t)) = (dst.parse::<IpAddr>(), table_id(table)) else {
            return;
        };
        let v6 = *family == 6;
        let expect = match (kind.as_deref(), error.is_some()) {
            (Some(k), _) => Expect::Kind(k),
            (None, true) => Expect::ThrowOrNothing,
            (None, false) => Expect::Found,
        };
        let packet = Packet {
            src: src.parse().unwrap_or(if v6 {
                std::net::Ipv6Addr::UNSPECIFIED.into()
            } else {
                std::net::Ipv4Addr::UNSPECIFIED.into()
            }),
            dst: d,
            iif,
            mark,
        };
        let (gw, dev) = (gateway.clone(), out_dev.clone());
        let mut found = None;
        for stale in [false, true] {
            let Some(snap) = self.snapshot(&ns, v6, stale) else {
                return;
            };
            if let Ok(r) = resolve(&snap.routes, t, d, expect, gw.as_deref(), dev.as_deref()) {
                let chosen = rule_for(&snap.rules, t, &packet)
                    .filter(|r| t != 254 && t != 255 || !r.is_default())
                    .map(|r| r.text.clone());
                let last = r.is_none() && is_last(&snap.rules, &snap.routes, t, &packet);
                found = Some((r.cloned(), chosen, last));
                break;
            }
        }
        let Some((r, chosen, last)) = found else {
            return;
        };
        *rule = chosen;
        match r {
            Some(r) => {
                *kind = Some(r.kind.clone());
                *route = Some(r.text);
                *prefix = Some(r.prefix.text());
                *metric = r.metric;
                *protocol = r.protocol;
                if r.kind == "throw" {
                    *error = Some(format!(
                        "throw route {}: back to the rules, the next one is tried",
                        r.prefix.text()
                    ));
                }
            }
            None => {
                *kind = None;
                *unroutable = last;
                *error = Some(if last {
                    format!("network unreachable: no route to {dst} in table {table}")
                } else {
                    format!("no route to {dst} in table {table}, the next rule is tried")
                });
            }
        }
    }

    /// Reads sysctl `net.ipv4.conf.DEV.rp_filter` in `ns`.
    fn rp_filter(ns: &NetnsRef, dev: &str) -> Option<u32> {
        run_in(
            ns,
            "cat",
            &[&format!("/proc/sys/net/ipv4/conf/{dev}/rp_filter")],
        )
        .ok()?
        .trim()
        .parse()
        .ok()
    }

    fn rp_filter_step(&mut self, step: &mut Step) {
        let (Some(dev), Some(flow)) = (step.dev.clone(), step.flow()) else {
            return;
        };
        let Some(ns) = self.netns_ref(step.netns) else {
            return;
        };
        let Ok(src) = flow.src.parse::<IpAddr>() else {
            return;
        };
        let here = Self::rp_filter(&ns, &dev);
        let all = Self::rp_filter(&ns, "all");
        let back = self
            .snapshot(&ns, src.is_ipv6(), false)
            .and_then(|s| best_route(&s.routes, 254, src).cloned());
        let Detail::Drop(d) = &mut step.detail else {
            return;
        };
        d.found = Some(Cause::RpFilter {
            netns: ns.name.clone(),
            dev: dev.to_string(),
            src: src.to_string(),
            here,
            all,
            back: back.map(|r| RouteBack {
                route: r.text.clone(),
                devs: r.devs.iter().map(|d| d.to_string()).collect(),
            }),
        });
    }
}

impl super::Enricher for Routes {
    fn step(&mut self, journey: u64, step: &mut Step) {
        self.annotate(journey, step);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES_JSON: &str = r#"[{"dst":"default","gateway":"10.9.1.254","dev":"in0","flags":[]},
{"dst":"10.9.1.0/24","dev":"in0","protocol":"kernel","scope":"link","prefsrc":"10.9.1.1","flags":[]},
{"dst":"10.9.2.0/24","gateway":"10.9.2.2","dev":"out0","table":"100","protocol":"static","metric":5,"flags":[]},
{"type":"blackhole","dst":"10.9.9.0/24","flags":[]},
{"type":"throw","dst":"10.9.7.0/24","table":"100","flags":[]},
{"type":"local","dst":"10.9.1.1","dev":"in0","table":"local","protocol":"kernel","scope":"host","prefsrc":"10.9.1.1","flags":[]}]"#;
    const ROUTES_TEXT: &str = "default via 10.9.1.254 dev in0 \n\
10.9.1.0/24 dev in0 proto kernel scope link src 10.9.1.1 \n\
10.9.2.0/24 via 10.9.2.2 dev out0 table 100 proto static metric 5 \n\
blackhole 10.9.9.0/24 \n\
throw 10.9.7.0/24 table 100 \n\
local 10.9.1.1 dev in0 table local proto kernel scope host src 10.9.1.1 \n";
    const RULES_JSON: &str = r#"[{"priority":0,"src":"all","table":"local"},{"priority":100,"src":"10.9.1.2","table":"100"},{"priority":200,"not":null,"src":"10.1.0.0","srclen":16,"fwmark":"0x5","fwmask":"0xf","iif":"in0","table":"200"},{"priority":32766,"src":"all","table":"main"},{"priority":32767,"src":"all","table":"default"}]"#;
    const RULES_TEXT: &str = "0:\tfrom all lookup local\n100:\tfrom 10.9.1.2 lookup 100\n\
200:\tnot from 10.1.0.0/16 fwmark 0x5/0xf iif in0 lookup 200\n\
32766:\tfrom all lookup main\n32767:\tfrom all lookup default\n";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn pkt(src: &str, dst: &str) -> Packet {
        Packet {
            src: ip(src),
            dst: ip(dst),
            iif: "in0".into(),
            mark: 0,
        }
    }

    #[test]
    fn prefixes() {
        let p = Prefix::parse("10.1.0.0/16", None, false).unwrap();
        assert!(p.contains(ip("10.1.200.3")));
        assert!(!p.contains(ip("10.2.0.1")));
        assert!(!p.contains(ip("::1")));
        assert_eq!(p.text(), "10.1.0.0/16");
        assert_eq!(Prefix::parse("10.1.0.0", Some(16), false), Some(p));
        let d = Prefix::parse("default", None, true).unwrap();
        assert!(d.contains(ip("2001:db8::1")) && d.text() == "default");
        let h = Prefix::parse("2001:db8::/64", None, true).unwrap();
        assert!(h.contains(ip("2001:db8::5")) && !h.contains(ip("2001:db9::5")));
        assert_eq!(
            Prefix::parse("10.1.1.1", None, false).unwrap().text(),
            "10.1.1.1"
        );
    }

    #[test]
    fn longest_prefix_in_the_table_used() {
        let routes = parse_routes(ROUTES_JSON, ROUTES_TEXT, false);
        assert_eq!(routes.len(), 6);
        let r = best_route(&routes, 254, ip("10.9.9.9")).unwrap();
        assert_eq!(
            (r.kind.as_str(), r.text.as_str()),
            ("blackhole", "blackhole 10.9.9.0/24")
        );
        let r = best_route(&routes, 254, ip("8.8.8.8")).unwrap();
        assert_eq!(r.text, "default via 10.9.1.254 dev in0");
        // Local is merged into main.
        assert_eq!(
            best_route(&routes, 254, ip("10.9.1.1")).unwrap().kind,
            "local"
        );
        let r = best_route(&routes, 100, ip("10.9.2.2")).unwrap();
        assert_eq!(
            (r.metric, r.protocol.as_deref(), r.text.as_str()),
            (
                Some(5),
                Some("static"),
                "10.9.2.0/24 via 10.9.2.2 dev out0 table 100 proto static metric 5"
            )
        );
        assert!(best_route(&routes, 100, ip("10.9.3.1")).is_none());
        // What the kernel said picks or refuses the cached route.
        assert!(resolve(
            &routes,
            254,
            ip("10.9.9.9"),
            Expect::Kind("blackhole"),
            None,
            None
        )
        .unwrap()
        .is_some());
        assert!(resolve(&routes, 254, ip("10.9.9.9"), Expect::Found, None, None).is_err());
        assert!(resolve(
            &routes,
            100,
            ip("10.9.3.1"),
            Expect::ThrowOrNothing,
            None,
            None
        )
        .unwrap()
        .is_none());
        assert_eq!(
            resolve(
                &routes,
                100,
                ip("10.9.7.1"),
                Expect::ThrowOrNothing,
                None,
                None
            )
            .unwrap()
            .unwrap()
            .kind,
            "throw"
        );
        assert!(resolve(
            &routes,
            100,
            ip("10.9.2.2"),
            Expect::Found,
            Some("10.9.2.3"),
            None
        )
        .is_err());
    }

    #[test]
    fn the_rule_that_chose_the_table() {
        let rules = parse_rules(RULES_JSON, RULES_TEXT, false);
        assert_eq!(rules.len(), 5);
        let r = rule_for(&rules, 100, &pkt("10.9.1.2", "10.9.2.2")).unwrap();
        assert_eq!(r.text, "100: from 10.9.1.2 lookup 100");
        assert!(rule_for(&rules, 100, &pkt("10.9.1.3", "10.9.2.2")).is_none());
        // not (from 10.1/16 and fwmark 5/0xf and iif in0)
        assert!(rule_for(&rules, 200, &pkt("10.9.1.3", "10.9.2.2")).is_some());
        let mut marked = pkt("10.1.3.4", "10.9.2.2");
        marked.mark = 0x15;
        assert!(rule_for(&rules, 200, &marked).is_none());
        assert_eq!(rules[2].fwmark, Some((5, 0xf)));
        assert!(rules[0].is_default() && !rules[1].is_default());
        let routes = parse_routes(ROUTES_JSON, ROUTES_TEXT, false);
        // Nothing in local: main comes next.
        assert!(!is_last(&rules, &routes, 255, &pkt("10.9.1.2", "10.9.2.2")));
        let no_default = &routes[1..];
        assert!(is_last(
            &rules,
            no_default,
            254,
            &pkt("10.9.1.2", "10.9.5.5")
        ));
    }
}
