//! `sluice wasm new`: every language × world project is written by the real binary, its unit
//! tests pass (`test.sh`), it builds (`build.sh`) with the toolchains scripts/test installs,
//! and the component it makes works in the real host: `sluice wasm test` on its sample events,
//! `sluice check` on its agent config and `sluice test` on its config unit tests.
//!
//! Projects of one language share their heavy build state (Rust's target folder, JavaScript's
//! node_modules) through a symlink, so each dependency is built or installed once per run.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use sluice_integration::{run_sluice, sluice_bin, workspace_root};

const WORLDS: [&str; 3] = ["interceptor", "router", "sink-selector"];

/// `~/.local/bin` (pip --user scripts) on PATH, as scripts/test has it.
fn path_with_user_bin() -> String {
    let path = std::env::var("PATH").unwrap_or_default();
    match std::env::var("HOME") {
        Ok(home) => format!("{home}/.local/bin:{path}"),
        Err(_) => path,
    }
}

fn script(dir: &Path, name: &str) -> Result<String> {
    let tool = sluice_bin()?.with_file_name("sluice-guest-tool");
    let out = Command::new(dir.join(name))
        .current_dir(dir)
        .env("PATH", path_with_user_bin())
        .env("SLUICE_GUEST_TOOL", &tool)
        // The project's own target folder, not the workspace's.
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .with_context(|| format!("cannot run {}/{name}", dir.display()))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!("{}/{name} failed ({}):\n{text}", dir.display(), out.status);
    }
    Ok(text)
}

/// Writes the project `guest-<lang>-<world>` under `root` and returns its folder.
fn new_project(root: &Path, lang: &str, world: &str) -> Result<(PathBuf, String)> {
    let name = format!("guest-{lang}-{world}");
    let dir = root.join(&name);
    let d = dir.display().to_string();
    let (code, stdout, stderr) = run_sluice(&[
        "wasm", "new", "--lang", lang, "--world", world, "--dir", &d, &name,
    ])?;
    ensure!(
        code == 0,
        "sluice wasm new failed ({code}): {stdout}{stderr}"
    );
    for f in ["build.sh", "test.sh", "README.md", "wit/pipeline.wit"] {
        ensure!(dir.join(f).is_file(), "{name}: no {f}");
    }
    Ok((dir, name))
}

/// The component's decision per sample event, from `sluice wasm test`.
fn decisions(dir: &Path, name: &str, world: &str) -> Result<Vec<String>> {
    let wasm = dir.join(format!("{name}.wasm")).display().to_string();
    let input = dir.join("events.jsonl").display().to_string();
    let (code, stdout, stderr) =
        run_sluice(&["wasm", "test", &wasm, "--world", world, "--input", &input])?;
    ensure!(code == 0, "sluice wasm test {name}: {stderr}");
    stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l)?;
            Ok(match world {
                "interceptor" => match v["reason"].as_str() {
                    Some(r) => format!("{}:{r}", v["verdict"].as_str().unwrap_or_default()),
                    None => v["verdict"].as_str().unwrap_or_default().to_string(),
                },
                "router" => v["channels"].to_string(),
                _ => v["sink"].to_string(),
            })
        })
        .collect()
}

fn fnv1a(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// Runs, builds and checks one project.
fn check_project(dir: &Path, name: &str, world: &str) -> Result<()> {
    script(dir, "test.sh").with_context(|| format!("{name}: unit tests"))?;
    script(dir, "build.sh").with_context(|| format!("{name}: build"))?;
    ensure!(
        dir.join(format!("{name}.wasm")).is_file(),
        "{name}: no component"
    );
    // events.jsonl: "hello", "DEBUG noise", "ERROR disk full", "", "a".
    let got = decisions(dir, name, world)?;
    let want: Vec<String> = match world {
        "interceptor" => ["keep", "drop", "keep", "reject:empty body", "keep"]
            .map(String::from)
            .to_vec(),
        "router" => ["[0]", "[0]", "[1]", "[0]", "[0]"]
            .map(String::from)
            .to_vec(),
        _ => ["hello", "DEBUG noise", "ERROR disk full", "", "a"]
            .map(|b| (fnv1a(b.as_bytes()) % 2).to_string())
            .to_vec(),
    };
    ensure!(got == want, "{name}: decisions {got:?}, expected {want:?}");
    let conf = dir.join(format!("{name}.conf")).display().to_string();
    let (code, out, err) = run_sluice(&["check", "-n", "a1", "-f", &conf])?;
    ensure!(code == 0, "{name}: sluice check: {out}{err}");
    if world != "sink-selector" {
        let tests = dir.join(format!("{name}.tests.toml")).display().to_string();
        let (code, out, err) = run_sluice(&["test", "-n", "a1", "-f", &conf, &tests])?;
        ensure!(code == 0, "{name}: sluice test: {out}{err}");
    }
    Ok(())
}

/// The worlds of `lang`; `shared` names a folder the projects share (created by the first).
fn every_world(lang: &str, worlds: &[&str], shared: Option<&str>) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let mut first: Option<PathBuf> = None;
    for &world in worlds {
        let (dir, name) = new_project(tmp.path(), lang, world)?;
        if let Some(shared) = shared {
            match &first {
                None => first = Some(dir.join(shared)),
                Some(path) => {
                    std::fs::create_dir_all(path)?;
                    std::os::unix::fs::symlink(path, dir.join(shared))?;
                }
            }
        }
        check_project(&dir, &name, world)?;
    }
    Ok(())
}

#[test]
fn rust_projects_test_build_and_run() -> Result<()> {
    every_world("rust", &WORLDS, Some("target"))
}

#[test]
fn c_projects_test_build_and_run() -> Result<()> {
    every_world("c", &WORLDS, None)
}

#[test]
fn python_projects_test_build_and_run() -> Result<()> {
    every_world("python", &WORLDS[..2], None)?;
    // componentize-py cannot build a world exporting `select`: refused, saying so.
    let tmp = tempfile::tempdir()?;
    let d = tmp.path().join("p").display().to_string();
    let (code, _, err) = run_sluice(&[
        "wasm",
        "new",
        "--lang",
        "python",
        "--world",
        "sink-selector",
        "--dir",
        &d,
        "sel",
    ])?;
    ensure!(code != 0 && err.contains("componentize-py"), "{err}");
    Ok(())
}

#[test]
fn js_projects_test_build_and_run() -> Result<()> {
    every_world("js", &WORLDS, Some("node_modules"))
}

#[test]
fn a_project_never_overwrites_files() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    std::fs::write(tmp.path().join("keep.txt"), "mine")?;
    let d = tmp.path().display().to_string();
    let (code, _, err) = run_sluice(&[
        "wasm", "new", "--lang", "rust", "--world", "router", "--dir", &d, "my-guest",
    ])?;
    ensure!(code != 0 && err.contains("not an empty folder"), "{err}");
    let (code, _, err) = run_sluice(&[
        "wasm", "new", "--lang", "c", "--world", "router", "--dir", &d, "Bad_Name",
    ])?;
    ensure!(code != 0 && err.contains("guest name"), "{err}");
    ensure!(std::fs::read_to_string(tmp.path().join("keep.txt"))? == "mine");
    // The templates exist for every language the command offers.
    ensure!(
        workspace_root()
            .join("templates/guest/common/README.md")
            .is_file()
    );
    Ok(())
}
