//! Where in the kernel's source each step was handled: the function or
//! tracepoint, its file and line where known, the subsystem of the source
//! tree it belongs to, and links to that code in the exact release that
//! ran (Elixir's cross-reference).
//!
//! A reader of a journey should be one click from each step to the code
//! that ran. Without debug info that is what the kernel's names and our
//! tables say: a function's name (an identifier link), a tracepoint's call
//! site (`tracepoints`: its file, its function, and the line on the
//! releases whose source was read), a subsystem from the source tree
//! (`subsystems`). The running release comes from `version`:
//! distributions do not say it in `uname -r`. `sequence` collapses a
//! journey into the subsystems it went through.
//!
//! A tracepoint is linked by the function that fires it, not by its
//! `trace_NAME`: Elixir lists the references of an identifier only when
//! ctags finds its definition, and `trace_NAME` is made by the
//! `TRACE_EVENT` macros, which ctags does not expand (its page would be
//! empty).
//!
//! Kernel-free: the version is given (the binary crate reads it once, with
//! [`KernelVersion::running`]), and so are the steps.

mod sequence;
pub mod subsystems;
pub mod tracepoints;
pub mod version;

use std::borrow::Cow;

use serde::Serialize;

pub use sequence::{stages, stages_text, Stage};
pub use version::KernelVersion;

use crate::model::{Detail, SiteKind, Step};

/// Elixir's cross-reference of the kernel, by release tag.
pub const ELIXIR: &str = "https://elixir.bootlin.com/linux";

/// Tracepoints whose subsystem is not their file's: qdisc_enqueue is the
/// qdisc's event, fired by the core (dev_qdisc_enqueue in net/core/dev.c)
/// around the qdisc's enqueue.
const TRACEPOINT_SUBSYSTEMS: &[(&str, &str)] = &[("qdisc_enqueue", "qdisc")];

/// The nftables rule steps come from nftables tracing (netlink messages
/// sent as the rules are evaluated): their code is the rule evaluation
/// loop.
const NFT_EVAL: (&str, &str) = ("nft_do_chain", "net/netfilter/nf_tables_core.c");

/// A bridge step is made from what the bridge device saw: the forwarding
/// decision (FDB lookup, flood or forward) is br_handle_frame_finish's.
const BRIDGE_DECISION: (&str, &str) = ("br_handle_frame_finish", "net/bridge/br_input.c");

/// Links into the source of one kernel release: what the sinks are given
/// to link each step to its code (no release known: no links; the file,
/// line and subsystem are still said).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceLinks {
    pub version: Option<KernelVersion>,
}

impl SourceLinks {
    pub fn new(version: Option<KernelVersion>) -> SourceLinks {
        SourceLinks { version }
    }

    /// Links on the running kernel's release: for a live run (a replayed
    /// capture may come from another kernel, or another system).
    pub fn running() -> SourceLinks {
        SourceLinks::new(KernelVersion::running())
    }

    /// Elixir's page of identifier `ident` (its definition and
    /// references): `https://elixir.bootlin.com/linux/v6.12.107/C/ident/icmp_rcv`.
    pub fn ident_url(&self, ident: &str) -> Option<String> {
        let v = self.version?;
        is_ident(ident).then(|| format!("{ELIXIR}/{}/C/ident/{ident}", v.tag()))
    }

    /// Elixir's page of source file `file`, at `line` when known:
    /// `https://elixir.bootlin.com/linux/v6.12.107/source/net/ipv4/icmp.c#L1357`.
    pub fn source_url(&self, file: &str, line: Option<u32>) -> Option<String> {
        let v = self.version?;
        let file = file.trim_start_matches('/');
        let plain = |c: char| c.is_ascii_alphanumeric() || "_-./+,".contains(c);
        if file.is_empty() || !file.chars().all(plain) || file.contains("..") {
            return None;
        }
        Some(match line {
            Some(l) => format!("{ELIXIR}/{}/source/{file}#L{l}", v.tag()),
            None => format!("{ELIXIR}/{}/source/{file}", v.tag()),
        })
    }

