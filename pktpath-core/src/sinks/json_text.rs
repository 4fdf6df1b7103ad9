//! The JSON text of journeys and steps, written straight into a buffer.
//!
//! The text is byte for byte what `serde_json` makes of the derived
//! `Serialize` (tests below hold the two together; `Deserialize` reads
//! both). It is written by hand because a journey's JSON is most of a sink's
//! cost per step: keys are constants here instead of being escaped on every
//! call, strings are copied after one scan that finds nothing to escape,
//! numbers go through `itoa`. The step details that are rare per packet
//! (rules, bridges, hooks...) and the journey's end are left to serde.
//!
//! A field added to `Step`, `RouteLookup` or `Journey` must be added here
//! too: `same_text_as_serde` fails until it is.

use serde::Serialize;

use crate::journey::Journey;
use crate::location::{Location, SourceLinks};
use crate::model::{Detail, RouteLookup, SiteKind, Step};

/// Appends `j` as one JSON object (no newline).
pub fn journey(out: &mut Vec<u8>, j: &Journey) {
    journey_located(out, j, None)
}

/// `journey`, each step with its `location` in the kernel's source when
/// `links` is given (derived, not part of the step: captures that embed a
/// journey's JSON, like pcapng's, leave it out).
pub fn journey_located(out: &mut Vec<u8>, j: &Journey, links: Option<&SourceLinks>) {
    out.extend_from_slice(b"{\"id\":");
    int(out, j.id);
    if let Some(p) = &j.packet {
        out.extend_from_slice(b",\"packet\":");
        string(out, p);
    }
    out.extend_from_slice(b",\"len\":");
    int(out, j.len);
    out.extend_from_slice(b",\"duration_ns\":");
    int(out, j.duration_ns);
    out.extend_from_slice(b",\"end\":");
    serde(out, &j.end);
    out.extend_from_slice(b",\"steps\":[");
    for (i, s) in j.steps.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        step_located(out, s, links);
    }
    out.push(b']');
    if !j.caveats.is_empty() {
        out.extend_from_slice(b",\"caveats\":[");
        for (i, c) in j.caveats.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            string(out, c);
        }
        out.push(b']');
    }
    if let Some(a) = j.about {
        out.extend_from_slice(b",\"about\":");
        int(out, a);
    }
    out.push(b'}');
}

/// Appends `s` as one JSON object.
pub fn step(out: &mut Vec<u8>, s: &Step) {
    step_located(out, s, None)
}

/// `step`, with its `location` (see `journey_located`) when `links` is
/// given.
pub fn step_located(out: &mut Vec<u8>, s: &Step, links: Option<&SourceLinks>) {
    out.extend_from_slice(b"{\"ts_ns\":");
    int(out, s.ts_ns);
    out.extend_from_slice(b",\"site\":");
    string(out, &s.site);
    out.extend_from_slice(match s.kind {
        SiteKind::Tracepoint => b",\"kind\":\"tracepoint\"",
        SiteKind::Function => b",\"kind\":\"function\"",
        SiteKind::Return => b",\"kind\":\"return\"",
    });
    out.extend_from_slice(b",\"subsystem\":");
    string(out, &s.subsystem);
    if let Some(src) = &s.source {
        out.extend_from_slice(b",\"source\":");
        string(out, src);
    }
    out.extend_from_slice(b",\"netns\":");
    int(out, s.netns);
    out.extend_from_slice(b",\"netns_name\":");
    string(out, &s.netns_name);
    if let Some(dev) = &s.dev {
        out.extend_from_slice(b",\"dev\":");
        string(out, dev);
    }
    out.extend_from_slice(b",\"ifindex\":");
    int(out, s.ifindex);
    out.extend_from_slice(b",\"len\":");
    int(out, s.len);
    out.extend_from_slice(b",\"mark\":");
    int(out, s.mark);
    out.extend_from_slice(b",\"cpu\":");
    int(out, s.cpu);
    out.extend_from_slice(b",\"skb\":\"");
    hex(out, s.skb);
    out.push(b'"');
    if s.correlated {
        out.extend_from_slice(b",\"correlated\":true");
    }
    if let Some(h) = &s.headers {
        out.extend_from_slice(b",\"headers\":");
        string(out, h);
    }
    if let Some(ct) = &s.ct {
        out.extend_from_slice(b",\"ct\":");
        serde(out, ct);
    }
    if let Some(v) = s.vlan {
        out.extend_from_slice(b",\"vlan\":");
        int(out, v);
    }
    out.extend_from_slice(b",\"detail\":");
    detail(out, &s.detail);
    if let Some(links) = links {
        out.extend_from_slice(b",\"location\":");
        location(out, s, links);
    }
    out.push(b'}');
}

