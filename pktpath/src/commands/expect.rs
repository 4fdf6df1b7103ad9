//! `pktpath expect FILE`: traces (or reads a capture), then checks each
//! expectation of the file on the journeys of its packets
//! (`pktpath_core::expect`). Exit 0 when all hold, 1 when one does not or
//! could not be checked, 2 for a bad file, filter or options.

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result};

use super::options::{filter, functions, ring_bytes, selection};
use super::{replay, STOP};
use crate::cli::{Color, ExpectArgs, OutputArgs, Probes, TraceArgs, WriteFormat};
use crate::collect::nftables::session::{NftraceSession, Unavailable};
use crate::collect::{self, TraceOptions};
use crate::filter::{cbpf, Layer};
use crate::kernel::btf::Inventory;
use crate::source::Source;
use crate::UsageError;
use pktpath_core::clock::WallClock;
use pktpath_core::expect::{self, verdicts, Expectations, Scope, Verdict};
use pktpath_core::journey::Journey;
use pktpath_core::model::SiteKind;
use pktpath_core::sinks::{Kept, Sink};

pub fn run(args: &ExpectArgs) -> Result<ExitCode> {
    let shown = args.file.display().to_string();
    let text = std::fs::read_to_string(&args.file)
        .map_err(|e| UsageError(format!("cannot read {shown}: {e}")))?;
    let file = expect::parse(&text).map_err(|e| UsageError(format!("{shown}:{e}")))?;
    // Each expectation's filter, compiled once (a bad one is the file's
    // mistake, at its line).
    let mut programs = Vec::new();
    for e in &file.list {
        let program = match e.packets.as_str() {
            "" => None,
            f => Some(cbpf::program(f, Layer::L2).map_err(|err| {
                UsageError(format!("{shown}:{}: packets = \"{f}\": {err}", e.line))
            })?),
        };
        programs.push(program);
    }
    let (journeys, scope) = match &args.read {
        Some(path) => {
            let (journeys, scope) = from_capture(path)?;
            let bytes = journeys.iter().any(|(_, f)| f.is_some());
            if let (Some(e), false, false) = (
                file.list.iter().find(|e| !e.packets.trim().is_empty()),
                bytes,
                journeys.is_empty(),
            ) {
                return Err(UsageError(format!(
                    "{shown}:{}: packets = \"{}\" needs the packets' bytes, and {} keeps \
                     them only in words (JSON lines written before pktpath kept each \
                     packet's frame): check a pcapng capture (pktpath -w)",
                    e.line,
                    e.packets,
                    path.display()
                ))
                .into());
            }
            (journeys, scope)
        }
        None => traced(args, &file)?,
    };
    let verdicts: Vec<Verdict> = file
        .list
        .iter()
        .zip(&programs)
        .map(|(e, program)| {
            let mine: Vec<&Journey> = journeys
                .iter()
                .filter(|(_, frame)| match (program, frame) {
                    (None, _) => true,
                    (Some(p), Some(f)) => p.filter(f),
                    (Some(_), None) => false,
                })
                .map(|(j, _)| j)
                .collect();
            expect::check(e, &mine, &scope)
        })
        .collect();
    let summary = verdicts::Summary::of(&verdicts, journeys.len());
    let mut out = std::io::stdout().lock();
    if args.json {
        verdicts::json(&mut out, &shown, &verdicts, &summary)?;
    } else {
        use std::io::IsTerminal;
        let color = match args.color {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => {
                std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
            }
        };
        verdicts::text(&mut out, &verdicts, &summary, color)?;
    }
    if let Some(path) = &args.junit {
        let xml = verdicts::junit(&shown, &verdicts).context("writing JUnit XML")?;
        std::fs::write(path, xml).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(if summary.all_passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Each journey with the frame its filter is run on.
type Checked = Vec<(Journey, Option<Vec<u8>>)>;

/// A capture's journeys; what it could show is what it holds.
fn from_capture(path: &std::path::Path) -> Result<(Checked, Scope)> {
    let capture = replay::read(path)?;
    if let Some(e) = capture.damage {
        return Err(UsageError(format!("{}: {e}", path.display())).into());
    }
    let functions = capture
        .journeys
        .iter()
        .any(|r| r.journey.steps.iter().any(|s| s.kind == SiteKind::Function));
    let scope = Scope {
        functions,
        rules: None,
        functions_why: "the capture holds no function steps (it was traced with tracepoints \
                        only)"
            .into(),
        rules_why: String::new(),
    };
    let journeys = capture
        .journeys
        .into_iter()
        .map(|r| (r.journey, r.frame))
        .collect();
    Ok((journeys, scope))
}

/// Traces the packets of every expectation: until --cmd exits (and
/// --settle passes), --duration, or Ctrl-C.
fn traced(args: &ExpectArgs, file: &Expectations) -> Result<(Checked, Scope)> {
    // One filter for the probes: the packets of any expectation.
    let expr = if file.list.iter().any(|e| e.packets.trim().is_empty()) {
        String::new()
    } else {
        file.list
            .iter()
            .map(|e| format!("({})", e.packets))
            .collect::<Vec<_>>()
            .join(" or ")
    };
    let trace = as_trace(args);
    let (nft_trace, nft_sweep) = super::options::nft_trace(args.probes.no_nft_trace, None, &expr);
    let opts = TraceOptions {
        filter: filter(&expr)?,
        selection: selection(&trace)?,
        backend: args.probes.backend.flavour(),
        ring_bytes: ring_bytes(args.probes.ring_size)?,
        count: None,
        duration: args.duration.map(Duration::from_secs_f64),
        idle: Duration::from_secs_f64(args.probes.idle_timeout.max(0.01)),
        drops_only: false,
        functions: functions(&trace)?,
        nft_trace,
        nft_sweep,
    };
    let inv = Inventory::load()?;
    let mut keep = Kept::new(
        true,
        match &args.write {
            Some(_) => Some(super::options::sink(
                &trace.output,
                WallClock::now(),
                pktpath_core::location::SourceLinks::default(),
            )?),
            None => None,
        },
    );
    let mut traced_functions = false;
    let summary = collect::run(&inv, &opts, &mut keep, &STOP, |t| {
        traced_functions = t.functions.is_some();
        eprintln!(
            "pktpath: attached {} sites in {:.1} s; checking {} expectations",
            t.attached(),
            t.attach_time.as_secs_f64(),
            file.list.len()
        );
        if let Some(p) = &args.probes.ready_file {
            std::fs::write(p, "ready\n")
                .with_context(|| format!("cannot write ready file {}", p.display()))?;
        }
        match &args.cmd {
            Some(cmd) => run_traffic(cmd.clone(), args.settle),
            None if args.duration.is_none() => {
                eprintln!("pktpath: make the traffic now; Ctrl-C to stop and check")
            }
            None => {}
        }
        Ok(())
    })?;
    keep.flush().context("writing the capture")?;
    eprintln!("pktpath: {}", summary.line());
    let rules_off = if args.probes.no_nft_trace {
        Some("nftables tracing was turned off (--no-nft-trace)".to_string())
    } else if let Some(why @ Unavailable::NoNft) = NftraceSession::unavailable() {
        Some(format!("nftables rules are not traced here: {why}"))
    } else {
        None
    };
    let scope = Scope {
        functions: traced_functions,
        rules: Some(rules_off.is_none()),
        functions_why: match args.probes.backend.functions() {
            None if args.probes.backend.flavour().is_some()
                || args.probes.backend == crate::cli::Backend::Tracepoint =>
            {
                "functions were not traced (--backend asked for tracepoints only)".into()
            }
            _ => "functions are not traced here: this kernel gives no function backend \
                  (see pktpath doctor)"
                .into(),
        },
        rules_why: rules_off.unwrap_or_default(),
    };
    let journeys = keep
        .journeys
        .into_iter()
        .map(|j| {
            let frame = pktpath_core::formats::frame(&j).map(|(f, _)| f);
            (j, frame)
        })
        .collect();
    Ok((journeys, scope))
}

/// Runs the traffic command in a shell; when it exits (and `settle`
/// seconds have passed), ends the trace.
fn run_traffic(cmd: String, settle: f64) {
    std::thread::spawn(move || {
        match std::process::Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .status()
        {
            Ok(s) if !s.success() => {
                eprintln!("pktpath: note: --cmd exited with {s} (checking its packets anyway)")
            }
            Ok(_) => {}
            Err(e) => eprintln!("pktpath: warning: cannot run --cmd: {e}"),
        }
        std::thread::sleep(Duration::from_secs_f64(settle.max(0.0)));
        STOP.store(true, Ordering::SeqCst);
    });
}

/// The trace options `expect` shares with a plain trace, as a plain
/// trace's arguments (the option helpers take those).
fn as_trace(args: &ExpectArgs) -> TraceArgs {
    TraceArgs {
        filter: Vec::new(),
        read: None,
        interface: None,
        netns: None,
        mark: None,
        start_at: None,
        all_tracepoints: false,
        count: None,
        duration: args.duration,
        // The ready file is written by expect itself, with its own line.
        probes: Probes {
            ready_file: None,
            ..args.probes.clone()
        },
        output: OutputArgs {
            write: args.write.clone(),
            format: WriteFormat::Pcapng,
            per_step: false,
            snaplen: None,
            json: false,
            steps: false,
            drops_only: false,
            color: args.color,
            verbose: false,
            view: crate::cli::View::Steps,
            report: None,
            topology: None,
        },
    }
}
