//! One-line summaries of packet headers, in tcpdump's manner, from the bytes
//! an event captured (starting at the Ethernet or at the IP header).

use std::net::{Ipv4Addr, Ipv6Addr};

/// Addresses and protocol of a packet, as far as the captured bytes tell.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flow {
    pub src: String,
    pub dst: String,
    /// `ICMP echo request id 41 seq 1`, `TCP 40000 > 80 [S]`, ...
    pub what: String,
    /// IP protocol number (or 0 for non-IP).
    pub proto: u8,
    /// ICMP/ICMPv6 type, when the packet is one.
    pub icmp_type: Option<u8>,
    /// Length of the IP packet (from its header).
    pub ip_len: Option<u32>,
    /// Bytes a socket would read from it (TCP/UDP payload, plus one for a
    /// TCP FIN, which also waits in the receive queue), where known.
    pub socket_bytes: Option<u32>,
    /// L4 header length (TCP data offset, 8 for UDP), to derive the above.
    l4_hdr: Option<u32>,
    tcp_flags: u8,
    /// TCP or UDP source and destination ports.
    pub ports: Option<(u16, u16)>,
    /// TCP sequence number.
    pub tcp_seq: Option<u32>,
    /// An IPv4 fragment: which part of which datagram.
    pub fragment: Option<Fragment>,
}

/// One fragment of an IPv4 or IPv6 datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fragment {
    /// The datagram's id (IPv4 header, IPv6 fragment header).
    pub id: u32,
    /// Where its payload goes in the datagram's, bytes.
    pub offset: u32,
    /// More fragments follow (it is not the last).
    pub more: bool,
    /// Its payload (IP length less the header), bytes.
    pub payload: u32,
    /// The headers before its payload once reassembled (IPv4 header;
    /// IPv6 header and the extension headers before the fragment header).
    pub header: u32,
}

impl Flow {
    pub fn line(&self) -> String {
        if self.src.is_empty() {
            self.what.clone()
        } else {
            [&self.src, " > ", &self.dst, " ", &self.what].concat()
        }
    }
    /// Whether a socket would queue something from it: such a packet may
    /// wait in a receive queue until the application reads.
    pub fn waits_in_socket(&self) -> bool {
        self.socket_bytes.is_some_and(|n| n > 0)
    }
    /// A TCP segment with FIN and no data.
    pub fn is_bare_fin(&self) -> bool {
        self.proto == 6 && self.tcp_flags & 0x01 != 0 && self.socket_bytes == Some(1)
    }
    /// An ICMP or ICMPv6 echo reply.
    pub fn is_echo_reply(&self) -> bool {
        matches!((self.proto, self.icmp_type), (1, Some(0)) | (58, Some(129)))
    }
}

/// An IPv4 address as dotted decimal, as `Ipv4Addr`'s `Display` writes
/// it, without the formatting machinery (a few times faster: decoding
/// writes two or three addresses per event).
pub fn ipv4_text(a: [u8; 4]) -> String {
    let mut s = String::with_capacity(15);
    for (i, octet) in a.into_iter().enumerate() {
        if i > 0 {
            s.push('.');
        }
        if octet >= 100 {
            s.push((b'0' + octet / 100) as char);
        }
        if octet >= 10 {
            s.push((b'0' + octet / 10 % 10) as char);
        }
        s.push((b'0' + octet % 10) as char);
    }
    s
}

/// The big-endian u16 at `at`, if the bytes are there.
pub fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// Decodes the headers in `data`; `l3` when it starts at the IP header.
pub fn decode(data: &[u8], l3: bool) -> Option<Flow> {
    let (ethertype, rest) = network(data, l3)?;
    let mut flow = match ethertype {
        0x0800 => ipv4(rest)?,
        0x86dd => ipv6(rest)?,
        0x0806 => arp(rest)?,
        other => Flow {
            what: format!("ethertype {other:#06x}"),
            ..Flow::default()
        },
    };
    // The VLAN tags between the MAC addresses and the ethertype.
    let tags = data.len() - rest.len();
    if !l3 && tags > 14 {
        let vlan: String = (12..tags - 2)
            .step_by(4)
            .filter_map(|o| be16(data, o + 2))
            .map(|tci| format!("vlan {} ", tci & 0xfff))
            .collect();
        flow.what = format!("{vlan}{}", flow.what);
    }
    Some(flow)
}

