//! The report: one self-contained HTML file that draws each journey over
//! the network it crossed, its steps as a timeline in subsystem lanes, and
//! all journeys at once (the distinct paths with counts, the subsystem ->
//! subsystem transitions), with a search; and the same graphs as text
//! (`graph`: DOT, Mermaid).
//!
//! Aggregates are computed here; the page only draws. Its data is
//! compressed (gzip, base64) and decoded by the browser itself
//! (DecompressionStream): nothing is fetched, and a content-security
//! policy forbids every load (scripts and styles run by their hashes
//! only). Strings from packets, rules and files reach the page only as
//! data and are inserted as text, never as markup.

pub mod graph;
pub mod paths;
pub mod topology;

use std::collections::HashMap;
use std::io::Write;

use base64::Engine;
use serde::Serialize;
use sha2::Digest;

use crate::diagnosis::End;
use crate::journey::Journey;
use crate::location::SourceLinks;
use crate::model::SiteKind;
use paths::{DistinctPath, Transition};
use topology::Topology;

const PAGE: &str = include_str!("page.html");
const STYLE: &str = include_str!("page.css");
const SCRIPT: &str = include_str!("page.js");

/// At most this many function -> function transitions go in the page
/// (the most taken): the graph on demand stays readable and small.
const FUNCTION_EDGES: usize = 400;

/// Strings interned: each journey's steps repeat a few dozen of them.
#[derive(Default)]
struct Strings {
    list: Vec<String>,
    index: HashMap<String, u32>,
}

impl Strings {
    fn id(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.list.len() as u32;
        self.list.push(s.to_string());
        self.index.insert(s.to_string(), i);
        i
    }

    fn opt(&mut self, s: Option<&str>) -> i64 {
        s.map_or(-1, |s| i64::from(self.id(s)))
    }
}

/// A step as the page reads it: [time since the journey's first step in
/// µs, netns, device, what happened (the step's subsystem), site, what it
/// said, source place, source link, lane (the source tree's subsystem),
/// flags (1: tied by time and addresses, 2: a function, 4: evidence of
/// the end)]; strings as indices (-1: none).
type PageStep = (f64, u32, i64, u32, u32, u32, i64, i64, u32, u8);

#[derive(Serialize)]
struct PageJourney {
    id: u64,
    packet: i64,
    len: u32,
    /// The end in words, and its kind: dropped, benign, delivered,
    /// transmitted, consumed, recorded, unknown.
    end: u32,
    kind: &'static str,
    hint: i64,
    /// Where it ended (a namespace), for the drawing.
    end_netns: i64,
    /// Its distinct path (index into `paths`).
    path: usize,
    /// Hops between the topology's nodes: [from, out dev, to, in dev].
    hops: Vec<[i64; 4]>,
    caveats: Vec<u32>,
    steps: Vec<PageStep>,
}

#[derive(Serialize)]
struct Page<'a> {
    title: &'a str,
    source: &'a str,
    strings: Vec<String>,
    topology: &'a Topology,
    journeys: Vec<PageJourney>,
    paths: &'a [DistinctPath],
    subsystems: &'a [Transition],
    functions: &'a [Transition],
}

fn kind(end: &End) -> &'static str {
    match end {
        End::Dropped { benign: false, .. } => "dropped",
        End::Dropped { .. } => "benign",
        End::Delivered { .. } => "delivered",
        End::Transmitted { .. } => "transmitted",
        End::Consumed { .. } => "consumed",
        End::Recorded { .. } if end.is_real_drop() => "dropped",
        End::Recorded { .. } => "recorded",
        End::Unknown { .. } => "unknown",
    }
}

fn end_netns(end: &End) -> Option<&str> {
    match end {
        End::Dropped { netns, .. }
        | End::Delivered { netns, .. }
        | End::Transmitted { netns, .. }
        | End::Consumed { netns, .. } => Some(netns),
        _ => None,
    }
}

/// What a report is made of, before it is written.
pub struct Report<'a> {
    /// Shown as the page's title (a file name, "live trace").
    pub title: &'a str,
    /// Where the journeys came from, in words.
    pub source: &'a str,
    pub journeys: &'a [Journey],
    /// The network as recorded when the trace began, when it was: its
    /// devices and links are drawn too, not only what the journeys crossed.
    pub network: Option<&'a crate::network::Network>,
    /// The IMUNES lab's topology file, when given: its layout and the
    /// nodes and links no packet reached.
    pub lab: Option<&'a crate::imunes::LabTopology>,
    pub links: SourceLinks,
}

