//! pktpath: the path individual packets take through the Linux network stack.
//!
//! This crate is the kernel side. `main` parses the command line and runs
//! one of `commands`; a trace goes: `kernel` loads the BPF programs (their
//! ABI: `abi`) and attaches them (tracepoints, functions), `filter`
//! compiles the tcpdump filter they run, `collect` runs the live trace
//! (reads the ring buffer, decodes records into steps, gathers nftables
//! trace messages), and `enrich` adds what another kernel interface tells
//! (routes, rules, bridges, tc filters; namespace names, symbols); `netns`
//! finds and enters network namespaces. Everything kernel-free (the step
//! model, journeys, their diagnosis, sinks and capture formats) is the
//! `pktpath_core` crate. `netlab` builds the virtual networks of `demo` and
//! the tests.

pub mod abi;
pub mod cli;
pub mod collect;
pub mod commands;
pub mod demo;
pub mod enrich;
pub mod extcap;
pub mod filter;
pub mod kernel;
pub mod netlab;
pub mod netns;
pub mod source;

/// Bad input from the user (exit code 2): a filter libpcap rejects, an
/// unknown interface or namespace, a malformed option.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);
