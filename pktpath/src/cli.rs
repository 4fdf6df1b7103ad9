//! Command-line interface.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::kernel::tracepoint::{Flavour, FuncBackend};

/// Show the path packets take through the Linux kernel network stack.
///
/// Selects packets with a tcpdump filter, follows each through every network
/// tracepoint it crosses (device receive and transmit, qdisc, routing,
/// sockets, drops) across namespaces, and prints one journey per packet.
#[derive(Debug, Parser)]
#[command(name = "pktpath", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Option<Cmd>,
    #[command(flatten)]
    pub trace: TraceArgs,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Tell which tracing backends work on this kernel, by trying each.
    Doctor,
    /// Build a small virtual network, send traffic through it and trace it.
    Demo(OutputArgs),
    /// Check that packets take the path a file says they must: the rules,
    /// routes, namespaces and devices they pass, and how they end
    /// (docs/expect.md). Exit 0 when every expectation holds, 1 when one
    /// does not (or could not be checked), 2 for a bad file or options.
    Expect(ExpectArgs),
    /// Write a self-contained HTML report of a capture's journeys (their
    /// paths over the network, timelines, distinct paths with counts), or
    /// their graphs as DOT or Mermaid.
    Report(ReportArgs),
    /// List the sites: network tracepoints and kernel functions that take
    /// (or return) a packet, with argument position and subsystem.
    Sites {
        /// Only names matching this regular expression.
        regex: Option<String>,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// The best that works: functions (kprobe-multi, fentry or kprobe) and
    /// tracepoints, else tracepoints only.
    Auto,
    /// Tracepoints only (tp_btf, else raw_tp).
    Tracepoint,
    /// Tracepoints only, as tp_btf.
    #[value(name = "tp_btf")]
    TpBtf,
    /// Tracepoints only, as raw_tp.
    #[value(name = "raw_tp")]
    RawTp,
    /// Every function through BPF trampolines, plus tracepoints.
    Fentry,
    /// Every function through one kprobe-multi link, plus tracepoints.
    #[value(name = "kprobe-multi")]
    KprobeMulti,
    /// Every function through one kprobe each, plus tracepoints.
    Kprobe,
}

impl Backend {
    /// The tracepoint program type (None: tp_btf, else raw_tp).
    pub fn flavour(self) -> Option<Flavour> {
        match self {
            Backend::TpBtf => Some(Flavour::TpBtf),
            Backend::RawTp => Some(Flavour::RawTp),
            _ => None,
        }
    }
    /// The function backend asked for, if one was named.
    pub fn functions(self) -> Option<FuncBackend> {
        match self {
            Backend::Fentry => Some(FuncBackend::Fentry),
            Backend::KprobeMulti => Some(FuncBackend::KprobeMulti),
            Backend::Kprobe => Some(FuncBackend::Kprobe),
            _ => None,
        }
    }
}

/// Capture file formats -w writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WriteFormat {
    /// pcapng: the path in packet comments, packet id = journey id.
    Pcapng,
    /// The FreeBSD mbuf_trace layout: pcap, DLT_USER0, path strings then
    /// the Ethernet frame.
    #[value(name = "mbuf-trace")]
    MbufTrace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Color {
    Auto,
    Always,
    Never,
}

/// How journeys are written.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Write pcapng to FILE ('-' for stdout) instead of printing: one packet
    /// per journey, the path in its comments (tcpdump -r, tshark, Wireshark).
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    pub write: Option<std::path::PathBuf>,
    /// Format written by -w.
    #[arg(long, value_enum, default_value_t = WriteFormat::Pcapng, requires = "write")]
    pub format: WriteFormat,
    /// With -w: one packet record per step (same packet id), with the bytes
    /// seen at that step, so NAT rewrites show frame by frame.
    #[arg(long, requires = "write")]
    pub per_step: bool,
    /// With -w: bytes of each frame kept (at most 142: the 128 the probes
    /// capture plus an Ethernet header).
    #[arg(long, value_name = "BYTES", requires = "write")]
    pub snaplen: Option<u32>,
    /// Write JSON lines: one journey per line (see docs/json.md).
    #[arg(long)]
    pub json: bool,
    /// Also print every step live, as it happens.
    #[arg(long)]
    pub steps: bool,
    /// Only show journeys that ended in a real drop.
    #[arg(long)]
    pub drops_only: bool,
    /// Colors on the terminal.
    #[arg(long, value_enum, default_value_t = Color::Auto)]
    pub color: Color,
    /// On the terminal, each step's link to its code (Elixir, the running
    /// release) on a line of its own.
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Also write a self-contained HTML report of the journeys to FILE
    /// when the run ends (open it in a browser; it loads nothing).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// With --report: an IMUNES topology file (.imn, or its JSON form) to
    /// lay the network out as the lab draws it.
    #[arg(long, value_name = "FILE")]
    pub topology: Option<PathBuf>,
    /// What the terminal shows of a journey: its steps, or the subsystems
    /// it went through, in order.
    #[arg(long, value_enum, default_value_t = View::Steps)]
    pub view: View,
}

/// What the terminal shows of each journey.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum View {
    /// Every step, with where in the kernel's source it was handled.
    Steps,
    /// The subsystems it went through, in order (`veth → core → bridge →
    /// netfilter(prerouting) → routing → ipv4 → icmp`).
    Subsystems,
}

