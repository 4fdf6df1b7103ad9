//! The VLAN a frame is in on a bridge, and whether its ingress port lets it
//! in: on a bridge with `vlan_filtering 1`, a tagged frame must carry a VLAN
//! the port is a member of, an untagged one takes the port's PVID (and is
//! dropped when the port has none). The kernel drops the others in
//! br_allowed_ingress without a drop reason of their own (NOT_SPECIFIED on
//! 6.1 and 6.12), so the drop's cause is found here (diagnosis words it). Port VLANs
//! are read from `bridge -j vlan show`.

use std::collections::HashMap;

use serde::Deserialize;

/// One entry of a port's VLAN list (a single VLAN or a range).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Entry {
    pub vlan: u16,
    #[serde(rename = "vlanEnd", default)]
    pub vlan_end: Option<u16>,
    #[serde(default)]
    pub flags: Vec<String>,
}

impl Entry {
    fn contains(&self, vid: u16) -> bool {
        (self.vlan..=self.vlan_end.unwrap_or(self.vlan)).contains(&vid)
    }
    fn text(&self) -> String {
        match self.vlan_end {
            Some(e) => format!("{}-{e}", self.vlan),
            None => self.vlan.to_string(),
        }
    }
}

#[derive(Deserialize)]
struct Port {
    ifname: String,
    #[serde(default)]
    vlans: Vec<Entry>,
}

/// Port name -> its VLANs, from `bridge -j vlan show`.
pub fn parse(json: &str) -> HashMap<String, Vec<Entry>> {
    serde_json::from_str::<Vec<Port>>(json)
        .unwrap_or_default()
        .into_iter()
        .map(|p| (p.ifname, p.vlans))
        .collect()
}

/// What the bridge made of a frame's VLAN at its ingress port.
#[derive(Debug, PartialEq)]
pub struct Ingress {
    /// The VLAN it is in on the bridge (none: untagged and no PVID).
    pub vid: Option<u16>,
    /// In words, for the bridge step.
    pub text: String,
    pub allowed: bool,
}

/// The VLAN of a frame that came in on `port` with `tag` (skb->vlan_tci),
/// on a bridge that does (`filtering`) or does not filter VLANs; `vlans`
/// is the port's list. None when there is nothing to say (no filtering,
/// no tag).
pub fn ingress(port: &str, tag: Option<u16>, filtering: bool, vlans: &[Entry]) -> Option<Ingress> {
    // VLAN 0 is a priority tag: the frame counts as untagged.
    let tag = tag.filter(|&v| v != 0);
    if !filtering {
        return tag.map(|v| Ingress {
            vid: Some(v),
            text: format!("vlan {v} (tagged; the bridge does not filter VLANs)"),
            allowed: true,
        });
    }
    let pvid = vlans
        .iter()
        .find(|e| e.flags.iter().any(|f| f == "PVID"))
        .map(|e| e.vlan);
    let members = if vlans.is_empty() {
        "no VLAN".to_string()
    } else {
        vlans.iter().map(Entry::text).collect::<Vec<_>>().join(", ")
    };
    Some(match (tag, pvid) {
        (Some(v), _) if vlans.iter().any(|e| e.contains(v)) => Ingress {
            vid: Some(v),
            text: format!("vlan {v} (tagged), allowed on {port}"),
            allowed: true,
        },
        (Some(v), _) => Ingress {
            vid: Some(v),
            text: format!("vlan {v} (tagged): not allowed on {port}, which allows {members}"),
            allowed: false,
        },
        (None, Some(p)) => Ingress {
            vid: Some(p),
            text: format!("vlan {p} (untagged, pvid of {port})"),
            allowed: true,
        },
        (None, None) => Ingress {
            vid: None,
            text: format!("untagged, and {port} has no pvid: not allowed"),
            allowed: false,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As iproute2 6.1 prints it for a port with PVID 10 and 20-22 tagged.
    const SHOWN: &str = r#"[{"ifname":"pa","vlans":[{"vlan":10,"flags":["PVID","Egress Untagged"]},{"vlan":20,"vlanEnd":22}]},{"ifname":"br0","vlans":[{"vlan":1,"flags":["PVID","Egress Untagged"]}]}]"#;

    #[test]
    fn tagged_untagged_and_not_allowed() {
        let ports = parse(SHOWN);
        let pa = &ports["pa"];
        let v = |tag| ingress("pa", tag, true, pa).unwrap();
        assert_eq!(v(None).text, "vlan 10 (untagged, pvid of pa)");
        assert_eq!(v(None).vid, Some(10));
        assert_eq!(v(Some(0)).vid, Some(10), "priority tag");
        assert!(v(Some(21)).allowed);
        let no = v(Some(30));
        assert!(!no.allowed);
        assert_eq!(
            no.text,
            "vlan 30 (tagged): not allowed on pa, which allows 10, 20-22"
        );
        let none = ingress("pb", None, true, &[]).unwrap();
        assert!(!none.allowed && none.vid.is_none());
    }

    #[test]
    fn without_filtering_only_a_tag_is_shown() {
        assert_eq!(ingress("pa", None, false, &[]), None);
        let t = ingress("pa", Some(7), false, &[]).unwrap();
        assert!(t.allowed);
        assert_eq!(t.vid, Some(7));
    }
}
