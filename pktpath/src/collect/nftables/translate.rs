//! A tcpdump filter as nft match expressions: the packets our tables set
//! `nftrace` for.

use std::net::IpAddr;

/// Translates a pcap-filter expression into nft match expressions, one per
/// alternative: a packet matches the filter when it matches any of them.
/// Knows `host`, `src|dst host`, `net A/N`, `src|dst net`, `ip`, `ip6`,
/// `icmp`, `icmp6`, `tcp`, `udp`, `sctp`, `[tcp|udp|sctp] [src|dst] port N`,
/// joined with `and` (`&&`), `or` (`||`) and parentheses (expanded into
/// alternatives). Anything else (`not`, names) gives None: trace every
/// packet (the caller warns). The translation may select more packets than
/// the filter (ARP and non-IP frames aside, it selects the same); extra
/// traces only cost messages.
pub fn translate_filter(filter: &str) -> Option<Vec<String>> {
    let spaced = filter
        .replace("&&", " and ")
        .replace("||", " or ")
        .replace('(', " ( ")
        .replace(')', " ) ");
    let tokens: Vec<&str> = spaced.split_whitespace().collect();
    if tokens.is_empty() {
        return None;
    }
    let mut pos = 0;
    let dnf = or_expr(&tokens, &mut pos)?;
    if pos != tokens.len() || dnf.is_empty() {
        return None;
    }
    Some(dnf)
}

/// Alternatives past this many: trace everything instead.
const MAX_RULES: usize = 16;

fn or_expr(t: &[&str], pos: &mut usize) -> Option<Vec<String>> {
    let mut out = and_expr(t, pos)?;
    while t.get(*pos) == Some(&"or") {
        *pos += 1;
        out.extend(and_expr(t, pos)?);
        if out.len() > MAX_RULES {
            return None;
        }
    }
    Some(out)
}

fn and_expr(t: &[&str], pos: &mut usize) -> Option<Vec<String>> {
    let mut conj = factor(t, pos)?;
    while t.get(*pos) == Some(&"and") {
        *pos += 1;
        let rhs = factor(t, pos)?;
        let mut next = Vec::new();
        for c in &conj {
            for p in &rhs {
                next.push(format!("{c} {p}"));
            }
        }
        if next.len() > MAX_RULES {
            return None;
        }
        conj = next;
    }
    Some(conj)
}

fn factor(t: &[&str], pos: &mut usize) -> Option<Vec<String>> {
    if t.get(*pos) == Some(&"(") {
        *pos += 1;
        let inner = or_expr(t, pos)?;
        (t.get(*pos) == Some(&")")).then_some(())?;
        *pos += 1;
        return Some(inner);
    }
    let start = *pos;
    while t
        .get(*pos)
        .is_some_and(|w| !matches!(*w, "and" | "or" | "(" | ")"))
    {
        *pos += 1;
    }
    if start == *pos {
        return None;
    }
    primitive(&t[start..*pos])
}