/// The fragment `data` is, if it is one: what [`decode`] puts in
/// `Flow::fragment`, without the rest of the decoding.
pub fn fragment(data: &[u8], l3: bool) -> Option<Fragment> {
    match network(data, l3)? {
        (0x0800, b) => ipv4_fragment(b),
        (0x86dd, b) => ipv6_headers(b)?.fragment,
        _ => None,
    }
}

/// The ethertype and the bytes from the network header: past the MAC
/// header and its VLAN tags, or all of `data` when it starts there (`l3`).
fn network(data: &[u8], l3: bool) -> Option<(u16, &[u8])> {
    if l3 {
        return match data.first()? >> 4 {
            4 => Some((0x0800, data)),
            6 => Some((0x86dd, data)),
            _ => None,
        };
    }
    let mut off = 12;
    let mut ethertype = be16(data, off)?;
    while ethertype == 0x8100 || ethertype == 0x88a8 {
        off += 4;
        ethertype = be16(data, off)?;
    }
    Some((ethertype, data.get(off + 2..)?))
}

/// The IPv4 id of a packet: two packets of one flow with the same header
/// line differ in it.
pub fn ipv4_id(data: &[u8], l3: bool) -> Option<u16> {
    match network(data, l3)? {
        (0x0800, b) => be16(b, 4),
        _ => None,
    }
}

/// For an ICMP error (IPv4), the IPv4 id of the packet it is about: the
/// error quotes its header after its own 8 bytes.
pub fn quoted_ipv4_id(data: &[u8], l3: bool) -> Option<u16> {
    let (0x0800, b) = network(data, l3)? else {
        return None;
    };
    let ihl = ((b.first()? & 0xf) as usize) * 4;
    let icmp = b.get(ihl..)?;
    if *b.get(9)? != 1 || icmp_error_words(false, *icmp.first()?, *icmp.get(1)?).is_none() {
        return None;
    }
    let inner = icmp.get(8..)?;
    (inner.first()? >> 4 == 4).then(|| be16(inner, 4)).flatten()
}

fn ipv4_fragment(b: &[u8]) -> Option<Fragment> {
    let ihl = ((b.first()? & 0xf) as u32) * 4;
    let frag = be16(b, 6)?;
    if frag & 0x3fff == 0 {
        return None;
    }
    Some(Fragment {
        id: be16(b, 4)? as u32,
        offset: (frag & 0x1fff) as u32 * 8,
        more: frag & 0x2000 != 0,
        payload: (be16(b, 2)? as u32).saturating_sub(ihl),
        header: ihl,
    })
}

fn ipv4(b: &[u8]) -> Option<Flow> {
    let ihl = ((b.first()? & 0xf) as usize) * 4;
    let src = <[u8; 4]>::try_from(b.get(12..16)?).ok()?;
    let dst = <[u8; 4]>::try_from(b.get(16..20)?).ok()?;
    let proto = *b.get(9)?;
    let frag = be16(b, 6)?;
    let mut flow = transport(proto, b.get(ihl..).unwrap_or(&[]), false);
    if frag & 0x1fff != 0 {
        flow.what = format!("IP fragment offset {} proto {proto}", (frag & 0x1fff) * 8);
        flow.icmp_type = None;
        flow.l4_hdr = None;
        flow.ports = None;
        flow.tcp_seq = None;
    }
    flow.src = ipv4_text(src);
    flow.dst = ipv4_text(dst);
    let ip_len = be16(b, 2)? as u32;
    flow.fragment = ipv4_fragment(b);
    flow.ip_len = Some(ip_len);
    flow.set_socket_bytes(ip_len.checked_sub(ihl as u32));
    Some(flow)
}

