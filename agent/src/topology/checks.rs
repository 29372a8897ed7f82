//! The checks across components, after each was parsed on its own: names listed twice,
//! tenants' channels, channels nothing uses, and keys nothing read.

use std::collections::BTreeSet;

use super::AgentConfig;
use super::parse::Builder;
use crate::tenants::TenantRouterSpec;

pub(super) fn cross_references(b: &mut Builder, config: &AgentConfig) {
    listed_twice(b);
    tenants(b, config);
    unused_channels(b, config);
}

fn listed_twice(b: &mut Builder) {
    let lists = [
        ("sources", b.lists.sources.clone()),
        ("channels", b.lists.channels.clone()),
        ("sinks", b.lists.sinks.clone()),
        ("sinkgroups", b.lists.sinkgroups.clone()),
    ];
    for (list, names) in lists {
        let mut seen = BTreeSet::new();
        for n in &names {
            if !seen.insert(n) {
                let e = b.top.error(list, format!("`{n}` is listed twice"));
                b.errors.push(e);
            }
        }
    }
}

/// Every tenant's channels exist, and every source routing by tenant lists them.
fn tenants(b: &mut Builder, config: &AgentConfig) {
    let Some(t) = &config.tenants else {
        return;
    };
    let agent = b.agent.clone();
    for tc in &t.tenants {
        for c in tc.channels.iter().filter(|c| !b.lists.channels.contains(c)) {
            let e = b.top.sub(&format!("tenants.{}.", tc.name)).error(
                "channels",
                format!("channel `{c}` is not listed in {agent}.channels"),
            );
            b.errors.push(e);
        }
    }
    for s in config
        .sources
        .iter()
        .filter(|s| s.selector.kind == TenantRouterSpec::KIND)
    {
        let sp = b.top.component(&format!("sources.{}.", s.name), "sources");
        for tc in &t.tenants {
            for c in tc.channels.iter().filter(|c| !s.channels.contains(c)) {
                b.errors.push(sp.error(
                    "channels",
                    format!(
                        "tenant `{}` writes to `{c}`, which is not in this list",
                        tc.name
                    ),
                ));
            }
        }
    }
}

fn unused_channels(b: &mut Builder, config: &AgentConfig) {
    for c in &config.channels {
        let used = config
            .sources
            .iter()
            .any(|s| s.written_channels().any(|w| *w == c.name))
            || config.sinks.iter().any(|s| s.channel == c.name);
        if !used {
            b.warnings.push(format!(
                "{}: channel `{}` is connected to no source or sink",
                b.top.origin(&format!("channels.{}.type", c.name)).display(),
                c.name
            ));
        }
    }
}

/// Keys under the agent's prefix that belong to no listed component.
pub(super) fn unused_keys(b: &mut Builder) {
    let root = format!("{}.", b.agent);
    for (full_key, at) in b.top.unused() {
        let key = full_key.strip_prefix(&root).unwrap_or(&full_key);
        let listed = |kind: &str, names: &[String]| {
            key.strip_prefix(kind)
                .and_then(|r| r.split('.').next())
                .is_some_and(|n| names.iter().any(|x| x == n))
        };
        let l = &b.lists;
        if listed("sources.", &l.sources)
            || listed("channels.", &l.channels)
            || listed("sinks.", &l.sinks)
            || listed("sinkgroups.", &l.sinkgroups)
            || (!l.tenants.is_empty() && key.starts_with("tenants."))
        {
            continue;
        }
        b.warnings.push(format!(
            "{at}: {full_key}: ignored (unknown key, or a component not listed \
             in {}.sources/channels/sinks/sinkgroups)",
            b.agent
        ));
    }
}
