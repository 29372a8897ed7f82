use super::*;

fn entry(inode: u64, pos: u64, file: &str, fp: Option<(u32, u32)>) -> PositionEntry {
    PositionEntry {
        inode,
        pos,
        file: PathBuf::from(file),
        fingerprint: fp.map(|(len, crc)| Fingerprint { len, crc }),
    }
}

#[test]
fn reads_a_flume_written_file() -> Result<(), PositionFileError> {
    let dir = tempfile::tempdir().map_err(|e| PositionFileError::Io {
        path: PathBuf::new(),
        source: e,
    })?;
    let path = dir.path().join("taildir_position.json");
    // As Flume 1.11 writes it.
    std::fs::write(
        &path,
        r#"[{"inode":2496003,"pos":20,"file":"/var/log/a.log"},{"inode":2496004,"pos":0,"file":"/var/log/b.log"}]"#,
    )
    .map_err(|e| PositionFileError::Io {
        path: path.clone(),
        source: e,
    })?;
    let got = PositionFile::new(&path).load()?;
    assert_eq!(
        got,
        vec![
            entry(2496003, 20, "/var/log/a.log", None),
            entry(2496004, 0, "/var/log/b.log", None)
        ]
    );
    Ok(())
}

#[test]
fn round_trip_keeps_fingerprints_and_main_file_stays_flume_shaped()
-> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("pos.json");
    let entries = vec![
        entry(1, 10, "/x/a.log", Some((10, 0xdead))),
        entry(2, 0, "/x/b.log", Some((0, 0))),
    ];
    let mut pf = PositionFile::new(&path);
    pf.save(&entries)?;
    assert_eq!(PositionFile::new(&path).load()?, entries);
    // Flume's reader accepts only these three keys per object.
    let main: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    for obj in main.as_array().into_iter().flatten() {
        let mut keys: Vec<&str> = obj
            .as_object()
            .into_iter()
            .flat_map(|o| o.keys().map(String::as_str))
            .collect();
        keys.sort_unstable();
        assert_eq!(keys, ["file", "inode", "pos"]);
    }
    Ok(())
}

#[test]
fn stop_between_renames_uses_the_newer_sidecar() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("pos.json");
    let mut pf = PositionFile::new(&path);
    pf.save(&[entry(1, 10, "/a", Some((10, 7)))])?;
    let old_main = std::fs::read(&path)?;
    pf.save(&[entry(1, 20, "/a", Some((20, 8)))])?;
    // Simulate a stop after the sidecar rename but before the main rename.
    std::fs::write(&path, old_main)?;
    let got = PositionFile::new(&path).load()?;
    assert_eq!(got, vec![entry(1, 20, "/a", Some((20, 8)))]);
    Ok(())
}

#[test]
fn a_main_file_rewritten_by_flume_wins_without_fingerprints()
-> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("pos.json");
    let mut pf = PositionFile::new(&path);
    pf.save(&[entry(1, 10, "/a", Some((10, 7)))])?;
    std::fs::write(&path, r#"[{"inode":1,"pos":50,"file":"/a"}]"#)?;
    let got = PositionFile::new(&path).load()?;
    assert_eq!(got, vec![entry(1, 50, "/a", None)]);
    Ok(())
}

#[test]
fn corrupt_or_empty_file_is_an_error_naming_it() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("pos.json");
    for (text, needle) in [
        ("", "not valid JSON"),
        ("[{\"inode\":1,\"pos\":", "not valid JSON"),
        ("{}", "expected a JSON array"),
        ("[{\"inode\":1,\"file\":\"/a\"}]", "entry 0: missing `pos`"),
        (
            "[{\"inode\":-3,\"pos\":1,\"file\":\"/a\"}]",
            "`inode` must be",
        ),
    ] {
        std::fs::write(&path, text)?;
        let err = PositionFile::new(&path)
            .load()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains(needle), "{text:?}: {err}");
    }
    Ok(())
}

#[test]
fn journal_records_after_the_snapshot_are_replayed() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("pos.json");
    let mut pf = PositionFile::new(&path);
    pf.save(&[entry(1, 10, "/a", Some((10, 7)))])?;
    pf.append(&entry(1, 30, "/a", Some((30, 8))))?;
    pf.append(&entry(2, 5, "/b", Some((5, 9))))?;
    pf.append(&entry(1, 40, "/a", Some((40, 8))))?;
    // A torn last record (a write cut short) is ignored.
    let mut j = OpenOptions::new()
        .append(true)
        .open(dir.path().join("pos.json.journal"))?;
    j.write_all(b"{\"g\":1,\"inode\":1,\"pos\":99")?;
    drop(j);
    let got = PositionFile::new(&path).load()?;
    assert_eq!(
        got,
        vec![
            entry(1, 40, "/a", Some((40, 8))),
            entry(2, 5, "/b", Some((5, 9)))
        ]
    );
    // The Flume file still holds the snapshot.
    let main = std::fs::read_to_string(&path)?;
    assert!(main.contains("\"pos\":10"), "{main}");
    Ok(())
}

#[test]
fn journal_before_the_first_snapshot_is_replayed() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("pos.json");
    let mut pf = PositionFile::new(&path);
    assert!(pf.load()?.is_empty());
    pf.append(&entry(1, 30, "/a", Some((30, 8))))?;
    assert_eq!(
        PositionFile::new(&path).load()?,
        vec![entry(1, 30, "/a", Some((30, 8)))]
    );
    // Removing the position file after a snapshot starts over, whatever the journal says.
    pf.save(&[entry(1, 30, "/a", Some((30, 8)))])?;
    pf.append(&entry(1, 40, "/a", Some((40, 8))))?;
    std::fs::remove_file(&path)?;
    assert!(PositionFile::new(&path).load()?.is_empty());
    Ok(())
}

#[test]
fn journal_of_an_older_generation_is_ignored() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("pos.json");
    let mut pf = PositionFile::new(&path);
    pf.save(&[entry(1, 10, "/a", Some((10, 7)))])?;
    pf.append(&entry(1, 30, "/a", Some((30, 8))))?;
    let stale = std::fs::read(dir.path().join("pos.json.journal"))?;
    pf.save(&[entry(1, 30, "/a", Some((30, 8)))])?;
    // As if the stop came after the snapshot but before the journal was emptied.
    std::fs::write(dir.path().join("pos.json.journal"), stale)?;
    assert_eq!(
        PositionFile::new(&path).load()?,
        vec![entry(1, 30, "/a", Some((30, 8)))]
    );
    Ok(())
}

#[test]
fn journal_is_ignored_when_another_program_wrote_the_main_file()
-> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("pos.json");
    let mut pf = PositionFile::new(&path);
    pf.save(&[entry(1, 10, "/a", Some((10, 7)))])?;
    pf.append(&entry(1, 30, "/a", Some((30, 8))))?;
    std::fs::write(&path, r#"[{"inode":1,"pos":20,"file":"/a"}]"#)?;
    let mut pf = PositionFile::new(&path);
    assert_eq!(pf.load()?, vec![entry(1, 20, "/a", None)]);
    // The first new record empties the stale journal.
    pf.append(&entry(1, 25, "/a", Some((25, 1))))?;
    let journal = std::fs::read_to_string(dir.path().join("pos.json.journal"))?;
    assert_eq!(journal.lines().count(), 1, "{journal}");
    Ok(())
}

#[test]
fn missing_file_means_no_positions() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    assert!(
        PositionFile::new(&dir.path().join("none.json"))
            .load()?
            .is_empty()
    );
    Ok(())
}
