//! `pktpath report -r FILE -o report.html`: a capture's journeys as a
//! self-contained HTML report, or their graphs as DOT or Mermaid; and the
//! report written at the end of a live run (`--report`, the demo).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};

use super::replay;
use crate::cli::{GraphOf, ReportArgs};
use crate::filter::{cbpf, Layer};
use crate::UsageError;
use pktpath_core::imunes::{parse_topology, LabTopology};
use pktpath_core::journey::Journey;
use pktpath_core::location::{Location, SourceLinks};
use pktpath_core::network::Network;
use pktpath_core::report::{graph, paths, Report};

pub fn run(args: &ReportArgs) -> Result<ExitCode> {
    let shown = args.read.display().to_string();
    let capture = replay::read(&args.read)?;
    let lab = args.topology.as_deref().map(lab).transpose()?;
    let expr = args.filter.join(" ");
    let program = match expr.as_str() {
        "" => None,
        e => Some(cbpf::program(e, Layer::L2).map_err(|err| UsageError(err.to_string()))?),
    };
    let mut journeys = Vec::new();
    for r in capture.journeys {
        match (&program, &r.frame) {
            (None, _) => {}
            (Some(p), Some(f)) if p.filter(f) => {}
            (Some(_), Some(_)) => continue,
            (Some(_), None) => {
                return Err(UsageError(format!(
                    "{shown}: a filter needs the packets' bytes; JSON lines keep only their \
                     headers in words"
                ))
                .into())
            }
        }
        journeys.push(r.journey);
    }
    let text = if args.dot || args.mermaid {
        Some(text_graph(args, &journeys)?)
    } else {
        None
    };
    let Some(out) = &args.output else {
        match text {
            Some(t) => std::io::stdout().write_all(t.as_bytes())?,
            None => {
                return Err(UsageError(
                    "pktpath report: -o FILE says where to write the report ('-' for stdout)"
                        .into(),
                )
                .into())
            }
        }
        return damage(capture.damage, &shown);
    };
    match text {
        Some(t) => write_to(out, t.as_bytes())?,
        None => {
            let title = args
                .read
                .file_name()
                .map_or(shown.clone(), |n| n.to_string_lossy().into_owned());
            let source = format!("read from {shown}");
            // A capture may come from another kernel: files and subsystems,
            // no links to one release's code.
            write(
                out,
                &title,
                &source,
                &journeys,
                capture.network.as_ref(),
                lab.as_ref(),
                SourceLinks::default(),
            )?;
        }
    }
    damage(capture.damage, &shown)
}

/// The intact journeys are written; then the damage, as one line (exit 2).
fn damage(d: Option<pktpath_core::formats::ReadError>, shown: &str) -> Result<ExitCode> {
    match d {
        Some(e) => Err(UsageError(format!("{shown}: {e}")).into()),
        None => Ok(ExitCode::SUCCESS),
    }
}

fn text_graph(args: &ReportArgs, journeys: &[Journey]) -> Result<String> {
    if let Some(id) = args.journey {
        let j = journeys
            .iter()
            .find(|j| j.id == id)
            .ok_or_else(|| UsageError(format!("--journey {id}: no such journey in the capture")))?;
        return Ok(match args.dot {
            true => graph::journey_dot(j),
            false => graph::journey_mermaid(j),
        });
    }
    let edges = match args.graph {
        GraphOf::Subsystems => paths::transitions(journeys, |s| Location::of(s, None).subsystem),
        GraphOf::Sites => paths::transitions(journeys, |s| &s.site),
    };
    Ok(match args.dot {
        true => graph::transitions_dot(&edges),
        false => graph::transitions_mermaid(&edges),
    })
}

fn write_to(path: &Path, bytes: &[u8]) -> Result<()> {
    if path.as_os_str() == "-" {
        std::io::stdout().write_all(bytes)?;
        return Ok(());
    }
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// An IMUNES lab's topology file; a mistake in it is the user's (exit 2,
/// at its line and column).
pub fn lab(path: &Path) -> Result<LabTopology> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| UsageError(format!("cannot read {}: {e}", path.display())))?;
    let at = |e: pktpath_core::imunes::TopologyError| {
        UsageError(format!(
            "{}:{}:{}: {}",
            path.display(),
            e.line,
            e.column,
            e.message
        ))
    };
    Ok(parse_topology(&text).map_err(at)?)
}

/// Writes the HTML report of `journeys` to `path` ('-': stdout).
pub fn write(
    path: &Path,
    title: &str,
    source: &str,
    journeys: &[Journey],
    network: Option<&Network>,
    lab: Option<&LabTopology>,
    links: SourceLinks,
) -> Result<()> {
    let report = Report {
        title,
        source,
        journeys,
        network,
        lab,
        links,
    };
    let mut page = Vec::new();
    report.write(&mut page).context("writing the report")?;
    write_to(path, &page)
}
