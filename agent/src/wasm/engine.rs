//! The process-wide wasmtime runtime: one `Engine`, one `Linker`, the epoch ticker and the
//! compiled-component cache.
//!
//! Compiled components are cached in memory by digest (so instance restarts and config
//! reloads never recompile) and on disk (so agent restarts do not either): in
//! `$SLUICE_WASM_CACHE_DIR`, else `$XDG_CACHE_HOME/sluice/wasm`, else `~/.cache/sluice/wasm`;
//! `SLUICE_WASM_CACHE_DIR=off` disables it. A cache file is native code for this engine
//! (named by the engine's compatibility hash and the component's digest): the folder must be
//! writable only by the agent's user, like its binary.
//!
//! Epoch interruption bounds CPU time: a ticker thread advances the engine's epoch every
//! [`TICK`]; a call's deadline is its `limits.timeout` in ticks. The pooling allocator is not
//! used: instances are long-lived (one per hook, reused for every batch and recreated only
//! after a fault or a reload) and memory limits differ per hook, so on-demand allocation with a
//! per-store limiter fits better than pool slots sized for the largest guest.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use md5::{Digest, Md5};
use parking_lot::Mutex;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine};

use super::bindings;
use super::host_state::HostState;

/// Epoch tick: the resolution of `limits.timeout`.
pub(crate) const TICK: Duration = Duration::from_millis(5);

/// Compiled functions by Cranelift's key, kept in memory for the agent's lifetime (the
/// compiled-component cache covers restarts). Bounded: emptied when it passes 64 MiB.
#[derive(Debug, Default)]
struct FunctionCache {
    entries: Mutex<FunctionEntries>,
}

#[derive(Debug, Default)]
struct FunctionEntries {
    map: HashMap<Vec<u8>, Vec<u8>>,
    bytes: usize,
}

const FUNCTION_CACHE_BYTES: usize = 64 << 20;

impl wasmtime::CacheStore for FunctionCache {
    fn get(&self, key: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
        let value = self.entries.lock().map.get(key)?.clone();
        Some(std::borrow::Cow::Owned(value))
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        let mut e = self.entries.lock();
        if e.bytes + key.len() + value.len() > FUNCTION_CACHE_BYTES {
            e.map.clear();
            e.bytes = 0;
        }
        e.bytes += key.len() + value.len();
        e.map.insert(key.to_vec(), value);
        true
    }
}

