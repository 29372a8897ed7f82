//! Unit tests: recovery from crashes and damage, locking, disk space, and a model-based test.

use std::collections::VecDeque;
use std::io::Write;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::config::MAX_FILE_SIZE;
use super::*;
use crate::channels::{PutTransaction, TakeTransaction};

type TestResult = Result<(), Box<dyn std::error::Error>>;

struct Dirs {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

fn dirs() -> Result<Dirs, std::io::Error> {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().to_path_buf();
    Ok(Dirs { _tmp: tmp, root })
}

fn config(d: &Dirs) -> FileChannelConfig {
    FileChannelConfig {
        checkpoint_dir: d.root.join("cp"),
        backup_checkpoint_dir: None,
        data_dirs: vec![d.root.join("data1"), d.root.join("data2")],
        capacity: 10_000,
        transaction_capacity: 1_000,
        max_file_size: MAX_FILE_SIZE,
        minimum_required_space: 1024 * 1024,
        checkpoint_interval: Duration::from_secs(3600),
        keep_alive: Duration::from_millis(10),
        fsync_per_transaction: true,
        fsync_interval: Duration::from_secs(5),
        checkpoint_on_close: true,
        encryption: None,
    }
}

fn put(ch: &FileChannel, bodies: impl IntoIterator<Item = String>) -> Result<(), ChannelError> {
    let mut t = PutTransaction::begin(ch);
    for b in bodies {
        let mut e = Event::new(b.clone());
        e.headers.insert("k", b);
        t.put(e)?;
    }
    t.commit()
}

fn range(from: usize, to: usize) -> impl Iterator<Item = String> {
    (from..to).map(|i| i.to_string())
}

fn bodies(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| String::from_utf8_lossy(&e.body).into_owned())
        .collect()
}

/// Takes and commits everything, returning the bodies in order.
fn drain(ch: &FileChannel) -> Result<Vec<String>, ChannelError> {
    let mut all = Vec::new();
    for _ in 0..100_000 {
        let t = TakeTransaction::begin(ch, 1000, Duration::ZERO)?;
        if t.is_empty() {
            break;
        }
        for e in t.events() {
            // Headers survive the log.
            assert_eq!(e.headers.get("k").map(str::as_bytes), Some(&e.body[..]));
        }
        all.extend(bodies(t.events()));
        t.commit()?;
    }
    Ok(all)
}

fn strings(from: usize, to: usize) -> Vec<String> {
    range(from, to).collect()
}

/// Segment files of the channel, by id.
fn segments(d: &Dirs) -> Vec<PathBuf> {
    match list_segments(&config(d).data_dirs) {
        Ok(m) => m.into_values().collect(),
        Err(e) => panic!("{e}"),
    }
}

fn newest_segment(d: &Dirs) -> PathBuf {
    segments(d).pop().unwrap_or_default()
}

/// Offsets of the event frames carrying `body` in a segment file.
fn find(path: &Path, body: &str) -> Result<Vec<usize>, std::io::Error> {
    let bytes = std::fs::read(path)?;
    let needle = body.as_bytes();
    Ok(bytes
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect())
}

fn flip(path: &Path, at: usize) -> Result<(), std::io::Error> {
    let mut bytes = std::fs::read(path)?;
    bytes[at] ^= 0x40;
    std::fs::write(path, bytes)
}

#[test]
fn crash_replays_committed_puts_and_uncommitted_takes() -> TestResult {
    let d = dirs()?;
    {
        let ch = FileChannel::open("c1", config(&d))?;
        put(&ch, range(0, 100))?;
        put(&ch, range(100, 150))?;
        let t = TakeTransaction::begin(&ch, 30, Duration::ZERO)?;
        assert_eq!(bodies(t.events()), strings(0, 30));
        t.commit()?;
        // An uncommitted take and an unprepared put at the moment of the crash.
        let t = TakeTransaction::begin(&ch, 10, Duration::ZERO)?;
        assert_eq!(t.len(), 10);
        std::mem::forget(t);
        let mut p = PutTransaction::begin(&ch);
        p.put(Event::new("lost"))?;
        p.prepare()?;
        std::mem::forget(p);
        // Dropped without close: no checkpoint, like kill -9.
    }
    let ch = FileChannel::open("c1", config(&d))?;
    assert_eq!(ch.size(), 120);
    assert_eq!(ch.stats().replay_events.load(Ordering::Relaxed), 120);
    assert_eq!(drain(&ch)?, strings(30, 150));
    Ok(())
}

