//! In-process tests of the taildir source against real files and a real memory channel.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::channels::memory::{MemoryChannel, MemoryChannelConfig};
use crate::channels::{ChannelRef, TakeTransaction};
use crate::config::{ConfigError, Props};
use crate::metrics::SourceCounters;
use crate::pipeline::InterceptorChain;
use crate::pipeline::{ChannelProcessor, PollableSource, ToAll};

use super::source::TaildirSource;
use super::tail_file::LongLinePolicy;
use super::*;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn props(pairs: &[(&str, &str)]) -> Props {
    Props::from_pairs(pairs)
}

#[test]
fn config_defaults_follow_flume() -> Result<(), ConfigError> {
    let c = TaildirConfig::from_props(&props(&[
        ("filegroups", "f1 f2"),
        ("filegroups.f1", "/var/log/app.log"),
        ("filegroups.f2", "/var/log/web/.*\\.log"),
        ("headers.f1.topic", "app"),
    ]))?;
    assert_eq!(c.groups.len(), 2);
    assert_eq!(c.groups[0].headers, vec![("topic".into(), "app".into())]);
    assert!(c.groups[1].pattern.is_match("a.log"));
    assert!(!c.groups[1].pattern.is_match("a.log.1"));
    assert!(c.position_file.ends_with(".flume/taildir_position.json"));
    assert_eq!(c.idle_timeout, Duration::from_millis(120_000));
    assert_eq!(c.write_pos_interval, Duration::from_millis(3000));
    assert_eq!(c.batch_size, 100);
    assert_eq!(c.max_batch_count, u64::MAX);
    assert!(c.cache_pattern_matching && !c.skip_to_end && !c.file_header);
    assert!(!c.byte_offset_header);
    assert_eq!(c.file_header_key, "file");
    assert_eq!(c.line_limits.max_len, 1 << 20);
    assert_eq!(c.line_limits.policy, LongLinePolicy::Split);
    Ok(())
}

#[test]
fn config_errors_name_the_key() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[], "filegroups: is required"),
        (&[("filegroups", "f1")], "filegroups.f1: is required"),
        (
            &[("filegroups", "f1"), ("filegroups.f1", "/x/(")],
            "filegroups.f1: invalid file name regex",
        ),
        (
            &[
                ("filegroups", "f1"),
                ("filegroups.f1", "/x/a"),
                ("headers.f9.k", "v"),
            ],
            "headers.f9.k: file group `f9` is not listed",
        ),
        (
            &[
                ("filegroups", "f1"),
                ("filegroups.f1", "/x/a"),
                ("longLinePolicy", "wrap"),
            ],
            "longLinePolicy: unknown value `wrap`",
        ),
    ];
    for (pairs, needle) in cases {
        let err = TaildirConfig::from_props(&props(pairs))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains(needle), "{pairs:?}: {err}");
    }
}

struct Rig {
    dir: tempfile::TempDir,
    channel: Arc<MemoryChannel>,
    processor: ChannelProcessor,
}

impl Rig {
    fn new() -> Result<Self, Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir(dir.path().join("logs"))?;
        let channel = Arc::new(MemoryChannel::new(
            "c1",
            MemoryChannelConfig {
                capacity: 100_000,
                transaction_capacity: 1000,
                byte_capacity: u64::MAX,
                keep_alive: Duration::from_millis(10),
            },
        ));
        let selector = Box::new(ToAll {
            channels: 1,
            optional: Vec::new(),
        });
        let processor = ChannelProcessor::new(
            "r1",
            InterceptorChain::default(),
            selector,
            vec![channel.clone() as ChannelRef],
            SourceCounters::new(),
        );
        Ok(Self {
            dir,
            channel,
            processor,
        })
    }

    fn logs(&self) -> PathBuf {
        self.dir.path().join("logs")
    }

    fn source(&self, extra: &[(&str, &str)]) -> Result<TaildirSource, Box<dyn std::error::Error>> {
        let spec = format!("{}/app\\.log.*", self.logs().display());
        let pos = self.dir.path().join("pos.json");
        let pos = pos.to_string_lossy();
        let mut pairs = vec![
            ("filegroups", "f1"),
            ("filegroups.f1", spec.as_str()),
            ("positionFile", &*pos),
            ("writePosInterval", "0"),
            ("batchSize", "3"),
        ];
        pairs.extend_from_slice(extra);
        Ok(TaildirSource::new(
            "r1",
            TaildirConfig::from_props(&props(&pairs))?,
        )?)
    }

    /// Runs `process` a few times and returns every event body taken from the channel.
    fn pump(&self, src: &mut TaildirSource) -> Result<Vec<String>, Box<dyn std::error::Error>> {
        for _ in 0..4 {
            src.last_scan = None;
            src.process(&self.processor)?;
        }
        let take = TakeTransaction::begin(self.channel.as_ref(), 1000, Duration::ZERO)?;
        let out = take
            .events()
            .iter()
            .map(|e| String::from_utf8_lossy(&e.body).into_owned())
            .collect();
        take.commit()?;
        Ok(out)
    }
}

