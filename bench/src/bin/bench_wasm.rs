//! WebAssembly hook benchmark on the release `sluice` binary, every pipeline in the same run:
//!
//! - `stress -> memory -> null` with no interceptor (the baseline);
//! - the same with a wasm interceptor: the `drop-by-level` filter in Rust and in C, and the C
//!   `pii-mask` transform, which reads every body byte (stress bodies carry no level and no
//!   PII: every event is kept, the common case of a filter), and the Rust `tagger` that
//!   replaces every event (the worst case);
//! - `stress -> wasm router -> memory -> null` with the Python tenant router and
//!   `stress -> memory -> wasm sink selector -> null` with the JavaScript sticky selector;
//! - next to the transforms, the native interceptors doing the same work: `static` setting the
//!   tagger's header, two `search_replace` with pii-mask's two masks;
//! - a Python and a JavaScript interceptor (`sluice wasm new`'s template: drop bodies starting
//!   with `DEBUG`) next to the native `regex_filter` doing that, and Apache Flume 1.11.0 on the
//!   same stress source with no interceptor, `static` and that `regex_filter` (what a user runs
//!   today; `--only sluice` leaves Flume out);
//! - hot reload swap latency (file renamed over → new version running) for a version already
//!   compiled, a first compile, and an edit of the latter (Cranelift's function cache), and
//!   instantiate+init time per guest, from the guests' `WASM.*` metrics.
//!
//! ```text
//! cargo build --release --workspace --bins
//! cargo run --release -p sluice-bench --bin bench_wasm [-- --window SECS --warmup SECS --batch N --body BYTES]
//! ```
//!
//! Throughput is the growth of `CHANNEL.c1/EventTakeSuccessCount` over the window. Guests are
//! built from source first (see `sluice_integration::guests`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Parser;
use sluice_bench::harness::{
    self, Only, Payload, Side, Window, measure, measure_flume_takes, print_machine,
    sluice_release_bin,
};
use sluice_integration::flume::FLUME_VERSION;
use sluice_integration::{Sluice, guests, wait_for};

/// stress -> [wasm hook] -> memory -> null for each example guest, next to no hook
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    window: Window,
    #[command(flatten)]
    payload: Payload,
    #[command(flatten)]
    only: Only,
}

/// Native interceptor lines for source `r1`, in Flume's syntax (sluice and Flume read them).
const STATIC_TAG: &str = "a1.sources.r1.interceptors = s\n\
     a1.sources.r1.interceptors.s.type = static\n\
     a1.sources.r1.interceptors.s.key = guest-version\n\
     a1.sources.r1.interceptors.s.value = v1\n";
/// pii-mask's two masks: card numbers (four groups of four digits, not glued to digits) and
/// e-mail local parts.
const SEARCH_REPLACE_PII: &str = "a1.sources.r1.interceptors = card mail\n\
     a1.sources.r1.interceptors.card.type = search_replace\n\
     a1.sources.r1.interceptors.card.searchPattern = (^|[^0-9])[0-9]{4} [0-9]{4} [0-9]{4} [0-9]{4}($|[^0-9])\n\
     a1.sources.r1.interceptors.card.replaceString = $1**** **** **** ****$2\n\
     a1.sources.r1.interceptors.mail.type = search_replace\n\
     a1.sources.r1.interceptors.mail.searchPattern = [A-Za-z0-9._+-]+@([A-Za-z0-9._+-])\n\
     a1.sources.r1.interceptors.mail.replaceString = ***@$1\n";
/// What the template interceptors do: drop bodies starting with `DEBUG`.
const REGEX_FILTER_DEBUG: &str = "a1.sources.r1.interceptors = f\n\
     a1.sources.r1.interceptors.f.type = regex_filter\n\
     a1.sources.r1.interceptors.f.regex = ^DEBUG\n\
     a1.sources.r1.interceptors.f.excludeEvents = true\n";

