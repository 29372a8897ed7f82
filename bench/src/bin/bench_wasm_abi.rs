//! The WIT ABI choice, measured: the same drop-by-level decision behind sluice's flat batch
//! (`wit/pipeline.wit`, through the agent's own interceptor code: encode, call, apply) and
//! behind a naive `list<event>` world (`examples/guests/rust/abi-naive/wit`), called in
//! process on the same events, one after the other in one run.
//!
//! ```text
//! cargo run --release -p sluice-bench --bin bench_wasm_abi [-- --secs S --batch N --body BYTES]
//! ```
//!
//! Rows: a host-only floor (clone and drop the batch), the flat ABI (whole bodies, then
//! `body-prefix 16`), the naive ABI returning verdicts (`filter`: per-event records in, one byte
//! per event out) and returning the kept events whole (`filter-events`); each with 0 and 2
//! headers per event. Bodies are 256 bytes of text without a level: every event is kept.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use bytes::Bytes;
use clap::Parser;
use sluice::event::{Event, Headers};
use sluice::pipeline::Interceptor;
use sluice::wasm::interceptor::WasmInterceptor;
use sluice::wasm::{OnError, WasmConfig, WasmCounters};
use sluice_bench::harness::{self, Payload, positive_secs, print_machine};
use sluice_integration::guests;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

mod naive {
    wasmtime::component::bindgen!({
        path: "../examples/guests/rust/abi-naive/wit",
        world: "naive",
    });
}

use naive::sluice::abi_naive::types::Event as NaiveEvent;

/// The flat batch ABI next to a naive `list<event>` one, in process, on the same guest logic
#[derive(Parser)]
struct Args {
    /// Measured seconds per row (after a 300 ms warm-up)
    #[arg(long, value_name = "SECS", default_value = "3", value_parser = positive_secs)]
    secs: Duration,
    #[command(flatten)]
    payload: Payload,
}

/// Runs `batch` over and over for `secs` (at most 10 M batches); returns events/s.
fn rate(secs: Duration, n: usize, mut batch: impl FnMut() -> Result<usize>) -> Result<f64> {
    let warm = Instant::now() + Duration::from_millis(300);
    while Instant::now() < warm {
        batch()?;
    }
    let t0 = Instant::now();
    let mut events = 0u64;
    for _ in 0..10_000_000u64 {
        let kept = batch()?;
        if kept != n {
            bail!("{kept} of {n} events kept; the guests should keep all");
        }
        events += n as u64;
        if t0.elapsed() >= secs {
            break;
        }
    }
    Ok(events as f64 / t0.elapsed().as_secs_f64())
}

fn events(args: &Args, headers: usize) -> Vec<Event> {
    let body: Vec<u8> = (0..args.payload.body)
        .map(|i| b'a' + (i % 26) as u8)
        .collect();
    let body = Bytes::from(body);
    let mut h = Headers::new();
    for (k, v) in [("host", "web-17.example.org"), ("service", "checkout")]
        .into_iter()
        .take(headers)
    {
        h.insert(k, v);
    }
    (0..args.payload.batch)
        .map(|_| Event::with_headers(h.clone(), body.clone()))
        .collect()
}

fn flat(path: &Path, prefix: Option<usize>) -> Result<WasmInterceptor> {
    let config = WasmConfig {
        path: path.to_path_buf(),
        config: Vec::new(),
        memory: 64 << 20,
        timeout: Duration::from_secs(1),
        on_error: OnError::Fail,
        reload: false,
        grant_fs: None,
        grant_clock: false,
        suspend_after: 0,
        body_prefix: prefix,
        instances: 1,
    };
    WasmInterceptor::new("bench", &config, WasmCounters::new()).map_err(|e| anyhow::anyhow!("{e}"))
}

struct State {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A host for the naive world, as `wasmtime::component::bindgen!` makes it.
struct NaiveHost {
    store: Store<State>,
    guest: naive::Naive,
}

impl NaiveHost {
    fn new(path: &Path) -> Result<Self> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        let component = Component::from_file(&engine, path)?;
        let mut store = Store::new(
            &engine,
            State {
                wasi: WasiCtx::builder().build(),
                table: ResourceTable::new(),
            },
        );
        let guest = naive::Naive::instantiate(&mut store, &component, &linker)?;
        Ok(Self { store, guest })
    }

