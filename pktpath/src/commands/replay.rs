//! `pktpath -r FILE`: the journeys of a capture, through the same sinks
//! and the same rules (-c, --drops-only, a closed pipe) as a live run.

use std::process::ExitCode;

use anyhow::{Context, Result};

use super::options::sink;
use crate::cli::TraceArgs;
use crate::UsageError;
use pktpath_core::clock::WallClock;
use pktpath_core::formats::Capture;
use pktpath_core::location::SourceLinks;
use pktpath_core::sinks::Gate;

/// Reads a capture ('-': stdin): every intact journey, and the damage.
pub fn read(path: &std::path::Path) -> Result<Capture> {
    use std::io::Read;
    let mut data = Vec::new();
    let read = if path.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut data)
    } else {
        std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut data))
    };
    read.map_err(|e| UsageError(format!("cannot read {}: {e}", path.display())))?;
    Ok(pktpath_core::formats::read(&data))
}

pub fn run(args: &TraceArgs, path: &std::path::Path) -> Result<ExitCode> {
    let shown = path.display();
    let capture = read(path)?;
    let expr = args.filter.join(" ");
    let program = if expr.is_empty() {
        None
    } else {
        Some(
            crate::filter::cbpf::program(&expr, crate::filter::Layer::L2)
                .map_err(|e| UsageError(e.to_string()))?,
        )
    };
    // Dated as the capture dated them: its steps' clock is that of the
    // boot they were traced in, not this one's.
    let dated = capture.journeys.iter().find_map(|r| r.wall_offset_ns);
    if dated.is_none() && args.output.write.is_some() && !capture.journeys.is_empty() {
        eprintln!(
            "pktpath: {shown} holds no wall-clock time (JSON lines): the records written are \
             dated as if traced on this boot"
        );
    }
    let clock = dated.map_or_else(WallClock::now, WallClock);
    let mut out = sink(&args.output, clock, SourceLinks::default())?;
    let mut gate = Gate::new(out.as_mut(), args.output.drops_only, args.count);
    for r in capture.journeys {
        if let Some(p) = &program {
            match &r.frame {
                Some(f) if p.filter(f) => {}
                Some(_) => continue,
                None => {
                    return Err(UsageError(format!(
                        "{shown}: a filter needs the packets' bytes; JSON lines keep only \
                         their headers in words"
                    ))
                    .into())
                }
            }
        }
        if gate.admits(&r.journey) {
            gate.write(&r.journey);
        } else if !gate.open() {
            break;
        }
    }
    gate.flush();
    if let Some(e) = gate.take_error() {
        return Err(e).context("writing output");
    }
    // The intact journeys are out; then the damage, as one line (exit 2).
    // As tcpdump -c: a count reached before the damage does not read it
    // (nor does a reader that went away).
    match capture.damage {
        Some(e) if gate.open() => Err(UsageError(format!("{shown}: {e}")).into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}
