//! The process-wide wasmtime runtime: two engines (Cranelift, optimizing; Winch, baseline),
//! a `Linker` each, the epoch ticker and the compiled-component cache.
//!
//! Tiered compilation: a component that is in no cache is first compiled by Winch, wasmtime's
//! baseline compiler (a single pass, several times faster to compile, slower code), so a new or
//! changed guest serves at once; Cranelift then compiles it on a background thread and the
//! guest swaps to that code between two batches ([`super::guest`]). Only Cranelift's code is
//! cached. A component Winch cannot compile (a proposal it lacks) is compiled by Cranelift
//! directly. `SLUICE_WASM_BASELINE=off` disables the baseline tier.
//!
//! Compiled components are cached in memory by digest (so instance restarts and config
//! reloads never recompile) and on disk (so agent restarts do not either): in
//! `$SLUICE_WASM_CACHE_DIR`, else `$XDG_CACHE_HOME/sluice/wasm`, else `~/.cache/sluice/wasm`;
//! `SLUICE_WASM_CACHE_DIR=off` disables it. A cache file is native code for this engine
//! (named by the engine's compatibility hash and the component's digest, ending with a
//! checksum of its contents that is verified before use): the folder must be writable only by
//! the agent's user, like its binary. The folder is bounded (`SLUICE_WASM_CACHE_MAX_BYTES`,
//! default 512 MiB): past it, the least recently used files are deleted.
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

/// Where a loaded component came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Compiled earlier in this process.
    Memory,
    /// Deserialized from the disk cache.
    Disk,
    /// Compiled now.
    Compiled,
    /// Compiled now by the baseline compiler (Winch); Cranelift's code is still to come.
    Baseline,
}

/// A compiled component and the engine (and linker) its code is for.
pub(crate) struct Compiled {
    pub(crate) component: Component,
    pub(crate) digest: Digest16,
    pub(crate) origin: Origin,
    /// The file's bytes, kept for Cranelift when this is baseline code.
    pub(crate) bytes: Option<Arc<[u8]>>,
}

/// One compiler's engine and the linker made for it.
pub(crate) struct Tier {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<HostState>,
}

/// A compiled component's identity: digest of the file's bytes.
pub(crate) type Digest16 = [u8; 16];

