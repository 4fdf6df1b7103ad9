//! nftables trace messages (`NFT_MSG_TRACE`), read from netlink: one
//! [`NftTrace`] each, with the headers a chain evaluation's later messages
//! lack copied from its first.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{anyhow, bail, Result};
use netlink_packet_core::{
    parse_string, parse_u16_be, parse_u32, parse_u32_be, parse_u64_be, NetlinkBuffer, NlaBuffer,
    NlasIterator,
};

use super::parse_table_pid;

// include/uapi/linux/netfilter/nfnetlink.h, nf_tables.h
pub(super) const NFNLGRP_NFTRACE: u32 = 9;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_TRACE: u16 = 17;
const NFTA_TRACE_TABLE: u16 = 1;
const NFTA_TRACE_CHAIN: u16 = 2;
const NFTA_TRACE_RULE_HANDLE: u16 = 3;
const NFTA_TRACE_TYPE: u16 = 4;
const NFTA_TRACE_VERDICT: u16 = 5;
const NFTA_TRACE_ID: u16 = 6;
const NFTA_TRACE_LL_HEADER: u16 = 7;
const NFTA_TRACE_NETWORK_HEADER: u16 = 8;
const NFTA_TRACE_TRANSPORT_HEADER: u16 = 9;
const NFTA_TRACE_IIF: u16 = 10;
const NFTA_TRACE_IIFTYPE: u16 = 11;
const NFTA_TRACE_OIF: u16 = 12;
const NFTA_TRACE_OIFTYPE: u16 = 13;
const NFTA_TRACE_MARK: u16 = 14;
const NFTA_TRACE_NFPROTO: u16 = 15;
const NFTA_TRACE_POLICY: u16 = 16;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;
/// Size of the `struct nfgenmsg` that precedes the attributes.
const NFGENMSG_LEN: usize = 4;

/// What a trace message reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TraceKind {
    /// A rule matched and gave a verdict (possibly `continue`).
    Rule,
    /// Return from a chain: by a `return` rule, or at the end of a
    /// non-base chain (verdict `continue`, no rule handle).
    Return,
    /// The end of a base chain: its policy decided.
    Policy,
    /// An unknown type number.
    Other(u32),
}

/// One decoded `NFT_MSG_TRACE` message.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct NftTrace {
    /// Inode of the namespace whose socket received it.
    pub netns_ino: u32,
    /// `NFTA_TRACE_ID`: the same for all messages of one packet in one
    /// namespace (see the module documentation).
    pub id: u32,
    /// Family of the table: ip, ip6, inet, arp, bridge, netdev. (Names
    /// are shared (`intern`): tens of thousands of messages a second
    /// repeat a few.)
    pub family: Arc<str>,
    /// Protocol the chain processed (`NFTA_TRACE_NFPROTO`): ipv4, ipv6...
    pub nfproto: Option<Arc<str>>,
    pub table: Arc<str>,
    pub chain: Arc<str>,
    pub rule_handle: Option<u64>,
    pub kind: TraceKind,
    /// accept, drop, continue, break, return, jump CHAIN, goto CHAIN,
    /// queue N, stolen, repeat, stop; for a policy: accept or drop.
    pub verdict: Arc<str>,
    /// Input and output interface indexes in this namespace.
    pub iif: Option<u32>,
    pub oif: Option<u32>,
    /// ARPHRD_* types of those interfaces.
    pub iif_type: Option<u16>,
    pub oif_type: Option<u16>,
    /// skb->mark (0 when the kernel did not send one).
    pub mark: u32,
    /// Up to 20 bytes of the link-layer header (a VLAN tag included).
    pub ll_header: Header<20>,
    /// Up to 40 bytes from the network header.
    pub network_header: Header<40>,
    /// Up to 20 bytes from the transport header.
    pub transport_header: Header<20>,
    /// Interfaces and headers were copied from an earlier message of the
    /// same packet and chain (the kernel sends them once per chain).
    pub headers_inherited: bool,
    /// CLOCK_MONOTONIC nanoseconds when the message was read.
    pub received_ns: u64,
}

impl NftTrace {
    /// Whether this message comes from one of our own tracing tables.
    pub fn is_own(&self) -> bool {
        parse_table_pid(&self.table).is_some()
    }

    /// The message 6.x kernels send when evaluation reaches the end of a
    /// chain's rules (the blob's last element): type rule, verdict
    /// continue, no handle. The return or policy message that follows says
    /// the same; the session does not pass these on.
    pub fn is_end_marker(&self) -> bool {
        self.kind == TraceKind::Rule && self.rule_handle.is_none() && &*self.verdict == "continue"
    }

