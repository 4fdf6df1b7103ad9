//! pktpath: the path individual packets take through the Linux network stack.
//!
//! Data flow: `kernel` attaches BPF programs that emit raw events for the
//! packets `filter` selects; `event` decodes them, `enrich` names namespaces
//! and symbols, `journey` groups them per packet, and `output` renders them.
//! `netlab` builds the virtual networks of the demo and the tests.

pub mod filter;
pub mod kernel;
pub mod sites;
