//! Hot reload: a watcher on the guest file's folder and a thread that compiles, instantiates
//! and inits a changed version off the hot path.
//!
//! Invariant: the new version only waits in [`Pending`]; the [`super::guest::Guest`] swaps it in
//! between two batches under the lock that serialises batches, so every event is processed by
//! exactly one version. A version that fails to load or init leaves the running one in place.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::engine::Digest16;
use super::instance::{Live, Loaded, Maker};

/// How long a reload waits for a file that is still being written (no rename onto it, no
/// close by its writer yet).
const SETTLE: Duration = Duration::from_millis(50);

/// What a reloader (or the optimizer) prepared, waiting for the next batch.
pub(super) type Pending = Arc<Mutex<PendingSlot>>;

#[derive(Default)]
pub(super) struct PendingSlot {
    /// The newest version loaded: Cranelift's code for an older one is not swapped in.
    pub(super) latest: Option<Digest16>,
    pub(super) next: Option<Prepared>,
}

/// A version ready to take over, with its first instance.
pub(super) struct Prepared {
    pub(super) loaded: Arc<Loaded>,
    pub(super) live: Live,
    /// When the file change was noticed (a reload), `None` for Cranelift's code replacing
    /// baseline code of the same version.
    pub(super) noticed: Option<Instant>,
}

/// Compiles Cranelift's code for `loaded` (baseline code) on its own thread and leaves it in
/// `pending`, unless a newer version was loaded meanwhile.
pub(super) fn optimize_in_background(maker: Arc<Maker>, pending: Pending, loaded: &Loaded) {
    let Some(bytes) = loaded.bytes.clone() else {
        return;
    };
    let digest = loaded.digest;
    let since = Instant::now();
    let spawned = std::thread::Builder::new()
        .name("wasm-optimize".into())
        .spawn(move || optimize(&maker, &pending, digest, &bytes, since));
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "Cannot start the wasm optimizer thread; the guest keeps its baseline code.");
    }
}

/// Cranelift's code for the version `digest` (baseline code now), instantiated and left in
/// `pending`.
fn optimize(maker: &Maker, pending: &Pending, digest: Digest16, bytes: &[u8], since: Instant) {
    let made = maker
        .optimize(bytes)
        .map_err(|e| e.to_string())
        .and_then(|l| {
            let live = maker.instantiate(&l).map_err(|f| f.to_string())?;
            Ok((Arc::new(l), live))
        });
    match made {
        Ok((loaded, live)) => {
            let mut slot = pending.lock();
            if slot.latest != Some(digest) {
                return;
            }
            slot.next = Some(Prepared {
                loaded,
                live,
                noticed: None,
            });
            let ms = since.elapsed().as_millis() as u64;
            maker.counters.optimize_millis.store(ms, Ordering::Relaxed);
            tracing::debug!(guest = %maker.name, compile_and_init_ms = ms,
                "Cranelift code of the wasm guest ready; it takes over at the next batch.");
        }
        Err(e) => tracing::warn!(guest = %maker.name, error = %e,
            "Cranelift cannot compile the wasm guest; it keeps its baseline code."),
    }
}

/// Why the guest file cannot be watched (hot reload is then disabled, with a warning).
#[derive(Debug, thiserror::Error)]
pub(super) enum WatchError {
    #[error("{0}")]
    Watcher(#[source] notify::Error),
    #[error("{}: {source}", dir.display())]
    Folder {
        dir: PathBuf,
        #[source]
        source: notify::Error,
    },
    #[error("{0}")]
    Thread(#[source] std::io::Error),
}

/// Watches the guest file; on a change compiles, instantiates and inits the new version on
/// its own thread and leaves it in `pending` for the next batch. A version that fails leaves
/// the running one in place.
pub(super) struct Reloader {
    _watcher: notify::RecommendedWatcher,
}

impl Reloader {
    pub(super) fn start(
        maker: Arc<Maker>,
        pending: Pending,
        digest: Digest16,
    ) -> Result<Self, WatchError> {
        let maker_for_loop = maker.clone();
        use notify::Watcher;
        let path = maker.config.path.clone();
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let file_name = path.file_name().map(|n| n.to_os_string());
        // `true` when the event says the file is whole: renamed onto (an atomic install) or
        // closed by a writer.
        let (tx, rx) = std::sync::mpsc::channel::<bool>();
        let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            let Ok(ev) = ev else { return };
            if let Some(complete) = file_event(&ev, file_name.as_deref()) {
                let _ = tx.send(complete);
            }
        })
        .map_err(WatchError::Watcher)?;
        watcher
            .watch(&dir, notify::RecursiveMode::NonRecursive)
            .map_err(|source| WatchError::Folder {
                dir: dir.clone(),
                source,
            })?;
        std::thread::Builder::new()
            .name("wasm-reload".into())
            .spawn(move || reload_loop(&maker_for_loop, &pending, digest, &rx))
            .map_err(WatchError::Thread)?;
        Ok(Self { _watcher: watcher })
    }
}

