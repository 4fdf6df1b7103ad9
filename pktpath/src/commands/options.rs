//! From the command line's arguments to what a run needs: the filter, the
//! selection (-i, --netns, --mark, --start-at), the function sites and
//! backend, the ring's size, nftables tracing and the sink. Bad input is a
//! `UsageError` (exit 2).

use std::io::IsTerminal;

use anyhow::{Context, Result};

use crate::cli::{Backend, Color, OutputArgs, TraceArgs, View, WriteFormat};
use crate::collect::nftables::session::{NftraceSession, Unavailable};
use crate::filter::{Filter, FilterError};
use crate::kernel::functions::FuncInventory;
use crate::kernel::tracepoint::{Functions, Selection};
use crate::netns::NetnsRef;
use crate::source::Source;
use crate::{kernel, netns, UsageError};
use pktpath_core::clock::WallClock;
use pktpath_core::formats::mbuf_trace::MbufTrace;
use pktpath_core::formats::pcapng::{Pcapng, PcapngOptions, MAX_SNAPLEN};
use pktpath_core::location::SourceLinks;
use pktpath_core::sinks::{json::Json, terminal::Terminal, Sink};

/// Where nftables tracing goes (the namespace of --netns, else ours and
/// every named one; nothing when turned off), and the other namespaces
/// where tables of killed runs are swept. Nothing at all where it cannot
/// run (`nftrace::unavailable`).
pub fn nft_trace(
    off: bool,
    netns: Option<&str>,
    expr: &str,
) -> (Option<(Vec<NetnsRef>, String)>, Vec<NetnsRef>) {
    match NftraceSession::unavailable() {
        None => {}
        // Rules exist that cannot be traced: say so.
        Some(why @ Unavailable::NoNft) if !off => {
            eprintln!("pktpath: nftables rules are not traced: {why}");
            return (None, Vec::new());
        }
        Some(_) => return (None, Vec::new()),
    }
    let visible = netns::visible();
    let traced: Vec<NetnsRef> = match netns {
        _ if off => Vec::new(),
        Some(spec) => netns::resolve(spec)
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

/// The sink `out` asks for; a file's records dated by `clock` (the live
/// clocks, or those of the capture a replay reads); steps linked to the
/// source of `links`' release (the running kernel's, live; none for a
/// capture, which may come from another kernel or system).
pub fn sink(out: &OutputArgs, clock: WallClock, links: SourceLinks) -> Result<Box<dyn Sink>> {
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
            WriteFormat::Pcapng => Box::new(
                Pcapng::new(
                    w,
                    PcapngOptions {
                        per_step: out.per_step,
                        snaplen,
                    },
                )?
                .with_clock(clock),
            ),
            WriteFormat::MbufTrace => Box::new(MbufTrace::new(w, snaplen)?.with_clock(clock)),
        });
    }
    if out.json {
        return Ok(Box::new(Json::with_links(
            std::io::BufWriter::with_capacity(OUT_BUFFER, stdout.lock()),
            out.steps,
            links,
        )));
    }
    let color = match out.color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => stdout.is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    let terminal = Terminal::new(stdout, color, out.steps).located(links, out.verbose);
    Ok(Box::new(match out.view {
        View::Steps => terminal,
        View::Subsystems => terminal.subsystems(),
    }))
}

/// Output buffer of the file and JSON sinks: a pcapng journey is a few
/// kB, and 8 kB (the default) made a write system call every few
/// journeys (20,000 a second at 60,000 selected packets/s).
const OUT_BUFFER: usize = 256 << 10;

pub fn filter(expr: &str) -> Result<Filter> {
    Filter::new(expr).map_err(|e| match e {
        FilterError::Syntax(_) | FilterError::TooLarge(..) => UsageError(e.to_string()).into(),
        other => anyhow::Error::new(other),
    })
}

pub fn parse_u32(s: &str) -> Option<u32> {
    match s.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Turns -i/--netns/--mark into what the BPF side compares.
pub fn selection(args: &TraceArgs) -> Result<Selection> {
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
        sel.netns = netns::resolve(ns).ok_or_else(|| {
            UsageError(format!(
                "unknown network namespace '{ns}' (not a name under /run/netns, nor an inode number)"
            ))
        })?;
        ns_path = Some(ns.clone());
    }
    if let Some(ifname) = &interface {
        let path = match &ns_path {
            Some(_) => Some(
                netns::path_of(sel.netns)
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
                sel.netns = netns::own_inode().unwrap_or(0);
                None
            }
        };
        sel.ifindex = netns::ifindex_in(path.as_deref(), ifname)?.ok_or_else(|| {
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

pub fn regex(flag: &str, r: &Option<String>) -> Result<Option<regex::Regex>> {
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
pub fn functions(args: &TraceArgs) -> Result<Option<Functions>> {
    select_functions(
        args.probes.backend,
        &args.probes.functions,
        &args.probes.exclude_functions,
        args.start_at.is_some(),
    )
}

pub fn select_functions(
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
    if sites.len() > crate::abi::MAX_FUNCS {
        eprintln!(
            "pktpath: warning: {} functions, tracing the first {}",
            sites.len(),
            crate::abi::MAX_FUNCS
        );
        sites.truncate(crate::abi::MAX_FUNCS);
    }
    Ok(Some(Functions { backend, sites }))
}

pub fn ring_bytes(mib: u32) -> Result<u32> {
    if !mib.is_power_of_two() || mib > 1024 {
        return Err(UsageError(format!("--ring-size {mib}: a power of two up to 1024 MiB")).into());
    }
    Ok(mib << 20)
}
