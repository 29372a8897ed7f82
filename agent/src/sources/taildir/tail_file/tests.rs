use std::io::Write;
use std::path::Path;

use super::*;

const SPLIT_8: LineLimits = LineLimits {
    max_len: 8,
    policy: LongLinePolicy::Split,
};
const TRUNC_8: LineLimits = LineLimits {
    max_len: 8,
    policy: LongLinePolicy::Truncate,
};

fn setup(content: &[u8]) -> io::Result<(tempfile::TempDir, PathBuf, TailFile)> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("a.log");
    std::fs::write(&path, content)?;
    let md = std::fs::metadata(&path)?;
    let mut tf = TailFile::new(key_of(&md), path.clone(), 0, 0);
    tf.open()?;
    Ok((dir, path, tf))
}

fn bodies(lines: &[Line]) -> Vec<String> {
    lines
        .iter()
        .map(|l| String::from_utf8_lossy(&l.body).into_owned())
        .collect()
}

fn append(path: &Path, bytes: &[u8]) -> io::Result<()> {
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)?
        .write_all(bytes)
}

#[test]
fn lines_crlf_partial_line_and_offsets() -> io::Result<()> {
    let (_d, path, mut tf) = setup(b"one\r\ntwo\nthr")?;
    let mut out = Vec::new();
    tf.read_lines(10, SPLIT_8, &mut out)?;
    assert_eq!(bodies(&out), ["one", "two"]);
    assert_eq!((out[0].offset, out[1].offset), (0, 5));
    tf.commit();
    assert_eq!(tf.pos, 9, "the partial line is not committed");
    append(&path, b"ee\n")?;
    out.clear();
    tf.read_lines(10, SPLIT_8, &mut out)?;
    assert_eq!(bodies(&out), ["three"]);
    assert_eq!(out[0].offset, 9);
    tf.commit();
    assert_eq!(tf.pos, 15);
    Ok(())
}

#[test]
fn batch_limit_and_rollback_rereads() -> io::Result<()> {
    let (_d, _p, mut tf) = setup(b"a\nb\nc\nd\n")?;
    let mut out = Vec::new();
    tf.read_lines(3, SPLIT_8, &mut out)?;
    assert_eq!(bodies(&out), ["a", "b", "c"]);
    tf.rollback();
    out.clear();
    tf.read_lines(2, SPLIT_8, &mut out)?;
    assert_eq!(bodies(&out), ["a", "b"]);
    tf.commit();
    out.clear();
    tf.read_lines(10, SPLIT_8, &mut out)?;
    assert_eq!(bodies(&out), ["c", "d"]);
    Ok(())
}

#[test]
fn long_lines_split_into_resumable_pieces() -> io::Result<()> {
    let (_d, _p, mut tf) = setup(b"0123456789abcdefXY\nok\n")?;
    let mut out = Vec::new();
    let o = tf.read_lines(10, SPLIT_8, &mut out)?;
    assert_eq!(bodies(&out), ["01234567", "89abcdef", "XY", "ok"]);
    assert_eq!(o.long_lines, 2);
    assert_eq!(out[1].offset, 8);
    Ok(())
}

#[test]
fn long_lines_truncated_once_their_end_is_seen() -> io::Result<()> {
    let (_d, path, mut tf) = setup(b"0123456789abcdef")?;
    let mut out = Vec::new();
    tf.read_lines(10, TRUNC_8, &mut out)?;
    assert!(out.is_empty(), "waits for the newline: {:?}", bodies(&out));
    append(&path, b"ghij\nnext\n")?;
    tf.read_lines(10, TRUNC_8, &mut out)?;
    assert_eq!(bodies(&out), ["01234567", "next"]);
    tf.commit();
    assert_eq!(tf.pos, 26);
    Ok(())
}

#[test]
fn truncate_mode_buffers_at_most_one_chunk() -> io::Result<()> {
    let mut big = vec![b'x'; 5 * CHUNK];
    big.extend_from_slice(b"\nend\n");
    let (_d, _p, mut tf) = setup(&big)?;
    let mut out = Vec::new();
    let o = tf.read_lines(10, TRUNC_8, &mut out)?;
    assert_eq!(bodies(&out), ["xxxxxxxx", "end"]);
    assert_eq!(o.long_lines, 1);
    assert!(tf.carry.len() <= CHUNK);
    Ok(())
}