/// What follows an IPv6 header's extension headers.
struct Ipv6Headers {
    /// The upper-layer protocol and where its header starts.
    next: u8,
    off: usize,
    /// IP total length.
    ip_len: u32,
    fragment: Option<Fragment>,
}

/// Walks the hop-by-hop, routing, fragment and destination options
/// headers.
fn ipv6_headers(b: &[u8]) -> Option<Ipv6Headers> {
    let ip_len = be16(b, 4)? as u32 + 40;
    let mut next = *b.get(6)?;
    let mut off = 40;
    let mut fragment = None;
    while matches!(next, 0 | 43 | 44 | 60) {
        let h = b.get(off..off + 2).unwrap_or(&[59, 0]);
        let len = if next == 44 {
            // Offset (13 bits), 2 reserved, M; an atomic fragment (offset
            // 0, no M) is a whole datagram.
            let fo = be16(b, off + 2).unwrap_or(0);
            let id = b
                .get(off + 4..off + 8)
                .map(|i| u32::from_be_bytes(i.try_into().unwrap()));
            if let (true, Some(id)) = (fo & 0xfff9 != 0, id) {
                fragment = Some(Fragment {
                    id,
                    offset: (fo >> 3) as u32 * 8,
                    more: fo & 1 != 0,
                    // The fragment header's own 8 bytes are not the
                    // payload's.
                    payload: ip_len.saturating_sub(off as u32 + 8),
                    header: off as u32,
                });
            }
            8
        } else {
            (h[1] as usize + 1) * 8
        };
        next = h[0];
        off += len;
    }
    Some(Ipv6Headers {
        next,
        off,
        ip_len,
        fragment,
    })
}

fn ipv6(b: &[u8]) -> Option<Flow> {
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(b.get(8..24)?).ok()?);
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(b.get(24..40)?).ok()?);
    let Ipv6Headers {
        next,
        off,
        ip_len,
        fragment,
    } = ipv6_headers(b)?;
    let mut flow = match fragment {
        Some(f) if f.offset > 0 => Flow {
            what: format!("IP fragment offset {} proto {next}", f.offset),
            proto: next,
            ..Flow::default()
        },
        _ => transport(next, b.get(off..).unwrap_or(&[]), true),
    };
    flow.fragment = fragment;
    flow.src = src.to_string();
    flow.dst = dst.to_string();
    flow.ip_len = Some(ip_len);
    flow.set_socket_bytes(ip_len.checked_sub(off as u32));
    Some(flow)
}

impl Flow {
    /// Sets `socket_bytes` from the L4 length (IP length minus IP headers).
    fn set_socket_bytes(&mut self, l4_len: Option<u32>) {
        let fin = self.tcp_flags & 0x01 != 0;
        self.socket_bytes = match (l4_len, self.l4_hdr) {
            (Some(l4), Some(hdr)) => Some(l4.saturating_sub(hdr) + fin as u32),
            _ => None,
        };
    }
}

fn arp(b: &[u8]) -> Option<Flow> {
    let op = be16(b, 6)?;
    let spa = Ipv4Addr::from(<[u8; 4]>::try_from(b.get(14..18)?).ok()?);
    let tpa = Ipv4Addr::from(<[u8; 4]>::try_from(b.get(24..28)?).ok()?);
    let what = match op {
        1 => format!("ARP who-has {tpa} tell {spa}"),
        2 => format!("ARP reply {spa} is-at {}", mac(b.get(8..14)?)),
        _ => format!("ARP op {op}"),
    };
    Some(Flow {
        what,
        ..Flow::default()
    })
}

