//! Build helper for non-Rust guests, so the test command needs no `cargo install`:
//!
//! - `sluice-guest-tool c-bindings --wit wit --world interceptor --out DIR` writes the C
//!   header, source and component-type object that `wit-bindgen c` would;
//! - `sluice-guest-tool componentize MODULE.wasm -o COMPONENT.wasm` turns a core module (with
//!   its embedded component type) into a component, adapting WASI preview1 imports if any.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use wit_bindgen_core::Files;
use wit_parser::Resolve;

#[derive(Parser)]
#[command(
    name = "sluice-guest-tool",
    about = "Build helper for sluice WebAssembly guests"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate C bindings for one world of the WIT package.
    CBindings {
        /// The WIT folder (the repository's `wit/`).
        #[arg(long)]
        wit: PathBuf,
        /// `interceptor`, `router` or `sink-selector`.
        #[arg(long)]
        world: String,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
    },
    /// Make a component from a core module built against the generated bindings.
    Componentize {
        module: PathBuf,
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::CBindings { wit, world, out } => c_bindings(&wit, &world, &out),
        Command::Componentize { module, output } => componentize(&module, &output),
    }
}

fn c_bindings(wit: &Path, world: &str, out: &Path) -> Result<()> {
    let mut resolve = Resolve::default();
    let (pkg, _) = resolve
        .push_dir(wit)
        .with_context(|| format!("cannot read WIT from {}", wit.display()))?;
    let world_id = resolve.select_world(&[pkg], Some(world))?;
    let mut files = Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&mut resolve, world_id, &mut files)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    for (name, contents) in files.iter() {
        let path = out.join(name);
        std::fs::write(&path, contents)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn componentize(module: &Path, output: &Path) -> Result<()> {
    use wasi_preview1_component_adapter_provider::{
        WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
    };
    let bytes =
        std::fs::read(module).with_context(|| format!("cannot read {}", module.display()))?;
    let needs_wasi = contains(&bytes, WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME.as_bytes());
    let mut encoder = wit_component::ComponentEncoder::default()
        .module(&bytes)
        .context("not a core module with an embedded component type")?
        .validate(true);
    if needs_wasi {
        encoder = encoder.adapter(
            WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )?;
    }
    let component = encoder.encode().context("cannot make a component")?;
    if component.is_empty() {
        bail!("empty component");
    }
    std::fs::write(output, component)
        .with_context(|| format!("cannot write {}", output.display()))?;
    Ok(())
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