#[test]
fn replay_starts_at_the_checkpoint_and_applies_later_records() -> TestResult {
    let d = dirs()?;
    {
        let ch = FileChannel::open("c1", config(&d))?;
        put(&ch, range(0, 50))?;
        TakeTransaction::begin(&ch, 20, Duration::ZERO)?.commit()?;
        ch.checkpoint()?;
        put(&ch, range(50, 60))?;
        TakeTransaction::begin(&ch, 5, Duration::ZERO)?.commit()?;
    }
    let ch = FileChannel::open("c1", config(&d))?;
    assert_eq!(drain(&ch)?, strings(25, 60));
    ch.close();
    // Clean close checkpoints; the next start replays nothing from the log but keeps order.
    let ch = FileChannel::open("c1", config(&d))?;
    assert_eq!(ch.size(), 0);
    put(&ch, range(60, 70))?;
    ch.close();
    let ch = FileChannel::open("c1", config(&d))?;
    assert_eq!(drain(&ch)?, strings(60, 70));
    Ok(())
}

#[test]
fn torn_tail_is_truncated_and_nothing_committed_is_lost() -> TestResult {
    let d = dirs()?;
    {
        let ch = FileChannel::open("c1", config(&d))?;
        put(&ch, range(0, 10))?;
        put(&ch, range(10, 20))?;
    }
    // Cut the last record in half, as a crash during its write would.
    let seg = newest_segment(&d);
    let len = std::fs::metadata(&seg)?.len();
    let last = find(&seg, "19")?;
    let cut = (*last.last().unwrap_or(&(len as usize)) as u64).min(len) - 20;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)?
        .set_len(cut)?;
    let ch = FileChannel::open("c1", config(&d))?;
    assert_eq!(ch.stats().torn_writes.load(Ordering::Relaxed), 1);
    assert_eq!(ch.stats().corrupt_records.load(Ordering::Relaxed), 0);
    assert_eq!(drain(&ch)?, strings(0, 10));
    // The file was truncated to the last complete record.
    assert!(std::fs::metadata(&seg)?.len() < cut);
    drop(ch);

    // Garbage after the last record (a torn header) is also a torn tail.
    let d = dirs()?;
    {
        let ch = FileChannel::open("c1", config(&d))?;
        put(&ch, range(0, 10))?;
    }
    let seg = newest_segment(&d);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&seg)?
        .write_all(&[0x52, 0x4c, 0x43, 0x53, 1, 0, 0])?;
    let ch = FileChannel::open("c1", config(&d))?;
    assert_eq!(ch.stats().torn_writes.load(Ordering::Relaxed), 1);
    assert_eq!(drain(&ch)?, strings(0, 10));
    Ok(())
}

#[test]
fn flipped_byte_in_an_event_loses_only_that_event() -> TestResult {
    let d = dirs()?;
    {
        let ch = FileChannel::open("c1", config(&d))?;
        put(&ch, ["aaaa", "bbbb", "cccc"].map(String::from))?;
        put(&ch, ["dddd"].map(String::from))?;
    }
    let seg = newest_segment(&d);
    let at = find(&seg, "bbbb")?;
    flip(&seg, at[at.len() - 1])?;
    let ch = FileChannel::open("c1", config(&d))?;
    assert_eq!(ch.stats().corrupt_records.load(Ordering::Relaxed), 1);
    assert_eq!(drain(&ch)?, ["aaaa", "cccc", "dddd"]);
    Ok(())
}