/// Where in the kernel's source `s` was handled, and its links on
/// `links`' release (docs/json.md, "Location").
fn location(out: &mut Vec<u8>, s: &Step, links: &SourceLinks) {
    #[derive(Serialize)]
    struct Located<'a> {
        #[serde(flatten)]
        at: &'a Location,
        #[serde(skip_serializing_if = "Option::is_none")]
        url: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        ident_url: Option<String>,
    }
    let at = links.locate(s);
    let (ident_url, url) = at.urls(links);
    serde(
        out,
        &Located {
            at: &at,
            url,
            ident_url,
        },
    );
}

/// The details most steps have by hand, the others through serde.
fn detail(out: &mut Vec<u8>, d: &Detail) {
    match d {
        Detail::None => out.extend_from_slice(b"{\"type\":\"none\"}"),
        Detail::Free { location } => {
            out.extend_from_slice(b"{\"type\":\"free\"");
            if let Some(l) = location {
                out.extend_from_slice(b",\"location\":");
                string(out, l);
            }
            out.push(b'}');
        }
        Detail::Xmit { rc } => {
            out.extend_from_slice(b"{\"type\":\"xmit\",\"rc\":");
            int(out, *rc);
            out.push(b'}');
        }
        Detail::Deliver { bytes } => {
            out.extend_from_slice(b"{\"type\":\"deliver\",\"bytes\":");
            int(out, *bytes);
            out.push(b'}');
        }
        Detail::Drop(d) => {
            let crate::model::DropInfo {
                reason,
                code,
                location,
                found,
            } = &**d;
            out.extend_from_slice(b"{\"type\":\"drop\",\"reason\":");
            string(out, reason);
            out.extend_from_slice(b",\"code\":");
            int(out, *code);
            opt_string(out, b",\"location\":", location);
            if let Some(found) = found {
                // In words as before; the data after.
                let (explanation, hint) = crate::diagnosis::words(found);
                opt_string(out, b",\"explanation\":", &Some(explanation));
                opt_string(out, b",\"hint\":", &hint);
                out.extend_from_slice(b",\"found\":");
                serde(out, found);
            }
            out.push(b'}');
        }
        Detail::Route(r) => route(out, r),
        other => serde(out, other),
    }
}

fn route(out: &mut Vec<u8>, r: &RouteLookup) {
    out.extend_from_slice(b"{\"type\":\"route\",\"family\":");
    int(out, r.family);
    out.extend_from_slice(b",\"table\":");
    string(out, &r.table);
    opt_string(out, b",\"error\":", &r.error);
    out.extend_from_slice(b",\"dst\":");
    string(out, &r.dst);
    out.extend_from_slice(b",\"src\":");
    string(out, &r.src);
    opt_string(out, b",\"gateway\":", &r.gateway);
    opt_string(out, b",\"out_dev\":", &r.out_dev);
    opt_string(out, b",\"kind\":", &r.kind);
    opt_string(out, b",\"route\":", &r.route);
    opt_string(out, b",\"prefix\":", &r.prefix);
    if let Some(m) = r.metric {
        out.extend_from_slice(b",\"metric\":");
        int(out, m);
    }
    opt_string(out, b",\"protocol\":", &r.protocol);
    opt_string(out, b",\"rule\":", &r.rule);
    if r.unroutable {
        out.extend_from_slice(b",\"unroutable\":true");
    }
    out.push(b'}');
}

fn opt_string(out: &mut Vec<u8>, key: &[u8], v: &Option<String>) {
    if let Some(v) = v {
        out.extend_from_slice(key);
        string(out, v);
    }
}

/// A JSON string: copied as is when nothing in it needs escaping (the
/// usual case: names, addresses, words), else escaped by serde_json.
fn string(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        serde(out, s);
    }
}

