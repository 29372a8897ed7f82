//! Flume 1.10+'s `${…}` substitution in an agent's values, applied before anything reads them
//! (so `sluice check` shows and validates the resolved values):
//!
//! - `${env:NAME}`: the environment variable; unset is an error naming the line.
//! - `${sys:NAME}`: a `-D NAME=VALUE` of the command line; unset is an error.
//! - `${NAME}`: the environment variable, else the `-D` property. When neither exists the text
//!   stays as written, as in Flume (where `${name}` may be a regex group in `replaceString`),
//!   with a warning.
//! - `${f['key']}` (or `${f["key"]}`): the value config filter `f` gives for `key`; a filter
//!   that has no value for it is an error. Filters are declared per agent:
//!   `a1.configfilters = f`, `a1.configfilters.f.type = env | external | hadoop`.
//!   - `env`: the environment variable `key`.
//!   - `external`: runs `command key` (`a1.configfilters.f.command`) and takes its standard
//!     output (`charset` UTF-8 only; trailing newlines removed); a non-zero exit, a failure to
//!     start or more than [`EXTERNAL_TIMEOUT`] is an error.
//!   - `hadoop` (a Hadoop credential store): not supported, refused with the reason.
//!
//! Values from filters are secrets: they are collected so `sluice check` can mask them.

use std::collections::BTreeMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{ConfigError, Entry, Properties};

/// How long an `external` filter's command may run for one key.
pub const EXTERNAL_TIMEOUT: Duration = Duration::from_secs(10);

static SYSTEM_PROPERTIES: OnceLock<BTreeMap<String, String>> = OnceLock::new();