#[test]
fn flipped_byte_in_a_record_header_skips_that_record_only() -> TestResult {
    let d = dirs()?;
    {
        let ch = FileChannel::open("c1", config(&d))?;
        put(&ch, range(0, 5))?;
        put(&ch, range(100, 105))?;
        put(&ch, range(200, 205))?;
    }
    let seg = newest_segment(&d);
    // The second record's header sits just before its first frame.
    let first = find(&seg, "100")?[0];
    let frame = first - super::format::FRAME_HEADER_LEN - 4 - 4 - 1 - 4 - 3;
    flip(&seg, frame - 10)?;
    let ch = FileChannel::open("c1", config(&d))?;
    assert_eq!(ch.stats().corrupt_records.load(Ordering::Relaxed), 1);
    let mut want = strings(0, 5);
    want.extend(strings(200, 205));
    assert_eq!(drain(&ch)?, want);
    Ok(())
}

#[test]
fn damage_found_on_take_drops_the_event_and_keeps_the_rest() -> TestResult {
    let d = dirs()?;
    {
        let ch = FileChannel::open("c1", config(&d))?;
        put(&ch, ["xxxx", "yyyy", "zzzz"].map(String::from))?;
        // The checkpoint covers the record, so replay will not re-read it.
        ch.close();
    }
    let seg = segments(&d)
        .into_iter()
        .find(|p| find(p, "yyyy").is_ok_and(|v| !v.is_empty()));
    let seg = seg.ok_or("segment with the events not found")?;
    let at = find(&seg, "yyyy")?;
    flip(&seg, at[at.len() - 1])?;
    let ch = FileChannel::open("c1", config(&d))?;
    assert_eq!(ch.stats().corrupt_records.load(Ordering::Relaxed), 0);
    {
        let t = TakeTransaction::begin(&ch, 10, Duration::ZERO)?;
        assert_eq!(bodies(t.events()), ["xxxx", "zzzz"]);
        // Rolled back: the damaged event does not come back.
    }
    assert_eq!(ch.stats().corrupt_records.load(Ordering::Relaxed), 1);
    assert_eq!(drain(&ch)?, ["xxxx", "zzzz"]);
    assert_eq!(ch.size(), 0);
    Ok(())
}

#[test]
fn damaged_checkpoint_falls_back_to_backup_then_full_replay() -> TestResult {
    let d = dirs()?;
    let mut cfg = config(&d);
    cfg.backup_checkpoint_dir = Some(d.root.join("backup"));
    {
        let ch = FileChannel::open("c1", cfg.clone())?;
        put(&ch, range(0, 40))?;
        TakeTransaction::begin(&ch, 10, Duration::ZERO)?.commit()?;
        ch.close();
    }
    let cp = cfg.checkpoint_dir.join(checkpoint::CHECKPOINT_FILE);
    let bytes = std::fs::read(&cp)?;
    // Truncated primary: the backup is used.
    std::fs::write(&cp, &bytes[..bytes.len() / 2])?;
    {
        let ch = FileChannel::open("c1", cfg.clone())?;
        assert_eq!(ch.stats().corrupt_records.load(Ordering::Relaxed), 1);
        assert_eq!(ch.size(), 30);
        // Crash, leaving the checkpoints this open wrote.
    }
    // Both damaged: full replay of the log. Nothing is lost; taken events may come back.
    let backup = d.root.join("backup").join(checkpoint::CHECKPOINT_FILE);
    flip(&cp, 30)?;
    flip(&backup, 30)?;
    let ch = FileChannel::open("c1", cfg)?;
    assert_eq!(ch.stats().corrupt_records.load(Ordering::Relaxed), 2);
    let got = drain(&ch)?;
    for want in strings(10, 40) {
        assert!(
            got.contains(&want),
            "{want} lost after a full replay: {got:?}"
        );
    }
    Ok(())
}

