//! pktpath's kernel-free half: what a traced packet's path is, and what
//! is said and written of it. Nothing here needs a kernel, clang, libbpf,
//! libpcap or root; the binary crate `pktpath` collects steps from the
//! kernel and hands them here.
//!
//! Data flow, a floor per module, each importing only those above it:
//! `model` (a step: one observation of a packet at one site) with `sites`
//! (what each site means), `packet` (headers) and `conntrack`; `diagnosis`
//! (how a packet's steps ended and why); `journey` (steps grouped per
//! packet, streamed); `location` (where in the kernel's source each step
//! was handled, its subsystem and links, a journey's subsystems); `sinks`
//! (terminal, JSON) and `formats` (captures written and read back: pcapng,
//! FreeBSD mbuf_trace, pcap, JSON lines); `expect` (journeys checked
//! against what a file says they must show).

pub mod clock;
pub mod conntrack;
pub mod diagnosis;
pub mod expect;
pub mod formats;
pub mod imunes;
pub mod journey;
pub mod location;
pub mod model;
pub mod network;
pub mod packet;
pub mod report;
pub mod sinks;
pub mod sites;
