//! Benchmarks of the release `sluice` binary (src/bin/bench_*.rs), each next to its baseline
//! (Apache Flume, the raw disk, the same pipeline without a hook). The peers come from the
//! `sluice-integration` fixtures; [`harness`] is what the benches share.

pub mod harness;
