//! The position file: Flume's JSON, plus a sluice sidecar holding file fingerprints.
//!
//! # Main file (`positionFile`)
//!
//! Exactly Flume's format, a JSON array with one object per tailed file:
//! `[{"inode":2050,"pos":1234,"file":"/var/log/app.log"}]`. Objects carry only these three keys
//! because Flume 1.11's reader (`ReliableTaildirEventReader.loadPositionFile`) throws on any
//! other key, so a file sluice wrote must stay free of extras for a rollback to Flume to work.
//! sluice reads the same format (unknown keys are tolerated), so a Flume agent's file can be
//! taken over as is.
//!
//! # Sidecar (`<positionFile>.sluice`)
//!
//! `{"version":1,"main_crc":N,"prev_main_crc":N|null,"files":[{"inode","pos","file","fp_len",
//! "fp_crc"}]}`: the same positions plus, per file, the CRC-32 of its first `fp_len` bytes (the
//! fingerprint that tells a renamed file from a new one that reuses an inode). `main_crc` is the
//! CRC-32 of the main file's bytes written in the same step, `prev_main_crc` that of the main
//! file written in the step before.
//!
//! # Journal (`<positionFile>.journal`)
//!
//! Between two snapshots (the main file and sidecar, saved every `writePosInterval`), every
//! committed batch appends one line to the journal: `{"g":G,"inode":N,"pos":N,"fp_len":N,
//! "fp_crc":N,"file":"/abs/path"}`, written with one `write` call and no fsync, so it survives a
//! killed process (not a power loss, where the snapshot bounds what is re-read). `g` is the
//! snapshot generation the record follows; the sidecar stores the generation of its snapshot.
//!
//! # Writing a snapshot
//!
//! Each snapshot increments the generation, writes the sidecar, then the main file, each to
//! `<name>.tmp` with fsync and then renamed over the old one, then fsyncs the directory, then
//! empties the journal. A reader therefore always finds two whole files, never a truncated one
//! (Flume truncates then writes in place). A journal left unemptied by a stop holds records of
//! an older generation, which the next load ignores.
//!
//! # Reading: which file wins
//!
//! - CRC of the main file = `main_crc`: both were written together; the sidecar is used.
//! - CRC of the main file = `prev_main_crc`: the agent stopped between the two renames; the
//!   sidecar is newer and is used.
//! - Otherwise another program (a Flume agent, an operator) wrote the main file since: the main
//!   file is used and fingerprints are ignored for this start.
//!
//! When the sidecar is used, the journal's complete lines of the sidecar's generation are then
//! applied in order (a torn last line is ignored); otherwise the journal is ignored and emptied.
//!
//! A main file that is missing means "no positions", except before the first snapshot (no
//! sidecar either), when the journal holds them. A main file that cannot be parsed is an
//! error naming the file: the agent refuses to start rather than re-read or skip data.
//!
//! # Invariants
//!
//! - A saved `pos` never exceeds what the channel processor committed for that file.
//! - `pos` is the offset just after the last delivered line's newline (or the end of the last
//!   delivered piece of a line split for length).

mod format;
#[cfg(test)]
mod tests;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use format::{FlumeEntry, JournalRecord, Sidecar, SidecarEntry, parse_flume};

pub(crate) use format::FlumeFormatError;

/// A CRC-32 of a file's first `len` bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Fingerprint {
    pub(crate) len: u32,
    pub(crate) crc: u32,
}

impl Fingerprint {
    pub(crate) fn of(bytes: &[u8]) -> Self {
        Self {
            len: u32::try_from(bytes.len()).unwrap_or(u32::MAX),
            crc: crc32fast::hash(bytes),
        }
    }
}

