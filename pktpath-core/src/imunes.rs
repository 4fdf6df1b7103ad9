//! IMUNES's naming, so that its labs read as IMUNES shows them. On Linux
//! IMUNES runs an experiment `<eid>` (`i` and hex digits, e.g. `i1a2`) with
//! each node in a network namespace `<eid>.<node>`, and each link as a
//! bridge in the experiment's own namespace `<eid>`, joining veth ends
//! named `<node>-<ifid>`.

/// An IMUNES node's namespace, `<eid>.<node>`: the experiment and node.
pub fn node(netns: &str) -> Option<(&str, &str)> {
    let (eid, node) = netns.split_once('.')?;
    let eid_ok =
        eid.len() > 1 && eid.starts_with('i') && eid[1..].chars().all(|c| c.is_ascii_hexdigit());
    let node_ok = !node.is_empty()
        && node
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    (eid_ok && node_ok).then_some((eid, node))
}

/// Whether `netns` is an IMUNES experiment's own namespace (`i1a2`).
pub fn experiment(netns: &str) -> bool {
    netns.len() > 1 && netns.starts_with('i') && netns[1..].chars().all(|c| c.is_ascii_hexdigit())
}

/// The name to show for a namespace: an IMUNES node's name, else its own.
pub fn label(netns: &str) -> &str {
    node(netns).map_or(netns, |(_, n)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imunes_names_are_understood() {
        assert_eq!(node("i1a2.n3"), Some(("i1a2", "n3")));
        assert_eq!(node("i1a2.router-1"), Some(("i1a2", "router-1")));
        assert_eq!(node("i1a2"), None);
        assert_eq!(node("ns.1"), None, "not an experiment id");
        assert_eq!(node("i1a2.a.b"), None);
        assert!(experiment("i1a2"));
        assert!(!experiment("ix"));
        assert_eq!(label("i1a2.pc1"), "pc1");
        assert_eq!(label("gold-router"), "gold-router");
    }
}