#[test]
fn missing_segment_refuses_to_start_and_says_which() -> TestResult {
    let d = dirs()?;
    let mut cfg = config(&d);
    cfg.max_file_size = 4096;
    {
        let ch = FileChannel::open("c1", cfg.clone())?;
        for i in 0..10 {
            put(&ch, range(i * 100, i * 100 + 100))?;
        }
        ch.close();
    }
    let segs = segments(&d);
    assert!(segs.len() > 3, "{segs:?}");
    let victim = segs[1].clone();
    std::fs::remove_file(&victim)?;
    let err = FileChannel::open("c1", cfg.clone())
        .err()
        .map(|e| e.to_string());
    let name = victim.file_name().and_then(|n| n.to_str()).unwrap_or("?");
    assert!(
        err.as_deref().is_some_and(|e| e.contains(name)),
        "{err:?} should name {name}"
    );
    // The documented way out: drop the checkpoint and replay what is left.
    std::fs::remove_file(cfg.checkpoint_dir.join(checkpoint::CHECKPOINT_FILE))?;
    let ch = FileChannel::open("c1", cfg)?;
    let got = drain(&ch)?;
    // Each 100-event record fills most of a 4 KiB segment: one record is gone with the file.
    assert!(got.len() >= 800 && got.len() < 1000, "{}", got.len());
    Ok(())
}

#[test]
fn second_open_on_the_same_directories_is_refused() -> TestResult {
    let d = dirs()?;
    let ch = FileChannel::open("c1", config(&d))?;
    let second = FileChannel::open("c2", config(&d));
    assert!(
        matches!(second, Err(FileChannelError::Locked { .. })),
        "{:?}",
        second.err()
    );
    // Sharing only a data dir is refused as well.
    let mut other = config(&d);
    other.checkpoint_dir = d.root.join("cp-other");
    other.data_dirs = vec![d.root.join("data2")];
    assert!(matches!(
        FileChannel::open("c3", other),
        Err(FileChannelError::Locked { .. })
    ));
    ch.close();
    // Close releases the lock (a reload reopens the same directories).
    FileChannel::open("c1", config(&d))?.close();
    Ok(())
}

#[test]
fn low_disk_space_fails_puts_and_recovers() -> TestResult {
    let d = dirs()?;
    let ch = FileChannel::open("c1", config(&d))?;
    put(&ch, range(0, 10))?;
    ch.set_minimum_required_space(u64::MAX / 2);
    let err = put(&ch, range(10, 20));
    let msg = err
        .as_ref()
        .err()
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(msg.contains("minimumRequiredSpace"), "{msg}");
    assert_eq!(ch.size(), 10);
    // Takes still work while space is low.
    let t = TakeTransaction::begin(&ch, 5, Duration::ZERO)?;
    t.commit()?;
    ch.set_minimum_required_space(1024 * 1024);
    put(&ch, range(10, 20))?;
    assert_eq!(drain(&ch)?, strings(5, 20));
    Ok(())
}

#[test]
fn low_disk_space_skips_checkpoints_and_takes_go_on() -> TestResult {
    let d = dirs()?;
    let cfg = config(&d);
    let ch = FileChannel::open("c1", cfg.clone())?;
    put(&ch, range(0, 10))?;
    ch.checkpoint()?;
    let cp = cfg.checkpoint_dir.join(checkpoint::CHECKPOINT_FILE);
    let before = std::fs::read(&cp)?;
    ch.set_minimum_required_space(u64::MAX / 2);
    let err = ch
        .checkpoint()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("checkpoint skipped") && err.contains("minimumRequiredSpace"),
        "{err}"
    );
    assert_eq!(
        ch.stats().checkpoint_write_errors.load(Ordering::Relaxed),
        1
    );
    assert_eq!(std::fs::read(&cp)?, before, "the old checkpoint stays");
    assert!(!cfg.checkpoint_dir.join(checkpoint::CHECKPOINT_TMP).exists());
    // Takes are written into the reserve and need no check.
    TakeTransaction::begin(&ch, 4, Duration::ZERO)?.commit()?;
    // A clean stop on a full disk skips the final checkpoint; the log has everything.
    ch.close();
    let ch = FileChannel::open("c1", cfg)?;
    assert_eq!(drain(&ch)?, strings(4, 10));
    Ok(())
}