/// What a reader must produce for `content`: every complete line, cut as `limits` say.
fn model(content: &[u8], limits: LineLimits) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = content;
    while let Some(i) = rest.iter().position(|&b| b == b'\n') {
        let mut line = &rest[..i];
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        match limits.policy {
            LongLinePolicy::Split if line.len() > limits.max_len => {
                let mut l = line;
                while l.len() > limits.max_len {
                    out.push(l[..limits.max_len].to_vec());
                    l = &l[limits.max_len..];
                }
                out.push(l.to_vec());
            }
            LongLinePolicy::Truncate if line.len() > limits.max_len => {
                out.push(line[..limits.max_len].to_vec());
            }
            _ => out.push(line.to_vec()),
        }
        rest = &rest[i + 1..];
    }
    // An unfinished line already longer than the limit has its full pieces out in split mode.
    let pending = rest.len() - usize::from(rest.last() == Some(&b'\r'));
    if limits.policy == LongLinePolicy::Split && pending > limits.max_len {
        let mut l = rest;
        while l.len() - usize::from(l.last() == Some(&b'\r')) > limits.max_len {
            out.push(l[..limits.max_len].to_vec());
            l = &l[limits.max_len..];
        }
    }
    out
}

/// Random appends (short, long and CRLF lines, partial writes), random batch sizes and
/// random rollbacks: the committed output always equals the model, and a reader restarted
/// at the committed offset goes on exactly where the first stopped.
#[test]
fn reader_matches_the_model_under_random_appends_and_rollbacks() -> io::Result<()> {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for round in 0..24 {
        let policy = if round % 2 == 0 {
            LongLinePolicy::Split
        } else {
            LongLinePolicy::Truncate
        };
        let limits = LineLimits {
            max_len: 1 + rnd(300) as usize,
            policy,
        };
        let (_d, path, mut tf) = setup(b"")?;
        let mut content = Vec::new();
        let mut committed: Vec<Vec<u8>> = Vec::new();
        for step in 0..40 {
            let mut chunk = Vec::new();
            for _ in 0..rnd(8) {
                let len = match rnd(10) {
                    0 => rnd(100_000) as usize,
                    1..=3 => rnd(600) as usize,
                    _ => rnd(40) as usize,
                };
                chunk.extend((0..len).map(|i| b'a' + ((i + step) % 26) as u8));
                if rnd(5) == 0 {
                    chunk.push(b'\r');
                }
                if rnd(6) != 0 {
                    chunk.push(b'\n');
                }
            }
            append(&path, &chunk)?;
            content.extend_from_slice(&chunk);
            let mut out = Vec::new();
            tf.read_lines(1 + rnd(50) as usize, limits, &mut out)?;
            if rnd(4) == 0 {
                tf.rollback();
            } else {
                tf.commit();
                committed.extend(out.iter().map(|l| l.body.to_vec()));
            }
            if rnd(10) == 0 {
                // A restart: a new reader at the committed offset.
                let pos = tf.pos;
                tf = TailFile::new(tf.key, path.clone(), 0, pos);
                tf.open()?;
            }
        }
        loop {
            let mut out = Vec::new();
            tf.read_lines(1000, limits, &mut out)?;
            if out.is_empty() {
                break;
            }
            tf.commit();
            committed.extend(out.into_iter().map(|l| l.body.to_vec()));
        }
        let want = model(&content, limits);
        assert_eq!(committed.len(), want.len(), "round {round}: line count");
        assert!(committed == want, "round {round}: content differs");
        assert!(tf.carry.len() <= limits.max_len + CHUNK);
    }
    Ok(())
}

#[test]
fn fingerprint_is_extended_only_while_the_prefix_matches() -> io::Result<()> {
    let (_d, path, mut tf) = setup(b"")?;
    assert!(tf.check_fingerprint()?);
    assert_eq!(tf.fingerprint.len, 0);
    append(&path, b"grown\n")?;
    tf.extend_fingerprint()?;
    assert_eq!(tf.fingerprint, Fingerprint::of(b"grown\n"));
    std::fs::write(&path, b"replaced content\n")?;
    tf.extend_fingerprint()?;
    assert_eq!(
        tf.fingerprint,
        Fingerprint::of(b"grown\n"),
        "left for the scan"
    );
    assert!(!tf.check_fingerprint()?);
    Ok(())
}

#[test]
fn fingerprint_detects_rewritten_content() -> io::Result<()> {
    let (_d, path, mut tf) = setup(b"first line\n")?;
    assert!(tf.check_fingerprint()?);
    assert_eq!(tf.fingerprint.len, 11);
    append(&path, b"second\n")?;
    assert!(tf.check_fingerprint()?, "growth keeps the identity");
    assert_eq!(tf.fingerprint.len, 18);
    std::fs::write(&path, b"other content, longer than before\n")?;
    assert!(!tf.check_fingerprint()?, "same inode, new content");
    Ok(())
}