/// How the probes are set up: what a trace and `expect` share.
#[derive(Debug, Clone, Args)]
pub struct Probes {
    /// Attach backend.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    pub backend: Backend,
    /// Only attach to functions matching this regular expression.
    #[arg(long, value_name = "REGEX")]
    pub functions: Option<String>,
    /// Do not attach to functions matching this regular expression.
    #[arg(long, value_name = "REGEX")]
    pub exclude_functions: Option<String>,
    /// Do not add the temporary nftables tables that report which rule saw
    /// a packet (`meta nftrace set 1` in each namespace; removed on exit).
    #[arg(long)]
    pub no_nft_trace: bool,
    /// Write this file once the probes are attached (for scripts and tests).
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
    /// Close a journey after this many seconds without events.
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
    pub idle_timeout: f64,
    /// Ring buffer size in MiB (a power of two). 16 MiB hold ~45k events:
    /// ~90 ms of a 100k packets/s flow, every packet selected.
    #[arg(long, value_name = "MIB", default_value_t = 16)]
    pub ring_size: u32,
}

#[derive(Debug, Clone, Args)]
pub struct TraceArgs {
    /// Packet filter in tcpdump (pcap-filter) syntax, e.g. 'host 10.0.0.2 and icmp'.
    /// Without one, every packet is traced.
    #[arg(value_name = "FILTER")]
    pub filter: Vec<String>,
    /// Read journeys from FILE ('-' for stdin) instead of tracing: pcapng
    /// written by pktpath, pcap/pcapng of FreeBSD mbuf_trace (DLT_USER0),
    /// or JSON lines. A FILTER then selects among the recorded packets.
    #[arg(short = 'r', long = "read", value_name = "FILE")]
    pub read: Option<PathBuf>,
    /// Only packets seen on this interface (in --netns, else in ours).
    #[arg(short = 'i', long, value_name = "IFNAME")]
    pub interface: Option<String>,
    /// Only packets seen in this network namespace: a name under /run/netns
    /// or an inode number.
    #[arg(long, value_name = "NAME|INODE")]
    pub netns: Option<String>,
    /// Only packets whose mark matches: MARK or MARK/MASK (hex with 0x).
    #[arg(long, value_name = "MARK[/MASK]")]
    pub mark: Option<String>,
    /// Start following a packet only where it reaches this site: a function
    /// or tracepoint name, dev:IFNAME or netns:NAME.
    #[arg(long, value_name = "SITE")]
    pub start_at: Option<String>,
    /// Also attach the tracepoints left out by default because another one
    /// fires for the same packet right before or after (net_dev_queue,
    /// netif_rx_entry, netif_rx, net_dev_xmit): more steps, a program run
    /// more per packet.
    #[arg(long)]
    pub all_tracepoints: bool,
    /// Stop after N journeys.
    #[arg(short = 'c', long, value_name = "N")]
    pub count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,
    #[command(flatten)]
    pub probes: Probes,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ExpectArgs {
    /// The expectations file (TOML, see docs/expect.md).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Check the journeys of a capture written earlier (pktpath's pcapng
    /// or JSON lines) instead of tracing.
    #[arg(short = 'r', long = "read", value_name = "CAPTURE")]
    pub read: Option<PathBuf>,
    /// Run this shell command once the probes are attached (the traffic
    /// to check); tracing ends when it exits and --settle has passed.
    #[arg(long, value_name = "COMMAND", conflicts_with = "read")]
    pub cmd: Option<String>,
    /// Seconds to keep tracing after --cmd exits, for packets in flight.
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0, requires = "cmd")]
    pub settle: f64,
    /// Stop tracing after this many seconds (without --cmd: else Ctrl-C).
    #[arg(long, value_name = "SECONDS", conflicts_with = "read")]
    pub duration: Option<f64>,
    /// Also write the traced journeys to this pcapng file (to look at a
    /// failure later: pktpath -r, Wireshark).
    #[arg(
        short = 'w',
        long = "write",
        value_name = "FILE",
        conflicts_with = "read"
    )]
    pub write: Option<PathBuf>,
    /// Write the verdicts as JUnit XML to this file (for CI systems).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Print the verdicts as one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub probes: Probes,
    /// Colors on the terminal.
    #[arg(long, value_enum, default_value_t = Color::Auto)]
    pub color: Color,
}

/// What a text graph shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphOf {
    /// Subsystem -> subsystem (the source tree's), weighted by count.
    Subsystems,
    /// Site -> site (functions and tracepoints), weighted by count.
    Sites,
}

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// Only the journeys of packets matching this filter (tcpdump syntax).
    #[arg(value_name = "FILTER")]
    pub filter: Vec<String>,
    /// The capture (pktpath's pcapng, FreeBSD mbuf_trace, JSON lines).
    #[arg(short = 'r', long = "read", value_name = "FILE")]
    pub read: PathBuf,
    /// Where to write ('-' for stdout): the HTML report, or the graph.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// A Graphviz DOT graph instead of the report: of one journey
    /// (--journey: namespaces as clusters), else of the transitions of all.
    #[arg(long, conflicts_with = "mermaid")]
    pub dot: bool,
    /// A Mermaid flowchart instead of the report (as --dot).
    #[arg(long)]
    pub mermaid: bool,
    /// An IMUNES topology file (.imn, or its JSON form): the network is
    /// laid out as the lab draws it, with its nodes and links.
    #[arg(long, value_name = "FILE")]
    pub topology: Option<PathBuf>,
    /// With --dot or --mermaid: this journey's path.
    #[arg(long, value_name = "ID")]
    pub journey: Option<u64>,
    /// With --dot or --mermaid and no --journey: which transitions.
    #[arg(long, value_enum, default_value_t = GraphOf::Subsystems)]
    pub graph: GraphOf,
}