#[test]
fn puts_keep_room_for_the_next_checkpoint() {
    let min = 1024 * 1024;
    for (batch, live) in [(0, 0), (4096, 10), (1 << 20, 1_000_000)] {
        let put = put_space_needed(min, batch, live);
        // Once a put was allowed, the checkpoint that then holds `live` events still fits.
        assert_eq!(put - batch, checkpoint_space_needed(min, live));
        assert_eq!(checkpoint_space_needed(min, live), min + 40 + 20 * live);
    }
    assert_eq!(put_space_needed(u64::MAX / 2, u64::MAX, 5), u64::MAX);
}

/// Blocks allocated to a file, in bytes.
fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map_or(0, |m| m.blocks() * 512)
}

#[test]
fn a_restart_continues_the_newest_segment_with_its_take_reserve() -> TestResult {
    let d = dirs()?;
    let cfg = config(&d);
    {
        let ch = FileChannel::open("c1", cfg.clone())?;
        put(&ch, range(0, 100))?;
        ch.close();
    }
    let segs = segments(&d);
    assert_eq!(segs.len(), 1, "{segs:?}");
    let seg = &segs[0];
    let len = std::fs::metadata(seg)?.len();
    assert!(
        allocated(seg) >= len + TAKE_RESERVE,
        "{} bytes allocated for a {len}-byte segment",
        allocated(seg)
    );
    // A clean stop, then a crash: neither start creates a file.
    {
        let ch = FileChannel::open("c1", cfg.clone())?;
        assert_eq!(segments(&d), segs);
        TakeTransaction::begin(&ch, 10, Duration::ZERO)?.commit()?;
        put(&ch, range(100, 110))?;
    }
    let ch = FileChannel::open("c1", cfg)?;
    assert_eq!(segments(&d), segs);
    assert!(allocated(seg) >= std::fs::metadata(seg)?.len() + TAKE_RESERVE);
    assert_eq!(drain(&ch)?, strings(10, 110));
    Ok(())
}

#[test]
fn a_sealed_segment_gives_its_reserve_back() -> TestResult {
    let d = dirs()?;
    let mut cfg = config(&d);
    cfg.max_file_size = 4096;
    let ch = FileChannel::open("c1", cfg.clone())?;
    for i in 0..5 {
        put(&ch, range(i * 100, i * 100 + 100))?;
    }
    let segs = segments(&d);
    assert!(segs.len() >= 3, "{segs:?}");
    let (active, sealed) = segs.split_last().ok_or("no segment")?;
    for s in sealed {
        assert!(
            allocated(s) < TAKE_RESERVE,
            "{} kept its reserve",
            s.display()
        );
    }
    assert!(allocated(active) >= TAKE_RESERVE);
    ch.close();
    // A start that cannot continue the newest segment (now past maxFileSize) seals it too.
    cfg.max_file_size = 2048;
    let ch = FileChannel::open("c1", cfg)?;
    assert_eq!(segments(&d).len(), segs.len() + 1);
    assert!(
        allocated(active) < TAKE_RESERVE,
        "the old active segment kept its reserve"
    );
    assert_eq!(drain(&ch)?, strings(0, 500));
    Ok(())
}

#[test]
fn takes_past_max_file_size_stay_in_the_active_segment_without_room() -> TestResult {
    let d = dirs()?;
    let mut cfg = config(&d);
    cfg.max_file_size = 4096;
    {
        let ch = FileChannel::open("c1", cfg.clone())?;
        // One record of about 4 KiB: the active segment is at its maximum.
        put(&ch, range(1000, 1300))?;
        let segs = segments(&d);
        ch.set_minimum_required_space(u64::MAX / 2);
        for _ in 0..20 {
            TakeTransaction::begin(&ch, 10, Duration::ZERO)?.commit()?;
        }
        assert_eq!(
            segments(&d),
            segs,
            "a take started a segment on a full disk"
        );
        // With room again, the next take starts one.
        ch.set_minimum_required_space(1024 * 1024);
        TakeTransaction::begin(&ch, 1, Duration::ZERO)?.commit()?;
        assert_eq!(segments(&d).len(), segs.len() + 1);
    }
    let ch = FileChannel::open("c1", cfg)?;
    assert_eq!(drain(&ch)?, strings(1201, 1300));
    Ok(())
}