    /// The network and transport headers as one buffer starting at the IP
    /// header, when they are contiguous (the IP header was no longer than
    /// what the kernel copied): for [`pktpath_core::packet::decode`] with `l3`.
    pub fn l3_bytes(&self) -> Option<Vec<u8>> {
        let nh = &self.network_header;
        let ip_hdr_len = match nh.first()? >> 4 {
            4 => ((nh[0] & 0xf) as usize) * 4,
            6 => 40,
            _ => return None,
        };
        if nh.len() != ip_hdr_len {
            return None;
        }
        let mut b = nh.to_vec();
        b.extend_from_slice(&self.transport_header);
        Some(b)
    }

    /// A one-line summary, in the manner of `nft monitor trace`.
    pub fn line(&self) -> String {
        let what = match self.kind {
            TraceKind::Rule => format!(
                "rule handle {} verdict {}",
                self.rule_handle.map_or("?".into(), |h| h.to_string()),
                self.verdict
            ),
            TraceKind::Return => match self.rule_handle {
                Some(h) => format!("rule handle {h} verdict {}", self.verdict),
                None => format!("end of chain, verdict {}", self.verdict),
            },
            TraceKind::Policy => format!("policy {}", self.verdict),
            TraceKind::Other(n) => format!("trace type {n} verdict {}", self.verdict),
        };
        format!(
            "trace id {:08x} {} {} {} {what}",
            self.id, self.family, self.table, self.chain
        )
    }
}

/// The name nft uses for an NFPROTO_* family number.
pub fn family_name(nfproto: u8) -> String {
    match nfproto {
        0 => "unspec".into(),
        1 => "inet".into(),
        2 => "ip".into(),
        3 => "arp".into(),
        5 => "netdev".into(),
        7 => "bridge".into(),
        10 => "ip6".into(),
        n => format!("family{n}"),
    }
}

fn nfproto_name(n: u32) -> String {
    match n {
        2 => "ipv4".into(),
        3 => "arp".into(),
        7 => "bridge".into(),
        10 => "ipv6".into(),
        n => format!("proto{n}"),
    }
}

/// A verdict code (`enum nft_verdicts` or NF_* with its upper bits) in
/// words; `chain` is the jump/goto target.
pub fn verdict_name(code: i32, chain: Option<&str>) -> String {
    let target = chain.unwrap_or("?");
    match code {
        -1 => "continue".into(),
        -2 => "break".into(),
        -3 => format!("jump {target}"),
        -4 => format!("goto {target}"),
        -5 => "return".into(),
        c if c < 0 => format!("verdict {c}"),
        c => match c & 0xff {
            0 => "drop".into(),
            1 => "accept".into(),
            2 => "stolen".into(),
            3 => format!("queue {}", (c as u32) >> 16),
            4 => "repeat".into(),
            5 => "stop".into(),
            _ => format!("verdict {c}"),
        },
    }
}