/// One tailed file's saved state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PositionEntry {
    pub(crate) inode: u64,
    pub(crate) pos: u64,
    pub(crate) file: PathBuf,
    /// `None` for an entry read from a file without a matching sidecar (e.g. Flume's).
    pub(crate) fingerprint: Option<Fingerprint>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum PositionFileError {
    #[error(
        "position file {}: {message}; fix or move the file away (without it every file is \
         read from its start, or from its end with skipToEnd = true)",
        path.display()
    )]
    Corrupt {
        path: PathBuf,
        #[source]
        message: FlumeFormatError,
    },
    #[error("position file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Reads and writes one position file and its sidecar.
pub(crate) struct PositionFile {
    path: PathBuf,
    sidecar: PathBuf,
    journal_path: PathBuf,
    /// CRC of the main file as last written (or found) by us.
    last_main_crc: Option<u32>,
    /// Generation of the last snapshot.
    generation: u64,
    /// Open for appending once the first record is written.
    journal: Option<File>,
    /// Whether the journal on disk follows the loaded snapshot (else it is emptied first).
    journal_valid: bool,
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

impl PositionFile {
    pub(crate) fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            sidecar: with_suffix(path, ".sluice"),
            journal_path: with_suffix(path, ".journal"),
            last_main_crc: None,
            generation: 0,
            journal: None,
            journal_valid: false,
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: std::io::Error) -> PositionFileError {
        PositionFileError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Loads the saved positions (see the module header for which file wins).
    pub(crate) fn load(&mut self) -> Result<Vec<PositionEntry>, PositionFileError> {
        let main = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Never snapshotted (no sidecar either): the journal holds the first
                // generation's positions. With a sidecar, the main file was removed on purpose.
                let mut entries = Vec::new();
                if !self.sidecar.exists() {
                    self.journal_valid = true;
                    self.replay_journal(&mut entries)?;
                }
                return Ok(entries);
            }
            Err(e) => return Err(self.io(e)),
        };
        let entries = parse_flume(&main).map_err(|message| PositionFileError::Corrupt {
            path: self.path.clone(),
            message,
        })?;
        let main_crc = crc32fast::hash(&main);
        self.last_main_crc = Some(main_crc);
        let sidecar = match std::fs::read(&self.sidecar) {
            Ok(b) => match serde_json::from_slice::<Sidecar>(&b) {
                Ok(s) if s.version == 1 => Some(s),
                Ok(s) => {
                    tracing::warn!(file = %self.sidecar.display(), version = s.version,
                        "Unknown position sidecar version; fingerprints ignored.");
                    None
                }
                Err(e) => {
                    tracing::warn!(file = %self.sidecar.display(), error = %e,
                        "Unreadable position sidecar; fingerprints ignored.");
                    None
                }
            },
            Err(_) => None,
        };
        match sidecar {
            Some(s) if s.main_crc == main_crc || s.prev_main_crc == Some(main_crc) => {
                self.generation = s.generation;
                self.journal_valid = true;
                let mut entries: Vec<PositionEntry> = s
                    .files
                    .into_iter()
                    .map(|e| PositionEntry {
                        inode: e.inode,
                        pos: e.pos,
                        file: PathBuf::from(e.file),
                        fingerprint: Some(Fingerprint {
                            len: e.fp_len,
                            crc: e.fp_crc,
                        }),
                    })
                    .collect();
                self.replay_journal(&mut entries)?;
                Ok(entries)
            }
            Some(_) => {
                tracing::info!(file = %self.path.display(),
                    "The position file was written by another program (e.g. Flume) since sluice \
                     last saved it; using its positions without fingerprints.");
                Ok(entries)
            }
            None => Ok(entries),
        }
    }

    /// Applies the journal records of the loaded generation, in order, upserting by inode.
    fn replay_journal(&self, entries: &mut Vec<PositionEntry>) -> Result<(), PositionFileError> {
        let bytes = match std::fs::read(&self.journal_path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(self.io(e)),
        };
        let complete = bytes
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(&bytes[..0], |i| &bytes[..=i]);
        let mut applied = 0;
        for line in complete.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let Ok(r) = serde_json::from_slice::<JournalRecord>(line) else {
                tracing::warn!(file = %self.journal_path.display(),
                    "Skipping an unreadable position journal line.");
                continue;
            };
            if r.g != self.generation {
                continue;
            }
            let entry = PositionEntry {
                inode: r.inode,
                pos: r.pos,
                file: PathBuf::from(r.file),
                fingerprint: Some(Fingerprint {
                    len: r.fp_len,
                    crc: r.fp_crc,
                }),
            };
            match entries.iter_mut().find(|e| e.inode == entry.inode) {
                Some(e) => *e = entry,
                None => entries.push(entry),
            }
            applied += 1;
        }
        if applied > 0 {
            tracing::info!(file = %self.journal_path.display(), records = applied,
                "Applied positions journaled after the last snapshot.");
        }
        Ok(())
    }

    /// Journals one file's committed position (one `write`, no fsync).
    pub(crate) fn append(&mut self, e: &PositionEntry) -> Result<(), PositionFileError> {
        if self.journal.is_none() {
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.journal_path)
                .map_err(|e| self.io(e))?;
            if !self.journal_valid {
                f.set_len(0).map_err(|e| self.io(e))?;
                self.journal_valid = true;
            }
            self.journal = Some(f);
        }
        let fp = e.fingerprint.unwrap_or_default();
        let record = JournalRecord {
            g: self.generation,
            inode: e.inode,
            pos: e.pos,
            fp_len: fp.len,
            fp_crc: fp.crc,
            file: e.file.to_string_lossy().into_owned(),
        };
        let mut line = serde_json::to_vec(&record).map_err(|e| self.io(e.into()))?;
        line.push(b'\n');
        let result = match self.journal.as_mut() {
            Some(f) => f.write_all(&line),
            None => Ok(()),
        };
        result.map_err(|e| self.io(e))
    }

    /// Saves `entries` atomically (sidecar first, then the Flume file), then empties the
    /// journal.
    pub(crate) fn save(&mut self, entries: &[PositionEntry]) -> Result<(), PositionFileError> {
        let flume: Vec<FlumeEntry> = entries
            .iter()
            .map(|e| FlumeEntry {
                inode: e.inode,
                pos: e.pos,
                file: e.file.to_string_lossy().into_owned(),
            })
            .collect();
        let main = serde_json::to_vec(&flume).map_err(|e| self.io(e.into()))?;
        let main_crc = crc32fast::hash(&main);
        let generation = self.generation + 1;
        let sidecar = Sidecar {
            version: 1,
            main_crc,
            prev_main_crc: self.last_main_crc,
            generation,
            files: entries
                .iter()
                .map(|e| {
                    let fp = e.fingerprint.unwrap_or_default();
                    SidecarEntry {
                        inode: e.inode,
                        pos: e.pos,
                        file: e.file.to_string_lossy().into_owned(),
                        fp_len: fp.len,
                        fp_crc: fp.crc,
                    }
                })
                .collect(),
        };
        let side = serde_json::to_vec(&sidecar).map_err(|e| self.io(e.into()))?;
        write_atomic(&self.sidecar, &side).map_err(|e| self.io(e))?;
        write_atomic(&self.path, &main).map_err(|e| self.io(e))?;
        self.last_main_crc = Some(main_crc);
        self.generation = generation;
        // Records of the previous generation are ignored from now on; emptying only saves space.
        if let Some(f) = &self.journal
            && let Err(e) = f.set_len(0)
        {
            tracing::debug!(file = %self.journal_path.display(), error = %e,
                "Cannot empty the position journal.");
        }
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Makes both renames durable; a failure only risks re-reading, so it is not fatal.
            if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
                tracing::debug!(dir = %dir.display(), error = %e, "Cannot fsync directory.");
            }
        }
        Ok(())
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = with_suffix(path, ".tmp");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}
