//! Journeys: the ordered steps of one packet, from the first time it was
//! selected to the end of its life, and how it ended.
//!
//! Two parts: the journey (here) and `assembly` (steps grouped live into
//! journeys). How it ended, and why, is `crate::diagnosis`.

mod assembly;

pub use assembly::{Attached, Journeys};

use serde::{Deserialize, Serialize};

use crate::diagnosis::{classify, is_release, End};
use crate::model::{Detail, Step};

/// Caveats: why a journey may be incomplete, said with it in every output.
pub const WHILE_ATTACHING: &str =
    "began while the probes were still attaching: steps before its first may be missing";
pub const RING_LOSS: &str = "events were lost in the ring buffer while it was in flight: \
    steps may be missing (a larger --ring-size, or a narrower filter, loses fewer)";
pub const NFT_LOSS: &str = "nftables trace messages were lost while it was in flight: its \
    rule steps may be incomplete";

pub const NFT_BEHIND: &str = "handed out before every nftables trace message sent while it \
    was in flight had been read (the reader was behind): its rule steps may be incomplete";

/// A finished journey.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Journey {
    /// Journey id (the BPF side's counter, from 1).
    pub id: u64,
    /// The packet as first seen ("10.0.1.2 > 10.0.2.2 ICMP echo request ...").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packet: Option<String>,
    /// IP length of the packet as first seen (skb->len when not IP).
    pub len: u32,
    /// Time from the first to the last step, ns.
    pub duration_ns: u64,
    pub end: End,
    pub steps: Vec<Step>,
    /// Why its evidence may be incomplete (WHILE_ATTACHING, RING_LOSS,
    /// NFT_LOSS), in words.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caveats: Vec<String>,
    /// For an ICMP error: the journey of the packet it is about (the one
    /// with the `icmp_send` step), when that was traced too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub about: Option<u64>,
}

impl Journey {
    /// The frame of the packet as first seen (Ethernet), and its original
    /// length: what captures store and filters run on.
    pub fn frame(&self) -> Option<(Vec<u8>, u32)> {
        self.steps
            .iter()
            .find(|s| s.packet.is_some())?
            .frame(self.len)
    }

    /// Builds a journey from its steps (any order) and classifies the end.
    pub fn from_steps(id: u64, mut steps: Vec<Step>, closed: bool) -> Journey {
        steps.sort_by_key(|s| s.ts_ns);
        // A step without a device has no netns of its own: the BPF side gives
        // it its skb's socket's, which may be the sender's (the fragments of
        // a datagram keep it across veth: their frees, and the copy of the
        // datagram to its reader, read "in the client"), or none. The packet
        // is still where the previous step saw it. Route lookups, rule
        // verdicts and the socket it was queued to are where they say.
        let mut prev: Option<(u32, std::sync::Arc<str>)> = None;
        for s in steps.iter_mut() {
            let own = s.dev.is_some()
                || s.correlated
                || matches!(s.detail, Detail::Socket(_) | Detail::Rule(_));
            match &prev {
                Some((ino, name)) if !own => {
                    s.netns = *ino;
                    s.netns_name = name.clone();
                }
                _ if s.netns != 0 => prev = Some((s.netns, s.netns_name.clone())),
                _ => {}
            }
        }
        hook_verdicts(&mut steps);
        let first = steps.iter().find(|s| s.packet.is_some()).or(steps.first());
        let flow = first.and_then(|s| s.flow());
        // Taken before the steps' fragments are named: the title names the
        // datagram.
        let mut packet = first.and_then(|s| s.headers.as_deref().map(str::to_string));
        let datagram = name_fragments(&mut steps);
        // A packet first seen half built (at __ip_local_out the IP header's
        // length is still 0) has its size at a later step.
        let len = flow
            .as_ref()
            .and_then(|f| f.ip_len)
            .filter(|&l| l > 0)
            .or_else(|| {
                steps
                    .iter()
                    .filter(|s| s.packet.is_some())
                    .find_map(|s| s.flow()?.ip_len.filter(|&l| l > 0))
            })
            .or_else(|| steps.iter().find(|s| !s.correlated).map(|s| s.len))
            .unwrap_or(0);
        let len = match datagram {
            Some(d) => {
                if let Some(p) = packet.as_mut() {
                    p.push_str(&d.title());
                }
                d.bytes.unwrap_or(len)
            }
            None => len,
        };
        let duration_ns = match (steps.first(), steps.last()) {
            (Some(a), Some(b)) => b.ts_ns - a.ts_ns,
            _ => 0,
        };
        let end = classify(&steps, closed, flow.as_ref());
        Journey {
            id,
            packet,
            len,
            duration_ns,
            end,
            steps,
            caveats: Vec::new(),
            about: None,
        }
    }
}