/// Decodes one netlink message (header included); Ok(None) when it is not
/// an nftables trace. Never panics on malformed input.
pub fn parse_trace(msg: &[u8], netns_ino: u32, received_ns: u64) -> Result<Option<NftTrace>> {
    let nl = NetlinkBuffer::new_checked(msg).map_err(|e| anyhow!("{e}"))?;
    if nl.message_type() != (NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_TRACE) {
        return Ok(None);
    }
    let payload = nl.payload();
    if payload.len() < NFGENMSG_LEN {
        bail!("trace message too short");
    }
    let mut t = NftTrace {
        netns_ino,
        id: 0,
        family: intern(&family_name(payload[0])),
        nfproto: None,
        table: intern(""),
        chain: intern(""),
        rule_handle: None,
        kind: TraceKind::Other(0),
        verdict: intern(""),
        iif: None,
        oif: None,
        iif_type: None,
        oif_type: None,
        mark: 0,
        ll_header: Header::default(),
        network_header: Header::default(),
        transport_header: Header::default(),
        headers_inherited: false,
        received_ns,
    };
    let mut policy = None;
    let mut verdict = None;
    for nla in NlasIterator::new(&payload[NFGENMSG_LEN..]) {
        let nla = nla.map_err(|e| anyhow!("bad attribute: {e}"))?;
        let v = nla.value();
        let e = |e: netlink_packet_core::DecodeError| anyhow!("attribute {}: {e}", nla.kind());
        match nla.kind() {
            NFTA_TRACE_TABLE => t.table = intern(nla_str(v)?),
            NFTA_TRACE_CHAIN => t.chain = intern(nla_str(v)?),
            NFTA_TRACE_RULE_HANDLE => t.rule_handle = Some(parse_u64_be(v).map_err(e)?),
            NFTA_TRACE_TYPE => {
                t.kind = match parse_u32_be(v).map_err(e)? {
                    1 => TraceKind::Policy,
                    2 => TraceKind::Return,
                    3 => TraceKind::Rule,
                    n => TraceKind::Other(n),
                }
            }
            NFTA_TRACE_VERDICT => verdict = Some(parse_verdict(v)?),
            // Put with nla_put_u32 (host order) since 6.4, before that as
            // be32 of a host-order hash: opaque either way.
            NFTA_TRACE_ID => t.id = parse_u32(v).map_err(e)?,
            NFTA_TRACE_LL_HEADER => t.ll_header = Header::from(v),
            NFTA_TRACE_NETWORK_HEADER => t.network_header = Header::from(v),
            NFTA_TRACE_TRANSPORT_HEADER => t.transport_header = Header::from(v),
            NFTA_TRACE_IIF => t.iif = Some(parse_u32_be(v).map_err(e)?),
            NFTA_TRACE_IIFTYPE => t.iif_type = Some(parse_u16_be(v).map_err(e)?),
            NFTA_TRACE_OIF => t.oif = Some(parse_u32_be(v).map_err(e)?),
            NFTA_TRACE_OIFTYPE => t.oif_type = Some(parse_u16_be(v).map_err(e)?),
            NFTA_TRACE_MARK => t.mark = parse_u32_be(v).map_err(e)?,
            NFTA_TRACE_NFPROTO => {
                t.nfproto = Some(intern(&nfproto_name(parse_u32_be(v).map_err(e)?)))
            }
            NFTA_TRACE_POLICY => policy = Some(parse_u32_be(v).map_err(e)? as i32),
            _ => {}
        }
    }
    t.verdict = intern(&match (t.kind, policy, verdict) {
        (TraceKind::Policy, Some(p), _) => verdict_name(p, None),
        (_, _, Some(v)) => v,
        (_, Some(p), None) => verdict_name(p, None),
        _ => String::new(),
    });
    Ok(Some(t))
}

/// A string attribute (NUL-terminated) without copying it.
fn nla_str(v: &[u8]) -> Result<&str> {
    let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
    std::str::from_utf8(&v[..end]).map_err(|_| anyhow!("a name that is not UTF-8"))
}

/// The shared copy of a name (table, chain, family, verdict): the reader
/// allocated five strings for each message. Bounded: names from a hostile
/// ruleset cannot grow it.
fn intern(s: &str) -> Arc<str> {
    thread_local! {
        static NAMES: std::cell::RefCell<std::collections::HashSet<Arc<str>>> =
            Default::default();
    }
    NAMES.with_borrow_mut(|names| {
        if let Some(n) = names.get(s) {
            return n.clone();
        }
        if names.len() >= 4096 {
            names.clear();
        }
        let n: Arc<str> = s.into();
        names.insert(n.clone());
        n
    })
}

/// Up to N bytes of a header, kept inline: a message is one allocation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Header<const N: usize> {
    len: u8,
    bytes: [u8; N],
}

impl<const N: usize> Default for Header<N> {
    fn default() -> Self {
        Header {
            len: 0,
            bytes: [0; N],
        }
    }
}

impl<const N: usize> From<&[u8]> for Header<N> {
    /// The first N bytes (the kernel sends at most that many).
    fn from(v: &[u8]) -> Self {
        let n = v.len().min(N);
        let mut h = Header::default();
        h.bytes[..n].copy_from_slice(&v[..n]);
        h.len = n as u8;
        h
    }
}

impl<const N: usize> std::ops::Deref for Header<N> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

impl<const N: usize> std::fmt::Debug for Header<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

impl<const N: usize> serde::Serialize for Header<N> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(s)
    }
}

