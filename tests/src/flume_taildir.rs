//! Flume's TAILDIR source for the Flume fixture.
//!
//! `flume-ng-node` does not depend on `flume-taildir-source`, so the fixture's `lib/` lacks it.
//! [`ensure_flume_taildir`] copies that one jar (its other dependencies, Gson and Guava, are
//! already there) from Maven Central into the fixture's `lib/`, which is on Flume's classpath
//! as `lib/*`. The jar is fetched into a private directory and renamed into place, so
//! concurrent test binaries never see a partial jar.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::flume::{FLUME_VERSION, ensure_flume};

const DEPENDENCY_PLUGIN: &str = "org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy";

/// Makes sure `flume-taildir-source` is in the Flume fixture's `lib/`; returns the jar's path.
pub fn ensure_flume_taildir() -> Result<PathBuf> {
    let lib = ensure_flume()?;
    let name = format!("flume-taildir-source-{FLUME_VERSION}.jar");
    let jar = lib.join(&name);
    if jar.is_file() {
        return Ok(jar);
    }
    let staging = lib
        .parent()
        .context("the Flume lib directory has no parent")?
        .join(format!("taildir.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let out = Command::new("mvn")
        .args(["-q", "-B", DEPENDENCY_PLUGIN])
        .arg(format!(
            "-Dartifact=org.apache.flume.flume-ng-sources:flume-taildir-source:{FLUME_VERSION}"
        ))
        .arg(format!("-DoutputDirectory={}", staging.display()))
        .stdin(Stdio::null())
        .output()
        .context("cannot run mvn")?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&staging);
        bail!(
            "mvn could not fetch flume-taildir-source {FLUME_VERSION} ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let fetched = staging.join(&name);
    let moved = std::fs::rename(&fetched, &jar);
    let _ = std::fs::remove_dir_all(&staging);
    if moved.is_err() && !jar.is_file() {
        bail!("cannot move {} into {}", fetched.display(), lib.display());
    }
    Ok(jar)
}
