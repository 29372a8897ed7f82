//! `sluice check`'s view of a topology: a tree of the components with their types and the
//! keys set to something other than Flume's defaults, under Flume's key names.

use std::fmt::Write;

use super::AgentConfig;
pub use crate::config::Setting;

/// Keys the tree shows as structure (the component line), not as settings.
const STRUCTURE: &[&str] = &[
    "type",
    "channels",
    "channel",
    "interceptors",
    "sinks",
    "selector.type",
    "processor.type",
];

impl AgentConfig {
    /// The topology as an indented tree, for `sluice check`.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let files: Vec<String> = if self.origins.is_empty() {
            vec![self.file.display().to_string()]
        } else {
            self.origins
                .iter()
                .map(|o| o.display().to_string())
                .collect()
        };
        let _ = writeln!(out, "agent {} ({})", self.agent, files.join(", "));
        for s in &self.sources {
            let _ = writeln!(
                out,
                "  source {}: {} -> {}",
                s.name,
                s.source.kind,
                s.channels.join(" ")
            );
            let own = s
                .settings
                .iter()
                .filter(|x| !x.key.starts_with("selector.") && !x.key.starts_with("interceptors."));
            settings(&mut out, 4, own, "");
            for i in &s.interceptors {
                let _ = writeln!(out, "    interceptor {}: {}", i.name, i.interceptor.kind);
                let prefix = format!("interceptors.{}.", i.name);
                settings(&mut out, 6, &s.settings, &prefix);
            }
            let routed = s
                .settings
                .iter()
                .any(|x| x.key.starts_with("selector.") && !STRUCTURE.contains(&x.key.as_str()));
            if routed || s.selector.kind != crate::registry::DEFAULT_SELECTOR {
                let _ = writeln!(out, "    selector: {}", s.selector.kind);
                settings(&mut out, 6, &s.settings, "selector.");
            }
        }
        for c in &self.channels {
            let _ = writeln!(out, "  channel {}: {}", c.name, c.kind);
            settings(&mut out, 4, &c.settings, "");
        }
        for k in &self.sinks {
            let _ = writeln!(out, "  sink {}: {} <- {}", k.name, k.sink.kind, k.channel);
            settings(&mut out, 4, &k.settings, "");
        }
        for g in &self.sinkgroups {
            let _ = writeln!(
                out,
                "  sinkgroup {}: {} [{}]",
                g.name,
                g.processor.kind,
                g.sinks.join(" ")
            );
            settings(&mut out, 4, &g.settings, "processor.");
        }
        if let Some(t) = &self.tenants {
            let _ = writeln!(out, "  tenants (by header `{}`)", t.header);
            let own = t
                .settings
                .iter()
                .filter(|x| !x.key.contains('.') && x.key != "header");
            settings(&mut out, 4, own, "");
            for tc in &t.tenants {
                let _ = writeln!(out, "    tenant {} -> {}", tc.name, tc.channels.join(" "));
                let prefix = format!("{}.", tc.name);
                let own = t.settings.iter().filter(|x| {
                    x.key.starts_with(&prefix)
                        && !x.key[prefix.len()..].starts_with("interceptors.")
                        && !x.key[prefix.len()..].starts_with("selector.")
                });
                settings(&mut out, 6, own, &prefix);
                for i in &tc.interceptors {
                    let _ = writeln!(out, "      interceptor {}: {}", i.name, i.interceptor.kind);
                    let p = format!("{prefix}interceptors.{}.", i.name);
                    settings(&mut out, 8, &t.settings, &p);
                }
                if tc.selector.kind != crate::registry::DEFAULT_SELECTOR {
                    let _ = writeln!(out, "      selector: {}", tc.selector.kind);
                    settings(&mut out, 8, &t.settings, &format!("{prefix}selector."));
                }
            }
        }
        self.mask_secrets(out)
    }

    /// Replaces, in the value part of every `key = value` line, what a config filter supplied,
    /// and the whole value of keys that hold secrets by their name ([`is_secret_key`]).
    fn mask_secrets(&self, tree: String) -> String {
        let mut out = String::with_capacity(tree.len());
        for line in tree.lines() {
            match line.split_once(" = ") {
                Some((key, _)) if is_secret_key(key.trim()) => {
                    let _ = writeln!(out, "{key} = ****");
                }
                Some((key, value)) => {
                    let mut value = value.to_string();
                    for s in &self.secrets {
                        value = value.replace(s.as_str(), "****");
                    }
                    let _ = writeln!(out, "{key} = {value}");
                }
                None => {
                    let _ = writeln!(out, "{line}");
                }
            }
        }
        out
    }
}

/// Keys whose values are secrets whatever they hold: passwords, JAAS entries (they carry
/// passwords), inline private keys and OAuth client secrets.
pub(crate) fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password")
        || k.contains("secret")
        || k.ends_with("jaas.config")
        || k.ends_with("ssl.keystore.key")
        || k.ends_with("key.pem")
        || k.ends_with("sasl.oauthbearer.config")
}

/// Writes `key = value` for each setting under `prefix` (shown without it), structure keys
/// left out.
fn settings<'a>(
    out: &mut String,
    indent: usize,
    all: impl IntoIterator<Item = &'a Setting>,
    prefix: &str,
) {
    for s in all {
        let Some(key) = s.key.strip_prefix(prefix) else {
            continue;
        };
        if STRUCTURE.contains(&key) || STRUCTURE.contains(&s.key.as_str()) {
            continue;
        }
        let _ = writeln!(out, "{:indent$}{key} = {}", "", s.value);
    }
}
