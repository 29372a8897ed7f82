//! File groups: `filegroups.<g> = /dir/<regex>`, Flume's `TaildirMatcher`.
//!
//! The directory part is literal, the last path component is a regular expression that must
//! match a whole file name. Directories are skipped; symlinks are followed. With
//! `cachePatternMatching` a directory is listed again only when its mtime changed, or while its
//! mtime is too recent to be trusted (a change within the same timestamp tick would not show).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use regex::Regex;

/// A change newer than this relative to the listing may hide behind an unchanged mtime.
const MTIME_TRUST: Duration = Duration::from_secs(2);

#[derive(Clone, Debug)]
pub(crate) struct FileGroup {
    /// The group's name in `filegroups`.
    pub(crate) name: String,
    /// The literal directory.
    pub(crate) dir: PathBuf,
    /// The file name pattern, anchored at both ends.
    pub(crate) pattern: Regex,
    /// `headers.<g>.<key>` pairs.
    pub(crate) headers: Vec<(String, String)>,
}

/// Why a `filegroups.<g>` value is no directory and file name regex.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FileGroupError {
    #[error("`{spec}` must be a directory followed by a file name regex, e.g. /var/log/.*\\.log")]
    NoFileName { spec: String },
    #[error("invalid file name regex `{file}`: {source}")]
    Regex { file: String, source: regex::Error },
}

impl FileGroup {
    /// Splits `/dir/regex` into its directory and anchored pattern.
    pub(crate) fn parse(name: &str, spec: &str) -> Result<Self, FileGroupError> {
        let path = Path::new(spec);
        let (Some(dir), Some(file)) = (path.parent(), path.file_name()) else {
            return Err(FileGroupError::NoFileName {
                spec: spec.to_string(),
            });
        };
        let file = file.to_string_lossy();
        let pattern =
            Regex::new(&format!("^(?:{file})$")).map_err(|source| FileGroupError::Regex {
                file: file.to_string(),
                source,
            })?;
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir.to_path_buf()
        };
        Ok(Self {
            name: name.to_string(),
            dir,
            pattern,
            headers: Vec::new(),
        })
    }
}

/// Lists one group's matching files, caching the listing by directory mtime.
pub(crate) struct GroupMatcher {
    pub(crate) group: FileGroup,
    cache_enabled: bool,
    cache: Option<(SystemTime, SystemTime, Vec<PathBuf>)>,
}

impl GroupMatcher {
    pub(crate) fn new(group: FileGroup, cache_enabled: bool) -> Self {
        Self {
            group,
            cache_enabled,
            cache: None,
        }
    }

    /// Matching paths, sorted.
    pub(crate) fn matching_files(&mut self) -> std::io::Result<Vec<PathBuf>> {
        let dir_mtime = std::fs::metadata(&self.group.dir)?.modified()?;
        if self.cache_enabled
            && let Some((mtime, listed_at, files)) = &self.cache
            && *mtime == dir_mtime
            && listed_at
                .duration_since(dir_mtime)
                .is_ok_and(|d| d > MTIME_TRUST)
        {
            return Ok(files.clone());
        }
        let listed_at = SystemTime::now();
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&self.group.dir)? {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !self.group.pattern.is_match(name) {
                continue;
            }
            let path = entry.path();
            if path.is_dir() {
                continue;
            }
            files.push(path);
        }
        files.sort();
        if self.cache_enabled {
            self.cache = Some((dir_mtime, listed_at, files.clone()));
        }
        Ok(files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_matches_whole_names_only() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        for f in ["a.log", "b.log", "a.log.1", "x.txt"] {
            std::fs::write(dir.path().join(f), "x\n")?;
        }
        std::fs::create_dir(dir.path().join("d.log"))?;
        let spec = format!("{}/.*\\.log", dir.path().display());
        let g = FileGroup::parse("g1", &spec)?;
        let mut m = GroupMatcher::new(g, true);
        let names: Vec<String> = m
            .matching_files()?
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        assert_eq!(names, ["a.log", "b.log"]);
        // A new file shows up even within the same mtime tick.
        std::fs::write(dir.path().join("c.log"), "x\n")?;
        assert_eq!(m.matching_files()?.len(), 3);
        Ok(())
    }

    #[test]
    fn bad_specs_are_explained() {
        let err = FileGroup::parse("g", "/var/log/([")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("invalid file name regex"), "{err}");
    }
}
