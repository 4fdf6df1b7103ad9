//! The live terminal view: each journey as a header line (the packet and how
//! it ended) and one line per step, colored on a terminal, plain when piped.
//! Given the kernel's release (`located`), each step also says where in
//! the source it was handled, after its site (`net/core/dev.c:3844`), and
//! verbose, the link to that code on a line of its own.

use std::io::Write;

use super::Sink;
use crate::diagnosis::End;
use crate::journey::Journey;
use crate::location::SourceLinks;
use crate::model::{SiteKind, Step};

pub struct Terminal<W: Write> {
    out: W,
    color: bool,
    steps: bool,
    /// Each step's place in the kernel's source, and with `verbose` its
    /// link on this release.
    links: Option<SourceLinks>,
    verbose: bool,
    /// Each journey as the subsystems it went through, not its steps.
    subsystems: bool,
}

/// Where a step's link line starts: under its site.
const SITE_COLUMN: usize = 46;

const RESET: &str = "\x1b[0m";
const BOLD: &str = "\x1b[1m";
const DIM: &str = "\x1b[2m";
const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const CYAN: &str = "\x1b[36m";

impl<W: Write> Terminal<W> {
    /// `steps`: also print each step live, as it arrives.
    pub fn new(out: W, color: bool, steps: bool) -> Self {
        Terminal {
            out,
            color,
            steps,
            links: None,
            verbose: false,
            subsystems: false,
        }
    }

    /// Each journey as its header line and the subsystems it went
    /// through, in order (`core → netfilter(forward) → routing → ipv4`),
    /// instead of its steps: when subsystems come into play.
    pub fn subsystems(mut self) -> Self {
        self.subsystems = true;
        self
    }

    /// Each step also says where in the kernel's source it was handled
    /// (its file, and line on the releases whose source was read; a
    /// module's function its module), after its site; with `verbose`, the
    /// link to that code on `links`' release on the next line (the line's
    /// source where known, else the function's identifier page, else the
    /// file's).
    pub fn located(mut self, links: SourceLinks, verbose: bool) -> Self {
        self.links = Some(links);
        self.verbose = verbose;
        self
    }

    /// The place after the site (two spaces after it), and the link line.
    fn place(&self, s: &Step) -> (String, Option<String>) {
        let Some(links) = &self.links else {
            return (String::new(), None);
        };
        let at = links.locate(s);
        let place = match (&at.file, at.line, &at.module) {
            (Some(f), Some(l), _) => format!("{f}:{l}  "),
            (Some(f), None, _) => format!("{f}  "),
            (None, _, Some(m)) if s.kind != SiteKind::Tracepoint => format!("[{m}]  "),
            _ => String::new(),
        };
        let link = self.verbose.then(|| {
            let (ident, source) = at.urls(links);
            match at.line {
                Some(_) => source.or(ident),
                None => ident.or(source),
            }
        });
        let link = link
            .flatten()
            .map(|url| format!("\n{:SITE_COLUMN$}{}{url}{}", "", self.c(DIM), self.c(RESET)));
        if place.is_empty() {
            return (place, link);
        }
        (format!("{}{place}{}", self.c(DIM), self.c(RESET)), link)
    }

    fn c(&self, code: &'static str) -> &'static str {
        if self.color {
            code
        } else {
            ""
        }
    }

    fn step_line(&self, s: &Step, t0: u64) -> String {
        let site_color = match &*s.subsystem {
            "drop" => RED,
            "routing" | "neighbour" => CYAN,
            _ => YELLOW,
        };
        let offset = s.ts_ns.saturating_sub(t0) as f64 / 1e6;
        let mut notes: Vec<String> = s.headers.iter().map(|h| h.to_string()).collect();
        if let Some(ct) = &s.ct {
            notes.push(ct.line());
        }
        if let Some(v) = s.vlan {
            notes.push(format!("vlan {v}"));
        }
        let headers = if notes.is_empty() {
            String::new()
        } else {
            format!("  {}[{}]{}", self.c(DIM), notes.join("; "), self.c(RESET))
        };
        let (place, link) = self.place(s);
        format!(
            "  +{offset:<8.3} {:<12} {:<10} {:<9} {}{:<24}{} {place}{}{}{}",
            crate::imunes::label(&s.netns_name),
            s.dev.as_deref().unwrap_or(""),
            s.subsystem,
            self.c(site_color),
            s.site,
            self.c(RESET),
            s.describe(),
            headers,
            link.unwrap_or_default()
        )
    }
}

impl<W: Write> Sink for Terminal<W> {
    fn journey(&mut self, j: &Journey) -> std::io::Result<()> {
        let end_color = match &j.end {
            End::Dropped { benign: false, .. } => RED,
            End::Recorded { .. } if j.end.is_real_drop() => RED,
            End::Dropped { .. } | End::Unknown { .. } | End::Recorded { .. } => YELLOW,
            End::Delivered { .. } | End::Consumed { .. } => GREEN,
            End::Transmitted { .. } => CYAN,
        };
        writeln!(
            self.out,
            "{}#{}{}  {}, {} bytes: {}{}{}, {:.3} ms",
            self.c(BOLD),
            j.id,
            self.c(RESET),
            match (j.packet.as_deref(), j.about) {
                (Some(p), Some(a)) => format!("{p} (journey #{a})"),
                (Some(p), None) => p.to_string(),
                (None, _) => "(headers not captured)".to_string(),
            },
            j.len,
            self.c(end_color),
            j.end.line(),
            self.c(RESET),
            j.duration_ns as f64 / 1e6
        )?;
        if let End::Dropped { hint: Some(h), .. } = &j.end {
            writeln!(self.out, "  {}hint: {h}{}", self.c(DIM), self.c(RESET))?;
        }
        for c in &j.caveats {
            writeln!(self.out, "  {}note: {c}{}", self.c(YELLOW), self.c(RESET))?;
        }
        if self.subsystems {
            let stages = crate::location::stages(j);
            writeln!(self.out, "  {}\n", crate::location::stages_text(&stages))?;
            return self.out.flush();
        }
        let t0 = j.steps.first().map_or(0, |s| s.ts_ns);
        // Show headers only where they change (NAT rewrites), and the
        // conntrack state and VLAN tag likewise.
        let mut last_headers: Option<&str> = None;
        let mut last_ct = None;
        let mut last_vlan = None;
        for s in &j.steps {
            let mut shown = s.clone();
            if s.ct.is_some() {
                if s.ct == last_ct {
                    shown.ct = None;
                }
                last_ct = s.ct.clone();
            }
            if !s.correlated {
                if s.vlan == last_vlan {
                    shown.vlan = None;
                }
                last_vlan = s.vlan;
            }
            if shown.headers.as_deref() == last_headers || last_headers.is_none() {
                if last_headers.is_none() {
                    last_headers = s.headers.as_deref();
                }
                shown.headers = None;
            } else if s.headers.is_some() {
                last_headers = s.headers.as_deref();
            }
            writeln!(self.out, "{}", self.step_line(&shown, t0))?;
        }
        writeln!(self.out)?;
        self.out.flush()
    }

    fn step(&mut self, journey: u64, s: &Step) -> std::io::Result<()> {
        if !self.steps {
            return Ok(());
        }
        writeln!(
            self.out,
            "{}#{journey}{} {}",
            self.c(BOLD),
            self.c(RESET),
            self.step_line(s, s.ts_ns).trim_start_matches(' ')
        )?;
        self.out.flush()
    }

    fn wants_steps(&self) -> bool {
        self.steps
    }
}
