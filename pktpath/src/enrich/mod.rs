//! What another kernel interface tells about steps and journeys: the
//! routes and `ip rule`s behind route lookups, the tc filters behind tc
//! drops, the bridge ports and VLAN filters a frame crossed (each an
//! `Enricher`); and names for what events carry as numbers, which the
//! decoder uses: network namespaces (inode to name or process), kernel
//! addresses (to symbols), sockets (to their owner). What they find is data;
//! the words are `pktpath_core::diagnosis`'s. (nftables rule tracing is an
//! event source of its own: `collect::nftables`.)

pub mod bridge_vlan;
pub mod bridges;
pub mod netns_names;
pub mod routes;
pub mod sockets;
pub mod symbols;
pub mod tc;

use pktpath_core::journey::Journey;
use pktpath_core::model::Step;

/// The one shape of an enricher: made when a run starts (empty: each reads
/// what it needs of the kernel when a step asks, and caches it), it sees
/// every step as it is decoded and every journey as it is handed out,
/// adds what it found, and is dropped when the run ends. What it finds is
/// data (a route, a rule, a cause); the words are the diagnosis's.
pub trait Enricher {
    /// Step `step` of journey `journey`, as it is decoded.
    fn step(&mut self, _journey: u64, _step: &mut Step) {}
    /// A finished journey, before the sink has it.
    fn journey(&mut self, _j: &mut Journey) {}
}

/// The enrichers of a live run, in the order they see a step.
pub fn all() -> Vec<Box<dyn Enricher>> {
    vec![
        Box::new(routes::Routes::default()),
        Box::new(tc::TcDrops::default()),
        Box::new(bridges::Bridges::default()),
    ]
}