/// Each netfilter hook step's verdict, from what the packet did next: died
/// of NETFILTER_DROP before anything else happened to it (drop), or went
/// on (accept). Steps of the functions a hook runs (nft_do_chain_inet...)
/// carry the hook too and come between nf_hook_slow and the drop: the hook
/// dropped it if no other nf_hook_slow came before the drop, the function
/// did if no other hook step did.
fn hook_verdicts(steps: &mut [Step]) {
    let nf_drop = |s: &Step| matches!(&s.detail, Detail::Drop(d) if d.reason == "NETFILTER_DROP");
    for i in 0..steps.len() {
        let Detail::Hook(h) = &steps[i].detail else {
            continue;
        };
        if h.verdict.is_some() {
            continue;
        }
        let skb = steps[i].skb;
        let outer = &*steps[i].site == "nf_hook_slow";
        let dropped_here = steps[i + 1..]
            .iter()
            .filter(|s| !s.correlated && s.skb == skb)
            .find(|s| {
                nf_drop(s)
                    || matches!(s.detail, Detail::Hook { .. })
                        && (!outer || &*s.site == "nf_hook_slow")
            })
            .is_some_and(nf_drop);
        if dropped_here {
            if let Detail::Hook(h) = &mut steps[i].detail {
                h.verdict = Some("drop".into());
            }
            continue;
        }
        let next = steps[i + 1..].iter().find(|s| {
            !s.correlated
                && s.skb == skb
                && (matches!(s.detail, Detail::Drop { .. })
                    || !is_release(&s.site) && !s.site.contains("drop"))
        });
        let verdict = match next.map(|s| &s.detail) {
            Some(Detail::Drop(d)) if d.reason == "NETFILTER_DROP" => "drop",
            Some(_) => "accept",
            None => continue,
        };
        if let Detail::Hook(h) = &mut steps[i].detail {
            h.verdict = Some(verdict.to_string());
        }
    }
}

/// The IPv4 or IPv6 datagram whose fragments a journey followed (they join the
/// journey of the first one selected).
#[derive(Clone, Copy, Debug)]
struct Datagram {
    /// Fragments seen.
    count: usize,
    /// Whether the last one was seen (then `count` is all of them).
    whole: bool,
    /// Its IP length once reassembled, when every fragment was seen.
    bytes: Option<u32>,
}

impl Datagram {
    fn title(&self) -> String {
        match self.whole {
            true => format!(", datagram in {} fragments", self.count),
            false => format!(
                ", {} fragments of a datagram (its last not seen)",
                self.count
            ),
        }
    }
}

/// Names the fragment each step saw (`fragment 2 of 3`, by offset) in its
/// headers; the datagram, when the steps saw more than one fragment of it.
fn name_fragments(steps: &mut [Step]) -> Option<Datagram> {
    use crate::packet::Fragment;
    let frag = |s: &Step| -> Option<Fragment> {
        if s.correlated {
            return None;
        }
        s.fragment()
    };
    let id = steps.iter().find_map(frag)?.id;
    let mut offsets: Vec<u32> = steps
        .iter()
        .filter_map(frag)
        .filter(|f| f.id == id)
        .map(|f| f.offset)
        .collect();
    offsets.sort_unstable();
    offsets.dedup();
    let last = steps
        .iter()
        .filter_map(frag)
        .find(|f| f.id == id && !f.more);
    let count = offsets.len();
    let whole = last.is_some() && offsets.first() == Some(&0);
    for s in steps.iter_mut() {
        let Some(f) = frag(s).filter(|f| f.id == id) else {
            continue;
        };
        // A datagram's fragments are freed with it by kfree_skb without a
        // reason (__kfree_skb releases its data as NOT_SPECIFIED), though
        // their data was used: not a drop.
        if let Detail::Drop(d) = &s.detail {
            let with_datagram = d.reason == "NOT_SPECIFIED"
                && d.location
                    .as_deref()
                    .is_some_and(|l| l.starts_with("skb_release_data"));
            if with_datagram && count > 1 {
                s.detail = Detail::Free {
                    location: d.location.clone(),
                };
            }
        }
        let i = offsets.iter().position(|&o| o == f.offset).unwrap_or(0) + 1;
        let of = if whole {
            format!(" of {count}")
        } else {
            String::new()
        };
        let Some(h) = s.headers.as_deref() else {
            continue;
        };
        let named = if f.offset == 0 {
            format!("{h}, fragment 1{of}")
        } else {
            h.replace(
                &format!("IP fragment offset {}", f.offset),
                &format!("IP fragment {i}{of} (offset {})", f.offset),
            )
        };
        s.headers = Some(named.into());
    }
    (count > 1 || last.is_some_and(|f| f.offset > 0)).then(|| Datagram {
        count,
        whole,
        bytes: last
            .filter(|_| whole)
            .map(|f| f.header + f.offset + f.payload),
    })
}
