//! IMUNES's naming, so that its labs read as IMUNES shows them. On Linux
//! IMUNES runs an experiment `<eid>` (`i` and hex digits, e.g. `i1a2`) with
//! each node in a network namespace `<eid>.<node>`, and each link as a
//! bridge in the experiment's own namespace `<eid>`, joining veth ends
//! named `<node>-<ifid>`. IMUNES's topology file (`parse_topology`) gives
//! the nodes' types, hostnames and where IMUNES draws them.

use std::collections::{BTreeMap, BTreeSet};

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

/// A lab as IMUNES saved it: its nodes, where IMUNES drew them, and its
/// links. Read from the file IMUNES saves (`parse_topology`) so that a
/// report can lay the nodes out as the lab's author did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LabTopology {
    pub nodes: Vec<LabNode>,
    pub links: Vec<LabLink>,
}

/// One IMUNES node (`n0`); on Linux its namespace is `<eid>.<name>`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LabNode {
    /// The node's id in the file (`n0`), what its namespace is named by.
    pub name: String,
    /// IMUNES's node type: `router`, `pc`, `host`, `lanswitch`, `hub`, ...
    pub kind: String,
    /// The name people gave it (`hostname` in `network-config`, `name` in
    /// the JSON form).
    pub hostname: Option<String>,
    /// Its icon's centre on IMUNES's canvas (`iconcoords`), in pixels.
    pub coords: Option<(f64, f64)>,
    /// The canvas it is drawn on (`c0`): each canvas has its own origin.
    pub canvas: Option<String>,
    pub interfaces: Vec<LabInterface>,
}

/// A node's interface (`eth0`, a switch's `e0`) and the node at its other
/// end, if linked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LabInterface {
    pub name: String,
    pub peer: Option<String>,
}

/// A link (`l0`) between two nodes, with the interfaces it joins where the
/// file says. On Linux it is a bridge named after it in the experiment's
/// namespace, unless `direct` (a bare veth pair).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LabLink {
    pub name: String,
    pub nodes: (String, String),
    pub ifaces: (Option<String>, Option<String>),
    pub direct: bool,
}

/// Why a topology file was refused, and where (1-based; the column counts
/// characters).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct TopologyError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Braces nested deeper than this are refused: IMUNES writes at most three
/// levels (`cpu {{min 0} ...}` in a node), and a hostile file gets an
/// error rather than whatever a deeper structure would cost.
const MAX_NESTING: usize = 32;

/// Reads IMUNES's topology file: the legacy `.imn` (a Tcl list of
/// `node n0 {...}`, `link l0 {...}`, `canvas`, `option`, `annotation` and
/// `image` blocks, as IMUNES's `loadCfgLegacy` reads it) or the JSON form
/// newer IMUNES saves, also as `.imn` (`nodes`, `links`; in version 2 the
/// coordinates under `gui.nodes`), told apart by the first character.
/// Pseudo nodes (the ends of a link drawn across two canvases) are dropped
/// and the link's two mirrored halves joined into the one link they are.
pub fn parse_topology(text: &str) -> Result<LabTopology, TopologyError> {
    let (lab, mirrors) = match text.trim_start().chars().next() {
        None => return Err(error_at(text, text.len(), "empty topology file")),
        Some('{') => json::parse(text)?,
        Some(_) => legacy::parse(text)?,
    };
    Ok(join_pseudo(lab, &mirrors))
}

fn error_at(text: &str, offset: usize, message: impl Into<String>) -> TopologyError {
    let before = text.get(..offset).unwrap_or(text);
    TopologyError {
        line: before.matches('\n').count() + 1,
        column: before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1,
        message: message.into(),
    }
}

