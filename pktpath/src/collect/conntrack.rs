//! The conntrack entry of a raw event, in the model's words: the kernel's
//! `struct nf_conntrack_tuple` pair and `ctinfo` read, NAT found as the
//! difference between the original tuple and the inverted reply tuple.

use std::net::{Ipv4Addr, Ipv6Addr};

use pktpath_core::conntrack::Conntrack;

use crate::abi::RawEvent;

/// One side of `struct nf_conntrack_tuple` (40 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tuple {
    v6: bool,
    src: [u8; 16],
    sport: u16,
    dst: [u8; 16],
    dport: u16,
    proto: u8,
}

fn tuple(b: &[u8; 40]) -> Option<Tuple> {
    // src: u3 (16), u (2, network order), l3num (2, host order);
    // dst: u3 (16), u (2), protonum (1), dir (1).
    let l3num = u16::from_ne_bytes([b[18], b[19]]);
    let v6 = match l3num {
        2 => false,
        10 => true,
        _ => return None,
    };
    Some(Tuple {
        v6,
        src: b[0..16].try_into().ok()?,
        sport: u16::from_be_bytes([b[16], b[17]]),
        dst: b[20..36].try_into().ok()?,
        dport: u16::from_be_bytes([b[36], b[37]]),
        proto: b[38],
    })
}

fn addr(a: &[u8; 16], v6: bool) -> String {
    if v6 {
        Ipv6Addr::from(*a).to_string()
    } else {
        Ipv4Addr::new(a[0], a[1], a[2], a[3]).to_string()
    }
}

fn has_ports(proto: u8) -> bool {
    matches!(proto, 6 | 17 | 132 | 33 | 136)
}

fn endpoint(a: &[u8; 16], port: u16, v6: bool, proto: u8) -> String {
    match (has_ports(proto), v6) {
        (true, true) => format!("[{}]:{port}", addr(a, v6)),
        (true, false) => format!("{}:{port}", addr(a, v6)),
        _ => addr(a, v6),
    }
}

fn proto_name(p: u8) -> String {
    match p {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "icmpv6".into(),
        132 => "sctp".into(),
        p => format!("proto {p}"),
    }
}

impl Tuple {
    fn line(&self) -> String {
        format!(
            "{} {} > {}",
            proto_name(self.proto),
            endpoint(&self.src, self.sport, self.v6, self.proto),
            endpoint(&self.dst, self.dport, self.v6, self.proto)
        )
    }
}

/// IPS_* bits of nf_conn->status that matter here.
const IPS_SEEN_REPLY: u32 = 1 << 1;
const IPS_ASSURED: u32 = 1 << 2;
const IPS_CONFIRMED: u32 = 1 << 3;

/// The packet's conntrack entry; None when it had none.
pub fn from_raw(raw: &RawEvent) -> Option<Conntrack> {
    let info = raw.ct_info.checked_sub(1)?;
    let (state, reply) = match info {
        0 => ("established", false),
        1 => ("related", false),
        2 => ("new", false),
        3 => ("established", true),
        4 => ("related", true),
        7 => ("untracked", false),
        _ => ("unknown", false),
    };
    let orig = tuple(&raw.ct_orig);
    let rep = tuple(&raw.ct_reply);
    let nat = match (orig, rep) {
        (Some(o), Some(r)) => {
            let mut v = Vec::new();
            // Reply goes from the real destination to the real source.
            // Without ports (ICMP), the id and type fields differ by
            // direction: compare addresses only.
            let ports = has_ports(o.proto);
            let moved = |a: [u8; 16], ap: u16, b: [u8; 16], bp: u16| a != b || (ports && ap != bp);
            if moved(r.src, r.sport, o.dst, o.dport) {
                v.push(format!(
                    "dnat {} -> {}",
                    endpoint(&o.dst, o.dport, o.v6, o.proto),
                    endpoint(&r.src, r.sport, r.v6, r.proto)
                ));
            }
            if moved(r.dst, r.dport, o.src, o.sport) {
                v.push(format!(
                    "snat {} -> {}",
                    endpoint(&o.src, o.sport, o.v6, o.proto),
                    endpoint(&r.dst, r.dport, r.v6, r.proto)
                ));
            }
            (!v.is_empty()).then(|| v.join("; "))
        }
        _ => None,
    };
    let flags = [
        (IPS_CONFIRMED, "confirmed"),
        (IPS_SEEN_REPLY, "seen-reply"),
        (IPS_ASSURED, "assured"),
    ]
    .iter()
    .filter(|(bit, _)| raw.ct_status & bit != 0)
    .map(|(_, n)| n.to_string())
    .collect();
    Some(Conntrack {
        state: state.into(),
        reply,
        zone: raw.ct_zone,
        original: orig.map(|o| o.line()),
        nat,
        flags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> [u8; 40] {
        let mut b = [0u8; 40];
        b[..4].copy_from_slice(&src);
        b[16..18].copy_from_slice(&sport.to_be_bytes());
        b[18..20].copy_from_slice(&2u16.to_ne_bytes());
        b[20..24].copy_from_slice(&dst);
        b[36..38].copy_from_slice(&dport.to_be_bytes());
        b[38] = 17;
        b
    }

    #[test]
    fn icmp_ids_and_types_are_not_nat() {
        let mut raw = RawEvent::zeroed();
        raw.ct_info = 3;
        raw.ct_orig = side([10, 0, 1, 2], 7, [10, 0, 2, 2], 0x0800);
        raw.ct_reply = side([10, 0, 2, 2], 7, [10, 0, 2, 1], 0);
        raw.ct_orig[38] = 1;
        raw.ct_reply[38] = 1;
        let ct = from_raw(&raw).unwrap();
        assert_eq!(ct.nat.as_deref(), Some("snat 10.0.1.2 -> 10.0.2.1"));
    }

    #[test]
    fn nat_is_the_difference_of_the_tuples() {
        let mut raw = RawEvent::zeroed();
        assert!(from_raw(&raw).is_none());
        raw.ct_info = 3; // new
        raw.ct_status = IPS_CONFIRMED;
        raw.ct_orig = side([10, 0, 1, 2], 4000, [10, 0, 2, 1], 8080);
        // DNAT to 10.0.3.2:80 and SNAT to 10.0.3.1:4000.
        raw.ct_reply = side([10, 0, 3, 2], 80, [10, 0, 3, 1], 4000);
        let ct = from_raw(&raw).unwrap();
        assert_eq!(ct.state, "new");
        assert_eq!(
            ct.original.as_deref(),
            Some("udp 10.0.1.2:4000 > 10.0.2.1:8080")
        );
        assert_eq!(
            ct.nat.as_deref(),
            Some("dnat 10.0.2.1:8080 -> 10.0.3.2:80; snat 10.0.1.2:4000 -> 10.0.3.1:4000")
        );
        assert_eq!(ct.flags, ["confirmed"]);
        raw.ct_reply = side([10, 0, 2, 1], 8080, [10, 0, 1, 2], 4000);
        raw.ct_info = 4;
        let plain = from_raw(&raw).unwrap();
        assert!(plain.nat.is_none());
        assert_eq!(plain.line(), "ct established reply");
    }
}