pub(crate) struct Runtime {
    /// Cranelift.
    pub(crate) optimized: Tier,
    /// Winch, when available on this machine and not disabled.
    pub(crate) baseline: Option<Tier>,
    cache: Mutex<HashMap<Digest16, Component>>,
    /// Baseline code by digest, until Cranelift's is in `cache` (several guests, or the tests
    /// of one `sluice test` run, loading one file compile it once).
    baseline_cache: Mutex<HashMap<Digest16, Component>>,
    /// One Cranelift compile per digest at a time: a second optimizer waits for the first
    /// and takes its result from `cache`.
    optimizing: Mutex<HashMap<Digest16, Arc<Mutex<()>>>>,
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
        let optimized = Tier::new(&config)?;
        let baseline = if std::env::var_os("SLUICE_WASM_BASELINE").is_some_and(|v| v == "off") {
            None
        } else {
            let mut config = Config::new();
            config.epoch_interruption(true);
            config.wasm_component_model(true);
            config.strategy(wasmtime::Strategy::Winch);
            match Tier::new(&config) {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::info!(error = %e,
                        "No baseline wasm compiler on this machine; guests compile with Cranelift only.");
                    None
                }
            }
        };
        let mut engines = vec![optimized.engine.clone()];
        engines.extend(baseline.as_ref().map(|b| b.engine.clone()));
        let ticker = EpochTicker::start(engines).map_err(RuntimeError::Ticker)?;
        Ok(Self {
            optimized,
            baseline,
            cache: Mutex::new(HashMap::new()),
            baseline_cache: Mutex::new(HashMap::new()),
            optimizing: Mutex::new(HashMap::new()),
            _ticker: ticker,
        })
    }

    /// The baseline tier when asked for and present, else the optimizing one.
    pub(crate) fn tier(&self, baseline: bool) -> &Tier {
        match (&self.baseline, baseline) {
            (Some(b), true) => b,
            _ => &self.optimized,
        }
    }

    /// Reads `path` and returns its code: Cranelift's from a cache, else Winch's (compiled now,
    /// with the bytes for Cranelift), else Cranelift's compiled now.
    pub(crate) fn load_quick(&self, path: &Path) -> Result<Compiled, CompileError> {
        let bytes = read(path)?;
        let digest: Digest16 = Md5::digest(&bytes).into();
        if let Some(component) = self.cached(&digest) {
            return Ok(component);
        }
        if let Some(b) = &self.baseline {
            let earlier = self.baseline_cache.lock().get(&digest).cloned();
            match earlier.map_or_else(|| Component::new(&b.engine, &bytes), Ok) {
                Ok(component) => {
                    let mut baseline = self.baseline_cache.lock();
                    if baseline.len() >= 64 {
                        baseline.clear();
                    }
                    baseline.insert(digest, component.clone());
                    return Ok(Compiled {
                        component,
                        digest,
                        origin: Origin::Baseline,
                        bytes: Some(bytes.into()),
                    });
                }
                Err(e) => tracing::debug!(path = %path.display(), error = %e,
                    "Baseline compiler refused the component; compiling with Cranelift."),
            }
        }
        self.compile(path, &bytes, digest)
    }

    /// Cranelift's code for `bytes` (read from `path`), compiled now and cached.
    pub(crate) fn optimize(&self, path: &Path, bytes: &[u8]) -> Result<Compiled, CompileError> {
        let digest: Digest16 = Md5::digest(bytes).into();
        let turn = self.optimizing.lock().entry(digest).or_default().clone();
        let result = {
            let _turn = turn.lock();
            match self.cached(&digest) {
                Some(component) => Ok(component),
                None => self.compile(path, bytes, digest),
            }
        };
        let mut optimizing = self.optimizing.lock();
        // The last one out removes the entry (this `turn` and the map's are the two left).
        if Arc::strong_count(&turn) <= 2 {
            optimizing.remove(&digest);
        }
        if result.is_ok() {
            self.baseline_cache.lock().remove(&digest);
        }
        result
    }

    /// Cranelift's code from the memory or disk cache.
    fn cached(&self, digest: &Digest16) -> Option<Compiled> {
        let hit = |component, origin| Compiled {
            component,
            digest: *digest,
            origin,
            bytes: None,
        };
        if let Some(c) = self.cache.lock().get(digest) {
            return Some(hit(c.clone(), Origin::Memory));
        }
        let path = self.disk_path(digest)?;
        let component = self.load_cached(&path)?;
        self.remember(*digest, &component);
        Some(hit(component, Origin::Disk))
    }

    fn compile(
        &self,
        path: &Path,
        bytes: &[u8],
        digest: Digest16,
    ) -> Result<Compiled, CompileError> {
        let component = Component::new(&self.optimized.engine, bytes).map_err(|source| {
            CompileError::Invalid {
                path: path.to_path_buf(),
                source,
            }
        })?;
        if let Some(p) = self.disk_path(&digest) {
            store_cached(&component, &p);
        }
        self.remember(digest, &component);
        Ok(Compiled {
            component,
            digest,
            origin: Origin::Compiled,
            bytes: None,
        })
    }

    fn remember(&self, digest: Digest16, component: &Component) {
        let mut cache = self.cache.lock();
        // Old versions of reloaded guests are not worth keeping forever.
        if cache.len() >= 64 {
            cache.clear();
        }
        cache.insert(digest, component.clone());
    }
}

fn read(path: &Path) -> Result<Vec<u8>, CompileError> {
    std::fs::read(path).map_err(|source| CompileError::Read {
        path: path.to_path_buf(),
        source,
    })
}

impl Tier {
    fn new(config: &Config) -> Result<Self, RuntimeError> {
        let engine = Engine::new(config).map_err(RuntimeError::Engine)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(RuntimeError::LinkWasi)?;
        bindings::host::add_to_linker::<HostState, wasmtime::component::HasSelf<HostState>>(
            &mut linker,
            |s| s,
        )
        .map_err(RuntimeError::LinkHost)?;
        Ok(Self { engine, linker })
    }
}

