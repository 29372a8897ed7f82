//! Flume's own RPC client (flume-ng-sdk's `RpcClientFactory`) as a test peer: a small Java main
//! (`tests/java/FlumeThriftClient.java`) compiled with `javac` against the Flume fixture's jars
//! ([`crate::flume::ensure_flume`]) into `<flume home>/classes-<hash>`, run once per call.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{Context, Result, bail};

use crate::maven;

const MAIN: &str = "FlumeThriftClient";
const MAIN_SOURCE: &str = include_str!("../java/FlumeThriftClient.java");

/// FNV-1a of the source: a changed helper compiles into a new directory.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn compile(lib: &Path) -> Result<PathBuf> {
    let home = lib.parent().context("the jar directory has no parent")?;
    let classes = home.join(format!("classes-{:016x}", fnv(MAIN_SOURCE)));
    if classes.join(format!("{MAIN}.class")).is_file() {
        return Ok(classes);
    }
    maven::require_tool("javac", "-version", "Flume's thrift client helper")?;
    let staging = home.join(format!("classes.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)?;
    let src = staging.join(format!("{MAIN}.java"));
    std::fs::write(&src, MAIN_SOURCE)?;
    let out = Command::new("javac")
        .arg("-cp")
        .arg(lib.join("*"))
        .arg("-d")
        .arg(&staging)
        .arg(&src)
        .stdin(Stdio::null())
        .output()
        .context("cannot run javac")?;
    if !out.status.success() {
        bail!(
            "javac {MAIN}.java failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if std::fs::rename(&staging, &classes).is_err() {
        let _ = std::fs::remove_dir_all(&staging);
        if !classes.join(format!("{MAIN}.class")).is_file() {
            bail!(
                "cannot move the compiled classes into {}",
                classes.display()
            );
        }
    }
    Ok(classes)
}

/// How one run of the client ended.
#[derive(Debug)]
pub struct Sent {
    /// Every call was answered OK.
    pub ok: bool,
    /// stdout then stderr.
    pub output: String,
}

/// The `-cp` value running the client: its compiled class, then Flume's jars.
fn classpath() -> Result<std::ffi::OsString> {
    let lib = crate::flume::ensure_flume()?;
    let classes = compile(&lib)?;
    let mut cp = classes.into_os_string();
    cp.push(":");
    cp.push(lib.join("*"));
    Ok(cp)
}

/// The arguments of `java` running Flume's thrift client as a load generator (bench_sources):
/// one thread and client per file in `files`, each sending that file's lines as events (headers
/// `host`, `client`, `seq`) in `appendBatch` calls of 100 to `127.0.0.1:port` in `protocol`,
/// over and over, for `seconds` at most.
pub fn thrift_load_args(
    port: u16,
    protocol: &str,
    seconds: u64,
    files: &[PathBuf],
) -> Result<Vec<String>> {
    let cp = classpath()?
        .into_string()
        .map_err(|cp| anyhow::anyhow!("the classpath {cp:?} is not UTF-8"))?;
    let mut args = vec![
        "-Xmx1g".into(),
        "-cp".into(),
        cp,
        MAIN.into(),
        "127.0.0.1".into(),
        port.to_string(),
        protocol.into(),
        "load".into(),
        seconds.to_string(),
    ];
    args.extend(files.iter().map(|f| f.display().to_string()));
    Ok(args)
}

/// Sends events `first..first + count` to `127.0.0.1:port` with Flume's thrift client, by
/// `append` (one call per event) or one `appendBatch` (`batch`), in `protocol`.
pub fn thrift_send(port: u16, protocol: &str, batch: bool, first: u64, count: u64) -> Result<Sent> {
    let cp = classpath()?;
    let mode = if batch { "batch" } else { "append" };
    let out: Output = Command::new("java")
        .arg("-Xmx256m")
        .arg("-cp")
        .arg(&cp)
        .arg(MAIN)
        .args(["127.0.0.1", &port.to_string(), protocol, mode])
        .args([first.to_string(), count.to_string()])
        .stdin(Stdio::null())
        .output()
        .context("cannot run java")?;
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    match out.status.code() {
        Some(0) if output.contains(&format!("ok {count}")) => Ok(Sent { ok: true, output }),
        Some(3) => Ok(Sent { ok: false, output }),
        _ => bail!("{MAIN} ended with {}:\n{output}", out.status),
    }
}
