//! Java runtime classpaths fetched from Maven Central, the way [`crate::flume`] fetches Flume:
//! a generated pom in a cache directory, `mvn dependency:copy-dependencies` into a private
//! staging directory renamed into place, and a `lib/.complete` manifest written last so the
//! step is idempotent and concurrent test binaries never see a half-filled `lib/`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// Pinned so the fetch does not depend on Maven's default plugin version.
pub const DEPENDENCY_PLUGIN_VERSION: &str = "3.6.1";
const INSTALL_HINT: &str = "install them with `apt-get install -y openjdk-17-jdk-headless maven` \
                            (scripts/test does this)";

/// `~/.cache/sluice-tests/<name>` (`$XDG_CACHE_HOME` respected).
pub fn cache_dir(name: &str) -> Result<PathBuf> {
    let cache = match std::env::var_os("XDG_CACHE_HOME") {
        Some(c) => PathBuf::from(c),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".cache"),
    };
    Ok(cache.join("sluice-tests").join(name))
}

/// Fails with the install command when `tool` cannot be run.
pub fn require_tool(tool: &str, version_arg: &str, who: &str) -> Result<()> {
    match Command::new(tool)
        .arg(version_arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => {
            bail!("`{tool} {version_arg}` failed ({s}); {who} needs java and mvn: {INSTALL_HINT}")
        }
        Err(e) => bail!("cannot run `{tool}` ({e}); {who} needs java and mvn: {INSTALL_HINT}"),
    }
}

/// A pom whose runtime dependencies are `deps` (`(groupId, artifactId, version)`).
pub fn pom(artifact: &str, deps: &[(&str, &str, &str)]) -> String {
    let deps: String = deps
        .iter()
        .map(|(g, a, v)| {
            format!(
                "    <dependency><groupId>{g}</groupId><artifactId>{a}</artifactId>\
                 <version>{v}</version></dependency>\n"
            )
        })
        .collect();
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by sluice-integration (tests/src/maven.rs): a runtime classpath. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>sluice.tests</groupId>
  <artifactId>{artifact}</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
{deps}  </dependencies>
  <build>
    <plugins>
      <plugin>
        <groupId>org.apache.maven.plugins</groupId>
        <artifactId>maven-dependency-plugin</artifactId>
        <version>{DEPENDENCY_PLUGIN_VERSION}</version>
      </plugin>
    </plugins>
  </build>
</project>
"#
    )
}

/// True when `lib/.complete` exists and every jar it lists is present.
pub fn lib_complete(lib: &Path) -> bool {
    let Ok(manifest) = std::fs::read_to_string(lib.join(".complete")) else {
        return false;
    };
    let mut jars = manifest.lines().filter(|l| !l.is_empty()).peekable();
    jars.peek().is_some() && jars.all(|j| lib.join(j).is_file())
}

/// Makes sure `home/lib` holds the runtime classpath of `pom_text` (fetching it with `mvn` if
/// not) and that `java` runs. `must_have` is a jar-name prefix that proves the fetch worked;
/// `who` names the fixture in errors. Returns the `lib/` directory.
pub fn ensure_classpath(
    home: &Path,
    pom_text: &str,
    must_have: &str,
    who: &str,
) -> Result<PathBuf> {
    static FETCH: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = FETCH
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    require_tool("java", "-version", who)?;
    let lib = home.join("lib");
    if lib_complete(&lib) {
        return Ok(lib);
    }
    require_tool("mvn", "-v", who)?;
    std::fs::create_dir_all(home).with_context(|| format!("cannot create {}", home.display()))?;
    let pom_path = home.join("pom.xml");
    std::fs::write(&pom_path, pom_text)
        .with_context(|| format!("cannot write {}", pom_path.display()))?;
    let staging = home.join(format!("lib.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let started = std::time::Instant::now();
    let out = Command::new("mvn")
        .args(["-q", "-B", "-f"])
        .arg(&pom_path)
        .args(["dependency:copy-dependencies", "-DincludeScope=runtime"])
        .arg(format!("-DoutputDirectory={}", staging.display()))
        .current_dir(home)
        .stdin(Stdio::null())
        .output()
        .context("cannot run mvn")?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&staging);
        bail!(
            "mvn could not fetch the classpath of {who} ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut jars: Vec<String> = std::fs::read_dir(&staging)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".jar"))
        .collect();
    jars.sort();
    if !jars.iter().any(|j| j.starts_with(must_have)) {
        bail!(
            "mvn finished but {} has no {must_have} jar",
            staging.display()
        );
    }
    std::fs::write(staging.join(".complete"), jars.join("\n") + "\n")?;
    if lib.exists() && !lib_complete(&lib) {
        std::fs::remove_dir_all(&lib)
            .with_context(|| format!("cannot remove {}", lib.display()))?;
    }
    if std::fs::rename(&staging, &lib).is_err() {
        let _ = std::fs::remove_dir_all(&staging);
        if !lib_complete(&lib) {
            bail!("cannot move the jars of {who} into {}", lib.display());
        }
    }
    eprintln!(
        "Fetched {who}: {} jars into {} in {:.1?}.",
        jars.len(),
        lib.display(),
        started.elapsed()
    );
    Ok(lib)
}

/// The runtime jars of `deps` (`groupId:artifactId:version`) in `home/lib`, fetched if needed.
pub fn fetch(home: &Path, deps: &[&str]) -> Result<PathBuf> {
    let mut parsed = Vec::with_capacity(deps.len());
    for d in deps {
        let parts: Vec<&str> = d.split(':').collect();
        let [g, a, v] = parts[..] else {
            bail!("dependency `{d}` is not groupId:artifactId:version");
        };
        parsed.push((g, a, v));
    }
    let first = parsed.first().map_or("", |p| p.1);
    ensure_classpath(home, &pom("runtime", &parsed), first, first)
}
