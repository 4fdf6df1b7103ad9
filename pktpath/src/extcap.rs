//! Wireshark's extcap protocol: pktpath as a capture interface in
//! Wireshark. Wireshark runs the executable it finds in its extcap folder
//! (a symlink to pktpath) with `--extcap-*` arguments: list interfaces,
//! link types and the options dialog, check a capture filter, and capture
//! into a FIFO until it sends SIGTERM. The capture is pktpath's pcapng.

use std::io::Write;

use clap::Parser;

use crate::cli::Backend;

/// The one interface pktpath offers.
pub const INTERFACE: &str = "pktpath";

/// The arguments Wireshark passes (and the options of our dialog).
#[derive(Debug, Parser)]
#[command(name = "pktpath extcap", no_binary_name = true)]
pub struct ExtcapArgs {
    #[arg(long)]
    pub extcap_interfaces: bool,
    #[arg(long, value_name = "VERSION")]
    pub extcap_version: Option<String>,
    #[arg(long, value_name = "IFACE")]
    pub extcap_interface: Option<String>,
    #[arg(long)]
    pub extcap_dlts: bool,
    #[arg(long)]
    pub extcap_config: bool,
    #[arg(long)]
    pub capture: bool,
    #[arg(long, value_name = "PATH")]
    pub fifo: Option<std::path::PathBuf>,
    #[arg(long, value_name = "FILTER")]
    pub extcap_capture_filter: Option<String>,
    #[arg(long, value_name = "PATH")]
    pub extcap_control_in: Option<String>,
    #[arg(long, value_name = "PATH")]
    pub extcap_control_out: Option<String>,
    #[arg(long)]
    pub extcap_reload_option: Option<String>,
    // The dialog's options, passed as the `call` of each `arg` line.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    pub backend: Backend,
    #[arg(long, value_name = "IFNAME")]
    pub dev: Option<String>,
    #[arg(long, value_name = "NAME|INODE")]
    pub netns: Option<String>,
    #[arg(long, value_name = "SITE")]
    pub start_at: Option<String>,
    #[arg(long, value_name = "REGEX")]
    pub functions: Option<String>,
    #[arg(long, value_parser = parse_bool, default_value = "false", num_args = 0..=1, default_missing_value = "true")]
    pub per_step: bool,
    #[arg(long, value_parser = parse_bool, default_value = "false", num_args = 0..=1, default_missing_value = "true")]
    pub all_tracepoints: bool,
}

/// Wireshark passes booleans as flags, or as "true"/"false".
fn parse_bool(s: &str) -> Result<bool, String> {
    Ok(matches!(
        s.to_ascii_lowercase().as_str(),
        "true" | "1" | "yes" | "y" | "t"
    ))
}

/// Whether these command-line arguments are Wireshark talking to us.
pub fn is_extcap_call(args: &[String]) -> bool {
    args.get(1).is_some_and(|a| a == "extcap")
        || args.iter().skip(1).any(|a| a.starts_with("--extcap-"))
}

/// `--extcap-interfaces`.
pub fn interfaces(out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "extcap {{version={}}}{{display=pktpath}}",
        env!("CARGO_PKG_VERSION")
    )?;
    writeln!(
        out,
        "interface {{value={INTERFACE}}}{{display=pktpath: packet paths through the kernel}}"
    )
}

/// `--extcap-dlts`: Ethernet, the path in packet comments.
pub fn dlts(out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "dlt {{number=1}}{{name=EN10MB}}{{display=Ethernet, the kernel path in packet comments}}"
    )
}

/// `--extcap-config`: the options dialog.
pub fn config(out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "arg {{number=0}}{{call=--backend}}{{display=Backend}}{{type=selector}}\
         {{tooltip=How probes attach (auto: the best this kernel allows)}}"
    )?;
    for (v, default) in [
        ("auto", true),
        ("tracepoint", false),
        ("fentry", false),
        ("kprobe-multi", false),
        ("kprobe", false),
    ] {
        writeln!(
            out,
            "value {{arg=0}}{{value={v}}}{{display={v}}}{{default={default}}}"
        )?;
    }
    let strings = [
        (
            1,
            "--dev",
            "Interface",
            "Only packets seen on this interface",
        ),
        (
            2,
            "--netns",
            "Network namespace",
            "Only packets seen in this namespace (name or inode)",
        ),
        (
            3,
            "--start-at",
            "Start at",
            "Follow a packet from this site on: function, tracepoint, dev:IF or netns:NAME",
        ),
        (
            4,
            "--functions",
            "Functions",
            "Only attach to functions matching this regular expression",
        ),
    ];
    for (n, call, display, tooltip) in strings {
        writeln!(
            out,
            "arg {{number={n}}}{{call={call}}}{{display={display}}}{{type=string}}\
             {{tooltip={tooltip}}}"
        )?;
    }
    writeln!(
        out,
        "arg {{number=5}}{{call=--per-step}}{{display=One packet per step}}{{type=boolflag}}\
         {{tooltip=Write one record per step, so NAT rewrites show frame by frame}}"
    )?;
    writeln!(
        out,
        "arg {{number=6}}{{call=--all-tracepoints}}{{display=All tracepoints}}{{type=boolflag}}\
         {{tooltip=Also attach net_dev_queue, netif_rx, netif_rx_entry and net_dev_xmit (left out by default)}}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wireshark_argument_forms_parse() {
        let a = ExtcapArgs::try_parse_from([
            "--capture",
            "--extcap-interface=pktpath",
            "--fifo",
            "/tmp/f",
            "--extcap-capture-filter",
            "icmp",
            "--backend",
            "tracepoint",
            "--per-step",
            "--all-tracepoints=false",
        ])
        .unwrap();
        assert!(a.capture && a.per_step && !a.all_tracepoints);
        assert_eq!(a.extcap_interface.as_deref(), Some("pktpath"));
        assert_eq!(a.backend, Backend::Tracepoint);
        let args: Vec<String> = ["pktpath", "--extcap-interfaces"].map(String::from).into();
        assert!(is_extcap_call(&args));
        let mut text = Vec::new();
        config(&mut text).unwrap();
        assert_eq!(
            String::from_utf8(text)
                .unwrap()
                .matches("arg {number=")
                .count(),
            7
        );
    }
}