#[test]
fn fully_taken_segments_are_deleted_at_checkpoint() -> TestResult {
    let d = dirs()?;
    let mut cfg = config(&d);
    cfg.max_file_size = 2048;
    let ch = FileChannel::open("c1", cfg.clone())?;
    for i in 0..20 {
        put(&ch, range(i * 50, i * 50 + 50))?;
    }
    let before = segments(&d).len();
    assert!(before > 5, "{before}");
    let taken = {
        let t = TakeTransaction::begin(&ch, 900, Duration::ZERO)?;
        let n = t.len();
        t.commit()?;
        n
    };
    assert_eq!(taken, 900);
    ch.checkpoint()?;
    let after = segments(&d).len();
    assert!(after < before, "{before} -> {after}");
    assert_eq!(
        ch.stats().segments.load(Ordering::Relaxed),
        after as u64,
        "gauge follows the files"
    );
    drop(ch);
    let ch = FileChannel::open("c1", cfg)?;
    assert_eq!(drain(&ch)?, strings(900, 1000));
    Ok(())
}

#[test]
fn concurrent_commits_share_fsyncs_and_lose_nothing() -> TestResult {
    let d = dirs()?;
    let ch = Arc::new(FileChannel::open("c1", config(&d))?);
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let ch = ch.clone();
            std::thread::spawn(move || -> Result<(), ChannelError> {
                for i in 0..40 {
                    let base = t * 10_000 + i * 10;
                    put(&ch, range(base, base + 10))?;
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| "writer panicked")??;
    }
    let commits = 6 * 40;
    let fsyncs = ch.stats().fsyncs.load(Ordering::Relaxed);
    println!("{commits} commits, {fsyncs} fsyncs");
    assert!(fsyncs <= commits);
    drop(ch);
    let ch = FileChannel::open("c1", config(&d))?;
    let mut got = drain(&ch)?;
    got.sort();
    let mut want: Vec<String> = (0..6)
        .flat_map(|t| range(t * 10_000, t * 10_000 + 400))
        .collect();
    want.sort();
    assert_eq!(got, want);
    Ok(())
}

#[test]
fn config_keys_and_defaults() {
    let c = FileChannelConfig::from_props(&Props::from_pairs(&[]));
    assert!(matches!(
        c,
        Ok(FileChannelConfig {
            capacity: 1_000_000,
            transaction_capacity: 10_000,
            fsync_per_transaction: true,
            checkpoint_on_close: true,
            encryption: None,
            ..
        })
    ));
    let c = FileChannelConfig::from_props(&Props::from_pairs(&[
        ("dataDirs", "/a, /b"),
        ("checkpointDir", "/c"),
        ("maxFileSize", "99999999999"),
        ("minimumRequiredSpace", "10"),
        ("checkpointInterval", "1000"),
        ("fsyncPerTransaction", "false"),
    ]));
    let c = c.map_err(|e| e.to_string());
    assert_eq!(
        c.as_ref().map(|c| (
            c.data_dirs.clone(),
            c.max_file_size,
            c.minimum_required_space,
            c.fsync_per_transaction
        )),
        Ok((
            vec![PathBuf::from("/a"), PathBuf::from("/b")],
            MAX_FILE_SIZE,
            1024 * 1024,
            false
        ))
    );
    let dual = FileChannelConfig::from_props(&Props::from_pairs(&[("useDualCheckpoints", "true")]));
    assert!(dual.is_err_and(|e| e.to_string().contains("backupCheckpointDir")));
    let big = FileChannelConfig::from_props(&Props::from_pairs(&[
        ("capacity", "10"),
        ("transactionCapacity", "20"),
    ]));
    assert!(big.is_err());
}

/// One open take in the model test: its ticket and the bodies it returned.
struct OpenTake {
    ticket: TakeTicket,
    events: Vec<Event>,
}

/// Random put / take / commit / rollback / checkpoint / crash / clean restart sequences, checked
/// against a queue model after every step.
#[test]
fn model_based_random_operations() -> TestResult {
    for seed in 0..12u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let d = dirs()?;
        let mut cfg = config(&d);
        cfg.capacity = 300;
        cfg.transaction_capacity = 50;
        cfg.max_file_size = 4096 + rng.random_range(0..32_768);
        cfg.keep_alive = Duration::ZERO;
        // Odd seeds run the other fsync policy (a dropped channel is a process crash: the page
        // cache keeps what was written, so the model is the same).
        cfg.fsync_per_transaction = seed % 2 == 0;
        let mut ch = FileChannel::open("m", cfg.clone())?;
        // Committed, not taken: the queue as the channel should deliver it.
        let mut model: VecDeque<String> = VecDeque::new();
        let mut open: Vec<OpenTake> = Vec::new();
        let mut next = 0usize;
        for step in 0..400 {
            let held: usize = open.iter().map(|t| t.events.len()).sum();
            let op = rng.random_range(0..100);
            match op {
                0..35 => {
                    let n = rng.random_range(1..=50);
                    let batch: Vec<String> = range(next, next + n).collect();
                    let fits = model.len() + held + n <= cfg.capacity;
                    let r = put(&ch, batch.clone());
                    assert_eq!(r.is_ok(), fits, "seed {seed} step {step}: {r:?}");
                    if fits {
                        model.extend(batch);
                        next += n;
                    }
                }
                35..60 => {
                    let n = rng.random_range(1..=50);
                    let mut out = Vec::new();
                    let ticket = ch.take(n, Duration::ZERO, &mut out)?;
                    let want: Vec<String> = model.drain(..n.min(model.len())).collect();
                    assert_eq!(bodies(&out), want, "seed {seed} step {step}");
                    open.push(OpenTake {
                        ticket,
                        events: out,
                    });
                }
                60..75 if !open.is_empty() => {
                    let t = open.remove(rng.random_range(0..open.len()));
                    ch.commit_take(&t.ticket, &t.events)?;
                }
                75..85 if !open.is_empty() => {
                    let t = open.remove(rng.random_range(0..open.len()));
                    for b in bodies(&t.events).into_iter().rev() {
                        model.push_front(b);
                    }
                    ch.rollback_take(t.ticket, t.events);
                }
                85..90 => ch.checkpoint()?,
                90..96 => {
                    // Crash: open takes vanish with the process and come back.
                    for t in open.drain(..) {
                        model.extend(bodies(&t.events));
                    }
                    drop(ch);
                    if rng.random_bool(0.5) {
                        // A torn write left at the end of the log.
                        let junk: Vec<u8> =
                            (0..rng.random_range(1..64)).map(|_| rng.random()).collect();
                        std::fs::OpenOptions::new()
                            .append(true)
                            .open(newest_segment(&d))?
                            .write_all(&junk)?;
                    }
                    ch = FileChannel::open("m", cfg.clone())?;
                    model
                        .make_contiguous()
                        .sort_by_key(|b| b.parse::<usize>().unwrap_or(0));
                }
                96..100 => {
                    for t in open.drain(..) {
                        for b in bodies(&t.events).into_iter().rev() {
                            model.push_front(b);
                        }
                        ch.rollback_take(t.ticket, t.events);
                    }
                    ch.close();
                    drop(ch);
                    ch = FileChannel::open("m", cfg.clone())?;
                    model
                        .make_contiguous()
                        .sort_by_key(|b| b.parse::<usize>().unwrap_or(0));
                }
                _ => {}
            }
            let held: usize = open.iter().map(|t| t.events.len()).sum();
            assert_eq!(
                ch.size(),
                model.len() + held,
                "seed {seed} step {step} op {op}"
            );
        }
        for t in open.drain(..) {
            ch.commit_take(&t.ticket, &t.events)?;
        }
        drop(ch);
        let ch = FileChannel::open("m", cfg)?;
        assert_eq!(drain(&ch)?, Vec::from(model), "seed {seed} final");
        assert_eq!(ch.stats().corrupt_records.load(Ordering::Relaxed), 0);
    }
    Ok(())
}
