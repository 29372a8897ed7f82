//! Builds the example WebAssembly guests from source, with the toolchains the test command
//! installs (scripts/test): Rust's `wasm32-wasip2` target, Zig from PyPI (`ziglang`) with
//! `sluice-guest-tool` for C, `componentize-py` for Python and `@bytecodealliance/componentize-js`
//! from npm for JavaScript. A missing toolchain fails the test with the command that installs
//! it. Non-cargo builds are skipped when their output is newer than every input.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};

use crate::{sluice_bin, workspace_root};

/// Serialises guest builds inside one test process (cargo locks across processes itself).
static BUILD: Mutex<()> = Mutex::new(());

fn run(cmd: &mut Command, what: &str, install_hint: &str) -> Result<()> {
    let out = cmd.output().with_context(|| {
        format!("cannot run {what}: {install_hint} (or run scripts/test, which installs it)")
    })?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn examples() -> PathBuf {
    workspace_root().join("examples").join("guests")
}

/// `~/.local/bin` holds pip --user scripts; make sure children find them.
fn path_with_user_bin() -> String {
    let path = std::env::var("PATH").unwrap_or_default();
    match std::env::var("HOME") {
        Ok(home) => format!("{home}/.local/bin:{path}"),
        Err(_) => path,
    }
}

/// Builds the Rust guest crate `name` (a member of examples/guests/rust) for wasm32-wasip2.
/// `tag` sets `SLUICE_TAG` (the reload test's two versions); a tagged build is copied to
/// `target/tagged/<name>-<tag>.wasm` so the next tag's build does not overwrite it.
pub fn rust(name: &str, tag: Option<&str>) -> Result<PathBuf> {
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let dir = examples().join("rust");
    let target = dir.join("target");
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(&dir)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "-p",
            name,
            // Explicit, so a CARGO_TARGET_DIR set for the workspace (CI caches one) does not
            // move the guest's output away from where it is looked for below.
            "--target-dir",
        ])
        .arg(&target)
        .env("SLUICE_TAG", tag.unwrap_or("v0"));
    run(
        &mut cmd,
        &format!("cargo build of guest {name}"),
        "rustup target add wasm32-wasip2",
    )?;
    let wasm = target
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    if !wasm.is_file() {
        bail!("{} was not produced", wasm.display());
    }
    let Some(tag) = tag else {
        return Ok(wasm);
    };
    let tagged = target.join("tagged").join(format!("{name}-{tag}.wasm"));
    std::fs::create_dir_all(target.join("tagged"))?;
    std::fs::copy(&wasm, &tagged)?;
    Ok(tagged)
}

fn newest(paths: &[PathBuf]) -> Option<SystemTime> {
    paths
        .iter()
        .filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .max()
}

fn up_to_date(output: &Path, inputs: &[PathBuf]) -> bool {
    match (newest(&[output.to_path_buf()]), newest(inputs)) {
        (Some(out), Some(inp)) => out > inp,
        _ => false,
    }
}

fn wit_file() -> PathBuf {
    workspace_root().join("wit").join("pipeline.wit")
}

/// The C PII-masking interceptor (`examples/guests/c/pii-mask`).
pub fn c_pii_mask() -> Result<PathBuf> {
    c_interceptor("pii-mask", "pii_mask")
}

/// The C drop-by-level filter (`examples/guests/c/drop-by-level`).
pub fn c_drop_by_level() -> Result<PathBuf> {
    c_interceptor("drop-by-level", "drop_by_level")
}