/// A link to a pseudo node is half of a link across canvases, and its
/// `mirror` (link -> link) the other half: the halves become one link
/// between their real nodes, and the pseudo nodes go.
fn join_pseudo(mut lab: LabTopology, mirrors: &BTreeMap<String, String>) -> LabTopology {
    let pseudo: BTreeSet<String> = lab
        .nodes
        .iter()
        .filter(|n| n.kind == "pseudo")
        .map(|n| n.name.clone())
        .collect();
    if pseudo.is_empty() {
        return lab;
    }
    lab.nodes.retain(|n| !pseudo.contains(&n.name));
    // A half's real end: its node and interface.
    let real_end = |l: &LabLink| match (pseudo.contains(&l.nodes.0), pseudo.contains(&l.nodes.1)) {
        (true, false) => Some((l.nodes.1.clone(), l.ifaces.1.clone())),
        (false, true) => Some((l.nodes.0.clone(), l.ifaces.0.clone())),
        _ => None,
    };
    let mut joined = Vec::new();
    for l in &lab.links {
        let Some(a) = real_end(l) else { continue };
        let other = mirrors
            .get(&l.name)
            .and_then(|m| lab.links.iter().find(|x| x.name == *m));
        let Some((m, b)) = other.and_then(|m| Some((m, real_end(m)?))) else {
            continue;
        };
        // Each pair once, named by its first half.
        if l.name < m.name {
            joined.push(LabLink {
                name: l.name.clone(),
                nodes: (a.0, b.0),
                ifaces: (a.1, b.1),
                direct: l.direct,
            });
        }
    }
    lab.links
        .retain(|l| !pseudo.contains(&l.nodes.0) && !pseudo.contains(&l.nodes.1));
    lab.links.extend(joined);
    let links = &lab.links;
    for n in &mut lab.nodes {
        for i in &mut n.interfaces {
            if i.peer.as_ref().is_some_and(|p| pseudo.contains(p)) {
                i.peer = links.iter().find_map(|l| {
                    let here = |node: &str, iface: &Option<String>| {
                        node == n.name && iface.as_deref() == Some(i.name.as_str())
                    };
                    if here(&l.nodes.0, &l.ifaces.0) {
                        Some(l.nodes.1.clone())
                    } else if here(&l.nodes.1, &l.ifaces.1) {
                        Some(l.nodes.0.clone())
                    } else {
                        None
                    }
                });
            }
        }
    }
    lab
}

type Parsed = (LabTopology, BTreeMap<String, String>);

/// The legacy `.imn`: the whole file is one Tcl list, read as Tcl reads
/// lists (words split by white space; `{...}` verbatim, nesting counted,
/// `\` escaping a brace; `"..."` with backslash escapes), in triples
/// `class name body`, each body a list of `field value` pairs.
mod legacy {
    use super::*;

