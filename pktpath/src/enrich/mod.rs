//! Names for what events carry as numbers: network namespaces (inode to
//! name or process), kernel addresses (to symbols), drop reasons (to words);
//! and what only another kernel interface tells: nftables rules and
//! verdicts, the routes and `ip rule`s behind route lookups.

pub mod bridge_vlan;
pub mod bridges;
pub mod netns;
pub mod nft_steps;
pub mod nftrace;
pub mod routes;
pub mod sockets;
pub mod symbols;
pub mod tc;