/// A MAC address as colon-separated hex.
pub fn mac(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn transport(proto: u8, l4: &[u8], v6: bool) -> Flow {
    let ports = || Some((be16(l4, 0)?, be16(l4, 2)?));
    let mut icmp_type = None;
    let mut l4_hdr = None;
    let mut tcp_flags = 0;
    let mut pair = None;
    let mut seq = None;
    let what = match proto {
        6 => match ports() {
            Some((s, d)) => {
                let flags = l4.get(13).copied().unwrap_or(0);
                l4_hdr = l4.get(12).map(|b| ((b >> 4) as u32) * 4);
                tcp_flags = flags;
                pair = Some((s, d));
                seq = l4
                    .get(4..8)
                    .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                let f: String = [
                    (0x02, 'S'),
                    (0x01, 'F'),
                    (0x04, 'R'),
                    (0x08, 'P'),
                    (0x10, '.'),
                ]
                .iter()
                .filter(|(bit, _)| flags & bit != 0)
                .map(|(_, c)| *c)
                .collect();
                let mut what = port_pair("TCP", s, d);
                what.push_str(" [");
                what.push_str(&f);
                what.push(']');
                what
            }
            None => "TCP".into(),
        },
        17 => match ports() {
            Some((s, d)) => {
                l4_hdr = Some(8);
                pair = Some((s, d));
                port_pair("UDP", s, d)
            }
            None => "UDP".into(),
        },
        1 | 58 => {
            icmp_type = l4.first().copied();
            icmp(l4, v6)
        }
        47 => "GRE".into(),
        50 => "ESP".into(),
        132 => "SCTP".into(),
        p => format!("proto {p}"),
    };
    Flow {
        what,
        proto,
        icmp_type,
        l4_hdr,
        tcp_flags,
        ports: pair,
        tcp_seq: seq,
        ..Flow::default()
    }
}

/// "UDP 40000 > 53": written without `format!`, once per packet decoded.
fn port_pair(proto: &str, src: u16, dst: u16) -> String {
    let mut n = itoa::Buffer::new();
    [proto, " ", n.format(src), " > "].concat() + n.format(dst)
}

/// An ICMP (RFC 792) or ICMPv6 (RFC 4443) error type and code in words;
/// None for the other messages.
pub fn icmp_error_words(v6: bool, t: u8, code: u8) -> Option<&'static str> {
    Some(if v6 {
        match (t, code) {
            (1, 0) => "destination unreachable (no route)",
            (1, 1) => "destination unreachable (administratively prohibited)",
            (1, 2) => "destination unreachable (beyond the scope of the source address)",
            (1, 3) => "address unreachable",
            (1, 4) => "port unreachable",
            (1, 5) => "destination unreachable (source address failed ingress policy)",
            (1, 6) => "destination unreachable (reject route)",
            (1, _) => "destination unreachable",
            (2, _) => "packet too big",
            (3, 0) => "time exceeded (hop limit exceeded in transit)",
            (3, _) => "time exceeded (fragment reassembly)",
            (4, 0) => "parameter problem (erroneous header field)",
            (4, 1) => "parameter problem (unrecognized next header)",
            (4, 2) => "parameter problem (unrecognized IPv6 option)",
            (4, _) => "parameter problem",
            _ => return None,
        }
    } else {
        match (t, code) {
            (3, 0) => "net unreachable",
            (3, 1) => "host unreachable",
            (3, 2) => "protocol unreachable",
            (3, 3) => "port unreachable",
            (3, 4) => "fragmentation needed",
            (3, 5) => "source route failed",
            (3, 6) => "destination network unknown",
            (3, 7) => "destination host unknown",
            (3, 9) => "network administratively prohibited",
            (3, 10) => "host administratively prohibited",
            (3, 13) => "administratively prohibited",
            (3, _) => "destination unreachable",
            (4, _) => "source quench",
            (5, _) => "redirect",
            (11, 0) => "time exceeded (TTL expired in transit)",
            (11, _) => "time exceeded (fragment reassembly)",
            (12, _) => "parameter problem",
            _ => return None,
        }
    })
}

