//! pktpath: the path individual packets take through the Linux network stack.
//!
//! Data flow: `kernel` attaches BPF programs that emit raw events for the
//! packets `filter` selects; `event` decodes them into steps, `enrich` names
//! namespaces, symbols and drop reasons, `journey` groups steps per packet,
//! and `output` renders journeys. `trace` runs that pipeline live; `netlab`
//! builds the virtual networks of `demo` and the tests.

pub mod cli;
pub mod clock;
pub mod conntrack;
pub mod demo;
pub mod enrich;
pub mod event;
pub mod extcap;
pub mod filter;
pub mod formats;
pub mod journey;
pub mod kernel;
pub mod netlab;
pub mod output;
pub mod packet;
pub mod sites;
pub mod trace;

/// Bad input from the user (exit code 2): a filter libpcap rejects, an
/// unknown interface or namespace, a malformed option.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);