impl Runtime {
    fn disk_path(&self, digest: &Digest16) -> Option<PathBuf> {
        let dir = cache_dir()?;
        let mut engine = std::collections::hash_map::DefaultHasher::new();
        self.optimized
            .engine
            .precompile_compatibility_hash()
            .hash(&mut engine);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        Some(dir.join(format!("{:016x}-{hex}.cwasm", engine.finish())))
    }

    fn load_cached(&self, path: &Path) -> Option<Component> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e,
                    "Cannot read compiled-component cache file; compiling instead.");
                return None;
            }
        };
        let Some(code) = verified(&bytes) else {
            tracing::warn!(path = %path.display(),
                "Compiled-component cache file fails its checksum (truncated or altered); \
                 compiling instead and replacing it.");
            return None;
        };
        // SAFETY: the bytes were written by `store_cached` from `Component::serialize` of an
        // engine with the same compatibility hash (in the file's name), in a folder only the
        // agent's user writes (module docs), and they still match the checksum written with
        // them; wasmtime checks its header and the engine's settings again.
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize(&self.optimized.engine, code) };
        match loaded {
            Ok(c) => {
                // Recently used files are the last to go when the cache is trimmed.
                if let Ok(f) = std::fs::File::options().append(true).open(path) {
                    let _ = f.set_modified(std::time::SystemTime::now());
                }
                Some(c)
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e,
                    "Ignoring unusable compiled-component cache file.");
                None
            }
        }
    }
}

/// The disk cache's folder (module docs), `None` when disabled.
fn cache_dir() -> Option<PathBuf> {
    match std::env::var_os("SLUICE_WASM_CACHE_DIR") {
        Some(d) if d == "off" => None,
        Some(d) => Some(PathBuf::from(d)),
        None => match std::env::var_os("XDG_CACHE_HOME") {
            Some(x) => Some(PathBuf::from(x).join("sluice/wasm")),
            None => Some(PathBuf::from(std::env::var_os("HOME")?).join(".cache/sluice/wasm")),
        },
    }
}

/// Largest total size of the disk cache: `$SLUICE_WASM_CACHE_MAX_BYTES`, default 512 MiB;
/// the least recently used files go first when a new one passes it.
fn cache_max_bytes() -> u64 {
    std::env::var("SLUICE_WASM_CACHE_MAX_BYTES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_CACHE_MAX_BYTES)
}

pub(crate) const DEFAULT_CACHE_MAX_BYTES: u64 = 512 << 20;

/// Age after which a cache folder's leftover temporary file is removed.
const STALE_TMP: Duration = Duration::from_secs(3600);

/// A cache file ends with the MD5 of what precedes it and this tag.
const CACHE_TRAILER_TAG: &[u8; 8] = b"sluiceC1";
const CACHE_TRAILER_LEN: usize = 16 + 8;

/// The serialized component of a cache file whose trailer matches it.
fn verified(file: &[u8]) -> Option<&[u8]> {
    let split = file.len().checked_sub(CACHE_TRAILER_LEN)?;
    let (code, trailer) = file.split_at(split);
    let (sum, tag) = trailer.split_at(16);
    let digest: Digest16 = Md5::digest(code).into();
    (tag == CACHE_TRAILER_TAG && sum == digest).then_some(code)
}

fn store_cached(component: &Component, path: &Path) {
    let write = || -> Result<(), CacheWriteError> {
        let mut bytes = component.serialize().map_err(CacheWriteError::Serialize)?;
        let digest: Digest16 = Md5::digest(&bytes).into();
        bytes.extend_from_slice(&digest);
        bytes.extend_from_slice(CACHE_TRAILER_TAG);
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, &bytes)?;
        std::fs::rename(&tmp, path)?;
        trim_cache(dir, cache_max_bytes(), path);
        Ok(())
    };
    if let Err(e) = write() {
        tracing::warn!(path = %path.display(), error = %e, "Cannot cache compiled component.");
    }
}