    /// Where `step` was handled, on this release (see [`Location::of`]).
    pub fn locate(&self, step: &Step) -> Location {
        Location::of(step, self.version.as_ref())
    }
}

/// Where in the kernel's source a step was handled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Location {
    /// The tracepoint, for a tracepoint's step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracepoint: Option<String>,
    /// The function the code is in (the step's, the one that freed the
    /// packet, the tracepoint's caller), where known: the identifier to
    /// link.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function: Option<Cow<'static, str>>,
    /// Its source file, from the top of the kernel's tree.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<Cow<'static, str>>,
    /// Its line in `file`, on the release it was read for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// The module it is in (None: vmlinux, or not known).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// Its subsystem in the source tree ([`subsystems`]).
    pub subsystem: &'static str,
}

impl Location {
    /// Where `step` was handled, on release `version` (lines only on the
    /// releases whose source was read):
    /// - a drop or free whose freeing function is known: that function
    ///   (`icmp_rcv` for `consume_skb` freed at `icmp_rcv+0x259`): the
    ///   code that decided, not the free's tracepoint in skbuff.c;
    /// - another tracepoint: its call site;
    /// - a function (entry or return): the function, in its module;
    /// - an nftables rule step: the rule evaluation (nft_do_chain); a
    ///   bridge step: its forwarding decision (br_handle_frame_finish).
    pub fn of(step: &Step, version: Option<&KernelVersion>) -> Location {
        let fixed = |(function, file): (&'static str, &'static str)| Location {
            tracepoint: None,
            function: Some(function.into()),
            file: Some(file.into()),
            line: None,
            module: None,
            subsystem: subsystems::of_path(file).unwrap_or("other"),
        };
        match (&step.detail, step.kind) {
            (Detail::Rule(_), _) => return fixed(NFT_EVAL),
            (Detail::Bridge(_), _) => return fixed(BRIDGE_DECISION),
            _ => {}
        }
        let freed_at = match &step.detail {
            Detail::Drop(d) => d.location.as_deref(),
            Detail::Free { location } => location.as_deref(),
            _ => None,
        };
        match (step.kind, freed_at) {
            (SiteKind::Tracepoint, Some(at)) => Location::function(at, None),
            (SiteKind::Tracepoint, None) => {
                Location::tracepoint(&step.site, version, step.source.as_deref())
            }
            (SiteKind::Function | SiteKind::Return, _) => {
                let module = step
                    .source
                    .as_deref()
                    .and_then(|s| s.strip_prefix("module "));
                Location::function(&step.site, module)
            }
        }
    }

    /// Function `name` (suffixes and offset ignored), in `module`.
    pub fn function(name: &str, module: Option<&str>) -> Location {
        let ident = function_ident(name);
        Location {
            tracepoint: None,
            function: Some(Cow::Owned(ident.to_string())),
            file: None,
            line: None,
            module: module.map(str::to_string),
            subsystem: subsystems::of_place(None, module, Some(ident)),
        }
    }

    /// Tracepoint `name`'s call site on `version`; `source` is the file
    /// the step says when the table does not know the tracepoint.
    pub fn tracepoint(
        name: &str,
        version: Option<&KernelVersion>,
        source: Option<&str>,
    ) -> Location {
        let fires = tracepoints::fires(name, version);
        let file: Option<Cow<'static, str>> = match fires {
            Some(f) => Some(f.file.into()),
            None => source
                .filter(|s| !s.is_empty() && !s.starts_with("module "))
                .map(|s| Cow::Owned(s.to_string())),
        };
        let subsystem = TRACEPOINT_SUBSYSTEMS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| *s)
            .unwrap_or_else(|| subsystems::of_place(file.as_deref(), None, Some(name)));
        Location {
            tracepoint: Some(name.to_string()),
            function: fires.and_then(|f| f.function).map(Cow::Borrowed),
            line: fires.and_then(|f| f.line),
            file,
            module: None,
            subsystem,
        }
    }

    /// The links to this place on `links`' release, each where it can be
    /// made: (its function's identifier page, its file's page at the line
    /// where known).
    pub fn urls(&self, links: &SourceLinks) -> (Option<String>, Option<String>) {
        (
            self.function.as_deref().and_then(|f| links.ident_url(f)),
            self.file
                .as_deref()
                .and_then(|f| links.source_url(f, self.line)),
        )
    }
}