    fn records(events: &[Event]) -> Vec<NaiveEvent> {
        events
            .iter()
            .map(|e| NaiveEvent {
                headers: e
                    .headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                body: e.body.to_vec(),
            })
            .collect()
    }

    /// Verdicts back: the host keeps its own events.
    fn filter(&mut self, events: Vec<Event>) -> Result<Vec<Event>> {
        let codes = self
            .guest
            .call_filter(&mut self.store, &Self::records(&events))?;
        if codes.len() != events.len() {
            bail!("{} verdicts for {} events", codes.len(), events.len());
        }
        Ok(events
            .into_iter()
            .zip(codes)
            .filter(|(_, c)| *c == 0)
            .map(|(e, _)| e)
            .collect())
    }

    /// The kept events back, whole: rebuilt as host events.
    fn filter_events(&mut self, events: Vec<Event>) -> Result<Vec<Event>> {
        let kept = self
            .guest
            .call_filter_events(&mut self.store, &Self::records(&events))?;
        Ok(kept
            .into_iter()
            .map(|r| Event::with_headers(r.headers.into_iter().collect(), Bytes::from(r.body)))
            .collect())
    }
}

fn main() -> std::process::ExitCode {
    harness::report("bench_wasm_abi", bench(&Args::parse()))
}

fn bench(args: &Args) -> Result<()> {
    eprintln!("Building guests.");
    let flat_guest = guests::rust("drop-by-level", None)?;
    let naive_guest = guests::rust("abi-naive", None)?;
    let whole = Arc::new(flat(&flat_guest, None)?);
    let prefix = Arc::new(flat(&flat_guest, Some(16))?);
    let mut naive = NaiveHost::new(&naive_guest)?;
    let n = args.payload.batch;
    println!(
        "bench_wasm_abi: drop-by-level, {}-byte bodies, batch {n}, {} s per row, in process",
        args.payload.body,
        args.secs.as_secs()
    );
    print_machine();
    println!("{:<44}{:>14}{:>14}", "ABI", "0 headers/s", "2 headers/s");
    type Row<'a> = (
        &'a str,
        Box<dyn FnMut(Vec<Event>) -> Result<Vec<Event>> + 'a>,
    );
    let rows: Vec<Row<'_>> = vec![
        (
            "host only (clone + drop the batch)",
            Box::new(|e: Vec<Event>| Ok(e)),
        ),
        (
            "flat batch, whole bodies (sluice)",
            Box::new(|e: Vec<Event>| whole.intercept(e).map_err(|e| anyhow::anyhow!("{e}"))),
        ),
        (
            "flat batch, body-prefix 16 (sluice)",
            Box::new(|e: Vec<Event>| prefix.intercept(e).map_err(|e| anyhow::anyhow!("{e}"))),
        ),
    ];
    let mut results: Vec<(String, Vec<f64>)> = Vec::new();
    for (name, mut f) in rows {
        let mut r = Vec::new();
        for headers in [0, 2] {
            let batch = events(args, headers);
            r.push(rate(args.secs, n, || Ok(f(batch.clone())?.len()))?);
        }
        results.push((name.to_string(), r));
    }
    for (name, which) in [
        ("list<event> in, verdicts out (naive)", 0),
        ("list<event> in, kept events out (naive)", 1),
    ] {
        let mut r = Vec::new();
        for headers in [0, 2] {
            let batch = events(args, headers);
            r.push(rate(args.secs, n, || {
                let out = if which == 0 {
                    naive.filter(batch.clone())?
                } else {
                    naive.filter_events(batch.clone())?
                };
                Ok(out.len())
            })?);
        }
        results.push((name.to_string(), r));
    }
    for (name, r) in &results {
        println!("{name:<44}{:>14.0}{:>14.0}", r[0], r[1]);
    }
    let flat_whole = &results[1].1;
    for (name, r) in &results[3..] {
        println!(
            "flat (whole bodies) / {name}: {:.2}x with 0 headers, {:.2}x with 2",
            flat_whole[0] / r[0],
            flat_whole[1] / r[1]
        );
    }
    Ok(())
}