/// Deletes the least recently used `.cwasm` files of `dir` until they total at most `max`
/// bytes; `keep` (the file just written) stays.
fn trim_cache(dir: &Path, max: u64, keep: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let entries: Vec<std::fs::DirEntry> = entries.flatten().collect();
    // A process that exited while writing (a short `sluice test` whose background compile was
    // cut off) leaves its temporary file: gone once it is an hour old.
    for e in &entries {
        let path = e.path();
        let partial = path
            .extension()
            .and_then(|x| x.to_str())
            .is_some_and(|x| x.starts_with("tmp"));
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_TMP);
        if partial && old {
            let _ = std::fs::remove_file(&path);
        }
    }
    let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
        .into_iter()
        .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            Some((m.modified().ok()?, m.len(), e.path()))
        })
        .collect();
    let mut total: u64 = files.iter().map(|f| f.1).sum();
    files.sort();
    for (_, len, path) in files {
        if total <= max {
            break;
        }
        if path == keep {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {
                total -= len;
                tracing::info!(path = %path.display(), bytes = len,
                    "Compiled-component cache over its size limit; removed the least recently used file.");
            }
            Err(e) => tracing::warn!(path = %path.display(), error = %e,
                "Cannot remove a compiled-component cache file."),
        }
    }
}

/// Advances the engines' epoch every [`TICK`] until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engines: Vec<Engine>) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    for engine in &engines {
                        engine.increment_epoch();
                    }
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
        let Err(e) = Runtime::shared()?.load_quick(&missing).map(drop) else {
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
        let Err(e) = Runtime::shared()?.load_quick(&path).map(drop) else {
            return Err("loading junk succeeded".into());
        };
        assert!(e.to_string().contains("is not a valid component"), "{e}");
        assert!(matches!(e, CompileError::Invalid { .. }) && e.source().is_some());
        Ok(())
    }

    #[test]
    fn a_cache_file_is_used_only_when_its_checksum_matches() {
        let code = b"serialized component".to_vec();
        let mut file = code.clone();
        let digest: Digest16 = Md5::digest(&code).into();
        file.extend_from_slice(&digest);
        file.extend_from_slice(CACHE_TRAILER_TAG);
        assert_eq!(verified(&file), Some(&code[..]));
        let mut flipped = file.clone();
        flipped[3] ^= 1;
        assert_eq!(verified(&flipped), None, "a flipped bit");
        assert_eq!(verified(&file[..file.len() - 1]), None, "truncated");
        assert_eq!(verified(&file[..10]), None, "shorter than a trailer");
        assert_eq!(
            verified(&code),
            None,
            "no trailer (a file of an older version)"
        );
    }

    #[test]
    fn the_cache_is_trimmed_least_recently_used_first() -> Result<(), Box<dyn Error>> {
        let dir = tempfile::tempdir()?;
        let now = std::time::SystemTime::now();
        let mut paths = Vec::new();
        for (i, age) in [30u64, 10, 20].into_iter().enumerate() {
            let p = dir.path().join(format!("{i}.cwasm"));
            std::fs::write(&p, vec![0u8; 1000])?;
            std::fs::File::options()
                .append(true)
                .open(&p)?
                .set_modified(now - Duration::from_secs(age))?;
            paths.push(p);
        }
        let other = dir.path().join("notes.txt");
        std::fs::write(&other, vec![0u8; 5000])?;
        // A writer's leftover: removed once stale, kept while it may still be written.
        let (stale, fresh) = (dir.path().join("a.tmp17"), dir.path().join("b.tmp18"));
        std::fs::write(&stale, b"partial")?;
        std::fs::write(&fresh, b"partial")?;
        std::fs::File::options()
            .append(true)
            .open(&stale)?
            .set_modified(now - Duration::from_secs(7200))?;
        let newest = dir.path().join("3.cwasm");
        std::fs::write(&newest, vec![0u8; 1000])?;
        trim_cache(dir.path(), 2500, &newest);
        assert!(!stale.exists() && fresh.exists());
        // 4000 bytes of .cwasm: the two least recently used go (30 s, then 20 s old).
        assert!(!paths[0].exists() && !paths[2].exists());
        assert!(paths[1].exists() && newest.exists() && other.exists());
        // The file just written stays even when it alone passes the limit.
        trim_cache(dir.path(), 10, &newest);
        assert!(!paths[1].exists() && newest.exists());
        Ok(())
    }
}
