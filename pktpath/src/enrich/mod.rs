//! Names for what events carry as numbers: network namespaces (inode to
//! name or process), kernel addresses (to symbols), drop reasons (to words).

pub mod drop;
pub mod netns;
pub mod nftrace;
pub mod symbols;