fn int(out: &mut Vec<u8>, v: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// `0x` and lower-case hex digits without leading zeros, as `{:#x}`.
fn hex(out: &mut Vec<u8>, v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(b"0x");
    let n = (16 - v.leading_zeros() as usize / 4).max(1);
    for i in (0..n).rev() {
        out.push(DIGITS[(v >> (4 * i)) as usize & 0xf]);
    }
}

/// What is not written by hand. Writing into a Vec cannot fail and the
/// types have no maps with non-string keys: the error is not possible.
fn serde(out: &mut Vec<u8>, v: &(impl Serialize + ?Sized)) {
    serde_json::to_writer(out, v).expect("serializing into memory");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::Conntrack;
    use crate::diagnosis::End;
    use crate::model::{test_step, DropInfo, RuleMatch};

    /// Every field set (so that a field missing here shows), and a few
    /// strings that need escaping.
    fn full(detail: Detail) -> Step {
        Step {
            source: Some("net/core/dev.c".into()),
            headers: Some("10.0.0.1 > 10.0.0.2 \"quoted\"\tTCP".into()),
            correlated: true,
            ct: Some(Box::new(
                serde_json::from_str::<Conntrack>(r#"{"state":"new","reply":true}"#).unwrap(),
            )),
            vlan: Some(10),
            kind: SiteKind::Function,
            skb: 0xffff_8880_0123_4500,
            mark: 7,
            cpu: 1,
            ..test_step(12, "ip_rcv", "ns é\n", detail)
        }
    }

    fn details() -> Vec<Detail> {
        let route = RouteLookup {
            family: 4,
            table: "main".into(),
            error: Some("no match".into()),
            dst: "10.0.0.2".into(),
            src: "10.0.0.1".into(),
            gateway: Some("10.0.0.254".into()),
            out_dev: Some("eth0".into()),
            kind: Some("unicast".into()),
            route: Some("default via 10.0.0.254 dev eth0".into()),
            prefix: Some("default".into()),
            metric: Some(100),
            protocol: Some("static".into()),
            rule: Some("from all lookup main".into()),
            unroutable: true,
        };
        vec![
            Detail::None,
            Detail::Free { location: None },
            Detail::Free {
                location: Some("udp_recvmsg+0x42".into()),
            },
            Detail::Xmit { rc: -16 },
            Detail::Deliver { bytes: 64 },
            Detail::Drop(Box::new(DropInfo {
                reason: "NETFILTER_DROP".into(),
                code: 6,
                location: Some("nf_hook_slow+0x9c".into()),
                found: Some(crate::model::Cause::NftRule {
                    family: "inet".into(),
                    table: "t".into(),
                    chain: "c".into(),
                    handle: Some(3),
                    rule: Some("a \"drop\" rule".into()),
                }),
            })),
            Detail::Drop(Box::new(DropInfo {
                reason: "NO_SOCKET".into(),
                code: 3,
                location: None,
                found: None,
            })),
            Detail::Route(Box::new(route)),
            Detail::Route(Box::default()),
            Detail::Rule(Box::new(RuleMatch {
                family: "inet".into(),
                table: "t".into(),
                chain: "c".into(),
                hook: None,
                priority: None,
                what: "rule".into(),
                handle: Some(4),
                rule: Some("tcp dport 80 drop".into()),
                iptables: None,
                verdict: "drop".into(),
            })),
            Detail::Args {
                args: vec![("a".into(), "1".into())],
            },
        ]
    }

    #[test]
    fn same_text_as_serde() {
        for d in details() {
            for s in [full(d.clone()), test_step(0, "consume_skb", "", d.clone())] {
                let mut ours = Vec::new();
                step(&mut ours, &s);
                let mut ours: serde_json::Value = serde_json::from_slice(&ours).unwrap();
                // What was found is also said in words, for people (and
                // for readers of the JSON before `found`).
                if let Detail::Drop(d) = &s.detail {
                    if let Some(found) = &d.found {
                        let detail = ours["detail"].as_object_mut().unwrap();
                        let (what, hint) = crate::diagnosis::words(found);
                        assert_eq!(detail.remove("explanation"), Some(what.into()));
                        assert_eq!(detail.remove("hint"), hint.map(Into::into));
                    }
                }
                let theirs: serde_json::Value = serde_json::to_value(&s).unwrap();
                assert_eq!(ours, theirs);
            }
        }
        // Details without words of their own (those are checked above).
        let steps: Vec<Step> = details()
            .into_iter()
            .filter(|d| !matches!(d, Detail::Drop(d) if d.found.is_some()))
            .map(full)
            .collect();
        let mut j = Journey::from_steps(3, steps, true);
        for packet in [None, Some("10.0.0.1 > 10.0.0.2 UDP 1 > 2".to_string())] {
            let merged = packet.is_some();
            j.packet = packet;
            j.end = End::Delivered {
                netns: "ns\"1".into(),
                socket: merged.then(|| "UDP socket *:53 of \"d\" (pid 1)".into()),
                merged,
            };
            j.caveats = if merged {
                vec![crate::journey::RING_LOSS.into(), "a \"quoted\" one".into()]
            } else {
                Vec::new()
            };
            j.about = merged.then_some(2);
            let mut ours = Vec::new();
            journey(&mut ours, &j);
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&serde_json::to_vec(&j).unwrap())
            );
            let back: Journey = serde_json::from_slice(&ours).unwrap();
            assert_eq!(back, j);
        }
    }

    #[test]
    fn hex_as_format() {
        for v in [0, 1, 0xf, 0x10, 0xffff_8880_1000_0000, u64::MAX] {
            let mut ours = Vec::new();
            hex(&mut ours, v);
            assert_eq!(String::from_utf8(ours).unwrap(), format!("{v:#x}"));
        }
    }
}