/// The nested NFTA_TRACE_VERDICT attribute in words.
fn parse_verdict(nested: &[u8]) -> Result<String> {
    let mut code = None;
    let mut chain = None;
    for nla in NlasIterator::new(nested) {
        let nla: NlaBuffer<&[u8]> = nla.map_err(|e| anyhow!("bad verdict attribute: {e}"))?;
        match nla.kind() {
            NFTA_VERDICT_CODE => {
                code = Some(parse_u32_be(nla.value()).map_err(|e| anyhow!("verdict: {e}"))? as i32)
            }
            NFTA_VERDICT_CHAIN => {
                chain = Some(parse_string(nla.value()).map_err(|e| anyhow!("verdict: {e}"))?)
            }
            _ => {}
        }
    }
    let code = code.ok_or_else(|| anyhow!("verdict without code"))?;
    Ok(verdict_name(code, chain.as_deref()))
}

/// Decodes every trace message in one datagram; malformed ones are
/// skipped (counted in the second value).
pub fn parse_datagram(buf: &[u8], netns_ino: u32, received_ns: u64) -> (Vec<NftTrace>, usize) {
    let mut out = Vec::new();
    let mut bad = 0;
    let mut off = 0;
    while off < buf.len() {
        let rest = &buf[off..];
        let Ok(nl) = NetlinkBuffer::new_checked(rest) else {
            bad += 1;
            break;
        };
        let len = nl.length() as usize;
        match parse_trace(&rest[..len], netns_ino, received_ns) {
            Ok(Some(t)) => out.push(t),
            Ok(None) => {}
            Err(_) => bad += 1,
        }
        // NLMSG_ALIGN; a checked buffer has len >= 16, so this advances.
        off = off.saturating_add((len + 3) & !3);
    }
    (out, bad)
}

/// Fills the interfaces and headers of messages that lack them from the
/// previous message of the same packet (namespace and id).
#[derive(Default)]
pub(super) struct Inheritance {
    last: HashMap<(u32, u32), Lent>,
}

/// What a message lends the next ones of its packet.
pub(super) struct Lent {
    iif: Option<u32>,
    oif: Option<u32>,
    iif_type: Option<u16>,
    oif_type: Option<u16>,
    ll_header: Header<20>,
    network_header: Header<40>,
    transport_header: Header<20>,
    nfproto: Option<Arc<str>>,
}

impl Inheritance {
    /// The messages of one evaluation come together: the packets of the
    /// last moment suffice (4,096 copies of a message were 2.2 MB).
    const MAX: usize = 1024;

