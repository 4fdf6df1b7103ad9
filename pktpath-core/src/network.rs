//! The network as it was when tracing began: each namespace's devices
//! (their kind, addresses, bridge, veth peer, VLAN, tunnel endpoints) and
//! its routes through gateways. Read by the binary crate at trace time
//! and stored with the journeys (pcapng, JSON lines), so that a report
//! made later from the file draws the same network, with the devices and
//! links no packet crossed.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Network {
    pub namespaces: Vec<Namespace>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Namespace {
    /// As steps name it: its /run/netns name, or "host" for pktpath's own.
    pub name: String,
    pub devices: Vec<Device>,
    /// Routes through a gateway, as `ip route` prints them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Device {
    pub name: String,
    /// veth, bridge, vlan, vxlan, gre, ... (none: a physical device or
    /// loopback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Addresses with their prefix length.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addrs: Vec<String>,
    /// The bridge (or bond) it is a port of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
    /// A veth's other end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<Peer>,
    /// A VLAN device's id, a VXLAN's VNI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u32>,
    /// A tunnel's endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// The device it sits on (a VLAN's parent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// Down devices are drawn as such.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub down: bool,
}

/// Where a veth's other end is.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Peer {
    pub netns: String,
    pub dev: String,
}
