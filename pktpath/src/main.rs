//! The pktpath command: parses arguments, runs one command, maps errors to
//! exit codes (2: bad input, 1: failure; a closed output pipe is success).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;

use pktpath::cli::{Backend, Cli, Cmd, Color, OutputArgs, TraceArgs, WriteFormat};
use pktpath::collect::{self, TraceOptions};
use pktpath::enrich::nftrace::NetnsRef;
use pktpath::filter::{Filter, FilterError};
use pktpath::kernel::btf::Inventory;
use pktpath::kernel::functions::FuncInventory;
use pktpath::kernel::tracepoint::{Functions, Selection};
use pktpath::{demo, enrich, kernel, netlab, UsageError};
use pktpath_core::formats::mbuf_trace::MbufTrace;
use pktpath_core::formats::pcapng::{Pcapng, PcapngOptions, MAX_SNAPLEN};
use pktpath_core::sinks::{json::Json, terminal::Terminal, Sink};

static STOP: AtomicBool = AtomicBool::new(false);

/// fentry copies and kprobes take two descriptors per function: raise the
/// soft limit on open files to the hard one.
fn raise_nofile() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid pointer to an rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0 && r.rlim_cur < r.rlim_max {
        r.rlim_cur = r.rlim_max;
        // SAFETY: as above; failure leaves the limit as it was.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) };
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    let cli = if pktpath::extcap::is_extcap_call(&argv) {
        match extcap_cli(&argv) {
            Ok(Some(cli)) => cli,
            Ok(None) => return ExitCode::SUCCESS,
            Err(e) if closed_pipe(&e) => return ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("pktpath extcap: {e:#}");
                return ExitCode::from(2);
            }
        }
    } else {
        Cli::parse()
    };
    raise_nofile();
    // SIGINT, SIGTERM and SIGHUP end the run cleanly: links are dropped and
    // a summary is printed.
    ctrlc::set_handler(|| STOP.store(true, Ordering::SeqCst)).ok();
    let result = match cli.cmd {
        Some(Cmd::Doctor) => doctor(),
        Some(Cmd::Demo(out)) => run_demo(&out),
        Some(Cmd::Sites { regex, json }) => sites(regex.as_deref(), json),
        None => run_trace(&cli.trace),
    };
    match result {
        Ok(code) => code,
        // The reader went away (`| head`): what it wanted, it got.
        Err(e) if closed_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pktpath: {e:#}");
            if e.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// Whether writing failed because stdout's reader closed the pipe.
fn closed_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Answers Wireshark's extcap queries; for `--capture`, the trace command
/// line that writes pcapng into Wireshark's FIFO.
fn extcap_cli(argv: &[String]) -> Result<Option<Cli>> {
    use pktpath::extcap;
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

/// Where nftables tracing goes (the namespace of --netns, else ours and
/// every named one; nothing when turned off), and the other namespaces
/// where tables of killed runs are swept. Nothing at all without nft, or
/// where nf_tables is a module not loaded (no ruleset exists, and asking
/// would load it).
fn nft_trace(
    off: bool,
    netns: Option<&str>,
    expr: &str,
) -> (Option<(Vec<NetnsRef>, String)>, Vec<NetnsRef>) {
    // Asked first: even `nft --version` opens an nfnetlink socket, which
    // loads nfnetlink.
    if !enrich::nftrace::nftables_loaded() {
        return (None, Vec::new());
    }
    let have_nft = std::process::Command::new("nft")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_nft {
        return (None, Vec::new());
    }
    let visible: Vec<NetnsRef> = NetnsRef::own()
        .into_iter()
        .chain(
            netlab::list_netns()
                .iter()
                .filter_map(|n| NetnsRef::named(n).ok()),
        )
        .collect();
    let traced: Vec<NetnsRef> = match netns {
        _ if off => Vec::new(),
        Some(spec) => enrich::netns::resolve(spec)
            .and_then(|ino| NetnsRef::from_inode(ino).ok())
            .into_iter()
            .collect(),
        None => visible.clone(),
    };
    let sweep = visible
        .into_iter()
        .filter(|v| traced.iter().all(|t| t.inode != v.inode))
        .collect();
    ((!off).then(|| (traced, expr.to_string())), sweep)
}

fn doctor() -> Result<ExitCode> {
    let report = kernel::doctor::examine();
    kernel::doctor::print(&report, &mut std::io::stdout())?;
    Ok(if report.any_backend() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn sink(out: &OutputArgs) -> Result<Box<dyn Sink>> {
    let stdout = std::io::stdout();
    let snaplen = out.snaplen.unwrap_or(MAX_SNAPLEN);
    if !(1..=MAX_SNAPLEN).contains(&snaplen) {
        return Err(UsageError(format!(
            "--snaplen {snaplen}: between 1 and {MAX_SNAPLEN} (the probes capture 128 bytes)"
        ))
        .into());
    }
    if out.per_step && out.format == WriteFormat::MbufTrace {
        return Err(UsageError("--per-step writes pcapng, not mbuf-trace".into()).into());
    }
    if let Some(path) = &out.write {
        // Buffered: the sinks write out after each batch of events.
        let w: Box<dyn std::io::Write> = if path.as_os_str() == "-" {
            Box::new(std::io::BufWriter::with_capacity(OUT_BUFFER, stdout.lock()))
        } else {
            Box::new(std::io::BufWriter::with_capacity(
                OUT_BUFFER,
                std::fs::File::create(path)
                    .with_context(|| format!("cannot create {}", path.display()))?,
            ))
        };
        return Ok(match out.format {
            WriteFormat::Pcapng => Box::new(Pcapng::new(
                w,
                PcapngOptions {
                    per_step: out.per_step,
                    snaplen,
                },
            )?),
            WriteFormat::MbufTrace => Box::new(MbufTrace::new(w, snaplen)?),
        });
    }
    if out.json {
        return Ok(Box::new(Json::new(
            std::io::BufWriter::with_capacity(OUT_BUFFER, stdout.lock()),
            out.steps,
        )));
    }
    let color = match out.color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => stdout.is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    Ok(Box::new(Terminal::new(stdout, color, out.steps)))
}

/// Output buffer of the file and JSON sinks: a pcapng journey is a few
/// kB, and 8 kB (the default) made a write system call every few
/// journeys (20,000 a second at 60,000 selected packets/s).
const OUT_BUFFER: usize = 256 << 10;

fn filter(expr: &str) -> Result<Filter> {
    Filter::new(expr).map_err(|e| match e {
        FilterError::Syntax(_) | FilterError::TooLarge(..) => UsageError(e.to_string()).into(),
        other => anyhow::Error::new(other),
    })
}

fn parse_u32(s: &str) -> Option<u32> {
    match s.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Turns -i/--netns/--mark into what the BPF side compares.
fn selection(args: &TraceArgs) -> Result<Selection> {
    let mut sel = Selection {
        all_tracepoints: args.all_tracepoints,
        ..Selection::default()
    };
    let mut ns_path = None;
    let mut netns = args.netns.clone();
    let mut interface = args.interface.clone();
    match args.start_at.as_deref() {
        Some(s) if s.starts_with("dev:") => interface = Some(s[4..].to_string()),
        Some(s) if s.starts_with("netns:") => netns = Some(s[6..].to_string()),
        Some(s) => sel.start_at = Some(s.to_string()),
        None => {}
    }
    if let Some(ns) = &netns {
        sel.netns = enrich::netns::resolve(ns).ok_or_else(|| {
            UsageError(format!(
                "unknown network namespace '{ns}' (not a name under /run/netns, nor an inode number)"
            ))
        })?;
        ns_path = Some(ns.clone());
    }
    if let Some(ifname) = &interface {
        let path = match &ns_path {
            Some(_) => Some(
                enrich::netns::path_of(sel.netns)
                    .ok_or_else(|| {
                        UsageError(format!(
                            "cannot enter netns {} to find interface '{ifname}'",
                            sel.netns
                        ))
                    })?
                    .to_string_lossy()
                    .into_owned(),
            ),
            None => {
                sel.netns = enrich::netns::own_inode().unwrap_or(0);
                None
            }
        };
        sel.ifindex = netlab::ifindex_in(path.as_deref(), ifname)?.ok_or_else(|| {
            UsageError(format!(
                "unknown interface '{ifname}'{}",
                netns
                    .as_ref()
                    .map(|n| format!(" in netns '{n}'"))
                    .unwrap_or_default()
            ))
        })?;
    }
    if let Some(m) = &args.mark {
        let (mark, mask) = match m.split_once('/') {
            Some((a, b)) => (parse_u32(a), parse_u32(b)),
            None => (parse_u32(m), Some(u32::MAX)),
        };
        let (Some(mark), Some(mask)) = (mark, mask) else {
            return Err(
                UsageError(format!("invalid --mark '{m}': expected MARK or MARK/MASK")).into(),
            );
        };
        sel.mark = mark;
        sel.mark_mask = if mask == 0 { u32::MAX } else { mask };
    }
    Ok(sel)
}

fn regex(flag: &str, r: &Option<String>) -> Result<Option<regex::Regex>> {
    r.as_ref()
        .map(|r| {
            regex::Regex::new(r).map_err(|e| {
                // regex's syntax errors draw a caret under the pattern, on
                // three lines: keep the error to one.
                let text = e.to_string();
                let why = text.lines().last().unwrap_or_default();
                let why = why.trim_start_matches("error: ");
                UsageError(format!("invalid {flag} regex '{r}': {why}")).into()
            })
        })
        .transpose()
}

/// The function sites and backend to use, or None for tracepoints only.
fn functions(args: &TraceArgs) -> Result<Option<Functions>> {
    select_functions(
        args.backend,
        &args.functions,
        &args.exclude_functions,
        args.start_at.is_some(),
    )
}

fn select_functions(
    backend: Backend,
    functions: &Option<String>,
    exclude: &Option<String>,
    start_at: bool,
) -> Result<Option<Functions>> {
    // Checked whether or not a function backend will use them.
    let only = regex("--functions", functions)?;
    let except = regex("--exclude-functions", exclude)?;
    let asked = backend.functions();
    let tracepoints_only = matches!(
        backend,
        Backend::Tracepoint | Backend::TpBtf | Backend::RawTp
    );
    if tracepoints_only {
        return Ok(None);
    }
    let backend = match asked {
        Some(b) => b,
        None => match kernel::doctor::best_function_backend() {
            Some(b) => b,
            None => {
                if functions.is_some() || start_at {
                    eprintln!(
                        "pktpath: no function-level backend works on this kernel (see pktpath \
                         doctor): tracing tracepoints only"
                    );
                }
                return Ok(None);
            }
        },
    };
    let inv = FuncInventory::load()?;
    let mut sites = inv.select(only.as_ref(), except.as_ref());
    if sites.is_empty() {
        return Err(UsageError("no kernel function matches --functions".into()).into());
    }
    if sites.len() > kernel::abi::MAX_FUNCS {
        eprintln!(
            "pktpath: warning: {} functions, tracing the first {}",
            sites.len(),
            kernel::abi::MAX_FUNCS
        );
        sites.truncate(kernel::abi::MAX_FUNCS);
    }
    Ok(Some(Functions { backend, sites }))
}

fn sites(re: Option<&str>, json: bool) -> Result<ExitCode> {
    let re = regex("sites", &re.map(str::to_string))?;
    let matches = |n: &str| re.as_ref().is_none_or(|r| r.is_match(n));
    let inv = Inventory::load()?;
    let funcs = FuncInventory::load()?;
    let mut out = std::io::stdout().lock();
    use std::io::Write;
    let plan = kernel::tracepoint::plan(&inv);
    let mut shown = 0;
    for tp in plan.slots.iter().filter(|t| matches(&t.name)) {
        let info = pktpath_core::sites::info(&tp.name);
        let when = pktpath_core::sites::AttachWhen::of(&tp.name);
        if json {
            let v = serde_json::json!({"site": tp.name, "kind": "tracepoint",
                "skb_arg": tp.skb_arg(), "subsystem": info.subsystem, "attachable": true,
                "attached": when.text()});
            writeln!(out, "{v}")?;
        } else {
            writeln!(
                out,
                "{:<40} tracepoint  arg {}   {:<10} {}{}",
                tp.name,
                tp.skb_arg().unwrap_or(0),
                info.subsystem,
                info.source,
                match when {
                    pktpath_core::sites::AttachWhen::Always => String::new(),
                    w => format!(" (attached {})", w.text()),
                }
            )?;
        }
        shown += 1;
    }
    for f in funcs.sites.iter().filter(|f| matches(&f.name)) {
        if json {
            writeln!(out, "{}", serde_json::to_string(f)?)?;
        } else {
            let arg = match (f.skb_arg, f.skb_ptrptr) {
                (Some(a), true) => format!("{a}**"),
                (Some(a), false) => a.to_string(),
                (None, _) => "-".to_string(),
            };
            let attach = match f.traceable {
                Some(true) => "attachable",
                Some(false) => "not attachable",
                None => "attachable: unknown",
            };
            writeln!(
                out,
                "{:<40} function    arg {arg:<3} {:<10} {}{}{}",
                f.name,
                f.subsystem,
                attach,
                if f.returns_skb { ", returns skb" } else { "" },
                f.module
                    .as_ref()
                    .map(|m| format!(" [{m}]"))
                    .unwrap_or_default()
            )?;
        }
        shown += 1;
    }
    if !json {
        eprintln!(
            "pktpath: {shown} sites; {} functions not in available_filter_functions, {} names \
             defined twice (left out)",
            funcs.untraceable.len(),
            funcs.ambiguous.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn ring_bytes(mib: u32) -> Result<u32> {
    if !mib.is_power_of_two() || mib > 1024 {
        return Err(UsageError(format!("--ring-size {mib}: a power of two up to 1024 MiB")).into());
    }
    Ok(mib << 20)
}

/// `-r FILE`: journeys from a capture, through the same sinks as live.
fn run_replay(args: &TraceArgs, path: &std::path::Path) -> Result<ExitCode> {
    use std::io::Read;
    let shown = path.display();
    let mut data = Vec::new();
    let read = if path.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut data)
    } else {
        std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut data))
    };
    read.map_err(|e| UsageError(format!("cannot read {shown}: {e}")))?;
    let capture = pktpath_core::formats::read(&data);
    let expr = args.filter.join(" ");
    let program = if expr.is_empty() {
        None
    } else {
        Some(
            pktpath::filter::cbpf::program(&expr, pktpath::filter::Layer::L2)
                .map_err(|e| UsageError(e.to_string()))?,
        )
    };
    let mut out = sink(&args.output)?;
    let mut shown_count = 0u64;
    // Stopped by -c or a closed pipe before the damage was reached.
    let mut stopped = false;
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
        if args.output.drops_only && !r.journey.end.is_real_drop() {
            continue;
        }
        if args.count.is_some_and(|c| shown_count >= c) {
            stopped = true;
            break;
        }
        match out.journey(&r.journey) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                stopped = true;
                break;
            }
            r => r.context("writing output")?,
        }
        shown_count += 1;
    }
    match out.flush() {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        r => r.context("writing output")?,
    }
    // The intact journeys are out; then the damage, as one line (exit 2).
    // As tcpdump -c: a count reached before the damage does not read it.
    stopped |= args.count.is_some_and(|c| shown_count >= c);
    match capture.damage {
        Some(e) if !stopped => Err(UsageError(format!("{shown}: {e}")).into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

fn run_trace(args: &TraceArgs) -> Result<ExitCode> {
    if let Some(path) = &args.read {
        return run_replay(args, path);
    }
    let expr = args.filter.join(" ");
    let (nft_trace, nft_sweep) = nft_trace(args.no_nft_trace, args.netns.as_deref(), &expr);
    let opts = TraceOptions {
        filter: filter(&expr)?,
        selection: selection(args)?,
        backend: args.backend.flavour(),
        ring_bytes: ring_bytes(args.ring_size)?,
        count: args.count,
        duration: args.duration.map(Duration::from_secs_f64),
        idle: Duration::from_secs_f64(args.idle_timeout.max(0.01)),
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
    let mut out = sink(&args.output)?;
    let summary = collect::run(&inv, &opts, out.as_mut(), &STOP, |t| {
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
        if let Some(p) = &args.ready_file {
            std::fs::write(p, "ready\n")
                .with_context(|| format!("cannot write ready file {}", p.display()))?;
        }
        Ok(())
    })?;
    eprintln!("pktpath: {}", summary.line());
    Ok(ExitCode::SUCCESS)
}

fn run_demo(out: &OutputArgs) -> Result<ExitCode> {
    kernel::caps::require_bpf()?;
    let inv = Inventory::load()?;
    eprintln!(
        "pktpath demo: building the network (namespaces {}*)",
        demo::PREFIX
    );
    let net = demo::build()?;
    eprintln!(
        "  client 10.99.1.2 -- router (nftables: drop udp dport 9999; masquerade) -- \
         switch (bridge br0) -- server 10.99.2.2"
    );
    let (nft_trace, nft_sweep) = nft_trace(false, None, demo::FILTER);
    let opts = TraceOptions {
        filter: filter(demo::FILTER)?,
        selection: Selection::default(),
        backend: None,
        ring_bytes: 16 << 20,
        count: None,
        duration: None,
        idle: Duration::from_millis(500),
        drops_only: out.drops_only,
        // The best backend this kernel has (tracepoints only on ours).
        functions: select_functions(Backend::Auto, &None, &None, false)?,
        nft_trace,
        nft_sweep,
    };
    let mut sink = sink(out)?;
    let traffic_error = std::sync::Mutex::new(None);
    let summary = std::thread::scope(|scope| {
        collect::run(&inv, &opts, sink.as_mut(), &STOP, |t| {
            eprintln!(
                "  tracing '{}' with the {} backend ({} sites); sending: ping, TCP, UDP to a \
                 blocked port, UDP to a closed port\n",
                demo::FILTER,
                match &t.functions {
                    Some(f) => format!("{} + {}", f.backend.name(), t.flavour.name()),
                    None => t.flavour.name().to_string(),
                },
                t.attached()
            );
            let net = &net;
            let traffic_error = &traffic_error;
            scope.spawn(move || {
                if let Err(e) = demo::traffic(net) {
                    *traffic_error.lock().unwrap() = Some(e);
                }
                // Let the last journeys end, then stop.
                std::thread::sleep(Duration::from_millis(1500));
                STOP.store(true, Ordering::SeqCst);
            });
            Ok(())
        })
    })?;
    eprintln!("pktpath demo: {}", summary.line());
    drop(net);
    eprintln!("pktpath demo: network removed");
    if let Some(e) = traffic_error.into_inner().unwrap() {
        return Err(e.context("demo traffic"));
    }
    Ok(ExitCode::SUCCESS)
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
        let cli = extcap_cli(&argv).unwrap().expect("a trace command");
        assert!(cli.trace.all_tracepoints);
        assert_eq!(cli.trace.interface.as_deref(), Some("eth0"));
        assert_eq!(cli.trace.filter, ["icmp"]);
        let argv: Vec<String> = argv
            .into_iter()
            .filter(|a| a != "--all-tracepoints")
            .collect();
        assert!(!extcap_cli(&argv).unwrap().unwrap().trace.all_tracepoints);
    }
}
