//! Per-component counters under Flume's names, and the registry the HTTP endpoint reads.
//!
//! Counters are plain atomics owned by the component (one `Arc` each), so the hot path pays an
//! uncontended relaxed add. The registry only holds the `Arc`s and snapshots them on a scrape.

pub mod http;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

/// Flume's component types, as they prefix JSON keys (`SOURCE.r1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ComponentType {
    Source,
    Channel,
    Sink,
    SinkGroup,
    Interceptor,
    Tenant,
    /// A WebAssembly guest (`WASM.r1.i1`, `WASM.r1.selector`, `WASM.g1.processor`).
    Wasm,
    /// The live taps (`TAP.tap`, with `--tap`).
    Tap,
}

impl ComponentType {
    pub fn flume_name(self) -> &'static str {
        match self {
            Self::Source => "SOURCE",
            Self::Channel => "CHANNEL",
            Self::Sink => "SINK",
            Self::SinkGroup => "SINKGROUP",
            Self::Interceptor => "INTERCEPTOR",
            Self::Tenant => "TENANT",
            Self::Wasm => "WASM",
            Self::Tap => "TAP",
        }
    }

    fn prom_name(self) -> &'static str {
        match self {
            Self::Source => "source",
            Self::Channel => "channel",
            Self::Sink => "sink",
            Self::SinkGroup => "sinkgroup",
            Self::Interceptor => "interceptor",
            Self::Tenant => "tenant",
            Self::Wasm => "wasm",
            Self::Tap => "tap",
        }
    }
}

/// A value in a snapshot.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    Counter(u64),
    Gauge(u64),
    Ratio(f64),
}

/// Something the registry can read.
pub trait MetricSet: Send + Sync + 'static {
    fn snapshot(&self) -> Vec<(&'static str, Value)>;

    /// Latency histograms, `(Flume-style name, snapshot)`; most sets have none.
    fn histograms(&self) -> Vec<(&'static str, HistogramSnapshot)> {
        Vec::new()
    }
}

/// Upper bounds (seconds) of [`LatencyHistogram`]'s buckets; a last bucket takes the rest.
pub const LATENCY_BOUNDS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// A latency histogram with fixed buckets ([`LATENCY_BOUNDS`]): one relaxed add per bucket
/// hit and one for the sum, no lock.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Per bucket (not cumulative), the last one past the largest bound.
    counts: [AtomicU64; LATENCY_BOUNDS.len() + 1],
    sum_micros: AtomicU64,
}