/// Why the shared runtime could not be created (a broken host, not a bad guest).
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot enable incremental compilation: {0:#}")]
    IncrementalCache(#[source] wasmtime::Error),
    #[error("cannot create engine: {0:#}")]
    Engine(#[source] wasmtime::Error),
    #[error("cannot link WASI: {0:#}")]
    LinkWasi(#[source] wasmtime::Error),
    #[error("cannot link host interface: {0:#}")]
    LinkHost(#[source] wasmtime::Error),
    #[error("cannot start epoch ticker: {0}")]
    Ticker(#[source] io::Error),
}

/// Why a component file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not a valid component: {source:#}", path.display())]
    Invalid {
        path: PathBuf,
        #[source]
        source: wasmtime::Error,
    },
}

/// Why a compiled component could not be written to the disk cache (only logged).
#[derive(Debug, thiserror::Error)]
enum CacheWriteError {
    #[error("{0}")]
    Serialize(#[source] wasmtime::Error),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// A compiled component's identity: digest of the file's bytes.
pub(crate) type Digest16 = [u8; 16];

pub(crate) struct Runtime {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<HostState>,
    cache: Mutex<HashMap<Digest16, Component>>,
    _ticker: EpochTicker,
}

static RUNTIME: Mutex<Weak<Runtime>> = Mutex::new(Weak::new());

impl Runtime {
    /// The shared runtime, created on first use and dropped (ticker stopped) with its last hook.
    pub(crate) fn shared() -> Result<Arc<Self>, RuntimeError> {
        let mut slot = RUNTIME.lock();
        if let Some(rt) = slot.upgrade() {
            return Ok(rt);
        }
        let rt = Arc::new(Self::new()?);
        *slot = Arc::downgrade(&rt);
        Ok(rt)
    }

    fn new() -> Result<Self, RuntimeError> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        // Cranelift's per-function cache: a reload of an edited guest recompiles only the
        // functions that changed (the SDK, std and most of the guest's own code do not).
        config
            .enable_incremental_compilation(Arc::new(FunctionCache::default()))
            .map_err(RuntimeError::IncrementalCache)?;
        if std::env::var_os("SLUICE_WASM_PERFMAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).map_err(RuntimeError::Engine)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(RuntimeError::LinkWasi)?;
        bindings::host::add_to_linker::<HostState, wasmtime::component::HasSelf<HostState>>(
            &mut linker,
            |s| s,
        )
        .map_err(RuntimeError::LinkHost)?;
        let ticker = EpochTicker::start(engine.clone()).map_err(RuntimeError::Ticker)?;
        Ok(Self {
            engine,
            linker,
            cache: Mutex::new(HashMap::new()),
            _ticker: ticker,
        })
    }

    /// Reads and compiles `path`, or returns the cached compilation of identical bytes.
    pub(crate) fn load(&self, path: &Path) -> Result<(Component, Digest16), CompileError> {
        let bytes = std::fs::read(path).map_err(|source| CompileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let digest: Digest16 = Md5::digest(&bytes).into();
        if let Some(c) = self.cache.lock().get(&digest) {
            return Ok((c.clone(), digest));
        }
        let cached = self.disk_path(&digest);
        let component = match cached.as_deref().and_then(|p| self.load_cached(p)) {
            Some(c) => c,
            None => {
                let c = Component::new(&self.engine, &bytes).map_err(|source| {
                    CompileError::Invalid {
                        path: path.to_path_buf(),
                        source,
                    }
                })?;
                if let Some(p) = cached.as_deref() {
                    store_cached(&c, p);
                }
                c
            }
        };
        let mut cache = self.cache.lock();
        // Old versions of reloaded guests are not worth keeping forever.
        if cache.len() >= 64 {
            cache.clear();
        }
        cache.insert(digest, component.clone());
        Ok((component, digest))
    }
}

impl Runtime {
    fn disk_path(&self, digest: &Digest16) -> Option<PathBuf> {
        let dir = match std::env::var_os("SLUICE_WASM_CACHE_DIR") {
            Some(d) if d == "off" => return None,
            Some(d) => PathBuf::from(d),
            None => match std::env::var_os("XDG_CACHE_HOME") {
                Some(x) => PathBuf::from(x).join("sluice/wasm"),
                None => PathBuf::from(std::env::var_os("HOME")?).join(".cache/sluice/wasm"),
            },
        };
        let mut engine = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut engine);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        Some(dir.join(format!("{:016x}-{hex}.cwasm", engine.finish())))
    }

    fn load_cached(&self, path: &Path) -> Option<Component> {
        if !path.is_file() {
            return None;
        }
        // SAFETY: the file was written by `store_cached` from `Component::serialize` of an engine
        // with the same compatibility hash (in its name), in a folder only the agent's user
        // writes (module docs); wasmtime still checks its header and engine settings.
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize_file(&self.engine, path) };
        match loaded {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e,
                    "Ignoring unusable compiled-component cache file.");
                None
            }
        }
    }
}

fn store_cached(component: &Component, path: &Path) {
    let write = || -> Result<(), CacheWriteError> {
        let bytes = component.serialize().map_err(CacheWriteError::Serialize)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, bytes)?;
        Ok(std::fs::rename(&tmp, path)?)
    };
    if let Err(e) = write() {
        tracing::warn!(path = %path.display(), error = %e, "Cannot cache compiled component.");
    }
}

/// Advances the engine's epoch every [`TICK`] until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    engine.increment_epoch();
                }
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;

    #[test]
    fn an_unreadable_file_keeps_its_io_error() -> Result<(), Box<dyn Error>> {
        let dir = tempfile::tempdir()?;
        let missing = dir.path().join("missing.wasm");
        let Err(e) = Runtime::shared()?.load(&missing) else {
            return Err("loading a missing file succeeded".into());
        };
        assert!(e.to_string().starts_with("cannot read "), "{e}");
        assert!(e.to_string().contains("missing.wasm"), "{e}");
        let io = e.source().and_then(|s| s.downcast_ref::<io::Error>());
        assert_eq!(io.map(io::Error::kind), Some(io::ErrorKind::NotFound));
        Ok(())
    }

    #[test]
    fn a_file_that_is_no_component_keeps_wasmtimes_error() -> Result<(), Box<dyn Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("junk.wasm");
        std::fs::write(&path, b"not wasm")?;
        let Err(e) = Runtime::shared()?.load(&path) else {
            return Err("loading junk succeeded".into());
        };
        assert!(e.to_string().contains("is not a valid component"), "{e}");
        assert!(matches!(e, CompileError::Invalid { .. }) && e.source().is_some());
        Ok(())
    }
}
