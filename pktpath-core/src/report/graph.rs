//! Text graphs for other tools: one journey's path (namespaces as
//! clusters, its steps in order) and the transition graph of all journeys,
//! as Graphviz DOT and as Mermaid flowcharts.

use std::fmt::Write;

use super::paths::Transition;
use crate::journey::Journey;

/// A string as a DOT quoted id.
fn dot_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A string as Mermaid label text: quoted, its quotes and markup
/// characters as entity codes (Mermaid reads `#quot;`).
fn mermaid_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("#quot;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '#' => out.push_str("#35;"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A step's label: its site and what it says, on one line.
fn step_label(j: &Journey, i: usize) -> String {
    let s = &j.steps[i];
    let what = s.describe();
    let dev = s
        .dev
        .as_deref()
        .map(|d| format!(" ({d})"))
        .unwrap_or_default();
    if what.is_empty() {
        format!("{}. {}{dev}", i + 1, s.site)
    } else {
        format!("{}. {}{dev}: {what}", i + 1, s.site)
    }
}

/// Runs of consecutive steps in one namespace: (namespace, step indices).
fn clusters(j: &Journey) -> Vec<(String, Vec<usize>)> {
    let mut out: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, s) in j.steps.iter().enumerate() {
        match out.last_mut() {
            Some((ns, v)) if **ns == *s.netns_name => v.push(i),
            _ => out.push((s.netns_name.to_string(), vec![i])),
        }
    }
    out
}

/// One journey as DOT: each stay in a namespace a cluster, the steps in
/// order, the end (red when a drop).
pub fn journey_dot(j: &Journey) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph journey_{} {{", j.id);
    let _ = writeln!(out, "  rankdir=TB; node [shape=box, fontsize=10];");
    let title = format!(
        "#{} {}",
        j.id,
        j.packet.as_deref().unwrap_or("(headers not captured)")
    );
    let _ = writeln!(out, "  label={}; labelloc=t;", dot_quote(&title));
    for (k, (ns, steps)) in clusters(j).iter().enumerate() {
        let _ = writeln!(out, "  subgraph cluster_{k} {{");
        let _ = writeln!(out, "    label={};", dot_quote(&format!("netns {ns}")));
        for &i in steps {
            let _ = writeln!(out, "    s{i} [label={}];", dot_quote(&step_label(j, i)));
        }
        let _ = writeln!(out, "  }}");
    }
    for i in 1..j.steps.len() {
        let _ = writeln!(out, "  s{} -> s{i};", i - 1);
    }
    let red = j.end.is_real_drop();
    let _ = writeln!(
        out,
        "  end [label={}, shape=oval{}];",
        dot_quote(&j.end.line()),
        if red {
            ", color=red, fontcolor=red"
        } else {
            ""
        }
    );
    if let Some(last) = j.steps.len().checked_sub(1) {
        let _ = writeln!(out, "  s{last} -> end;");
    }
    out.push_str("}\n");
    out
}

/// One journey as a Mermaid flowchart (namespaces as subgraphs).
pub fn journey_mermaid(j: &Journey) -> String {
    let mut out = String::from("flowchart TB\n");
    for (k, (ns, steps)) in clusters(j).iter().enumerate() {
        let _ = writeln!(
            out,
            "  subgraph ns{k}[{}]",
            mermaid_text(&format!("netns {ns}"))
        );
        for &i in steps {
            let _ = writeln!(out, "    s{i}[{}]", mermaid_text(&step_label(j, i)));
        }
        let _ = writeln!(out, "  end");
    }
    for i in 1..j.steps.len() {
        let _ = writeln!(out, "  s{} --> s{i}", i - 1);
    }
    let _ = writeln!(out, "  fin([{}])", mermaid_text(&j.end.line()));
    if let Some(last) = j.steps.len().checked_sub(1) {
        let _ = writeln!(out, "  s{last} --> fin");
    }
    if j.end.is_real_drop() {
        let _ = writeln!(out, "  style fin stroke:#c00,color:#c00");
    }
    out
}

/// Node ids for graph keys: the order they first appear.
fn ids(ts: &[Transition]) -> Vec<&str> {
    let mut v: Vec<&str> = Vec::new();
    for t in ts {
        for k in [t.from.as_str(), t.to.as_str()] {
            if !v.contains(&k) {
                v.push(k);
            }
        }
    }
    v
}

/// The transition graph as DOT, edges labelled with their counts.
pub fn transitions_dot(ts: &[Transition]) -> String {
    let nodes = ids(ts);
    let id = |k: &str| nodes.iter().position(|n| *n == k).unwrap_or(0);
    let mut out = String::from("digraph transitions {\n  rankdir=LR; node [shape=box];\n");
    for (i, n) in nodes.iter().enumerate() {
        let red = if *n == "(dropped)" {
            ", color=red, fontcolor=red"
        } else {
            ""
        };
        let _ = writeln!(out, "  n{i} [label={}{red}];", dot_quote(n));
    }
    for t in ts {
        let _ = writeln!(
            out,
            "  n{} -> n{} [label=\"{}\"];",
            id(&t.from),
            id(&t.to),
            t.count
        );
    }
    out.push_str("}\n");
    out
}

/// The transition graph as a Mermaid flowchart.
pub fn transitions_mermaid(ts: &[Transition]) -> String {
    let nodes = ids(ts);
    let id = |k: &str| nodes.iter().position(|n| *n == k).unwrap_or(0);
    let mut out = String::from("flowchart LR\n");
    for (i, n) in nodes.iter().enumerate() {
        let _ = writeln!(out, "  n{i}[{}]", mermaid_text(n));
    }
    for t in ts {
        let _ = writeln!(out, "  n{} -->|{}| n{}", id(&t.from), t.count, id(&t.to));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_labels_stay_labels() {
        assert_eq!(dot_quote("a\"b\\c\nd"), "\"a\\\"b\\\\c d\"");
        assert_eq!(
            mermaid_text("x\"]-->y<b>#"),
            "\"x#quot;]--#gt;y#lt;b#gt;#35;\""
        );
    }
}