/// Whether a folder event concerns the guest file: `None` if not (or only a read), else
/// whether the file is known to be whole.
fn file_event(ev: &notify::Event, file_name: Option<&std::ffi::OsStr>) -> Option<bool> {
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
    let ours = |p: &PathBuf| p.file_name() == file_name;
    if !ev.paths.iter().any(ours) {
        return None;
    }
    let complete = match ev.kind {
        // A rename's destination is the last path; renamed away is not complete.
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => ev.paths.last().is_some_and(ours),
        EventKind::Modify(ModifyKind::Name(RenameMode::To))
        | EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => return None,
        _ => false,
    };
    Some(complete)
}

/// Runs until the watcher (and with it the sender) is dropped.
fn reload_loop(maker: &Arc<Maker>, pending: &Pending, mut current: Digest16, rx: &Receiver<bool>) {
    while let Ok(complete) = rx.recv() {
        let noticed = Instant::now();
        if !settle(rx, complete, noticed + SETTLE) {
            return;
        }
        if let Some(digest) = reload(maker, pending, current, noticed) {
            current = digest;
        }
    }
}

/// Unless the file is known to be whole (renamed over, or its writer closed it), gives the
/// writer until `until` to finish, coalescing the burst of events one copy makes. `false`
/// when the watcher is gone.
fn settle(rx: &Receiver<bool>, mut complete: bool, until: Instant) -> bool {
    while !complete {
        match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok(c) => complete = c,
            Err(RecvTimeoutError::Timeout) => break,
            Err(RecvTimeoutError::Disconnected) => return false,
        }
    }
    while rx.try_recv().is_ok() {}
    true
}

/// Loads and instantiates the file if it changed from `current`; on success leaves the new
/// version in `pending` and returns its digest.
fn reload(
    maker: &Arc<Maker>,
    pending: &Pending,
    current: Digest16,
    noticed: Instant,
) -> Option<Digest16> {
    let started = Instant::now();
    let loaded = match maker.load() {
        Ok(l) if l.digest == current => return None,
        Ok(l) => Arc::new(l),
        Err(e) => {
            maker
                .counters
                .reload_failures
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(guest = %maker.name, error = %e,
                "Wasm guest reload failed; the running version stays.");
            return None;
        }
    };
    match maker.instantiate(&loaded) {
        Ok(live) => {
            let digest = loaded.digest;
            {
                let mut slot = pending.lock();
                slot.latest = Some(digest);
                slot.next = Some(Prepared {
                    loaded: loaded.clone(),
                    live,
                    noticed: Some(noticed),
                });
            }
            optimize_in_background(maker.clone(), pending.clone(), &loaded);
            let ms = started.elapsed().as_millis() as u64;
            maker.counters.reloads.fetch_add(1, Ordering::Relaxed);
            maker.counters.reload_millis.store(ms, Ordering::Relaxed);
            tracing::info!(guest = %maker.name, compile_and_init_ms = ms,
                "Wasm guest reloaded; it takes over at the next batch.");
            Some(digest)
        }
        Err(f) => {
            maker
                .counters
                .reload_failures
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(guest = %maker.name, fault = %f,
                "Wasm guest reload failed; the running version stays.");
            None
        }
    }
}
