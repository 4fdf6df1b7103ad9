//! Connection tracking as a step sees it: the state of the packet's
//! conntrack entry (new, established, related, their reply forms,
//! untracked), its zone, its two tuples, and NAT as the difference between
//! the original tuple and the inverted reply tuple.

use serde::{Deserialize, Serialize};

/// The conntrack entry of a packet at one step.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Conntrack {
    /// new, established, related, untracked.
    pub state: String,
    /// The packet goes in the reply direction of its connection.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub reply: bool,
    #[serde(skip_serializing_if = "is_zero", default)]
    pub zone: u16,
    /// The connection as first seen: "udp 10.0.1.2:4000 > 10.0.2.2:53".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original: Option<String>,
    /// Address translation: "snat 10.0.1.2:4000 -> 10.0.2.1:4000",
    /// "dnat 10.0.2.1:8080 -> 10.0.3.2:80" (both, separated by "; ").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nat: Option<String>,
    /// Confirmed (in the table), seen a reply, assured.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub flags: Vec<String>,
}

fn is_zero(z: &u16) -> bool {
    *z == 0
}

impl Conntrack {
    /// "ct new", "ct established reply, zone 5, snat ...".
    pub fn line(&self) -> String {
        let mut s = format!("ct {}", self.state);
        if self.reply {
            s.push_str(" reply");
        }
        if self.zone != 0 {
            s.push_str(&format!(", zone {}", self.zone));
        }
        if let Some(n) = &self.nat {
            s.push_str(&format!(", {n}"));
        }
        s
    }
}