impl LatencyHistogram {
    pub fn record(&self, d: std::time::Duration) {
        let secs = d.as_secs_f64();
        let i = LATENCY_BOUNDS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BOUNDS.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            counts: self
                .counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
            sum_secs: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// A read of a [`LatencyHistogram`].
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSnapshot {
    /// Per bucket of [`LATENCY_BOUNDS`] plus the overflow bucket, not cumulative.
    pub counts: Vec<u64>,
    pub sum_secs: f64,
}

impl HistogramSnapshot {
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The upper bound (seconds) of the bucket holding the `q` quantile (`f64::INFINITY` for
    /// the overflow bucket), `None` when empty: an upper estimate, as Prometheus's
    /// `histogram_quantile` would interpolate inside that bucket.
    pub fn quantile_bound(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(LATENCY_BOUNDS.get(i).copied().unwrap_or(f64::INFINITY));
            }
        }
        Some(f64::INFINITY)
    }
}

pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Most Flume counters only grow; the few that go down are gauges.
fn counter_or_gauge(name: &str, v: u64) -> Value {
    match name {
        "OpenConnectionCount" | "ChannelBlockedSince" => Value::Gauge(v),
        _ => Value::Counter(v),
    }
}

macro_rules! counter_set {
    ($(#[$doc:meta])* $name:ident { $($field:ident => $flume:literal),* $(,)? }
     $(histograms { $($hfield:ident => $hname:literal),* $(,)? })?) => {
        $(#[$doc])*
        #[derive(Debug, Default)]
        pub struct $name {
            $(pub $field: AtomicU64,)*
            $($(pub $hfield: LatencyHistogram,)*)?
            pub start_time: AtomicU64,
            pub stop_time: AtomicU64,
        }

        impl $name {
            pub fn new() -> Arc<Self> {
                let s = Self::default();
                s.start_time.store(now_millis(), Ordering::Relaxed);
                Arc::new(s)
            }

            pub fn stopped(&self) {
                self.stop_time.store(now_millis(), Ordering::Relaxed);
            }
        }

        impl MetricSet for $name {
            fn snapshot(&self) -> Vec<(&'static str, Value)> {
                vec![
                    $(($flume, counter_or_gauge($flume, self.$field.load(Ordering::Relaxed))),)*
                    ("StartTime", Value::Gauge(self.start_time.load(Ordering::Relaxed))),
                    ("StopTime", Value::Gauge(self.stop_time.load(Ordering::Relaxed))),
                ]
            }

            fn histograms(&self) -> Vec<(&'static str, HistogramSnapshot)> {
                vec![$($(($hname, self.$hfield.snapshot()),)*)?]
            }
        }
    };
}

counter_set!(
    /// Flume's `SourceCounter`, plus sluice's optional-channel failure count.
    SourceCounters {
        event_received => "EventReceivedCount",
        event_accepted => "EventAcceptedCount",
        append_received => "AppendReceivedCount",
        append_accepted => "AppendAcceptedCount",
        append_batch_received => "AppendBatchReceivedCount",
        append_batch_accepted => "AppendBatchAcceptedCount",
        open_connection => "OpenConnectionCount",
        channel_write_fail => "ChannelWriteFail",
        optional_channel_write_fail => "OptionalChannelWriteFail",
        event_read_fail => "EventReadFail",
        generic_processing_fail => "GenericProcessingFail",
        interceptor_dropped => "InterceptorDroppedCount",
        // Events committed to the source's dead-letter channel (`deadLetter.channel`).
        dead_lettered => "EventDeadLetteredCount",
        line_too_long => "LineTooLongCount",
        // Backpressure: microseconds the source's batches were refused or waited because a
        // required channel was full (overlapping waits of its connections counted once).
        channel_blocked_micros => "ChannelBlockedMicros",
        // When (ms since the epoch) the source's current wait on a full channel began; 0 when
        // it is not blocked.
        channel_blocked_since => "ChannelBlockedSince",
    }
);

counter_set!(
    /// Flume's `SinkCounter`.
    SinkCounters {
        connection_created => "ConnectionCreatedCount",
        connection_closed => "ConnectionClosedCount",
        connection_failed => "ConnectionFailedCount",
        batch_empty => "BatchEmptyCount",
        batch_underflow => "BatchUnderflowCount",
        batch_complete => "BatchCompleteCount",
        event_drain_attempt => "EventDrainAttemptCount",
        event_drain_success => "EventDrainSuccessCount",
        channel_read_fail => "ChannelReadFail",
        event_write_fail => "EventWriteFail",
    }
    histograms {
        // Seconds from handing a batch to the sink until the destination acknowledged it and
        // the take committed (failed deliveries not included).
        delivery_latency => "DeliveryLatency",
    }
);

counter_set!(
    /// The extra counters of Flume's `KafkaSourceCounter` (timers in ms), plus sluice's.
    KafkaSourceCounters {
        event_get_timer => "KafkaEventGetTimer",
        commit_timer => "KafkaCommitTimer",
        empty => "KafkaEmptyCount",
        commit_fail => "KafkaCommitFailCount",
        rebalance => "KafkaRebalanceCount",
        dropped_on_revoke => "KafkaRevokedEventDropCount",
        header_decode_fail => "KafkaHeaderDecodeFailCount",
        record_decode_fail => "KafkaRecordDecodeFailCount",
        consume_error => "KafkaConsumeErrorCount",
        commit_wait => "KafkaCommitWaitCount",
    }
);

counter_set!(
    /// The extra counters of Flume's `KafkaSinkCounter` (timer in ms), plus sluice's.
    KafkaSinkCounters {
        event_send_timer => "KafkaEventSendTimer",
        rollback => "RollbackCount",
        delivery_fail => "KafkaDeliveryFailCount",
        dropped => "KafkaEventDropCount",
    }
);

counter_set!(
    /// The http sink's own counters.
    HttpSinkCounters {
        dropped => "HttpEventDropCount",
        empty => "HttpEmptyEventCount",
    }
);

/// Two metric sets shown as one component (a Flume counter extended by a component's own).
pub struct Combined(pub Arc<dyn MetricSet>, pub Arc<dyn MetricSet>);

impl MetricSet for Combined {
    fn histograms(&self) -> Vec<(&'static str, HistogramSnapshot)> {
        let mut h = self.0.histograms();
        h.extend(self.1.histograms());
        h
    }

    fn snapshot(&self) -> Vec<(&'static str, Value)> {
        let mut v = self.0.snapshot();
        let (start, stop) = ("StartTime", "StopTime");
        v.extend(
            self.1
                .snapshot()
                .into_iter()
                .filter(|(k, _)| *k != start && *k != stop),
        );
        v
    }
}

/// Flume's `ChannelCounter`; size and capacity are read live from the channel.
#[derive(Debug, Default)]
pub struct ChannelCounters {
    pub event_put_attempt: AtomicU64,
    pub event_put_success: AtomicU64,
    pub event_take_attempt: AtomicU64,
    pub event_take_success: AtomicU64,
    pub channel_size: AtomicU64,
    pub channel_capacity: AtomicU64,
    pub start_time: AtomicU64,
    pub stop_time: AtomicU64,
}

impl ChannelCounters {
    pub fn new(capacity: u64) -> Arc<Self> {
        let s = Self::default();
        s.start_time.store(now_millis(), Ordering::Relaxed);
        s.channel_capacity.store(capacity, Ordering::Relaxed);
        Arc::new(s)
    }

    pub fn stopped(&self) {
        self.stop_time.store(now_millis(), Ordering::Relaxed);
    }
}

impl MetricSet for ChannelCounters {
    fn snapshot(&self) -> Vec<(&'static str, Value)> {
        let size = self.channel_size.load(Ordering::Relaxed);
        let cap = self.channel_capacity.load(Ordering::Relaxed);
        let fill = if cap == 0 {
            0.0
        } else {
            size as f64 * 100.0 / cap as f64
        };
        vec![
            ("ChannelSize", Value::Gauge(size)),
            ("ChannelCapacity", Value::Gauge(cap)),
            ("ChannelFillPercentage", Value::Ratio(fill)),
            (
                "EventPutAttemptCount",
                Value::Counter(self.event_put_attempt.load(Ordering::Relaxed)),
            ),
            (
                "EventPutSuccessCount",
                Value::Counter(self.event_put_success.load(Ordering::Relaxed)),
            ),
            (
                "EventTakeAttemptCount",
                Value::Counter(self.event_take_attempt.load(Ordering::Relaxed)),
            ),
            (
                "EventTakeSuccessCount",
                Value::Counter(self.event_take_success.load(Ordering::Relaxed)),
            ),
            (
                "StartTime",
                Value::Gauge(self.start_time.load(Ordering::Relaxed)),
            ),
            (
                "StopTime",
                Value::Gauge(self.stop_time.load(Ordering::Relaxed)),
            ),
        ]
    }
}

/// One component's values: its type, name, and `(Flume counter name, value)` pairs.
pub type ComponentSnapshot = (ComponentType, String, Vec<(&'static str, Value)>);

/// All registered components of the running agent.
#[derive(Default)]
pub struct Registry {
    components: Mutex<BTreeMap<(ComponentType, String), Arc<dyn MetricSet>>>,
}

impl Registry {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Registers (or replaces, after a reload) a component's metrics.
    pub fn register(&self, kind: ComponentType, name: &str, set: Arc<dyn MetricSet>) {
        self.components.lock().insert((kind, name.to_string()), set);
    }

    pub fn unregister(&self, kind: ComponentType, name: &str) {
        self.components.lock().remove(&(kind, name.to_string()));
    }

    /// Every registered component's metrics.
    pub fn entries(&self) -> Vec<(ComponentType, String, Arc<dyn MetricSet>)> {
        self.components
            .lock()
            .iter()
            .map(|((t, n), s)| (*t, n.clone(), s.clone()))
            .collect()
    }

    pub fn snapshot(&self) -> Vec<ComponentSnapshot> {
        let comps: Vec<_> = self
            .components
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        comps
            .into_iter()
            .map(|((t, n), s)| (t, n, s.snapshot()))
            .collect()
    }

    /// Flume's JSON: `{"CHANNEL.c1": {"Type": "CHANNEL", "ChannelSize": "0", ...}}`, every
    /// value a string as Flume writes it.
    pub fn flume_json(&self) -> serde_json::Value {
        let mut root = serde_json::Map::new();
        for (t, name, set) in self.entries() {
            let mut obj = serde_json::Map::new();
            obj.insert("Type".into(), t.flume_name().into());
            for (k, v) in set.snapshot() {
                let s = match v {
                    Value::Counter(n) | Value::Gauge(n) => n.to_string(),
                    Value::Ratio(f) => format!("{f:?}"),
                };
                obj.insert(k.into(), s.into());
            }
            // A histogram as its count, its sum and the buckets of its median and 99th
            // percentile (upper bounds, ms) since the component started.
            for (k, h) in set.histograms() {
                let ms = |q: f64| match h.quantile_bound(q) {
                    None => "0".to_string(),
                    Some(b) if b.is_infinite() => "+Inf".to_string(),
                    Some(b) => format!("{:?}", b * 1000.0),
                };
                obj.insert(format!("{k}Count"), h.count().to_string().into());
                obj.insert(
                    format!("{k}SumMillis"),
                    format!("{:?}", h.sum_secs * 1000.0).into(),
                );
                obj.insert(format!("{k}P50Millis"), ms(0.5).into());
                obj.insert(format!("{k}P99Millis"), ms(0.99).into());
            }
            root.insert(format!("{}.{name}", t.flume_name()), obj.into());
        }
        root.into()
    }

    /// Prometheus text exposition, through `prometheus-client`.
    pub fn prometheus_text(self: &Arc<Self>) -> String {
        let mut reg = prometheus_client::registry::Registry::default();
        reg.register_collector(Box::new(PromCollector(self.clone())));
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &reg).is_err() {
            out.clear();
        }
        out
    }
}

struct PromCollector(Arc<Registry>);

impl std::fmt::Debug for PromCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PromCollector")
    }
}

/// `EventPutAttemptCount` → `event_put_attempt_count`.
fn snake(name: &str) -> String {
    let mut s = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                s.push('_');
            }
            s.push(c.to_ascii_lowercase());
        } else {
            s.push(c);
        }
    }
    s
}