    /// A list element and the byte offset in the file where its text
    /// begins (inside the braces for a braced word), for error positions.
    struct Word<'a> {
        text: std::borrow::Cow<'a, str>,
        at: usize,
    }

    /// Splits `src` (which starts at byte `base` of `file`) into its list
    /// elements. Iterative: nesting is counted, never recursed into.
    fn words<'a>(file: &'a str, base: usize, src: &'a str) -> Result<Vec<Word<'a>>, TopologyError> {
        let err = |i: usize, m: String| error_at(file, base + i, m);
        let bytes = src.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        let space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c);
        while i < bytes.len() {
            if space(bytes[i]) {
                i += 1;
                continue;
            }
            let start = i;
            match bytes[i] {
                b'{' => {
                    let mut depth = 0usize;
                    loop {
                        match bytes.get(i) {
                            None => {
                                return Err(err(
                                    start,
                                    "unbalanced braces: this { is never closed".into(),
                                ))
                            }
                            Some(b'\\') => i += 1,
                            Some(b'{') => {
                                depth += 1;
                                if depth > MAX_NESTING {
                                    return Err(err(
                                        i,
                                        format!("braces nested deeper than {MAX_NESTING}"),
                                    ));
                                }
                            }
                            Some(b'}') => {
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                            }
                            Some(_) => {}
                        }
                        i += 1;
                    }
                    out.push(Word {
                        text: src[start + 1..i].into(),
                        at: base + start + 1,
                    });
                    i += 1;
                }
                b'"' => {
                    let mut s = String::new();
                    i += 1;
                    loop {
                        match bytes.get(i) {
                            None => return Err(err(start, "this \" is never closed".into())),
                            Some(b'"') => break,
                            Some(b'\\') => {
                                i += 1;
                                i += unescape(src, i, &mut s);
                                continue;
                            }
                            Some(_) => {
                                let c = src[i..].chars().next().unwrap_or('\u{fffd}');
                                s.push(c);
                                i += c.len_utf8();
                                continue;
                            }
                        }
                    }
                    out.push(Word {
                        text: s.into(),
                        at: base + start + 1,
                    });
                    i += 1;
                }
                b'}' => return Err(err(i, "unbalanced braces: this } closes nothing".into())),
                _ => {
                    let mut s = String::new();
                    while i < bytes.len() && !space(bytes[i]) {
                        if bytes[i] == b'\\' {
                            i += 1;
                            i += unescape(src, i, &mut s);
                        } else {
                            let c = src[i..].chars().next().unwrap_or('\u{fffd}');
                            s.push(c);
                            i += c.len_utf8();
                        }
                    }
                    out.push(Word {
                        text: s.into(),
                        at: base + start,
                    });
                    continue;
                }
            }
            // Tcl: a closing brace or quote ends the element.
            if i < bytes.len() && !space(bytes[i]) {
                return Err(err(
                    i,
                    "a list element in braces or quotes is followed by more text".into(),
                ));
            }
        }
        Ok(out)
    }

    /// The character after a backslash at `src[i..]`, pushed as Tcl reads
    /// it; returns the bytes used.
    fn unescape(src: &str, i: usize, s: &mut String) -> usize {
        let Some(c) = src.get(i..).and_then(|r| r.chars().next()) else {
            s.push('\\');
            return 0;
        };
        s.push(match c {
            'n' => '\n',
            't' => '\t',
            'r' => '\r',
            c => c,
        });
        c.len_utf8()
    }

    /// A block's body as `field value` pairs. IMUNES writes bodies in
    /// braces; requiring them keeps error positions exact (a quoted or
    /// bare word's text is no longer the file's).
    fn pairs<'a>(
        file: &'a str,
        body: &'a Word<'a>,
    ) -> Result<Vec<(Word<'a>, Word<'a>)>, TopologyError> {
        let src = match &body.text {
            std::borrow::Cow::Borrowed(s) => *s,
            std::borrow::Cow::Owned(_) => {
                return Err(error_at(file, body.at, "a block's body must be in braces"))
            }
        };
        let mut ws = words(file, body.at, src)?.into_iter();
        let mut out = Vec::new();
        while let Some(f) = ws.next() {
            let Some(v) = ws.next() else {
                return Err(error_at(
                    file,
                    f.at,
                    format!("field {} has no value", f.text),
                ));
            };
            out.push((f, v));
        }
        Ok(out)
    }

    fn list<'a>(file: &'a str, w: &'a Word<'a>) -> Result<Vec<Word<'a>>, TopologyError> {
        words(file, w.at, &w.text)
    }

    pub(super) fn parse(file: &str) -> Result<Parsed, TopologyError> {
        let top = words(file, 0, file)?;
        let mut lab = LabTopology::default();
        let mut mirrors = BTreeMap::new();
        let mut nodes = BTreeSet::new();
        for block in top.chunks(3) {
            let [class, name, body] = block else {
                return Err(error_at(
                    file,
                    block[0].at,
                    "a block needs a class, a name and a body in braces",
                ));
            };
            if !matches!(
                &*class.text,
                "node" | "link" | "canvas" | "option" | "annotation" | "image"
            ) {
                return Err(error_at(
                    file,
                    class.at,
                    format!("not an IMUNES topology: unknown block {:?}", class.text),
                ));
            }
            let fields = pairs(file, body)?;
            match &*class.text {
                "node" => {
                    if !nodes.insert(name.text.to_string()) {
                        return Err(error_at(
                            file,
                            name.at,
                            format!("node {} is defined twice", name.text),
                        ));
                    }
                    lab.nodes.push(node(file, name, &fields)?);
                }
                "link" => {
                    let (l, mirror) = link(file, name, &fields)?;
                    if let Some(m) = mirror {
                        mirrors.insert(l.name.clone(), m);
                    }
                    lab.links.push(l);
                }
                _ => {}
            }
        }
        claim_ifaces(&mut lab);
        Ok((lab, mirrors))
    }

    fn node(file: &str, name: &Word, fields: &[(Word, Word)]) -> Result<LabNode, TopologyError> {
        let mut n = LabNode {
            name: name.text.to_string(),
            ..LabNode::default()
        };
        for (f, v) in fields {
            match &*f.text {
                "type" => n.kind = v.text.to_string(),
                "canvas" => n.canvas = Some(v.text.to_string()),
                "iconcoords" => {
                    let xy = list(file, v)?;
                    let num = |w: &Word| w.text.parse::<f64>().ok().filter(|x| x.is_finite());
                    match &xy[..] {
                        [x, y] => match (num(x), num(y)) {
                            (Some(x), Some(y)) => n.coords = Some((x, y)),
                            _ => {
                                return Err(error_at(file, v.at, "iconcoords are not two numbers"))
                            }
                        },
                        _ => return Err(error_at(file, v.at, "iconcoords are not two numbers")),
                    }
                }
                // Line by line, as IMUNES reads it: `hostname NAME`,
                // `interface NAME`.
                "network-config" => {
                    for line in v.text.lines() {
                        let mut ws = line.split_whitespace();
                        match (ws.next(), ws.last()) {
                            (Some("hostname"), Some(h)) => n.hostname = Some(h.to_string()),
                            (Some("interface"), Some(i))
                                if !n.interfaces.iter().any(|x| x.name == i) =>
                            {
                                n.interfaces.push(LabInterface {
                                    name: i.to_string(),
                                    peer: None,
                                })
                            }
                            _ => {}
                        }
                    }
                }
                "interface-peer" => {
                    let l = list(file, v)?;
                    let [iface, peer] = &l[..] else {
                        return Err(error_at(
                            file,
                            v.at,
                            "interface-peer is not {interface node}",
                        ));
                    };
                    let peer = Some(peer.text.to_string());
                    match n.interfaces.iter_mut().find(|x| x.name == iface.text) {
                        Some(x) => x.peer = peer,
                        None => n.interfaces.push(LabInterface {
                            name: iface.text.to_string(),
                            peer,
                        }),
                    }
                }
                _ => {}
            }
        }
        Ok(n)
    }

    fn link(
        file: &str,
        name: &Word,
        fields: &[(Word, Word)],
    ) -> Result<(LabLink, Option<String>), TopologyError> {
        let mut l = LabLink {
            name: name.text.to_string(),
            ..LabLink::default()
        };
        let mut mirror = None;
        let mut seen = false;
        for (f, v) in fields {
            match &*f.text {
                "nodes" => {
                    let ns = list(file, v)?;
                    let [a, b] = &ns[..] else {
                        return Err(error_at(file, v.at, "a link's nodes are not two nodes"));
                    };
                    l.nodes = (a.text.to_string(), b.text.to_string());
                    seen = true;
                }
                "direct" => l.direct = !matches!(&*v.text, "0" | "false" | ""),
                "mirror" => mirror = Some(v.text.to_string()),
                _ => {}
            }
        }
        if !seen {
            return Err(error_at(
                file,
                name.at,
                format!("link {} has no nodes", l.name),
            ));
        }
        Ok((l, mirror))
    }

    /// A link's interfaces, as IMUNES finds them: at each end, the first
    /// interface whose peer is the other end and that no earlier link took.
    fn claim_ifaces(lab: &mut LabTopology) {
        let mut taken: BTreeSet<(String, String)> = BTreeSet::new();
        for l in &mut lab.links {
            let mut claim = |node: &str, other: &str| {
                let n = lab.nodes.iter().find(|n| n.name == node)?;
                let i = n.interfaces.iter().find(|i| {
                    i.peer.as_deref() == Some(other)
                        && !taken.contains(&(node.to_string(), i.name.clone()))
                })?;
                taken.insert((node.to_string(), i.name.clone()));
                Some(i.name.clone())
            };
            let a = claim(&l.nodes.0, &l.nodes.1);
            let b = claim(&l.nodes.1, &l.nodes.0);
            l.ifaces = (a, b);
        }
    }
}