/// The identifier of a function as the kernel's symbols name it:
/// without the offset of an address in it (`icmp_rcv+0x259/0x4a0`), the
/// module kallsyms appends (`nft_do_chain [nf_tables]`), or the suffixes
/// of compiler-made copies (`.isra.0`, `.constprop.0`, `.part.0`, `.cold`,
/// `.llvm.NNN`), which are not in the source.
pub fn function_ident(name: &str) -> &str {
    let name = name.trim();
    let end = name
        .find(|c: char| c == '+' || c == '.' || c == '/' || c.is_whitespace())
        .unwrap_or(name.len());
    &name[..end]
}

/// Whether `s` is a C identifier (nothing else goes into a link).
fn is_ident(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{test_step, DropInfo};

    fn links(v: &str) -> SourceLinks {
        SourceLinks::new(KernelVersion::parse(v))
    }

    #[test]
    fn elixir_links() {
        let l = links("6.12.107");
        assert_eq!(
            l.ident_url("icmp_rcv").as_deref(),
            Some("https://elixir.bootlin.com/linux/v6.12.107/C/ident/icmp_rcv")
        );
        assert_eq!(
            l.source_url("net/ipv4/icmp.c", Some(1357)).as_deref(),
            Some("https://elixir.bootlin.com/linux/v6.12.107/source/net/ipv4/icmp.c#L1357")
        );
        assert_eq!(
            links("6.12.0")
                .source_url("net/ipv4/icmp.c", None)
                .as_deref(),
            Some("https://elixir.bootlin.com/linux/v6.12/source/net/ipv4/icmp.c")
        );
        assert_eq!(
            links("6.9.0-rc3").ident_url("ip_rcv").as_deref(),
            Some("https://elixir.bootlin.com/linux/v6.9-rc3/C/ident/ip_rcv")
        );
        // No release known, or nothing a link can hold: no link.
        assert_eq!(SourceLinks::default().ident_url("icmp_rcv"), None);
        assert_eq!(l.ident_url("icmp_rcv+0x259"), None);
        assert_eq!(l.ident_url(""), None);
        assert_eq!(l.ident_url("a b"), None);
        assert_eq!(l.source_url("../etc/passwd", None), None);
        assert_eq!(l.source_url("net/x.c?y", None), None);
    }

    #[test]
    fn function_names_lose_what_the_source_does_not_have() {
        for (name, ident) in [
            ("icmp_rcv", "icmp_rcv"),
            ("icmp_rcv+0x259", "icmp_rcv"),
            ("icmp_rcv+0x259/0x4a0", "icmp_rcv"),
            ("ip_finish_output2.isra.0", "ip_finish_output2"),
            ("tcp_v4_rcv.constprop.0", "tcp_v4_rcv"),
            ("__ip_append_data.part.0+0x12", "__ip_append_data"),
            ("tcp_rcv_established.cold", "tcp_rcv_established"),
            ("veth_xmit.llvm.1234567", "veth_xmit"),
            ("nft_do_chain+0x3e8 [nf_tables]", "nft_do_chain"),
            ("", ""),
        ] {
            assert_eq!(function_ident(name), ident, "{name}");
        }
    }

    #[test]
    fn a_tracepoint_step_is_where_it_fires() {
        let step = test_step(1, "net_dev_start_xmit", "ns", Detail::None);
        let v = KernelVersion::parse("6.12.107");
        let at = Location::of(&step, v.as_ref());
        assert_eq!(at.tracepoint.as_deref(), Some("net_dev_start_xmit"));
        assert_eq!(at.file.as_deref(), Some("net/core/dev.c"));
        assert_eq!(at.line, Some(3692));
        assert_eq!(at.function.as_deref(), Some("xmit_one"));
        assert_eq!(at.subsystem, "core");
        let (ident, source) = at.urls(&SourceLinks::new(v));
        assert_eq!(
            ident.as_deref(),
            Some("https://elixir.bootlin.com/linux/v6.12.107/C/ident/xmit_one")
        );
        assert_eq!(
            source.as_deref(),
            Some("https://elixir.bootlin.com/linux/v6.12.107/source/net/core/dev.c#L3692")
        );
        // Another release: the file, no line.
        let at = links("6.12.118").locate(&step);
        assert_eq!(
            (at.file.as_deref(), at.line),
            (Some("net/core/dev.c"), None)
        );
        // The qdisc's event, fired by the core.
        let q = test_step(1, "qdisc_enqueue", "ns", Detail::None);
        assert_eq!(Location::of(&q, None).subsystem, "qdisc");
        // A tracepoint of no table: by its name.
        let t = test_step(1, "tcp_rcv_space_adjust", "ns", Detail::None);
        let at = Location::of(&t, None);
        assert_eq!((at.file, at.subsystem), (None, "tcp"));
    }

    #[test]
    fn a_free_is_where_it_was_decided() {
        let drop = Detail::Drop(Box::new(DropInfo {
            reason: "NO_SOCKET".into(),
            code: 3,
            location: Some("ping_rcv+0xb3".into()),
            found: None,
        }));
        let at = Location::of(&test_step(1, "kfree_skb", "ns", drop), None);
        assert_eq!(
            (at.function.as_deref(), at.subsystem),
            (Some("ping_rcv"), "icmp")
        );
        assert_eq!(at.tracepoint, None);
        let free = Detail::Free {
            location: Some("icmp_rcv+0x259".into()),
        };
        let at = links("6.18").locate(&test_step(1, "consume_skb", "ns", free));
        assert_eq!(
            (at.function.as_deref(), at.subsystem),
            (Some("icmp_rcv"), "icmp")
        );
        assert_eq!(
            at.urls(&links("6.18")).0.as_deref(),
            Some("https://elixir.bootlin.com/linux/v6.18/C/ident/icmp_rcv")
        );
        // Where the free is not known: the tracepoint's call site.
        let at = links("6.18").locate(&test_step(
            1,
            "consume_skb",
            "ns",
            Detail::Free { location: None },
        ));
        assert_eq!(
            (
                at.tracepoint.as_deref(),
                at.function.as_deref(),
                at.line,
                at.subsystem
            ),
            (Some("consume_skb"), Some("consume_skb"), Some(1397), "skb")
        );
    }

    #[test]
    fn a_function_step_is_its_function_in_its_module() {
        let mut step = test_step(1, "veth_xmit", "ns", Detail::None);
        step.kind = SiteKind::Function;
        step.source = Some("module veth".into());
        let at = Location::of(&step, None);
        assert_eq!(at.function.as_deref(), Some("veth_xmit"));
        assert_eq!(at.module.as_deref(), Some("veth"));
        assert_eq!(at.subsystem, "veth");
        let mut step = test_step(1, "ip_rcv_finish.isra.0", "ns", Detail::None);
        step.kind = SiteKind::Function;
        step.source = None;
        let at = Location::of(&step, None);
        assert_eq!(
            (at.function.as_deref(), at.subsystem, at.module),
            (Some("ip_rcv_finish"), "ipv4", None)
        );
    }
}
