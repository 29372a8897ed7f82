//! `sluice graph`: the pipeline as Graphviz DOT, as `vector graph` prints it: sources →
//! interceptors → selector → channels → sink groups → sinks.

use std::collections::BTreeSet;
use std::fmt::Write;

use super::AgentConfig;

/// A DOT string: quoted, with quotes and backslashes escaped.
fn id(s: &str) -> String {
    format!("\"{}\"", escape(s))
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// A two-line node label: the name, then the type in parentheses.
fn label(name: &str, kind: &str) -> String {
    format!("\"{}\\n({})\"", escape(name), escape(kind))
}

impl AgentConfig {
    /// The pipeline as a Graphviz `digraph` (render with `dot -Tsvg`).
    pub fn graph(&self) -> String {
        let mut g = String::new();
        let _ = writeln!(g, "digraph {} {{", id(&self.agent));
        let _ = writeln!(g, "  rankdir=\"LR\";");
        for c in &self.channels {
            let node = id(&format!("channel/{}", c.name));
            let _ = writeln!(
                g,
                "  {node} [shape=\"cylinder\", label={}];",
                label(&c.name, c.kind)
            );
        }
        for s in &self.sources {
            let src = id(&format!("source/{}", s.name));
            let _ = writeln!(
                g,
                "  {src} [shape=\"trapezium\", label={}];",
                label(&s.name, s.source.kind)
            );
            let mut from = src;
            for i in &s.interceptors {
                let node = id(&format!("interceptor/{}/{}", s.name, i.name));
                let _ = writeln!(
                    g,
                    "  {node} [shape=\"box\", label={}];",
                    label(&i.name, i.interceptor.kind)
                );
                let _ = writeln!(g, "  {from} -> {node};");
                from = node;
            }
            let sel = id(&format!("selector/{}", s.name));
            let _ = writeln!(
                g,
                "  {sel} [shape=\"diamond\", label={}];",
                label("selector", s.selector.kind)
            );
            let _ = writeln!(g, "  {from} -> {sel};");
            for c in &s.channels {
                let _ = writeln!(g, "  {sel} -> {};", id(&format!("channel/{c}")));
            }
            if let Some(d) = &s.dead_letter {
                let _ = writeln!(
                    g,
                    "  {sel} -> {} [style=\"dashed\", label=\"dead letters\"];",
                    id(&format!("channel/{}", d.channel))
                );
            }
        }
        let grouped = |k: &str| {
            self.sinkgroups
                .iter()
                .find(|gr| gr.sinks.iter().any(|s| s == k))
        };
        for gr in &self.sinkgroups {
            let node = id(&format!("sinkgroup/{}", gr.name));
            let _ = writeln!(
                g,
                "  {node} [shape=\"hexagon\", label={}];",
                label(&gr.name, gr.processor.kind)
            );
        }
        // A group reading one channel through several sinks gets one edge from it.
        let mut fed = BTreeSet::new();
        for k in &self.sinks {
            let node = id(&format!("sink/{}", k.name));
            let _ = writeln!(
                g,
                "  {node} [shape=\"invtrapezium\", label={}];",
                label(&k.name, k.sink.kind)
            );
            let channel = id(&format!("channel/{}", k.channel));
            match grouped(&k.name) {
                Some(gr) => {
                    let group = id(&format!("sinkgroup/{}", gr.name));
                    if fed.insert((channel.clone(), group.clone())) {
                        let _ = writeln!(g, "  {channel} -> {group};");
                    }
                    let _ = writeln!(g, "  {group} -> {node};");
                }
                None => {
                    let _ = writeln!(g, "  {channel} -> {node};");
                }
            }
        }
        let _ = writeln!(g, "}}");
        g
    }
}