fn append(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .write_all(text.as_bytes())
}

#[test]
fn rename_keeps_position_and_new_file_is_read() -> TestResult {
    let rig = Rig::new()?;
    let app = rig.logs().join("app.log");
    append(&app, "a1\na2\n")?;
    let mut src = rig.source(&[])?;
    assert_eq!(rig.pump(&mut src)?, ["a1", "a2"]);
    append(&app, "a3\n")?;
    std::fs::rename(&app, rig.logs().join("app.log.1"))?;
    append(&app, "b1\n")?;
    let mut got = rig.pump(&mut src)?;
    got.sort();
    assert_eq!(got, ["a3", "b1"], "the renamed file is not read again");
    Ok(())
}

#[test]
fn restart_resumes_and_detects_a_rewritten_file() -> TestResult {
    let rig = Rig::new()?;
    let app = rig.logs().join("app.log");
    append(&app, "one\ntwo\n")?;
    let mut src = rig.source(&[])?;
    assert_eq!(rig.pump(&mut src)?, ["one", "two"]);
    src.stop();
    drop(src);
    append(&app, "three\n")?;
    let mut src = rig.source(&[])?;
    assert_eq!(
        rig.pump(&mut src)?,
        ["three"],
        "resumes at the saved position"
    );
    src.stop();
    drop(src);
    // Same inode, new content longer than the old position: what a reused inode looks like.
    std::fs::write(&app, "fresh content line\nsecond fresh line\n")?;
    let mut src = rig.source(&[])?;
    assert_eq!(
        rig.pump(&mut src)?,
        ["fresh content line", "second fresh line"]
    );
    Ok(())
}

#[test]
fn headers_and_skip_to_end() -> TestResult {
    let rig = Rig::new()?;
    let app = rig.logs().join("app.log");
    append(&app, "old\n")?;
    let mut src = rig.source(&[
        ("skipToEnd", "true"),
        ("fileHeader", "true"),
        ("byteOffsetHeader", "true"),
        ("headers.f1.topic", "t1"),
    ])?;
    assert!(
        rig.pump(&mut src)?.is_empty(),
        "skipToEnd skips existing lines"
    );
    append(&app, "new\n")?;
    for _ in 0..2 {
        src.last_scan = None;
        src.process(&rig.processor)?;
    }
    let take = TakeTransaction::begin(rig.channel.as_ref(), 10, Duration::ZERO)?;
    let e = &take.events()[0];
    assert_eq!(&e.body[..], b"new");
    assert_eq!(e.headers.get("topic"), Some("t1"));
    assert_eq!(e.headers.get("byteoffset"), Some("4"));
    assert_eq!(e.headers.get("file"), Some(&*app.to_string_lossy()));
    take.commit()?;
    Ok(())
}

#[test]
fn a_full_channel_rolls_back_and_nothing_is_skipped() -> TestResult {
    let rig = Rig::new()?;
    let app = rig.logs().join("app.log");
    let text: String = (0..10).map(|i| format!("l{i}\n")).collect();
    append(&app, &text)?;
    let small = Arc::new(MemoryChannel::new(
        "c2",
        MemoryChannelConfig {
            capacity: 4,
            transaction_capacity: 4,
            byte_capacity: u64::MAX,
            keep_alive: Duration::ZERO,
        },
    ));
    let selector = Box::new(ToAll {
        channels: 1,
        optional: Vec::new(),
    });
    let processor = ChannelProcessor::new(
        "r1",
        InterceptorChain::default(),
        selector,
        vec![small.clone() as ChannelRef],
        SourceCounters::new(),
    );
    let mut src = rig.source(&[])?;
    let mut got = Vec::new();
    for _ in 0..20 {
        let _ = src.process(&processor);
        let take = TakeTransaction::begin(small.as_ref(), 4, Duration::ZERO)?;
        got.extend(
            take.events()
                .iter()
                .map(|e| String::from_utf8_lossy(&e.body).into_owned()),
        );
        take.commit()?;
        if got.len() >= 10 {
            break;
        }
    }
    let want: Vec<String> = (0..10).map(|i| format!("l{i}")).collect();
    assert_eq!(got, want);
    Ok(())
}

#[test]
fn corrupt_position_file_refuses_to_start_and_keeps_the_file() -> TestResult {
    let rig = Rig::new()?;
    let pos = rig.dir.path().join("pos.json");
    std::fs::write(&pos, "[{\"inode\":1,")?;
    let err = rig
        .source(&[])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains(&*pos.to_string_lossy()), "{err}");
    assert_eq!(std::fs::read_to_string(&pos)?, "[{\"inode\":1,");
    Ok(())
}