/// Sets the `-D NAME=VALUE` properties `${sys:NAME}` reads (once, at start).
pub fn set_system_properties(defines: &[String]) {
    let map = defines
        .iter()
        .filter_map(|d| d.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let _ = SYSTEM_PROPERTIES.set(map);
}

pub(crate) fn system_property(name: &str) -> Option<String> {
    SYSTEM_PROPERTIES.get()?.get(name).cloned()
}

/// What substitution found besides the new values.
#[derive(Default, Debug)]
pub struct Substituted {
    pub warnings: Vec<String>,
    /// Values that came from config filters, to be masked in output.
    pub secrets: Vec<String>,
}

enum Filter {
    Env,
    External {
        command: String,
    },
    /// Declared but refused (its error is reported once, at its own keys).
    Refused,
}

/// Replaces every `${…}` in the values of `agent`'s keys. Errors name the file, line and key.
pub fn apply(props: &mut Properties, agent: &str) -> Result<Substituted, Vec<ConfigError>> {
    let mut out = Substituted::default();
    let mut errors = Vec::new();
    let filters = filters(props, agent, &mut errors);
    let root = format!("{agent}.");
    for (key, entry) in props.entries.iter_mut() {
        if !key.starts_with(&root) || !entry.value.contains("${") {
            continue;
        }
        let error = |message: String| ConfigError::Invalid {
            file: entry.origin.to_path_buf(),
            line: entry.line,
            key: key.clone(),
            message,
        };
        match resolve(&entry.value, &filters, &mut out.secrets) {
            Ok((value, kept)) => {
                for name in kept {
                    out.warnings.push(format!(
                        "{}: {key}: `${{{name}}}` is neither an environment variable nor a \
                         -D property; kept as written",
                        entry.location()
                    ));
                }
                entry.value = value;
            }
            Err(message) => errors.push(error(message)),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        errors.sort_by_key(|e| match e {
            ConfigError::Invalid { line, .. } => *line,
            _ => 0,
        });
        Err(errors)
    }
}

fn filters(
    props: &Properties,
    agent: &str,
    errors: &mut Vec<ConfigError>,
) -> BTreeMap<String, Filter> {
    let mut out = BTreeMap::new();
    let list_key = format!("{agent}.configfilters");
    let Some(list) = props.get(&list_key) else {
        return out;
    };
    for name in list.value.split_whitespace() {
        let filter = filter(props, &format!("{list_key}.{name}."), list).unwrap_or_else(|e| {
            errors.push(e);
            Filter::Refused
        });
        out.insert(name.to_string(), filter);
    }
    out
}

/// The filter whose keys start with `prefix` (`a1.configfilters.f1.`), declared by `list`.
fn filter(props: &Properties, prefix: &str, list: &Entry) -> Result<Filter, ConfigError> {
    let error = |k: &str, at: &Entry, message: String| ConfigError::Invalid {
        file: at.origin.to_path_buf(),
        line: at.line,
        key: format!("{prefix}{k}"),
        message,
    };
    let get = |k: &str| props.get(&format!("{prefix}{k}"));
    let Some(ty) = get("type") else {
        return Err(error("type", list, "config filter without a type".into()));
    };
    match ty.value.trim() {
        t if t.eq_ignore_ascii_case("env")
            || t == "org.apache.flume.configfilter.EnvironmentVariableConfigFilter" =>
        {
            Ok(Filter::Env)
        }
        t if t.eq_ignore_ascii_case("external")
            || t == "org.apache.flume.configfilter.ExternalProcessConfigFilter" =>
        {
            if let Some(c) =
                get("charset").filter(|c| !c.value.trim().eq_ignore_ascii_case("UTF-8"))
            {
                return Err(error(
                    "charset",
                    c,
                    format!("unsupported charset `{}`; accepted: UTF-8", c.value.trim()),
                ));
            }
            match get("command") {
                Some(c) if !c.value.trim().is_empty() => Ok(Filter::External {
                    command: c.value.trim().to_string(),
                }),
                _ => Err(error("command", ty, "required".into())),
            }
        }
        t if t.eq_ignore_ascii_case("hadoop")
            || t == "org.apache.flume.configfilter.HadoopCredentialStoreConfigFilter" =>
        {
            Err(error(
                "type",
                ty,
                "the Hadoop credential store filter is not supported (sluice does not read \
                 JCEKS stores); use an `env` or `external` filter"
                    .into(),
            ))
        }
        t => Err(error(
            "type",
            ty,
            format!("unknown config filter type `{t}`; accepted: env, external, hadoop"),
        )),
    }
}

/// The value with every `${…}` replaced, and the bare names kept as written.
fn resolve(
    value: &str,
    filters: &BTreeMap<String, Filter>,
    secrets: &mut Vec<String>,
) -> Result<(String, Vec<String>), String> {
    let mut out = String::with_capacity(value.len());
    let mut kept = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            // No closing brace: not a reference.
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let inner = &after[..end];
        match lookup(inner, filters, secrets)? {
            Some(v) => out.push_str(&v),
            None => {
                kept.push(inner.to_string());
                out.push_str(&rest[start..start + 2 + end + 1]);
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok((out, kept))
}

/// One reference's value; `Ok(None)` for a bare name nobody defines (kept as written).
fn lookup(
    inner: &str,
    filters: &BTreeMap<String, Filter>,
    secrets: &mut Vec<String>,
) -> Result<Option<String>, String> {
    if let Some(name) = inner.strip_prefix("env:") {
        return std::env::var(name)
            .map(Some)
            .map_err(|_| format!("environment variable `{name}` (in `${{{inner}}}`) is not set"));
    }
    if let Some(name) = inner.strip_prefix("sys:") {
        return system_property(name)
            .map(Some)
            .ok_or_else(|| format!("no -D {name}=… given for `${{{inner}}}`"));
    }
    if let Some((filter, key)) = filter_reference(inner) {
        let Some(f) = filters.get(filter) else {
            return Err(format!(
                "`${{{inner}}}` names config filter `{filter}`, which configfilters does not \
                 declare"
            ));
        };
        let value = match f {
            Filter::Env => std::env::var(key).map_err(|_| {
                format!("config filter `{filter}`: no environment variable `{key}`")
            })?,
            Filter::External { command } => run_external(command, key)
                .map_err(|e| format!("config filter `{filter}` (`{command} {key}`): {e}"))?,
            Filter::Refused => return Ok(Some(format!("${{{inner}}}"))),
        };
        if !value.is_empty() {
            secrets.push(value.clone());
        }
        return Ok(Some(value));
    }
    Ok(std::env::var(inner).ok().or_else(|| system_property(inner)))
}

/// `f['key']` or `f["key"]` → (`f`, `key`).
fn filter_reference(inner: &str) -> Option<(&str, &str)> {
    let (filter, rest) = inner.split_once('[')?;
    let rest = rest.strip_suffix(']')?;
    let key = rest
        .strip_prefix('\'')
        .and_then(|r| r.strip_suffix('\''))
        .or_else(|| rest.strip_prefix('"').and_then(|r| r.strip_suffix('"')))?;
    (!filter.is_empty()).then_some((filter, key))
}

/// Runs `command key`; its standard output without trailing newlines.
fn run_external(command: &str, key: &str) -> Result<String, String> {
    let mut child = Command::new(command)
        .arg(key)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot run it: {e}"))?;
    let mut stdout = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stdout.as_mut() {
            let _ = s.take(1 << 20).read_to_end(&mut buf);
        }
        buf
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < EXTERNAL_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "still running after {} s; killed",
                    EXTERNAL_TIMEOUT.as_secs()
                ));
            }
            Err(e) => return Err(format!("cannot wait for it: {e}")),
        }
    };
    let out = reader.join().unwrap_or_default();
    if !status.success() {
        return Err(format!("exited with {status}"));
    }
    let text = String::from_utf8(out).map_err(|_| "its output is not UTF-8".to_string())?;
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn run(text: &str) -> Result<(Properties, Substituted), Vec<ConfigError>> {
        let mut p = Properties::parse(Path::new("t.conf"), text);
        let s = apply(&mut p, "a1")?;
        Ok((p, s))
    }

    fn value(p: &Properties, key: &str) -> String {
        p.get(key).map(|e| e.value.clone()).unwrap_or_default()
    }

    #[test]
    fn env_sys_and_bare_names() -> Result<(), Vec<ConfigError>> {
        // PATH and HOME are set for any test run.
        let path = std::env::var("PATH").unwrap_or_default();
        let (p, s) = run("a1.x = ${env:PATH}\na1.y = pre-${PATH}-post\na1.z = ${nope_zz}a\n")?;
        assert_eq!(value(&p, "a1.x"), path);
        assert_eq!(value(&p, "a1.y"), format!("pre-{path}-post"));
        assert_eq!(
            value(&p, "a1.z"),
            "${nope_zz}a",
            "a bare unknown name stays"
        );
        assert_eq!(s.warnings.len(), 1);
        assert!(s.secrets.is_empty(), "env lookups are not filter secrets");
        Ok(())
    }

    #[test]
    fn unset_explicit_references_name_the_line_and_key() {
        let Err(errors) = run("a1.a = 1\na1.port = ${env:SLUICE_SURELY_UNSET}\na1.b = ${sys:q}\n")
        else {
            panic!("unset variables must fail");
        };
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(
            text[0].starts_with("t.conf:2: a1.port: environment variable `SLUICE_SURELY_UNSET`"),
            "{text:?}"
        );
        assert!(text[1].contains("t.conf:3: a1.b: no -D q="), "{text:?}");
    }

    #[test]
    fn filters_env_and_external_and_refused_hadoop() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let script = dir.path().join("resolve.sh");
        std::fs::write(&script, "#!/bin/sh\necho \"secret-for-$1\"\n")?;
        let mut perm = std::fs::metadata(&script)?.permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
        std::fs::set_permissions(&script, perm)?;
        let text = format!(
            "a1.configfilters = e x\na1.configfilters.e.type = env\n\
             a1.configfilters.x.type = external\na1.configfilters.x.command = {}\n\
             a1.k1 = ${{e['PATH']}}\na1.k2 = /var/${{x[\"pw\"]}}/x\n",
            script.display()
        );
        let (p, s) = run(&text).map_err(|e| format!("{e:?}"))?;
        assert_eq!(value(&p, "a1.k1"), std::env::var("PATH")?);
        assert_eq!(value(&p, "a1.k2"), "/var/secret-for-pw/x");
        assert_eq!(s.secrets.len(), 2);

        let Err(e) = run("a1.configfilters = h\na1.configfilters.h.type = hadoop\n") else {
            panic!("hadoop must be refused");
        };
        assert!(e[0].to_string().contains("not supported"), "{e:?}");
        let Err(e) = run("a1.k = ${nof['x']}\n") else {
            panic!("an undeclared filter must be refused");
        };
        assert!(e[0].to_string().contains("does not declare"), "{e:?}");
        Ok(())
    }
}