/// A C interceptor `examples/guests/c/<dir>/<stem>.c`: bindings from `sluice-guest-tool
/// c-bindings`, compiled by Zig (`python3 -m ziglang cc`) for wasm32-wasi, turned into a
/// component by `sluice-guest-tool componentize`.
fn c_interceptor(dir: &str, stem: &str) -> Result<PathBuf> {
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let dir = examples().join("c").join(dir);
    let out_dir = dir.join("target");
    let output = out_dir.join(format!("{stem}.wasm"));
    let source = dir.join(format!("{stem}.c"));
    let tool = sluice_bin()?.with_file_name("sluice-guest-tool");
    let inputs = [source.clone(), wit_file(), tool.clone()];
    if up_to_date(&output, &inputs) {
        return Ok(output);
    }
    std::fs::create_dir_all(&out_dir)?;
    let gen_dir = out_dir.join("bindings");
    run(
        Command::new(&tool)
            .args(["c-bindings", "--world", "interceptor", "--wit"])
            .arg(workspace_root().join("wit"))
            .arg("--out")
            .arg(&gen_dir),
        "sluice-guest-tool c-bindings",
        "cargo build --workspace --bins",
    )?;
    let module = out_dir.join(format!("{stem}.core.wasm"));
    run(
        Command::new("python3")
            .args([
                "-m",
                "ziglang",
                "cc",
                "-target",
                "wasm32-wasi",
                "-mexec-model=reactor",
                "-O2",
                "-msimd128",
                "-s",
                "-I",
            ])
            .arg(&gen_dir)
            .arg(&source)
            .arg(gen_dir.join("interceptor.c"))
            .arg(gen_dir.join("interceptor_component_type.o"))
            .arg("-o")
            .arg(&module),
        "zig cc (python3 -m ziglang)",
        "pip install --user ziglang",
    )?;
    run(
        Command::new(&tool)
            .arg("componentize")
            .arg(&module)
            .arg("-o")
            .arg(&output),
        "sluice-guest-tool componentize",
        "cargo build --workspace --bins",
    )?;
    Ok(output)
}

/// The Python tenant router, built by componentize-py.
pub fn python_tenant_router() -> Result<PathBuf> {
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let dir = examples().join("python").join("tenant-router");
    let output = dir.join("target").join("tenant_router.wasm");
    if up_to_date(&output, &[dir.join("app.py"), wit_file()]) {
        return Ok(output);
    }
    std::fs::create_dir_all(dir.join("target"))?;
    run(
        Command::new("componentize-py")
            .env("PATH", path_with_user_bin())
            .current_dir(&dir)
            .arg("-d")
            .arg(workspace_root().join("wit"))
            .args(["-w", "router", "componentize", "app", "-o"])
            .arg(&output),
        "componentize-py",
        "pip install --user componentize-py",
    )?;
    Ok(output)
}

/// The JavaScript sticky sink selector, built by componentize-js (`npm ci` first).
pub fn js_sticky_selector() -> Result<PathBuf> {
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let dir = examples().join("js").join("sticky-selector");
    let output = dir.join("sticky_selector.wasm");
    if up_to_date(&output, &[dir.join("selector.js"), wit_file()]) {
        return Ok(output);
    }
    if !dir.join("node_modules").is_dir() {
        run(
            Command::new("npm")
                .current_dir(&dir)
                .args(["ci", "--no-audit", "--no-fund"]),
            "npm ci",
            "install Node.js 18+ with npm",
        )?;
    }
    run(
        Command::new("npm").current_dir(&dir).args(["run", "build"]),
        "componentize-js (npm run build)",
        "npm ci in examples/guests/js/sticky-selector",
    )?;
    Ok(output)
}

/// Installs a guest the recommended way: copy next to `dst`, then rename over it (a hot reload
/// sees one complete file).
pub fn install(src: &Path, dst: &Path) -> Result<()> {
    let tmp = dst.with_extension("tmp");
    std::fs::copy(src, &tmp)?;
    std::fs::rename(&tmp, dst)?;
    Ok(())
}

/// A `sluice wasm new --lang <lang> --world <world>` project written under `root` and built
/// with its own `build.sh`; returns its component. A JavaScript project reuses the sticky
/// selector's `node_modules` (the template's lock file is that example's).
pub fn template(root: &Path, lang: &str, world: &str) -> Result<PathBuf> {
    let name = format!("{lang}-{world}");
    let dir = root.join(&name);
    let mut new = Command::new(sluice_bin()?);
    new.args(["wasm", "new", "--lang", lang, "--world", world, "--dir"])
        .arg(&dir)
        .arg(&name);
    run(
        &mut new,
        "sluice wasm new",
        "cargo build --workspace --bins",
    )?;
    if lang == "js" {
        let modules = examples().join("js/sticky-selector/node_modules");
        if modules.is_dir() {
            std::os::unix::fs::symlink(&modules, dir.join("node_modules"))?;
        }
    }
    let tool = sluice_bin()?.with_file_name("sluice-guest-tool");
    run(
        Command::new(dir.join("build.sh"))
            .current_dir(&dir)
            .env("PATH", path_with_user_bin())
            .env("SLUICE_GUEST_TOOL", &tool)
            .env_remove("CARGO_TARGET_DIR"),
        &format!("{}/build.sh", dir.display()),
        "run scripts/test, which installs the guest toolchains",
    )?;
    Ok(dir.join(format!("{name}.wasm")))
}