/// Where the hook goes.
enum Hook<'a> {
    None,
    /// The guest, and `body-prefix` if set.
    Interceptor(&'a Path, Option<usize>),
    Router(&'a Path),
    SinkSelector(&'a Path),
    /// Built-in interceptors: their lines for source `r1`.
    Native(&'static str),
}

fn config(args: &Args, hook: &Hook<'_>) -> String {
    let (body, batch) = (args.payload.body, args.payload.batch);
    let mut s = format!(
        "a1.sources = r1\n\
         a1.channels = c1\n\
         a1.sinks = k1\n\
         a1.sources.r1.type = stress\n\
         a1.sources.r1.size = {body}\n\
         a1.sources.r1.batchSize = {batch}\n\
         a1.sources.r1.channels = c1\n\
         a1.channels.c1.type = memory\n\
         a1.channels.c1.capacity = 100000\n\
         a1.channels.c1.transactionCapacity = {batch}\n\
         a1.sinks.k1.type = null\n\
         a1.sinks.k1.batchSize = {batch}\n\
         a1.sinks.k1.channel = c1\n"
    );
    match hook {
        Hook::None => {}
        Hook::Native(lines) => s.push_str(lines),
        Hook::Interceptor(p, prefix) => {
            s.push_str(&format!(
                "a1.sources.r1.interceptors = w\n\
                 a1.sources.r1.interceptors.w.type = wasm\n\
                 a1.sources.r1.interceptors.w.path = {}\n",
                p.display()
            ));
            if let Some(n) = prefix {
                s.push_str(&format!("a1.sources.r1.interceptors.w.body-prefix = {n}\n"));
            }
        }
        Hook::Router(p) => s.push_str(&format!(
            "a1.sources.r1.selector.type = wasm\n\
             a1.sources.r1.selector.path = {}\n\
             a1.sources.r1.selector.config.default = 0\n",
            p.display()
        )),
        Hook::SinkSelector(p) => s.push_str(&format!(
            "a1.sinkgroups = g1\n\
             a1.sinkgroups.g1.sinks = k1\n\
             a1.sinkgroups.g1.processor.type = wasm\n\
             a1.sinkgroups.g1.processor.path = {}\n\
             a1.sinkgroups.g1.processor.config.sinks = 1\n",
            p.display()
        )),
    }
    s
}

struct Sample {
    events_per_s: f64,
    instantiate_ms: Option<f64>,
}

fn run(dir: &Path, name: &str, args: &Args, hook: &Hook<'_>, metric: &str) -> Result<Sample> {
    let run_dir = dir.join(name);
    std::fs::create_dir_all(&run_dir)?;
    let sluice = Sluice::start(&run_dir, "bench", &config(args, hook), &[])?;
    let taken = || sluice.counter("CHANNEL.c1", "EventTakeSuccessCount");
    let sample = measure(
        name,
        &[sluice.pid()],
        &args.window,
        args.payload.body,
        &taken,
    )?;
    let instantiate_ms = if matches!(hook, Hook::None | Hook::Native(_)) {
        None
    } else {
        let faults = sluice.counter(metric, "FaultCount")?;
        if faults > 0 {
            bail!("{name}: {faults} guest faults; log:\n{}", sluice.log_text());
        }
        Some(sluice.counter(metric, "InstantiateMicros")? as f64 / 1000.0)
    };
    Ok(Sample {
        events_per_s: sample.events_per_s,
        instantiate_ms,
    })
}

/// One reload: observed ms, the agent's swap ms, its compile+instantiate+init ms, and (when it
/// served baseline code first) ms until Cranelift's code was ready.
type Reload = (f64, u64, u64, Option<u64>);

/// Starts the agent on `v1`, then renames each of `next` over the guest file in turn. For each:
/// the latency observed from outside (includes the metrics polling), the agent's own
/// file-change to swap time (`ReloadSwapMillis`) and its compile+instantiate+init time
/// (`ReloadMillis`).
fn swap_latency(
    dir: &Path,
    args: &Args,
    v1: &Path,
    next: &[&Path],
    slug: &str,
    env: &[(&str, &str)],
) -> Result<Vec<Reload>> {
    let run_dir = dir.join(slug);
    std::fs::create_dir_all(&run_dir)?;
    let guest = run_dir.join("guest.wasm");
    std::fs::copy(v1, &guest)?;
    let sluice = Sluice::start_env(
        &run_dir,
        "bench",
        &config(args, &Hook::Interceptor(&guest, None)),
        env,
    )?;
    std::thread::sleep(args.window.warmup);
    let mut out = Vec::new();
    for (n, version) in next.iter().enumerate() {
        let tmp = run_dir.join("guest.wasm.tmp");
        std::fs::copy(version, &tmp)?;
        let baseline_before = sluice.counter("WASM.r1.w", "BaselineCompileCount")?;
        let swaps_before = sluice.counter("WASM.r1.w", "OptimizedSwapCount")?;
        let t0 = Instant::now();
        std::fs::rename(&tmp, &guest)?;
        wait_for("the reload", Duration::from_secs(60), || {
            (sluice.counter("WASM.r1.w", "ReloadCount").ok()? > n as u64).then_some(())
        })?;
        let observed = t0.elapsed().as_secs_f64() * 1000.0;
        // The swap happens at the next batch after the reload is ready (a batch takes well
        // under a millisecond here).
        std::thread::sleep(Duration::from_millis(200));
        let swap = sluice.counter("WASM.r1.w", "ReloadSwapMillis")?;
        let compile_init = sluice.counter("WASM.r1.w", "ReloadMillis")?;
        std::thread::sleep(Duration::from_secs(1));
        // Baseline (Winch) code was served: Cranelift's swapped in behind it.
        let optimized = if sluice.counter("WASM.r1.w", "BaselineCompileCount")? > baseline_before {
            wait_for("Cranelift's code", Duration::from_secs(60), || {
                (sluice.counter("WASM.r1.w", "OptimizedSwapCount").ok()? > swaps_before)
                    .then_some(())
            })?;
            Some(sluice.counter("WASM.r1.w", "OptimizeMillis")?)
        } else {
            None
        };
        out.push((observed, swap, compile_init, optimized));
    }
    Ok(out)
}

/// Flume's rows: events/s per interceptor.
fn print_flume(flume: &[(&str, f64)]) {
    println!("\nApache Flume {FLUME_VERSION}, same source, memory channel, null sink:");
    for (name, rate) in flume {
        println!("  {name:<24}{rate:>16.0}");
    }
}

fn main() -> std::process::ExitCode {
    let args: Args = harness::parse_with_window(3, 8);
    harness::report("bench_wasm", bench(&args))
}

fn bench(args: &Args) -> Result<()> {
    let bin = sluice_release_bin()?;
    eprintln!("Building guests (sluice binary {}).", bin.display());
    let rust_filter = guests::rust("drop-by-level", None)?;
    let tagger_v1: PathBuf = guests::rust("tagger", Some("v1"))?;
    let tagger_v2: PathBuf = guests::rust("tagger", Some("v2"))?;
    // Versions no cache has seen (their tags differ every run): reloads that really compile.
    // The second differs from the first only in its tag's text (same length), like an edit of
    // a constant: Cranelift's function cache, filled by the first, serves most of it.
    let tagger_cold: PathBuf =
        guests::rust("tagger", Some(&format!("a{:08}", std::process::id())))?;
    let tagger_edit: PathBuf =
        guests::rust("tagger", Some(&format!("b{:08}", std::process::id())))?;
    // The same two kinds of cold version again, for the run with the baseline tier.
    let tagger_cold2: PathBuf =
        guests::rust("tagger", Some(&format!("c{:08}", std::process::id())))?;
    let tagger_edit2: PathBuf =
        guests::rust("tagger", Some(&format!("d{:08}", std::process::id())))?;
    let c_filter = guests::c_drop_by_level()?;
    let c_mask = guests::c_pii_mask()?;
    let py_router = guests::python_tenant_router()?;
    let js_selector = guests::js_sticky_selector()?;
    let dir = tempfile::tempdir()?;
    let py_filter = guests::template(dir.path(), "python", "interceptor")?;
    let js_filter = guests::template(dir.path(), "js", "interceptor")?;

    let cases: Vec<(&str, Hook<'_>, &str)> = vec![
        ("no hook (baseline)", Hook::None, ""),
        (
            "Rust drop-by-level",
            Hook::Interceptor(&rust_filter, None),
            "WASM.r1.w",
        ),
        (
            "  same, body-prefix 16",
            Hook::Interceptor(&rust_filter, Some(16)),
            "WASM.r1.w",
        ),
        (
            "C drop-by-level",
            Hook::Interceptor(&c_filter, None),
            "WASM.r1.w",
        ),
        (
            "  same, body-prefix 16",
            Hook::Interceptor(&c_filter, Some(16)),
            "WASM.r1.w",
        ),
        ("C pii-mask", Hook::Interceptor(&c_mask, None), "WASM.r1.w"),
        (
            "  native search_replace x2",
            Hook::Native(SEARCH_REPLACE_PII),
            "",
        ),
        (
            "Rust tagger (set-headers)",
            Hook::Interceptor(&tagger_v1, None),
            "WASM.r1.w",
        ),
        (
            "  same, body-prefix 0",
            Hook::Interceptor(&tagger_v1, Some(0)),
            "WASM.r1.w",
        ),
        ("  native static", Hook::Native(STATIC_TAG), ""),
        (
            "Python drop-prefix",
            Hook::Interceptor(&py_filter, None),
            "WASM.r1.w",
        ),
        (
            "JS drop-prefix",
            Hook::Interceptor(&js_filter, None),
            "WASM.r1.w",
        ),
        (
            "  native regex_filter",
            Hook::Native(REGEX_FILTER_DEBUG),
            "",
        ),
        (
            "Python tenant router",
            Hook::Router(&py_router),
            "WASM.r1.selector",
        ),
        (
            "JS sticky selector",
            Hook::SinkSelector(&js_selector),
            "WASM.g1.processor",
        ),
    ];
    let mut results = Vec::new();
    for (i, (name, hook, metric)) in cases.iter().enumerate() {
        if !args.only.runs(Side::Sluice) {
            break;
        }
        let slug: String = name.chars().filter(char::is_ascii_alphanumeric).collect();
        let slug = format!("{i}-{slug}");
        results.push((name, run(dir.path(), &slug, args, hook, metric)?));
    }
    // Apache Flume on the same source, with no interceptor and the native rows' interceptors.
    let flume_cases = [
        ("no interceptor", ""),
        ("static", STATIC_TAG),
        ("regex_filter", REGEX_FILTER_DEBUG),
    ];
    let mut flume = Vec::new();
    if args.only.runs(Side::Flume) {
        for (i, (name, lines)) in flume_cases.iter().enumerate() {
            let run_dir = dir.path().join(format!("flume-{i}"));
            std::fs::create_dir_all(&run_dir)?;
            let conf = harness::memory_null_config(
                &harness::stress_source(args.payload.body),
                args.payload.batch,
                lines,
            );
            let sample = measure_flume_takes(&run_dir, &conf, &args.window, args.payload.body)?;
            flume.push((*name, sample.events_per_s));
        }
    }
    if !args.only.runs(Side::Sluice) {
        print_flume(&flume);
        return Ok(());
    }
    // Cranelift only (as before tiered compilation), then with Winch's baseline code first.
    let reloads_cranelift = swap_latency(
        dir.path(),
        args,
        &tagger_v1,
        &[&tagger_v2, &tagger_cold, &tagger_edit],
        "reload-cranelift",
        &[("SLUICE_WASM_BASELINE", "off")],
    )?;
    let reloads_tiered = swap_latency(
        dir.path(),
        args,
        &tagger_v1,
        &[&tagger_v2, &tagger_cold2, &tagger_edit2],
        "reload-tiered",
        &[],
    )?;

    println!(
        "bench_wasm: stress -> [hook] -> memory -> null, {}-byte bodies, batch {}, warm-up {} s, \
         window {} s",
        args.payload.body,
        args.payload.batch,
        args.window.warmup.as_secs(),
        args.window.window.as_secs(),
    );
    println!("  sluice: {}", bin.display());
    print_machine();
    println!(
        "{:<24}{:>16}{:>12}{:>22}",
        "pipeline", "events/s", "vs none", "instantiate+init ms"
    );
    let base = results.first().map_or(0.0, |r| r.1.events_per_s);
    for (name, s) in &results {
        let ratio = if base > 0.0 {
            s.events_per_s / base
        } else {
            0.0
        };
        let inst = s
            .instantiate_ms
            .map_or_else(|| "-".into(), |v| format!("{v:.1}"));
        println!(
            "{name:<24}{:>16.0}{:>11.2}x{inst:>22}",
            s.events_per_s, ratio
        );
    }
    // Each transform next to the native interceptor doing its work, and the scripting-language
    // guests next to what Flume runs for that.
    let rate = |name: &str| {
        results
            .iter()
            .find(|(n, _)| n.trim() == name)
            .map_or(0.0, |(_, s)| s.events_per_s)
    };
    let flume_rate = |name: &str| flume.iter().find(|(n, _)| *n == name).map(|(_, r)| *r);
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    println!("\nside by side (same run):");
    for (guest, native) in [
        ("Rust tagger (set-headers)", "native static"),
        ("same, body-prefix 0", "native static"),
        ("C pii-mask", "native search_replace x2"),
        ("Python drop-prefix", "native regex_filter"),
        ("JS drop-prefix", "native regex_filter"),
    ] {
        println!(
            "  {guest:<28} / {native:<26} {:>6.2}x",
            ratio(rate(guest), rate(native))
        );
    }
    if !flume.is_empty() {
        print_flume(&flume);
        for (sluice_row, flume_row) in [
            ("no hook (baseline)", "no interceptor"),
            ("native static", "static"),
            ("Rust tagger (set-headers)", "static"),
            ("native regex_filter", "regex_filter"),
            ("Python drop-prefix", "regex_filter"),
            ("JS drop-prefix", "regex_filter"),
        ] {
            if let Some(f) = flume_rate(flume_row) {
                println!(
                    "  sluice {sluice_row:<26} / Flume {flume_row:<16} {:>6.2}x",
                    ratio(rate(sluice_row), f)
                );
            }
        }
    }
    let kinds = [
        "cached",
        "cold compile",
        "cold compile of an edited constant",
    ];
    for (tier, reloads) in [
        ("Cranelift only", reloads_cranelift),
        ("tiered", reloads_tiered),
    ] {
        for (what, (observed, swap, compile, optimized)) in kinds.into_iter().zip(reloads) {
            let then = optimized.map_or_else(String::new, |ms| {
                format!("; baseline code, Cranelift's swapped in {ms} ms later")
            });
            println!(
                "hot reload ({tier}, Rust tagger, {what}): file change -> swap {swap} ms in the \
                 agent (compile/instantiate/init {compile} ms + wait for the next batch{then}); \
                 {observed:.0} ms observed through /metrics polling"
            );
        }
    }
    Ok(())
}