    pub(super) fn apply(&mut self, t: &mut NftTrace) {
        let key = (t.netns_ino, t.id);
        let has_packet = !t.network_header.is_empty() || t.iif.is_some() || t.oif.is_some();
        if has_packet {
            if self.last.len() >= Self::MAX {
                self.last.clear();
            }
            let lent = Lent {
                iif: t.iif,
                oif: t.oif,
                iif_type: t.iif_type,
                oif_type: t.oif_type,
                ll_header: t.ll_header,
                network_header: t.network_header,
                transport_header: t.transport_header,
                nfproto: t.nfproto.clone(),
            };
            self.last.insert(key, lent);
        } else if let Some(prev) = self.last.get(&key) {
            t.iif = prev.iif;
            t.oif = prev.oif;
            t.iif_type = prev.iif_type;
            t.oif_type = prev.oif_type;
            t.ll_header = prev.ll_header;
            t.network_header = prev.network_header;
            t.transport_header = prev.transport_header;
            if t.nfproto.is_none() {
                t.nfproto = prev.nfproto.clone();
            }
            t.headers_inherited = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_in_words() {
        assert_eq!(verdict_name(0, None), "drop");
        assert_eq!(verdict_name(1, None), "accept");
        assert_eq!(verdict_name(-1, None), "continue");
        assert_eq!(verdict_name(-3, Some("c")), "jump c");
        assert_eq!(verdict_name(-4, Some("c")), "goto c");
        assert_eq!(verdict_name(-5, None), "return");
        assert_eq!(verdict_name((5 << 16) | 3, None), "queue 5");
        // NF_DROP_ERR(-EHOSTUNREACH)
        assert_eq!(verdict_name(113 << 16, None), "drop");
    }

    fn nla(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(value);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    fn message(family: u8, attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut payload = vec![family, 0, 0, 0];
        for a in attrs {
            payload.extend_from_slice(a);
        }
        let mut m = Vec::new();
        m.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&(NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_TRACE).to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&payload);
        m
    }

    fn sample() -> Vec<u8> {
        let mut verdict = nla(NFTA_VERDICT_CODE, &0u32.to_be_bytes());
        verdict.extend(nla(NFTA_VERDICT_CHAIN, b"x\0"));
        let ip = [
            0x45, 0, 0, 29, 0x12, 0x34, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        message(
            1,
            &[
                nla(NFTA_TRACE_NFPROTO, &2u32.to_be_bytes()),
                nla(NFTA_TRACE_TYPE, &3u32.to_be_bytes()),
                nla(NFTA_TRACE_ID, &0xdeadbeefu32.to_ne_bytes()),
                nla(NFTA_TRACE_CHAIN, b"filter_forward\0"),
                nla(NFTA_TRACE_TABLE, b"t\0"),
                nla(NFTA_TRACE_RULE_HANDLE, &7u64.to_be_bytes()),
                nla(NFTA_TRACE_VERDICT | 0x8000, &verdict),
                nla(NFTA_TRACE_MARK, &0x42u32.to_be_bytes()),
                nla(NFTA_TRACE_IIF, &3u32.to_be_bytes()),
                nla(NFTA_TRACE_IIFTYPE, &1u16.to_be_bytes()),
                nla(NFTA_TRACE_NETWORK_HEADER, &ip),
                nla(
                    NFTA_TRACE_TRANSPORT_HEADER,
                    &[0x9f, 0x59, 0x27, 0x0f, 0, 9, 0, 0],
                ),
            ],
        )
    }

    #[test]
    fn parses_a_trace_message() {
        let m = sample();
        let t = parse_trace(&m, 4026531840, 5).unwrap().unwrap();
        assert_eq!(&*t.family, "inet");
        assert_eq!(t.nfproto.as_deref(), Some("ipv4"));
        assert_eq!(t.kind, TraceKind::Rule);
        assert_eq!(t.id, 0xdeadbeef);
        assert_eq!((&*t.table, &*t.chain), ("t", "filter_forward"));
        assert_eq!(t.rule_handle, Some(7));
        assert_eq!(&*t.verdict, "drop");
        assert_eq!(t.mark, 0x42);
        assert_eq!((t.iif, t.iif_type, t.oif), (Some(3), Some(1), None));
        let flow = pktpath_core::packet::decode(&t.l3_bytes().unwrap(), true).unwrap();
        assert!(flow
            .line()
            .starts_with("10.0.0.1 > 10.0.0.2 UDP 40793 > 9999"));
        assert_eq!(
            t.line(),
            "trace id deadbeef inet t filter_forward rule handle 7 verdict drop"
        );

        // Two messages in one datagram, the second a policy without headers.
        let mut d = m.clone();
        d.extend(message(
            1,
            &[
                nla(NFTA_TRACE_TYPE, &1u32.to_be_bytes()),
                nla(NFTA_TRACE_ID, &0xdeadbeefu32.to_ne_bytes()),
                nla(NFTA_TRACE_CHAIN, b"c\0"),
                nla(NFTA_TRACE_TABLE, b"t\0"),
                nla(NFTA_TRACE_POLICY, &1u32.to_be_bytes()),
            ],
        ));
        let (mut ts, bad) = parse_datagram(&d, 1, 2);
        assert_eq!((ts.len(), bad), (2, 0));
        assert_eq!((ts[1].kind, &*ts[1].verdict), (TraceKind::Policy, "accept"));
        let mut inh = Inheritance::default();
        for t in ts.iter_mut() {
            inh.apply(t);
        }
        assert!(ts[1].headers_inherited);
        assert_eq!(ts[1].network_header, ts[0].network_header);
        assert_eq!(ts[1].iif, Some(3));
    }

    #[test]
    fn hostile_input_does_not_panic() {
        let m = sample();
        // Every truncation, and every single-byte corruption.
        for len in 0..m.len() {
            let _ = parse_datagram(&m[..len], 0, 0);
            let _ = parse_trace(&m[..len], 0, 0);
        }
        for i in 0..m.len() {
            for v in [0u8, 1, 3, 0x7f, 0x80, 0xff] {
                let mut c = m.clone();
                c[i] = v;
                let _ = parse_datagram(&c, 0, 0);
            }
        }
        // A pseudo-random soup.
        let mut x: u32 = 12345;
        for _ in 0..2000 {
            let mut c = m.clone();
            for _ in 0..4 {
                x = x.wrapping_mul(1103515245).wrapping_add(12345);
                let i = (x as usize >> 8) % c.len();
                c[i] = (x >> 3) as u8;
            }
            let _ = parse_datagram(&c, 0, 0);
        }
        assert_eq!(parse_datagram(&[], 0, 0).0.len(), 0);
    }
}
