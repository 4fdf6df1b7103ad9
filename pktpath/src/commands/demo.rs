//! `pktpath demo`: builds the demo network, traces its traffic, removes it.

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Result;

use super::options::{filter, nft_trace, select_functions, sink};
use super::STOP;
use pktpath_core::clock::WallClock;
use pktpath_core::location::SourceLinks;
use pktpath_core::sinks::{Kept, Sink};

use crate::cli::{Backend, OutputArgs};
use crate::collect::{self, TraceOptions};
use crate::kernel::btf::Inventory;
use crate::kernel::tracepoint::Selection;
use crate::{demo, kernel};

/// Where the demo writes its report, unless --report says.
const REPORT: &str = "pktpath-demo-report.html";

pub fn run(out: &OutputArgs) -> Result<ExitCode> {
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
    let lab = out
        .topology
        .as_deref()
        .map(super::report::lab)
        .transpose()?;
    let links = SourceLinks::running();
    let mut sink = Kept::new(true, Some(sink(out, WallClock::now(), links)?));
    let network = collect::network::read(&crate::netns::visible());
    sink.network(&network)?;
    let traffic_error = std::sync::Mutex::new(None);
    let summary = std::thread::scope(|scope| {
        collect::run(&inv, &opts, &mut sink, &STOP, |t| {
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
    let path = out
        .report
        .clone()
        .unwrap_or_else(|| std::path::PathBuf::from(REPORT));
    match super::report::write(
        &path,
        "demo",
        &format!("the demo network, traced '{}'", demo::FILTER),
        &sink.journeys,
        Some(&network),
        lab.as_ref(),
        links,
    ) {
        Ok(()) => eprintln!(
            "pktpath demo: report written to {} (open it in a browser: the network, each \
             packet's path over it, its steps, and all paths with counts)",
            path.display()
        ),
        Err(e) => eprintln!("pktpath demo: warning: no report: {e:#}"),
    }
    if let Some(e) = traffic_error.into_inner().unwrap() {
        return Err(e.context("demo traffic"));
    }
    Ok(ExitCode::SUCCESS)
}