impl prometheus_client::collector::Collector for PromCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::MetricType;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;

        // Group by metric family: (type, flume name) -> [(component, value)].
        let mut families: BTreeMap<(ComponentType, &'static str), Vec<(String, Value)>> =
            BTreeMap::new();
        let mut histograms: BTreeMap<
            (ComponentType, &'static str),
            Vec<(String, HistogramSnapshot)>,
        > = BTreeMap::new();
        for (t, name, set) in self.0.entries() {
            for (k, v) in set.snapshot() {
                families.entry((t, k)).or_default().push((name.clone(), v));
            }
            for (k, h) in set.histograms() {
                histograms
                    .entry((t, k))
                    .or_default()
                    .push((name.clone(), h));
            }
        }
        for ((t, k), members) in histograms {
            let family = format!("sluice_{}_{}_seconds", t.prom_name(), snake(k));
            let help = format!("{} {k}, seconds", t.flume_name());
            let mut me = encoder.encode_descriptor(&family, &help, None, MetricType::Histogram)?;
            for (component, h) in members {
                let buckets: Vec<(f64, u64)> = LATENCY_BOUNDS
                    .iter()
                    .copied()
                    .chain(std::iter::once(f64::MAX))
                    .zip(h.counts.iter().copied())
                    .collect();
                let labels = [("component", component.as_str())];
                me.encode_family(&labels)?
                    .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                        h.sum_secs,
                        h.count(),
                        &buckets,
                        None,
                    )?;
            }
        }
        for ((t, k), members) in families {
            let family = format!("sluice_{}_{}", t.prom_name(), snake(k));
            let kind = match members.first().map(|m| m.1) {
                Some(Value::Counter(_)) => MetricType::Counter,
                _ => MetricType::Gauge,
            };
            let help = format!("Flume {} {k}", t.flume_name());
            let mut me = encoder.encode_descriptor(&family, &help, None, kind)?;
            for (component, v) in members {
                // Per-tenant series also carry `tenant`: the tenant's own counters and its
                // guests' (`WASM.tenant.<t>.<hook>`).
                let tenant = match t {
                    ComponentType::Tenant => Some(component.as_str()),
                    // Tenant names hold no dot (checked at config load).
                    ComponentType::Wasm => component
                        .strip_prefix("tenant.")
                        .and_then(|r| r.split_once('.'))
                        .map(|(t, _)| t),
                    _ => None,
                };
                let mut labels = vec![("component", component.as_str())];
                labels.extend(tenant.map(|t| ("tenant", t)));
                let fe = me.encode_family(&labels)?;
                match v {
                    Value::Counter(n) => ConstCounter::new(n).encode(fe)?,
                    Value::Gauge(n) => ConstGauge::new(n as i64).encode(fe)?,
                    Value::Ratio(f) => ConstGauge::new(f).encode(fe)?,
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flume_json_and_prometheus() {
        let reg = Registry::new();
        let ch = ChannelCounters::new(100);
        ch.channel_size.store(25, Ordering::Relaxed);
        ch.event_put_success.store(7, Ordering::Relaxed);
        reg.register(ComponentType::Channel, "c1", ch);
        let json = reg.flume_json();
        assert_eq!(json["CHANNEL.c1"]["ChannelFillPercentage"], "25.0");
        assert_eq!(json["CHANNEL.c1"]["EventPutSuccessCount"], "7");
        assert_eq!(json["CHANNEL.c1"]["Type"], "CHANNEL");
        let text = reg.prometheus_text();
        assert!(
            text.contains("sluice_channel_event_put_success_count_total{component=\"c1\"} 7"),
            "{text}"
        );
        assert!(
            text.contains("sluice_channel_channel_size{component=\"c1\"} 25"),
            "{text}"
        );
    }

    #[test]
    fn sink_latency_histogram_in_prometheus_and_flume_json() {
        let reg = Registry::new();
        let k = SinkCounters::new();
        for ms in [0, 3, 3, 40, 70_000] {
            k.delivery_latency
                .record(std::time::Duration::from_millis(ms));
        }
        reg.register(ComponentType::Sink, "k1", k);
        let text = reg.prometheus_text();
        for line in [
            "# TYPE sluice_sink_delivery_latency_seconds histogram",
            "sluice_sink_delivery_latency_seconds_count{component=\"k1\"} 5",
            "sluice_sink_delivery_latency_seconds_bucket{le=\"0.0005\",component=\"k1\"} 1",
            "sluice_sink_delivery_latency_seconds_bucket{le=\"0.005\",component=\"k1\"} 3",
            "sluice_sink_delivery_latency_seconds_bucket{le=\"60.0\",component=\"k1\"} 4",
            "sluice_sink_delivery_latency_seconds_bucket{le=\"+Inf\",component=\"k1\"} 5",
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
        let json = reg.flume_json();
        assert_eq!(json["SINK.k1"]["DeliveryLatencyCount"], "5");
        assert_eq!(json["SINK.k1"]["DeliveryLatencyP50Millis"], "5.0");
        assert_eq!(json["SINK.k1"]["DeliveryLatencyP99Millis"], "+Inf");
        assert_eq!(json["SINK.k1"]["DeliveryLatencySumMillis"], "70046.0");
    }
}
