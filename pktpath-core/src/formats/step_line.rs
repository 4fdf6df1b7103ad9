//! The step line: one step as tab-separated fields, the form of pcapng
//! comments and mbuf-trace strings (the Lua dissector splits it too),
//! written here and read back here; and the free-form strings of FreeBSD's
//! mbuf_trace, shown as given.

use crate::diagnosis::End;
use crate::journey::Journey;
use crate::model::{Detail, SiteKind, Step};

/// First comment line of every record: "pktpath journey #ID: END".
pub const HEADER_PREFIX: &str = "pktpath journey #";

/// One step as a line of tab-separated fields, the form of both pcapng
/// comments and mbuf-trace strings (the Lua dissector splits on tabs):
/// index, +offset ms, netns, device, subsystem, site, source, detail.
/// Empty fields are "-".
pub fn step_line(i: usize, t0: u64, s: &Step) -> String {
    let mut line = String::new();
    write_step_line(&mut line, i, t0, s);
    line
}

/// `step_line`, appended to `out` (the pcapng sink writes every line of a
/// journey into one buffer).
pub(super) fn write_step_line(out: &mut String, i: usize, t0: u64, s: &Step) {
    let field = |out: &mut String, v: &str| {
        out.push('\t');
        if v.is_empty() {
            out.push('-');
        } else if v.bytes().any(|b| b == b'\t' || b == b'\n') {
            out.push_str(&v.replace(['\t', '\n'], " "));
        } else {
            out.push_str(v);
        }
    };
    // Milliseconds with 3 decimals, rounded, in integers (float
    // formatting, and even `write!`, are a large share of a line's cost).
    let us = (s.ts_ns.saturating_sub(t0) + 500) / 1000;
    let mut n = itoa::Buffer::new();
    out.push_str(n.format(i));
    out.push_str("\t+");
    out.push_str(n.format(us / 1000));
    out.push('.');
    let frac = us % 1000;
    out.push_str(&"00"[..2 - (frac >= 10) as usize - (frac >= 100) as usize]);
    out.push_str(n.format(frac));
    out.push_str("ms");
    field(out, &s.netns_name);
    field(out, s.dev.as_deref().unwrap_or(""));
    field(out, &s.subsystem);
    field(out, &s.site);
    field(out, s.source.as_deref().unwrap_or(""));
    field(out, &s.describe());
}

/// The journey's first comment line.
pub fn header_line(j: &Journey) -> String {
    let note = if j.caveats.is_empty() {
        String::new()
    } else {
        format!(" ({})", j.caveats.join("; "))
    };
    format!("{HEADER_PREFIX}{}: {}{note}", j.id, j.end.line())
}

/// The path as comment lines: the header, then one line per step.
pub fn comments(j: &Journey) -> Vec<String> {
    let t0 = j.steps.first().map_or(0, |s| s.ts_ns);
    std::iter::once(header_line(j))
        .chain(j.steps.iter().enumerate().map(|(i, s)| step_line(i, t0, s)))
        .collect()
}

/// A step from one line; `t0` is the record's time (ns).
pub fn parse_step(line: &str, t0: u64) -> Step {
    let f: Vec<&str> = line.split('\t').collect();
    let field = |i: usize| match f.get(i).copied() {
        Some("-") | None => None,
        Some(v) => Some(v.to_string()),
    };
    let offset_ns = f
        .get(1)
        .and_then(|t| t.strip_prefix('+')?.strip_suffix("ms")?.parse::<f64>().ok())
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
        .map(|ms| (ms * 1e6) as u64);
    let ours = f.len() == 8 && f[0].parse::<u64>().is_ok() && offset_ns.is_some();
    let (site, detail) = if ours {
        (f[5].to_string(), field(7))
    } else {
        // Not ours (FreeBSD): the whole string is the site, as given.
        (line.to_string(), None)
    };
    Step {
        ts_ns: t0.saturating_add(offset_ns.unwrap_or(0)),
        site: site.into(),
        kind: SiteKind::Function,
        subsystem: if ours { field(4) } else { None }
            .unwrap_or_default()
            .into(),
        source: if ours { field(6) } else { None }.map(Into::into),
        netns: 0,
        netns_name: if ours { field(2) } else { None }
            .unwrap_or_default()
            .into(),
        dev: if ours { field(3) } else { None }.map(Into::into),
        ifindex: 0,
        len: 0,
        mark: 0,
        cpu: 0,
        skb: 0,
        correlated: false,
        headers: None,
        ct: None,
        vlan: None,
        detail: match detail {
            Some(text) => Detail::Text { text },
            None => Detail::None,
        },
        packet: None,
    }
}

/// A journey from a record's text lines (an optional pktpath header line,
/// then one line per step) and its Ethernet frame.
pub fn journey(id: u64, t0: u64, lines: &[String], frame: &[u8], orig_len: u32) -> Journey {
    let mut end = None;
    let mut id = id;
    let mut steps = Vec::new();
    for line in lines {
        if let Some(rest) = line.strip_prefix(HEADER_PREFIX) {
            if let Some((n, text)) = rest.split_once(": ") {
                id = n.parse().unwrap_or(id);
                end = Some(text.to_string());
            }
            continue;
        }
        steps.push(parse_step(line, t0));
    }
    if let Some(s) = steps.first_mut() {
        s.packet = Some((false, frame.into()));
    }
    let flow = crate::packet::decode(frame, false);
    steps.sort_by_key(|s| s.ts_ns);
    let last = steps.last().map(|s| s.site.clone());
    Journey {
        id,
        packet: flow.as_ref().map(|f| f.line()),
        len: flow
            .and_then(|f| f.ip_len)
            .unwrap_or(orig_len.saturating_sub(14)),
        duration_ns: match (steps.first(), steps.last()) {
            (Some(a), Some(b)) => b.ts_ns - a.ts_ns,
            _ => 0,
        },
        end: End::Recorded {
            text: end.unwrap_or_else(|| match last {
                Some(site) => format!("trace ends at {site}"),
                None => "no path recorded (a plain packet capture)".into(),
            }),
        },
        steps,
        caveats: Vec::new(),
        about: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::test_step;

    #[test]
    fn our_lines_round_trip() {
        let mut s = test_step(3_000_000, "ip_forward", "router", Detail::None);
        s.source = Some("net/ipv4/ip_forward.c".into());
        let back = parse_step(&step_line(4, 1_000_000, &s), 0);
        assert_eq!(&*back.site, "ip_forward");
        assert_eq!(&*back.netns_name, "router");
        assert_eq!(back.dev.as_deref(), Some("eth0"));
        assert_eq!(back.source.as_deref(), Some("net/ipv4/ip_forward.c"));
        assert_eq!(back.ts_ns, 2_000_000);
        assert_eq!(back.describe(), s.describe());
    }

    #[test]
    fn freebsd_strings_are_shown_as_given() {
        let s = parse_step("ip_input netinet/ip_input.c:467", 5);
        assert_eq!(&*s.site, "ip_input netinet/ip_input.c:467");
        assert_eq!(s.ts_ns, 5);
        let j = journey(9, 5, &["ether_input".into(), "ip_input".into()], &[], 60);
        assert_eq!(j.end.line(), "trace ends at ip_input");
        assert_eq!(j.len, 46);
    }
}
