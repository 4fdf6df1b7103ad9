//! Names for what events carry as numbers: network namespaces (inode to
//! name or process), kernel addresses (to symbols), sockets (to their
//! owner); and what only another kernel interface tells: nftables rules
//! and verdicts, the routes and `ip rule`s behind route lookups, bridges'
//! ports and VLAN filters, tc filters. (Drop reasons in words are
//! `pktpath_core::diagnosis::drop_reasons`.)

pub mod bridge_vlan;
pub mod bridges;
pub mod netns;
pub mod nft_steps;
pub mod nftrace;
pub mod routes;
pub mod sockets;
pub mod symbols;
pub mod tc;