/// The JSON form: `nodes` and `links` keyed by id, values as strings
/// (`"iconcoords": "96 384"`, `"peers": "n8 n0"`), a node's interfaces
/// under `ifaces` keyed `ifc0` with their `name` and `link`; version 2
/// keeps where nodes are drawn under `gui.nodes`. serde_json refuses
/// nesting deeper than 128 with the line and column.
mod json {
    use super::*;
    use serde_json::{Map, Value};

    pub(super) fn parse(file: &str) -> Result<Parsed, TopologyError> {
        let root: Value = serde_json::from_str(file).map_err(|e| TopologyError {
            line: e.line(),
            column: e.column(),
            message: format!("not JSON: {e}"),
        })?;
        // Semantic errors carry no position in the value: point at the
        // object's key in the text instead.
        let err = |key: &str, m: String| {
            let at = file.find(&format!("\"{key}\"")).unwrap_or(0);
            error_at(file, at, m)
        };
        let obj = |v: Option<&Value>, what: &str| -> Result<Map<String, Value>, TopologyError> {
            match v {
                None | Some(Value::Null) => Ok(Map::new()),
                Some(Value::Object(m)) => Ok(m.clone()),
                Some(_) => Err(err(what, format!("{what} is not an object"))),
            }
        };
        let Value::Object(_) = &root else {
            return Err(error_at(
                file,
                0,
                "not an IMUNES topology: not a JSON object",
            ));
        };
        let nodes = obj(root.get("nodes"), "nodes")?;
        let links = obj(root.get("links"), "links")?;
        if root.get("nodes").is_none() && root.get("links").is_none() {
            return Err(error_at(
                file,
                0,
                "not an IMUNES topology: no nodes or links",
            ));
        }
        let gui = obj(root.get("gui").and_then(|g| g.get("nodes")), "gui")?;
        let text = |v: Option<&Value>| match v {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let mut lab = LabTopology::default();
        let mut mirrors = BTreeMap::new();
        let mut link_ends: BTreeMap<String, (String, String)> = BTreeMap::new();
        let mut link_ifaces: BTreeMap<String, (Option<String>, Option<String>)> = BTreeMap::new();
        for (id, l) in &links {
            let Value::Object(l) = l else {
                return Err(err(id, format!("link {id} is not an object")));
            };
            let peers = words(l.get("peers")).or_else(|| words(l.get("nodes")));
            let Some([a, b]) = peers.as_deref() else {
                return Err(err(id, format!("link {id}'s peers are not two nodes")));
            };
            link_ends.insert(id.clone(), (a.clone(), b.clone()));
            if let Some([ia, ib]) = words(l.get("peers_ifaces")).as_deref() {
                link_ifaces.insert(id.clone(), (Some(ia.clone()), Some(ib.clone())));
            }
            if let Some(m) = text(l.get("mirror")).filter(|m| !m.is_empty()) {
                mirrors.insert(id.clone(), m);
            }
            lab.links.push(LabLink {
                name: id.clone(),
                nodes: (a.clone(), b.clone()),
                ifaces: (None, None),
                direct: text(l.get("direct")).is_some_and(|d| !matches!(&*d, "0" | "false" | "")),
            });
        }
        for (id, n) in &nodes {
            let Value::Object(n) = n else {
                return Err(err(id, format!("node {id} is not an object")));
            };
            let coords = n
                .get("iconcoords")
                .or_else(|| gui.get(id).and_then(|g| g.get("iconcoords")));
            let coords = match coords {
                None | Some(Value::Null) => None,
                Some(c) => {
                    let nums: Option<Vec<f64>> = match c {
                        Value::Array(a) => a.iter().map(number).collect(),
                        c => {
                            words(Some(c)).and_then(|w| w.iter().map(|s| s.parse().ok()).collect())
                        }
                    };
                    match nums.as_deref() {
                        Some(&[x, y]) if x.is_finite() && y.is_finite() => Some((x, y)),
                        _ => {
                            return Err(err(
                                id,
                                format!("node {id}'s iconcoords are not two numbers"),
                            ))
                        }
                    }
                }
            };
            let mut interfaces = Vec::new();
            // Version 1 keyed interfaces by id (`ifc1`) with a `name`; the
            // earliest JSON keyed them by name.
            for (ifc, i) in obj(n.get("ifaces"), id)? {
                let name = text(i.get("name")).unwrap_or_else(|| ifc.clone());
                let link = text(i.get("link"));
                let peer = link.as_ref().and_then(|l| link_ends.get(l)).map(|(a, b)| {
                    if a == id {
                        b.clone()
                    } else {
                        a.clone()
                    }
                });
                if let Some(l) = &link {
                    if let (Some(e), Some(f)) = (link_ends.get(l), link_ifaces.get_mut(l)) {
                        // peers_ifaces names interface ids: say their names.
                        if e.0 == *id && f.0.as_deref() == Some(&*ifc) {
                            f.0 = Some(name.clone());
                        } else if e.1 == *id && f.1.as_deref() == Some(&*ifc) {
                            f.1 = Some(name.clone());
                        }
                    }
                }
                interfaces.push(LabInterface { name, peer });
            }
            lab.nodes.push(LabNode {
                name: id.clone(),
                kind: text(n.get("type")).unwrap_or_default(),
                hostname: text(n.get("name")).filter(|h| !h.is_empty()),
                coords,
                canvas: text(n.get("canvas"))
                    .or_else(|| gui.get(id).and_then(|g| text(g.get("canvas")))),
                interfaces,
            });
        }
        // An interface id no node named is not a name.
        for l in &mut lab.links {
            if let Some((a, b)) = link_ifaces.remove(&l.name) {
                let named = |node: &str, i: Option<String>| {
                    i.filter(|i| {
                        lab.nodes
                            .iter()
                            .any(|n| n.name == node && n.interfaces.iter().any(|x| x.name == *i))
                    })
                };
                l.ifaces = (named(&l.nodes.0, a), named(&l.nodes.1, b));
            }
        }
        Ok((lab, mirrors))
    }

    /// A value IMUNES writes as a Tcl list in a string (`"n0 n1"`), or an
    /// array of strings.
    fn words(v: Option<&Value>) -> Option<Vec<String>> {
        match v? {
            Value::String(s) => Some(s.split_whitespace().map(str::to_string).collect()),
            Value::Array(a) => a.iter().map(|x| x.as_str().map(str::to_string)).collect(),
            _ => None,
        }
    }

    fn number(v: &Value) -> Option<f64> {
        match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
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

    const LAB: &str = include_str!("../tests/fixtures/imunes-lab.imn");
    const LAB_JSON: &str = include_str!("../tests/fixtures/imunes-lab.json.imn");

    fn iface(name: &str, peer: Option<&str>) -> LabInterface {
        LabInterface {
            name: name.into(),
            peer: peer.map(Into::into),
        }
    }

    fn link(name: &str, a: (&str, &str), b: (&str, &str)) -> LabLink {
        LabLink {
            name: name.into(),
            nodes: (a.0.into(), b.0.into()),
            ifaces: (Some(a.1.into()), Some(b.1.into())),
            direct: false,
        }
    }

    /// The lab both files describe: a router, a switch, a pc and a server.
    fn expected() -> LabTopology {
        let node = |name: &str, kind: &str, host: &str, xy: (f64, f64), ifs| LabNode {
            name: name.into(),
            kind: kind.into(),
            hostname: Some(host.into()),
            coords: Some(xy),
            canvas: Some("c0".into()),
            interfaces: ifs,
        };
        LabTopology {
            nodes: vec![
                node(
                    "n0",
                    "router",
                    "gw",
                    (456.0, 120.0),
                    vec![iface("eth0", Some("n1")), iface("lo0", None)],
                ),
                node(
                    "n1",
                    "lanswitch",
                    "switch1",
                    (456.0, 288.0),
                    vec![
                        iface("e0", Some("n0")),
                        iface("e1", Some("n2")),
                        iface("e2", Some("n3")),
                    ],
                ),
                node(
                    "n2",
                    "pc",
                    "pc1",
                    (264.0, 432.0),
                    vec![iface("eth0", Some("n1")), iface("lo0", None)],
                ),
                node(
                    "n3",
                    "host",
                    "server",
                    (648.0, 432.0),
                    vec![iface("eth0", Some("n1")), iface("lo0", None)],
                ),
            ],
            links: vec![
                link("l0", ("n0", "eth0"), ("n1", "e0")),
                link("l1", ("n2", "eth0"), ("n1", "e1")),
                link("l2", ("n1", "e2"), ("n3", "eth0")),
            ],
        }
    }

    fn sorted(mut lab: LabTopology) -> LabTopology {
        lab.nodes.sort_by(|a, b| a.name.cmp(&b.name));
        lab.links.sort_by(|a, b| a.name.cmp(&b.name));
        lab
    }

    #[test]
    fn an_imn_file_is_read() {
        assert_eq!(parse_topology(LAB).unwrap(), expected());
    }

    #[test]
    fn its_json_twin_reads_the_same() {
        assert_eq!(sorted(parse_topology(LAB_JSON).unwrap()), expected());
        // Version 1 kept the coordinates in the node itself.
        let v1 = r#"{"nodes": {"n0": {"type": "pc", "name": "pc1", "iconcoords": "100 200",
            "ifaces": {"ifc0": {"name": "eth0", "link": "l0"}}},
            "n1": {"type": "hub", "iconcoords": [300, 200.5],
            "ifaces": {"e0": {"type": "phys", "link": "l0"}}}},
            "links": {"l0": {"peers": "n0 n1", "peers_ifaces": "ifc0 e0", "direct": "1"}},
            "options": {"version": "1"}}"#;
        let lab = parse_topology(v1).unwrap();
        assert_eq!(lab.nodes[0].coords, Some((100.0, 200.0)));
        assert_eq!(lab.nodes[1].coords, Some((300.0, 200.5)));
        assert_eq!(lab.nodes[1].hostname, None);
        assert_eq!(lab.nodes[1].interfaces, [iface("e0", Some("n0"))]);
        assert_eq!(
            lab.links,
            [LabLink {
                direct: true,
                ..link("l0", ("n0", "eth0"), ("n1", "e0"))
            }]
        );
    }

    /// A link drawn across two canvases is two halves ending at pseudo
    /// nodes, each the other's mirror: one link between the real nodes.
    #[test]
    fn a_link_across_canvases_is_one_link() {
        let imn =
            "node n0 {\n type pc\n canvas c0\n iconcoords {10 10}\n interface-peer {eth0 n2}\n}\n\
            node n1 {\n type pc\n canvas c1\n iconcoords {20 20}\n interface-peer {eth0 n3}\n}\n\
            node n2 {\n type pseudo\n canvas c0\n iconcoords {50 50}\n interface-peer {0 n0}\n}\n\
            node n3 {\n type pseudo\n canvas c1\n iconcoords {60 60}\n interface-peer {0 n1}\n}\n\
            link l0 {\n nodes {n2 n0}\n mirror l1\n}\nlink l1 {\n nodes {n3 n1}\n mirror l0\n}\n";
        let lab = parse_topology(imn).unwrap();
        let names: Vec<&str> = lab.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["n0", "n1"]);
        assert_eq!(lab.links, [link("l0", ("n0", "eth0"), ("n1", "eth0"))]);
        assert_eq!(lab.nodes[0].interfaces, [iface("eth0", Some("n1"))]);
    }

    #[test]
    fn garbage_is_refused_with_where() {
        let err = |text: &str| parse_topology(text).unwrap_err();
        assert_eq!(err("").line, 1);
        assert_eq!(err(" \n\t\n").message, "empty topology file");
        let e = err("node n0 {\n    type pc\n    iconcoords {1 2}\n");
        assert_eq!((e.line, e.column), (1, 9), "{e}");
        assert!(e.message.contains("never closed"), "{e}");
        let e = err("node n0 {\n    type pc\n}\n}\n");
        assert_eq!((e.line, e.column), (4, 1), "{e}");
        let e = err("node n0 {\n    iconcoords {12 x}\n}");
        assert_eq!((e.line, e.column), (2, 17), "{e}");
        let e = err("node n0 {\n    type\n}");
        assert!(e.message.contains("no value"), "{e}");
        let e = err("node n0 {type pc}x");
        assert!(e.message.contains("followed by"), "{e}");
        let e = err("link l0 {\n    nodes {n0}\n}");
        assert_eq!(e.line, 2, "{e}");
        let e = err("node n0 {}\nnode n0 {}");
        assert!(e.message.contains("twice"), "{e}");
        // Deep nesting: refused by a counter, not by the stack.
        let deep = format!(
            "node n0 {{ cpu {}{} }}",
            "{".repeat(100_000),
            "}".repeat(100_000)
        );
        assert!(err(&deep).message.contains("nested deeper"));
        let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(err(&format!("{{\"nodes\": {deep}}}"))
            .message
            .contains("JSON"));
        // Binary garbage, as a file read lossily would give it.
        let bytes: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let e = err(&String::from_utf8_lossy(&bytes));
        assert!(e.line >= 1 && e.column >= 1);
        let e = err("{\"nodes\": {\"n0\": {\"iconcoords\": \"1\"}}}");
        assert!(e.message.contains("iconcoords"), "{e}");
        let e = err("{\"nodes\": {},\n \"links\": {\"l0\": {\"peers\": \"n0\"}}}");
        assert_eq!(e.line, 2, "{e}");
        let e = err("{\"a\": 1,\n \"b\": }");
        assert_eq!((e.line, e.column), (2, 7), "{e}");
        assert!(err("[1, 2]").message.contains("a class, a name and a body"));
        assert!(err("{\"nodes\": [1]}").message.contains("not an object"));
        assert!(err("{}").message.contains("not an IMUNES"));
        assert!(err("hello world again").message.contains("unknown block"));
    }

    /// Every prefix of a real file, and every file with one byte changed
    /// to a brace or quote, parses or is refused: never a panic.
    #[test]
    fn damaged_files_never_panic() {
        for text in [LAB, LAB_JSON] {
            for (i, _) in text.char_indices() {
                let _ = parse_topology(&text[..i]);
            }
            for (i, _) in text.char_indices().step_by(7) {
                for c in ["{", "}", "\"", "\\", "["] {
                    let damaged = format!("{}{c}{}", &text[..i], &text[i..]);
                    let _ = parse_topology(&damaged);
                }
            }
        }
    }
}
