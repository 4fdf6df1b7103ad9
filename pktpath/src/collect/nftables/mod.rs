//! nftables rule-level tracing: which table, chain and rule saw a packet,
//! with the rule's text and its verdict.
//!
//! # Why
//!
//! On kernels where function probes work, the rules a packet met could be
//! read from `nft_do_chain` itself. Our own machines forbid kprobes and
//! fentry; only tracepoints work, and no tracepoint names a rule. The one
//! kernel interface that reports rule-level verdicts there is nftables
//! tracing: for a packet whose `skb->nf_trace` bit is set, every base chain
//! evaluation sends `NFT_MSG_TRACE` netlink messages to the
//! `NFNLGRP_NFTRACE` group of the packet's network namespace (what
//! `nft monitor trace` prints): table, chain, rule handle, verdict (or
//! the chain's policy), and, once per chain evaluation, the input and
//! output interfaces, the mark and the first bytes of the network and
//! transport headers.
//!
//! # What it does
//!
//! Starting a [`session::NftraceSession`] adds, in each given namespace, a table named
//! `pktpath_trace_<pid>` (families `inet` and `bridge`) whose base chains,
//! on prerouting and output at priority -500 (before raw, conntrack and
//! NAT), set `meta nftrace set 1` for the packets that match the
//! translation of the user's filter ([`translate::translate_filter`]), or for every
//! packet when it cannot be translated. A netlink socket per namespace,
//! opened inside that namespace, receives the traces on a reader thread;
//! [`message::NftTrace`] is one decoded message. [`ruleset::RulesetCache`] gives the text of a
//! rule as `nft -a list ruleset` prints it (stateless: counters without
//! their values), and the hook, priority and policy of base chains.
//!
//! `skb->nf_trace` is cleared when a packet changes namespace (veth,
//! `skb_scrub_packet`), so each namespace needs its own table. Netdev
//! (ingress/egress) chains run before prerouting and are not traced.
//!
//! # How traces tie to packets
//!
//! `NFTA_TRACE_ID` is not an skb address. In current kernels (since the
//! 2023 rework of `nft_traceinfo`; the 6.12 and 6.18 sources have it) it is
//! `siphash_3u32(hash32_ptr(skb), skb_get_hash_net(net, skb), skb->skb_iif,
//! key)`, computed once per base chain evaluation, with a key drawn at
//! random once per boot; older kernels used `jhash_2words` of the same three
//! values, without a secret. Neither user space nor BPF can compute the
//! siphash: the id only groups the messages of one packet in one namespace
//! (same skb, same flow hash, same input device). Messages after the first of a chain evaluation carry no
//! headers; the reader copies them from the last message with the same
//! namespace and id ([`message::NftTrace::headers_inherited`]). To tie a trace to a
//! journey step, match the namespace inode, the interfaces (`iif`/`oif`),
//! the mark, the L3/L4 header fields that do not change on the way (IP id
//! and length, addresses before NAT, ports, TCP sequence: see
//! [`message::NftTrace::l3_bytes`]) and time: [`message::NftTrace::received_ns`] is
//! `CLOCK_MONOTONIC`, the clock of `bpf_ktime_get_ns`, taken when the
//! message was read, so it comes shortly after the step.
//!
//! # What it leaves behind
//!
//! Nothing: the tables are deleted when the session is dropped (the caller
//! handles SIGINT and SIGTERM by returning normally, so drop runs). After a
//! SIGKILL, the next start deletes the tables of processes that no longer
//! exist ([`session::sweep_leftovers`]). Sockets close with the process.

pub mod message;
pub mod ruleset;
pub mod session;
pub mod steps;
pub mod translate;

use anyhow::Result;

use crate::netns::{run_in, NetnsRef};

/// Prefix of the names of our tables; the pid (and a per-process counter
/// after the first session) follows.
pub const TABLE_PREFIX: &str = "pktpath_trace_";
/// Priority of our base chains: before conntrack defragmentation (-400),
/// raw (-300), conntrack (-200) and destination NAT (-100).
pub const CHAIN_PRIORITY: i32 = -500;

/// Runs `nft ARGS` inside namespace `ns`, with `input` on its standard input.
pub fn nft_in(ns: &NetnsRef, args: &[&str], input: Option<&str>) -> Result<String> {
    run_in(ns, "nft", args, input)
}

/// The pid in one of our table names, `pktpath_trace_<pid>[_<n>]`.
pub fn parse_table_pid(table: &str) -> Option<u32> {
    let rest = table.strip_prefix(TABLE_PREFIX)?;
    let pid = rest.split_once('_').map_or(rest, |(p, _)| p);
    pid.parse().ok()
}
