//! `pktpath [FILTER]`: a live trace (or, with -r, a replay).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};

use super::options::{filter, functions, nft_trace, ring_bytes, selection, sink};
use super::{replay, report, STOP};
use pktpath_core::clock::WallClock;
use pktpath_core::location::SourceLinks;
use pktpath_core::sinks::{Kept, Sink};

use crate::cli::TraceArgs;
use crate::collect::{self, TraceOptions};
use crate::kernel::btf::Inventory;
use crate::UsageError;

pub fn run(args: &TraceArgs) -> Result<ExitCode> {
    if let Some(path) = &args.read {
        return replay::run(args, path);
    }
    let expr = args.filter.join(" ");
    let (nft_trace, nft_sweep) = nft_trace(args.probes.no_nft_trace, args.netns.as_deref(), &expr);
    let opts = TraceOptions {
        filter: filter(&expr)?,
        selection: selection(args)?,
        backend: args.probes.backend.flavour(),
        ring_bytes: ring_bytes(args.probes.ring_size)?,
        count: args.count,
        duration: args.duration.map(Duration::from_secs_f64),
        idle: Duration::from_secs_f64(args.probes.idle_timeout.max(0.01)),
        drops_only: args.output.drops_only,
        functions: functions(args)?,
        nft_trace,
        nft_sweep,
    };
    let inv = Inventory::load()?;
    if let Some(site) = &opts.selection.start_at {
        let known = inv.tracepoints.contains_key(site)
            || opts
                .functions
                .as_ref()
                .is_some_and(|f| f.sites.iter().any(|s| &s.name == site));
        if !known {
            return Err(UsageError(format!(
                "--start-at {site}: no such tracepoint or attached function"
            ))
            .into());
        }
    }
    // The lab's layout, read before tracing: a mistake in it stops the run
    // before it starts.
    let lab = match (&args.output.topology, &args.output.report) {
        (Some(t), Some(_)) => Some(report::lab(t)?),
        (Some(_), None) => {
            return Err(UsageError("--topology lays out the --report: give one".into()).into())
        }
        (None, _) => None,
    };
    let links = SourceLinks::running();
    // Journeys are kept only for a report made of all of them.
    let mut out = Kept::new(
        args.output.report.is_some(),
        Some(sink(&args.output, WallClock::now(), links)?),
    );
    // The network as it is now, stored with the journeys (a report drawn
    // later from the file draws it): for the outputs that keep them.
    let output = &args.output;
    let network = (output.write.is_some() || output.json || output.report.is_some())
        .then(|| collect::network::read(&crate::netns::visible()));
    // Not into a pipe: dumpcap (Wireshark's capture reader: extcap, `-w -`)
    // 4.0 crashes on a section header this large read from a pipe.
    let into_file = output.write.as_deref().is_none_or(|p| {
        p.as_os_str() != "-" && std::fs::metadata(p).map_or(true, |m| m.file_type().is_file())
    });
    if let (Some(n), true) = (&network, into_file) {
        out.network(n).context("writing the network")?;
    }
    let summary = collect::run(&inv, &opts, &mut out, &STOP, |t| {
        for (tp, why) in &t.failed {
            eprintln!("pktpath: warning: cannot attach to {tp}: {why}");
        }
        if !t.func_failed.is_empty() {
            eprintln!(
                "pktpath: {} functions could not be attached (e.g. {}: {})",
                t.func_failed.len(),
                t.func_failed[0].0,
                t.func_failed[0].1
            );
        }
        let backend = match &t.functions {
            Some(f) => format!("{} + {}", f.backend.name(), t.flavour.name()),
            None => t.flavour.name().to_string(),
        };
        eprintln!(
            "pktpath: attached {} sites ({backend}) in {:.1} s, {} not attachable; tracing {}; \
             Ctrl-C to stop",
            t.attached(),
            t.attach_time.as_secs_f64(),
            t.func_failed.len() + t.failed.len(),
            if expr.is_empty() {
                "all packets".to_string()
            } else {
                format!("'{expr}'")
            },
        );
        if let Some(p) = &args.probes.ready_file {
            std::fs::write(p, "ready\n")
                .with_context(|| format!("cannot write ready file {}", p.display()))?;
        }
        Ok(())
    })?;
    eprintln!("pktpath: {}", summary.line());
    if let Some(path) = &args.output.report {
        report::write(
            path,
            "live trace",
            &format!("traced {}", describe(&expr)),
            &out.journeys,
            network.as_ref(),
            lab.as_ref(),
            links,
        )?;
        eprintln!("pktpath: report written to {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// What a run traced, in words.
fn describe(expr: &str) -> String {
    match expr {
        "" => "all packets".to_string(),
        e => format!("'{e}'"),
    }
}