fn icmp(b: &[u8], v6: bool) -> String {
    let proto = if v6 { "ICMP6" } else { "ICMP" };
    let (Some(&t), Some(&code)) = (b.first(), b.get(1)) else {
        return proto.into();
    };
    let echo = |name: &str| match (be16(b, 4), be16(b, 6)) {
        (Some(id), Some(seq)) => format!("{proto} {name} id {id} seq {seq}"),
        _ => format!("{proto} {name}"),
    };
    if let Some(words) = icmp_error_words(v6, t, code) {
        // The path MTU it announces, and the packet it is about (its first
        // bytes follow the 8-byte ICMP header): an error reads with its cause.
        let mtu = match (v6, t, code) {
            (true, 2, _) => b
                .get(4..8)
                .map(|m| u32::from_be_bytes([m[0], m[1], m[2], m[3]])),
            (false, 3, 4) => be16(b, 6).map(u32::from),
            _ => None,
        };
        let mut line = format!("{proto} {words}");
        if let Some(m) = mtu {
            line.push_str(&format!(" (mtu {m})"));
        }
        if let Some(about) = b.get(8..).and_then(|inner| decode(inner, true)) {
            line.push_str(", for ");
            line.push_str(&about.line());
        }
        return line;
    }
    match (v6, t) {
        (true, 128) | (false, 8) => echo("echo request"),
        (true, 129) | (false, 0) => echo("echo reply"),
        (true, 133) => "ICMP6 router solicitation".into(),
        (true, 134) => "ICMP6 router advertisement".into(),
        (true, 135) => "ICMP6 neighbor solicitation".into(),
        (true, 136) => "ICMP6 neighbor advertisement".into(),
        _ => format!("{proto} type {t} code {code}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn icmp_echo() -> Vec<u8> {
        let mut p = vec![0u8; 12];
        p.extend([0x08, 0x00]);
        p.extend([0x45, 0, 0, 84, 0, 0, 0x40, 0, 64, 1, 0, 0]);
        p.extend([10, 0, 1, 2, 10, 0, 2, 2]);
        p.extend([8, 0, 0, 0, 0, 41, 0, 1]);
        p
    }

    #[test]
    fn icmp_echo_line() {
        let f = decode(&icmp_echo(), false).unwrap();
        assert_eq!(
            f.line(),
            "10.0.1.2 > 10.0.2.2 ICMP echo request id 41 seq 1"
        );
        assert!(!f.is_echo_reply());
        let l3 = decode(&icmp_echo()[14..], true).unwrap();
        assert_eq!(l3, f);
    }

    /// An ICMP error reads in words, with the packet it is about.
    #[test]
    fn icmp_errors_name_their_cause() {
        let error = |t: u8, code: u8, rest: [u8; 4]| {
            let mut p = vec![0x45, 0, 0, 56, 0, 0, 0, 0, 64, 1, 0, 0];
            p.extend([10, 0, 1, 1, 10, 0, 1, 2]);
            p.extend([t, code, 0, 0]);
            p.extend(rest);
            p.extend([0x45, 0, 0, 40, 0, 0, 0x40, 0, 1, 17, 0, 0]);
            p.extend([10, 0, 1, 2, 10, 0, 2, 2]);
            p.extend([0x9c, 0x40, 0x23, 0x28, 0, 20, 0, 0]);
            decode(&p, true).unwrap().line()
        };
        assert_eq!(
            error(11, 0, [0; 4]),
            "10.0.1.1 > 10.0.1.2 ICMP time exceeded (TTL expired in transit), for 10.0.1.2 > \
             10.0.2.2 UDP 40000 > 9000"
        );
        assert_eq!(
            error(3, 4, [0, 0, 0x05, 0x78]),
            "10.0.1.1 > 10.0.1.2 ICMP fragmentation needed (mtu 1400), for 10.0.1.2 > \
             10.0.2.2 UDP 40000 > 9000"
        );
        assert!(error(3, 3, [0; 4]).contains("ICMP port unreachable, for"));
        assert!(error(3, 99, [0; 4]).contains("ICMP destination unreachable, for"));
        // Errors nested in errors (hostile input) end with the bytes.
        let mut p = Vec::new();
        for _ in 0..6 {
            p.extend([
                0x45, 0, 0, 56, 0, 0, 0, 0, 64, 1, 0, 0, 10, 0, 1, 1, 10, 0, 1, 2,
            ]);
            p.extend([3, 3, 0, 0, 0, 0, 0, 0]);
        }
        let line = decode(&p, true).unwrap().line();
        assert!(line.matches("port unreachable").count() >= 5, "{line}");
    }

    /// An ICMP error and the packet it quotes share that packet's IP id.
    #[test]
    fn an_icmp_error_quotes_the_ip_id_of_its_cause() {
        let cause = [
            0x45, 0, 0, 40, 0x12, 0x34, 0x40, 0, 1, 17, 0, 0, 10, 0, 1, 2, 10, 0, 2, 2,
        ];
        let mut error = vec![0x45, 0, 0, 56, 0xab, 0xcd, 0, 0, 64, 1, 0, 0];
        error.extend([10, 0, 1, 1, 10, 0, 1, 2, 3, 3, 0, 0, 0, 0, 0, 0]);
        error.extend(cause);
        assert_eq!(ipv4_id(&cause, true), Some(0x1234));
        assert_eq!(ipv4_id(&error, true), Some(0xabcd));
        assert_eq!(quoted_ipv4_id(&error, true), Some(0x1234));
        assert_eq!(quoted_ipv4_id(&cause, true), None, "not an ICMP error");
        error[20] = 8; // an echo request quotes nothing
        assert_eq!(quoted_ipv4_id(&error, true), None);
    }

    #[test]
    fn ipv4_text_as_display() {
        for a in [
            [0, 0, 0, 0],
            [10, 0, 1, 2],
            [192, 168, 100, 255],
            [1, 22, 99, 100],
        ] {
            assert_eq!(ipv4_text(a), Ipv4Addr::from(a).to_string());
        }
    }

    #[test]
    fn truncated_is_none_not_panic() {
        let p = icmp_echo();
        for n in 0..p.len() {
            let _ = decode(&p[..n], false);
            let _ = decode(&p[14..14.max(n)], true);
        }
        assert!(decode(&p[..10], false).is_none());
    }

    #[test]
    fn tcp_flags() {
        let mut p = icmp_echo();
        p[23] = 6;
        p.truncate(34);
        p.extend([0x9c, 0x40, 0, 80, 0, 0, 0, 0, 0, 0, 0, 0, 0x50, 0x12]);
        let f = decode(&p, false).unwrap();
        assert_eq!(f.what, "TCP 40000 > 80 [S.]");
    }

    /// Pure ACKs have nothing for a socket; data and FIN wait in its queue.
    #[test]
    fn socket_bytes() {
        let tcp = |ip_len: u8, flags: u8| {
            let mut p = icmp_echo();
            p[17] = ip_len;
            p[23] = 6;
            p.truncate(34);
            p.extend([0x9c, 0x40, 0, 80, 0, 0, 0, 0, 0, 0, 0, 0, 0x50, flags]);
            decode(&p, false).unwrap()
        };
        assert_eq!(tcp(40, 0x10).socket_bytes, Some(0));
        assert!(!tcp(40, 0x10).waits_in_socket());
        assert_eq!(tcp(53, 0x18).socket_bytes, Some(13));
        assert_eq!(tcp(40, 0x11).socket_bytes, Some(1));
        assert!(decode(&icmp_echo(), false).unwrap().socket_bytes.is_none());
    }
}
