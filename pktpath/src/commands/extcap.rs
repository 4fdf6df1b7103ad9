//! `pktpath --extcap-*`: Wireshark's extcap calls, answered or turned into
//! a trace command line.

use anyhow::Result;
use clap::Parser;

use super::options::filter;
use crate::cli::Cli;
use crate::UsageError;

/// Answers Wireshark's extcap queries; for `--capture`, the trace command
/// line that writes pcapng into Wireshark's FIFO.
pub fn command(argv: &[String]) -> Result<Option<Cli>> {
    use crate::extcap;
    let rest = argv.iter().skip(1).skip_while(|a| *a == "extcap");
    let args = extcap::ExtcapArgs::try_parse_from(rest).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut out = std::io::stdout();
    if args.extcap_interfaces {
        extcap::interfaces(&mut out)?;
        return Ok(None);
    }
    if let Some(i) = &args.extcap_interface {
        if i != extcap::INTERFACE {
            return Err(UsageError(format!("no extcap interface {i}")).into());
        }
    }
    if args.extcap_dlts {
        extcap::dlts(&mut out)?;
        return Ok(None);
    }
    if args.extcap_config {
        extcap::config(&mut out)?;
        return Ok(None);
    }
    let expr = args.extcap_capture_filter.clone().unwrap_or_default();
    if !args.capture {
        // Filter check: nothing on stdout means valid, else the message.
        if let Err(e) = filter(&expr) {
            use std::io::Write;
            writeln!(out, "{e}")?;
        }
        return Ok(None);
    }
    let fifo = args
        .fifo
        .clone()
        .ok_or_else(|| UsageError("--capture needs --fifo".into()))?;
    let mut trace: Vec<String> = vec!["pktpath".into(), "-w".into()];
    trace.push(fifo.to_string_lossy().into_owned());
    let backend = clap::ValueEnum::to_possible_value(&args.backend).expect("named backend");
    trace.extend(["--backend".into(), backend.get_name().to_string()]);
    for (flag, v) in [
        ("-i", &args.dev),
        ("--netns", &args.netns),
        ("--start-at", &args.start_at),
        ("--functions", &args.functions),
    ] {
        if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
            trace.extend([flag.to_string(), v.clone()]);
        }
    }
    if args.all_tracepoints {
        trace.push("--all-tracepoints".into());
    }
    if args.per_step {
        trace.push("--per-step".into());
    }
    if !expr.is_empty() {
        trace.extend(["--".into(), expr]);
    }
    Ok(Some(Cli::try_parse_from(trace)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wireshark's capture dialog choices reach the trace command line.
    #[test]
    fn extcap_capture_becomes_a_trace_command() {
        let argv: Vec<String> = [
            "pktpath",
            "--capture",
            "--extcap-interface",
            "pktpath",
            "--fifo",
            "/tmp/fifo",
            "--extcap-capture-filter",
            "icmp",
            "--all-tracepoints",
            "--dev",
            "eth0",
        ]
        .map(String::from)
        .into();
        let cli = command(&argv).unwrap().expect("a trace command");
        assert!(cli.trace.all_tracepoints);
        assert_eq!(cli.trace.interface.as_deref(), Some("eth0"));
        assert_eq!(cli.trace.filter, ["icmp"]);
        let argv: Vec<String> = argv
            .into_iter()
            .filter(|a| a != "--all-tracepoints")
            .collect();
        assert!(!command(&argv).unwrap().unwrap().trace.all_tracepoints);
    }
}
