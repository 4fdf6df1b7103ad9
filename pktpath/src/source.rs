//! The one shape of a collector: an event source that holds kernel or
//! netlink state. Two implement it: the BPF programs and their ring buffer
//! (`kernel::tracepoint::Tracer`), and nftables tracing, its tables and
//! listeners (`collect::nftables::session::NftraceSession`).

/// Asked first whether it can run on this machine (and why not), started
/// from a plan, and stopped: by `stop`, which reports what went wrong, or
/// by drop, however the run ends. Either way it leaves nothing behind.
pub trait Source: Sized {
    /// What it needs to start.
    type Plan<'a>;
    /// Why it cannot run here.
    type Unavailable: std::fmt::Display;

    /// Why it cannot run on this machine, if it cannot.
    fn unavailable() -> Option<Self::Unavailable>;
    /// Starts it: programs loaded and attached, tables added, listeners
    /// open.
    fn start(plan: Self::Plan<'_>) -> anyhow::Result<Self>;
    /// Stops it, removing what it added to the kernel.
    fn stop(self) -> anyhow::Result<()>;
}
