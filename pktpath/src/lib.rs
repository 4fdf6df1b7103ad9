//! pktpath: the path individual packets take through the Linux network stack.
//!
//! This crate is the kernel side: `kernel` loads the BPF programs and
//! attaches them (tracepoints, functions), `filter` compiles the tcpdump
//! filter they run, `collect` runs a live trace (reads the ring buffer,
//! decodes records into steps, gathers nftables trace messages), and
//! `enrich` adds what only another kernel interface tells (namespace names,
//! symbols, routes, rules, bridges, qdiscs). Everything kernel-free (the
//! step model, journeys, their diagnosis, sinks and capture formats) is the
//! `pktpath_core` crate. `netlab` builds the virtual networks of `demo` and
//! the tests.

pub mod cli;
pub mod collect;
pub mod commands;
pub mod demo;
pub mod enrich;
pub mod extcap;
pub mod filter;
pub mod kernel;
pub mod netlab;

/// Bad input from the user (exit code 2): a filter libpcap rejects, an
/// unknown interface or namespace, a malformed option.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);