/// One pcap primitive as nft alternatives.
fn primitive(tokens: &[&str]) -> Option<Vec<String>> {
    let mut t = tokens;
    // Protocol qualifier.
    let mut proto: Option<&str> = None;
    if let Some(first) = t.first() {
        if matches!(
            *first,
            "ip" | "ip6" | "tcp" | "udp" | "sctp" | "icmp" | "icmp6"
        ) {
            proto = Some(first);
            t = &t[1..];
        }
    }
    if t.is_empty() {
        return Some(vec![match proto? {
            "ip" => "meta protocol ip".into(),
            "ip6" => "meta protocol ip6".into(),
            "icmp" => "meta l4proto icmp".into(),
            "icmp6" => "meta l4proto ipv6-icmp".into(),
            p => format!("meta l4proto {p}"),
        }]);
    }
    // Direction qualifier.
    let mut dirs: &[&str] = &["saddr", "daddr"];
    let mut ports: &[&str] = &["sport", "dport"];
    match t[0] {
        "src" => {
            dirs = &["saddr"];
            ports = &["sport"];
            t = &t[1..];
        }
        "dst" => {
            dirs = &["daddr"];
            ports = &["dport"];
            t = &t[1..];
        }
        _ => {}
    }
    let (kind, value) = match t {
        [kind, value] => (*kind, *value),
        // `src 10.0.0.1`: host implied.
        [value] if dirs.len() == 1 => ("host", *value),
        _ => return None,
    };
    match kind {
        "host" | "net" => {
            if matches!(proto, Some(p) if !matches!(p, "ip" | "ip6")) {
                return None;
            }
            let (addr, prefix) = match value.split_once('/') {
                Some((a, p)) => (a, Some(p.parse::<u8>().ok()?)),
                None if kind == "net" => return None,
                None => (value, None),
            };
            let ip: IpAddr = addr.parse().ok()?;
            let family = match (ip, proto) {
                (IpAddr::V4(_), None | Some("ip")) => "ip",
                (IpAddr::V6(_), None | Some("ip6")) => "ip6",
                _ => return None,
            };
            let max = if ip.is_ipv4() { 32 } else { 128 };
            if prefix.is_some_and(|p| p > max) || (kind == "host" && prefix.is_some()) {
                return None;
            }
            let operand = match prefix {
                Some(p) => format!("{ip}/{p}"),
                None => ip.to_string(),
            };
            Some(
                dirs.iter()
                    .map(|d| format!("{family} {d} {operand}"))
                    .collect(),
            )
        }
        "port" => {
            let port: u16 = value.parse().ok()?;
            let l4 = match proto {
                None => "meta l4proto { tcp, udp, sctp } th".to_string(),
                Some(p @ ("tcp" | "udp" | "sctp")) => p.to_string(),
                _ => return None,
            };
            Some(ports.iter().map(|p| format!("{l4} {p} {port}")).collect())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translates_common_filters() {
        let t = |f: &str| translate_filter(f);
        assert_eq!(
            t("host 10.0.0.1").unwrap(),
            ["ip saddr 10.0.0.1", "ip daddr 10.0.0.1"]
        );
        assert_eq!(t("src host fd00::1").unwrap(), ["ip6 saddr fd00::1"]);
        assert_eq!(t("dst 10.1.2.3").unwrap(), ["ip daddr 10.1.2.3"]);
        assert_eq!(
            t("net 10.0.0.0/8").unwrap(),
            ["ip saddr 10.0.0.0/8", "ip daddr 10.0.0.0/8"]
        );
        assert_eq!(t("icmp").unwrap(), ["meta l4proto icmp"]);
        assert_eq!(
            t("(udp port 5 or icmp) and net 10.2.0.0/16").unwrap(),
            [
                "udp sport 5 ip saddr 10.2.0.0/16",
                "udp sport 5 ip daddr 10.2.0.0/16",
                "udp dport 5 ip saddr 10.2.0.0/16",
                "udp dport 5 ip daddr 10.2.0.0/16",
                "meta l4proto icmp ip saddr 10.2.0.0/16",
                "meta l4proto icmp ip daddr 10.2.0.0/16"
            ]
        );
        assert!(t("(icmp").is_none() && t("icmp)").is_none() && t("()").is_none());
        assert_eq!(t("ip6").unwrap(), ["meta protocol ip6"]);
        assert_eq!(t("udp dst port 9999").unwrap(), ["udp dport 9999"]);
        assert_eq!(
            t("port 53").unwrap(),
            [
                "meta l4proto { tcp, udp, sctp } th sport 53",
                "meta l4proto { tcp, udp, sctp } th dport 53"
            ]
        );
        assert_eq!(
            t("icmp and host 10.9.1.2").unwrap(),
            [
                "meta l4proto icmp ip saddr 10.9.1.2",
                "meta l4proto icmp ip daddr 10.9.1.2"
            ]
        );
        assert_eq!(
            t("tcp port 80 && dst net 10.0.0.0/24").unwrap(),
            [
                "tcp sport 80 ip daddr 10.0.0.0/24",
                "tcp dport 80 ip daddr 10.0.0.0/24"
            ]
        );
        assert_eq!(
            t("udp or icmp").unwrap(),
            ["meta l4proto udp", "meta l4proto icmp"]
        );
    }

    #[test]
    fn refuses_what_it_cannot_translate() {
        for f in [
            "",
            "not host 10.0.0.1",
            "host example.com",
            "net 10.1",
            "port http",
            "tcp port 99999",
            "vlan and udp",
            "host 10.0.0.1/8",
            "net 10.0.0.0/33",
            "ip6 host 10.0.0.1",
            "tcp host 10.0.0.1",
            "src or dst host 10.0.0.1",
            "tcp[13] & 2 != 0",
            "ether host 00:11:22:33:44:55",
            "and",
        ] {
            assert_eq!(translate_filter(f), None, "{f}");
        }
        // Too many alternatives.
        assert_eq!(
            translate_filter("host 1.1.1.1 and host 2.2.2.2 and port 1 and port 2 and port 3"),
            None
        );
    }
}