impl Report<'_> {
    /// The page's data as JSON.
    fn data(&self) -> serde_json::Result<Vec<u8>> {
        let mut topology = topology::from_journeys(self.journeys);
        if let Some(n) = self.network {
            topology::with_network(&mut topology, n);
        }
        if let Some(lab) = self.lab {
            topology::with_lab(&mut topology, lab);
        }
        let topology = &topology;
        let distinct = paths::distinct(self.journeys);
        let path_of: HashMap<u64, usize> = distinct
            .iter()
            .enumerate()
            .flat_map(|(i, p)| p.journeys.iter().map(move |&id| (id, i)))
            .collect();
        let subsystems = paths::transitions(self.journeys, |s| {
            crate::location::Location::of(s, None).subsystem
        });
        let mut functions = paths::transitions(self.journeys, |s| &s.site);
        functions.truncate(FUNCTION_EDGES);
        let mut st = Strings::default();
        let journeys = self
            .journeys
            .iter()
            .map(|j| {
                let path = path_of.get(&j.id).copied().unwrap_or(0);
                self.page_journey(j, path, topology, &mut st)
            })
            .collect();
        serde_json::to_vec(&Page {
            title: self.title,
            source: self.source,
            strings: std::mem::take(&mut st.list),
            topology,
            journeys,
            paths: &distinct,
            subsystems: &subsystems,
            functions: &functions,
        })
    }

    fn page_journey(
        &self,
        j: &Journey,
        path: usize,
        topology: &Topology,
        st: &mut Strings,
    ) -> PageJourney {
        let t0 = j.steps.first().map_or(0, |s| s.ts_ns);
        let evidence: &[usize] = match &j.end {
            End::Dropped { evidence, .. } => evidence,
            _ => &[],
        };
        // Headers and conntrack state where they change: NAT rewrites and
        // encapsulation stand out (as on the terminal).
        let mut last_headers: Option<&str> = None;
        let mut last_ct: Option<String> = None;
        let steps = j
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let at = self.links.locate(s);
                let place = match (&at.file, at.line) {
                    (Some(f), Some(l)) => Some(format!("{f}:{l}")),
                    (Some(f), None) => Some(f.to_string()),
                    (None, _) => at.function.as_deref().map(str::to_string),
                };
                let (ident, source) = at.urls(&self.links);
                let url = source.or(ident);
                let mut what = s.describe().into_owned();
                if let Some(h) = s.headers.as_deref().filter(|h| Some(*h) != last_headers) {
                    let changed = if last_headers.is_some() { "now " } else { "" };
                    what = if what.is_empty() {
                        format!("[{changed}{h}]")
                    } else {
                        format!("{what} [{changed}{h}]")
                    };
                    last_headers = Some(h);
                }
                if let Some(ct) =
                    s.ct.as_ref()
                        .map(|c| c.line())
                        .filter(|c| Some(c) != last_ct.as_ref())
                {
                    what.push_str(&format!(" [{ct}]"));
                    last_ct = Some(ct);
                }
                let flags = u8::from(s.correlated)
                    | if s.kind == SiteKind::Tracepoint { 0 } else { 2 }
                    | if evidence.contains(&i) { 4 } else { 0 };
                (
                    s.ts_ns.saturating_sub(t0) as f64 / 1e3,
                    st.id(&s.netns_name),
                    st.opt(s.dev.as_deref()),
                    st.id(&s.subsystem),
                    st.id(&s.site),
                    st.id(&what),
                    st.opt(place.as_deref()),
                    st.opt(url.as_deref()),
                    st.id(at.subsystem),
                    flags,
                )
            })
            .collect();
        let hops = topology::node_hops(j, topology)
            .into_iter()
            .map(|h| {
                [
                    i64::from(st.id(&h.from)),
                    st.opt(h.out.as_deref()),
                    i64::from(st.id(&h.to)),
                    st.opt(h.into.as_deref()),
                ]
            })
            .collect();
        let hint = match &j.end {
            End::Dropped { hint, .. } => st.opt(hint.as_deref()),
            _ => -1,
        };
        PageJourney {
            id: j.id,
            packet: st.opt(j.packet.as_deref()),
            len: j.len,
            end: st.id(&j.end.line()),
            kind: kind(&j.end),
            hint,
            end_netns: st.opt(end_netns(&j.end)),
            path,
            hops,
            caveats: j.caveats.iter().map(|c| st.id(c)).collect(),
            steps,
        }
    }

    /// Writes the page.
    pub fn write(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let json = self.data()?;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&json)?;
        let data = base64::engine::general_purpose::STANDARD.encode(gz.finish()?);
        let hash = |s: &str| {
            base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(s.as_bytes()))
        };
        // Nothing may be loaded: no fetch, image, font, frame or form
        // target; the page's own script and style run by their hashes.
        let csp = format!(
            "default-src 'none'; script-src 'sha256-{}'; style-src 'sha256-{}'; img-src data:; \
             base-uri 'none'; form-action 'none'",
            hash(SCRIPT),
            hash(STYLE)
        );
        let title = escape_html(self.title);
        let page = fill(
            PAGE,
            &[
                ("CSP", &csp),
                ("TITLE", &title),
                ("STYLE", STYLE),
                ("DATA", &data),
                ("SCRIPT", SCRIPT),
            ],
        );
        out.write_all(page.as_bytes())
    }
}

/// The template with each `{{NAME}}` replaced, in one pass: what is put
/// in is never read again for placeholders (a title may say `{{DATA}}`).
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out =
        String::with_capacity(template.len() + values.iter().map(|v| v.1.len()).sum::<usize>());
    let mut rest = template;
    while let Some(at) = rest.find("{{") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        match after.find("}}").and_then(|end| {
            values
                .iter()
                .find(|(k, _)| *k == &after[..end])
                .map(|v| (end, v.1))
        }) {
            Some((end, value)) => {
                out.push_str(value);
                rest = &after[end + 2..];
            }
            None => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Text for an HTML element's content or a quoted attribute.
fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_nothing_and_holds_its_data_encoded() {
        let r = Report {
            title: "</title><script>alert(1)</script>{{DATA}}",
            source: "test",
            journeys: &[],
            network: None,
            lab: None,
            links: SourceLinks::default(),
        };
        let mut out = Vec::new();
        r.write(&mut out).unwrap();
        let page = String::from_utf8(out).unwrap();
        assert!(page.contains("default-src 'none'"));
        assert!(!page.contains("<script>alert"), "the title is text");
        assert!(page.contains("&lt;/title&gt;&lt;script&gt;alert(1)&lt;/script&gt;{{DATA}}</span>"));
        assert_eq!(
            page.matches("{{").count(),
            2,
            "every placeholder filled, the title's kept"
        );
        // No address to load anything from, in markup or script.
        for bad in [
            "src=\"http",
            "href=\"http",
            "fetch(",
            "XMLHttpRequest",
            "import(",
        ] {
            assert!(!page.contains(bad), "{bad}");
        }
    }
}
