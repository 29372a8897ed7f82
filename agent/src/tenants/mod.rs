//! Multi-tenant routing for a shared collector.
//!
//! A source with `selector.type = tenant` hands each batch to the [`TenantRouter`]: events are
//! grouped by the tenant header (after the source's own interceptors, so a guest may set it),
//! events of an unknown tenant go to the configured default tenant or are rejected and counted,
//! and each tenant's group then passes the tenant's quota, the tenant's own interceptor chain
//! (its own WebAssembly guests and their limits) and the tenant's own selector over the
//! tenant's own channels. A tenant's interceptors only ever see that tenant's events.
//!
//! Quotas are token buckets (events/s and bytes/s, refilled continuously, holding at most
//! `burst` seconds of rate). A tenant over quota is either throttled — the batch is refused, so
//! the source backs off and the sender retries (Avro answers FAILED) — or its events are dropped
//! and counted, per `quota.policy`. Quotas are checked for every tenant of a batch before any is
//! charged, so a refused batch costs nobody tokens.
//!
//! Isolation across senders comes from the sources' threads: each Avro connection processes its
//! own batches, and a tenant's slow guest only delays the batches that carry that tenant's
//! events (bounded by the guest's `limits.timeout`). A batch that mixes tenants succeeds or
//! fails as a whole (one transaction, one reply); senders that must not share fate send one
//! tenant per batch, as a tier-1 agent per team does.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use parking_lot::Mutex;

use crate::config::{ConfigError, Props, Setting};
use crate::event::Event;
use crate::metrics::ComponentType;
use crate::pipeline::{
    BoxError, BuildContext, ChannelSelector, DeadLetters, InterceptorChain, Routed, SelectorError,
    SelectorSpec,
};
use crate::registry::{self, InterceptorConfig, Typed};

mod counters;
pub use counters::TenantCounters;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QuotaPolicy {
    Backpressure,
    Drop,
}

#[derive(Clone, Debug, PartialEq)]
pub struct QuotaConfig {
    /// `quota.events-per-second`, 0 = unlimited.
    pub events_per_second: u64,
    /// `quota.bytes-per-second` (body bytes), 0 = unlimited.
    pub bytes_per_second: u64,
    /// `quota.burst`: seconds of rate a bucket holds (default 1).
    pub burst_seconds: f64,
    /// `quota.policy`: `backpressure` (default) or `drop`.
    pub policy: QuotaPolicy,
}

#[derive(Clone, Debug)]
pub struct TenantConfig {
    pub name: String,
    /// `a1.tenants.<t>.channels`: the tenant's channels (all in the routing source's list).
    pub channels: Vec<String>,
    pub interceptors: Vec<InterceptorConfig>,
    /// `a1.tenants.<t>.selector.*` over the tenant's channels (default replicating).
    pub selector: Typed<dyn SelectorSpec>,
    pub quota: QuotaConfig,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnknownTenant {
    Reject,
    Default(String),
}

/// `a1.tenants = A B C` and `a1.tenants.*`.
#[derive(Clone, Debug)]
pub struct TenantsConfig {
    /// `a1.tenants.header` (default `tenant`).
    pub header: String,
    /// `a1.tenants.unknown`: `reject` (default) or a tenant name.
    pub unknown: UnknownTenant,
    pub tenants: Vec<TenantConfig>,
    /// Raw keys, for change detection on reload.
    pub raw: BTreeMap<String, String>,
    /// The keys set to a non-default value (under `tenants.`), for `sluice check`.
    pub settings: Vec<Setting>,
}

impl TenantsConfig {
    /// `p` holds the `tenants.` keys; `names` the `a1.tenants` list.
    pub fn from_props(p: &Props, names: &[String]) -> Result<Self, ConfigError> {
        let header = p.string("header", "tenant");
        let unknown = match p.get("unknown") {
            None | Some("") | Some("reject") => UnknownTenant::Reject,
            Some(t) if names.iter().any(|n| n == t) => UnknownTenant::Default(t.to_string()),
            Some(t) => {
                return Err(p.error(
                    "unknown",
                    format!("`{t}` is neither `reject` nor a tenant listed in tenants"),
                ));
            }
        };
        let mut tenants = Vec::new();
        for name in names {
            let tp = p.sub(&format!("{name}."));
            let channels = tp.list("channels");
            if channels.is_empty() {
                return Err(tp.error("channels", "a tenant needs at least one channel"));
            }
            let mut interceptors = Vec::new();
            for iname in tp.list("interceptors") {
                let ip = tp.sub(&format!("interceptors.{iname}."));
                interceptors.push(InterceptorConfig {
                    name: iname,
                    interceptor: registry::interceptor(&ip)?,
                });
            }
            let sp = tp.sub("selector.");
            if sp
                .get("type")
                .is_some_and(|t| t.eq_ignore_ascii_case(TenantRouterSpec::KIND))
            {
                return Err(tp.error("selector.type", "a tenant cannot route by tenant again"));
            }
            let selector = registry::selector(&sp, &channels)?;
            let qp = tp.sub("quota.");
            let burst: f64 = qp.parse("burst", 1.0, "a number of seconds")?;
            if !(burst > 0.0 && burst <= 3600.0) {
                return Err(qp.error("burst", "must be greater than 0 and at most 3600 seconds"));
            }
            let quota = QuotaConfig {
                events_per_second: qp.int("events-per-second", 0u64, 0..=1_000_000_000_000)?,
                bytes_per_second: qp.int("bytes-per-second", 0u64, 0..=1 << 50)?,
                burst_seconds: burst,
                policy: qp.choice(
                    "policy",
                    QuotaPolicy::Backpressure,
                    &[
                        (&["backpressure"], QuotaPolicy::Backpressure),
                        (&["drop"], QuotaPolicy::Drop),
                    ],
                )?,
            };
            tenants.push(TenantConfig {
                name: name.clone(),
                channels,
                interceptors,
                selector,
                quota,
            });
        }
        Ok(Self {
            header,
            unknown,
            tenants,
            raw: p.raw(),
            settings: p.settings(),
        })
    }
}

/// A token bucket refilled at `rate` per second, holding at most `capacity`.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: u64, burst: f64) -> Option<Self> {
        (rate > 0).then(|| {
            let capacity = rate as f64 * burst;
            Self {
                rate: rate as f64,
                capacity,
                tokens: capacity,
                at: Instant::now(),
            }
        })
    }

    fn refill(&mut self) {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate)
            .min(self.capacity);
        self.at = now;
    }

    /// Whether `n` could be taken now. A request larger than the whole bucket passes when the
    /// bucket is full, so an oversized batch is slowed, never blocked forever.
    fn allows(&mut self, n: f64) -> bool {
        self.refill();
        self.tokens >= n.min(self.capacity)
    }

    fn take(&mut self, n: f64) {
        self.tokens -= n.min(self.capacity);
    }
}

struct Quota {
    events: Option<Bucket>,
    bytes: Option<Bucket>,
}

struct Tenant {
    name: String,
    chain: InterceptorChain,
    selector: Box<dyn ChannelSelector>,
    /// Tenant channel index → routing source's channel index.
    map: Vec<usize>,
    quota: Mutex<Quota>,
    policy: QuotaPolicy,
    counters: Arc<TenantCounters>,
}

/// Why a tenant router could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TenantBuildError {
    #[error("tenant `{tenant}`: channel `{channel}` is not one of the source's channels")]
    Channel { tenant: String, channel: String },
    #[error("tenant `{tenant}`: {source}")]
    Hook {
        tenant: String,
        #[source]
        source: BoxError,
    },
}

/// `selector.type = tenant` on a source: routes by the agent's `a1.tenants`, over the source's
/// channels. The topology makes it (it alone sees both), the agent builds it like any selector.
#[derive(Clone, Debug)]
pub struct TenantRouterSpec {
    pub tenants: Arc<TenantsConfig>,
    pub channels: Vec<String>,
}

impl TenantRouterSpec {
    pub const KIND: &'static str = "tenant";
}

impl SelectorSpec for TenantRouterSpec {
    fn build(&self, cx: &BuildContext) -> Result<Box<dyn ChannelSelector>, BoxError> {
        Ok(Box::new(TenantRouter::new(
            &self.tenants,
            &self.channels,
            cx,
        )?))
    }
}

/// The `tenant` channel selector of a source.
pub struct TenantRouter {
    header: String,
    unknown: Option<usize>,
    tenants: Vec<Tenant>,
    index: HashMap<String, usize>,
    source_channels: usize,
    rejected: Arc<TenantCounters>,
}

/// Counter name under which events of unknown tenants are counted when rejected.
pub const REJECTED: &str = "_unknown";

impl TenantRouter {
    /// `channels` is the routing source's channel list.
    pub fn new(
        config: &TenantsConfig,
        channels: &[String],
        cx: &BuildContext,
    ) -> Result<Self, TenantBuildError> {
        let mut tenants = Vec::new();
        for t in &config.tenants {
            let map =
                t.channels
                    .iter()
                    .map(|c| {
                        channels.iter().position(|x| x == c).ok_or_else(|| {
                            TenantBuildError::Channel {
                                tenant: t.name.clone(),
                                channel: c.clone(),
                            }
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
            let counters = TenantCounters::new();
            cx.registry
                .register(ComponentType::Tenant, &t.name, counters.clone());
            let hook_failed = |source| TenantBuildError::Hook {
                tenant: t.name.clone(),
                source,
            };
            tenants.push(Tenant {
                name: t.name.clone(),
                chain: InterceptorChain::new(
                    t.interceptors
                        .iter()
                        .map(|i| {
                            let icx = cx.child(format!("tenant.{}.{}", t.name, i.name));
                            i.interceptor.spec.build(&icx).map_err(hook_failed)
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                ),
                selector: t
                    .selector
                    .spec
                    .build(&cx.child(format!("tenant.{}.selector", t.name)))
                    .map_err(hook_failed)?,
                map,
                quota: Mutex::new(Quota {
                    events: Bucket::new(t.quota.events_per_second, t.quota.burst_seconds),
                    bytes: Bucket::new(t.quota.bytes_per_second, t.quota.burst_seconds),
                }),
                policy: t.quota.policy.clone(),
                counters,
            });
        }
        let index: HashMap<String, usize> = tenants
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        let unknown = match &config.unknown {
            UnknownTenant::Reject => None,
            UnknownTenant::Default(name) => index.get(name).copied(),
        };
        let rejected = TenantCounters::new();
        cx.registry
            .register(ComponentType::Tenant, REJECTED, rejected.clone());
        Ok(Self {
            header: config.header.clone(),
            unknown,
            tenants,
            index,
            source_channels: channels.len(),
            rejected,
        })
    }
}

impl TenantRouter {
    /// The batch's events per tenant (unknown tenants to the default one, or counted and
    /// dropped as rejected).
    fn group_by_tenant(&self, events: Vec<Event>) -> Vec<Vec<Event>> {
        let mut groups: Vec<Vec<Event>> = vec![Vec::new(); self.tenants.len()];
        let mut rejected = 0u64;
        let tapping = crate::tap::active();
        let mut tapped = Vec::new();
        for e in events {
            let t = e
                .headers
                .get(&self.header)
                .and_then(|v| self.index.get(v).copied());
            match t.or(self.unknown) {
                Some(i) => groups[i].push(e),
                None => {
                    rejected += 1;
                    if tapping {
                        tapped.push(e);
                    }
                }
            }
        }
        crate::tap::publish(
            "tenants",
            crate::tap::Point::Verdict("unknown-tenant"),
            &tapped,
        );
        if rejected > 0 {
            self.rejected
                .event_received
                .fetch_add(rejected, Ordering::Relaxed);
            self.rejected
                .event_dropped
                .fetch_add(rejected, Ordering::Relaxed);
        }
        groups
    }

    /// Checks every tenant's quota before any is charged: a tenant over quota with
    /// `backpressure` refuses the whole batch, one with `drop` is not admitted.
    fn admit(&self, groups: &[Vec<Event>]) -> Result<Vec<bool>, SelectorError> {
        let mut admitted = vec![true; self.tenants.len()];
        for (i, (t, g)) in self.tenants.iter().zip(groups).enumerate() {
            if g.is_empty() || t.within_quota(g) {
                continue;
            }
            t.counters.quota_hits.fetch_add(1, Ordering::Relaxed);
            match t.policy {
                QuotaPolicy::Backpressure => {
                    return Err(SelectorError::Refused(format!(
                        "tenant `{}` is over its quota; batch refused so the sender backs off",
                        t.name
                    )));
                }
                QuotaPolicy::Drop => admitted[i] = false,
            }
        }
        Ok(admitted)
    }
}

impl Tenant {
    fn within_quota(&self, events: &[Event]) -> bool {
        let bytes: usize = events.iter().map(Event::body_len).sum();
        let mut q = self.quota.lock();
        q.events
            .as_mut()
            .is_none_or(|b| b.allows(events.len() as f64))
            && q.bytes.as_mut().is_none_or(|b| b.allows(bytes as f64))
    }

    fn charge(&self, events: &[Event]) {
        let bytes: usize = events.iter().map(Event::body_len).sum();
        let mut q = self.quota.lock();
        if let Some(b) = q.events.as_mut() {
            b.take(events.len() as f64);
        }
        if let Some(b) = q.bytes.as_mut() {
            b.take(bytes as f64);
        }
    }

    /// The tenant's own interceptors, then its selector over its channels, mapped onto the
    /// routing source's channels.
    fn route(
        &self,
        events: Vec<Event>,
        routed: &mut Routed,
        dead: &mut DeadLetters,
    ) -> Result<(), SelectorError> {
        let n = events.len() as u64;
        let set_aside = dead.len();
        let kept = self
            .chain
            .intercept_or_set_aside(events, dead)
            .map_err(|e| {
                self.counters
                    .interceptor_errors
                    .fetch_add(1, Ordering::Relaxed);
                SelectorError::Failed {
                    context: format!("tenant `{}`", self.name),
                    cause: Arc::new(e),
                }
            })?;
        let set_aside = (dead.len() - set_aside) as u64;
        self.counters.interceptor_dropped.fetch_add(
            n.saturating_sub(kept.len() as u64 + set_aside),
            Ordering::Relaxed,
        );
        self.counters
            .event_routed
            .fetch_add(kept.len() as u64, Ordering::Relaxed);
        if kept.is_empty() {
            return Ok(());
        }
        let sub =
            self.selector
                .route_or_set_aside(kept, dead)
                .map_err(|e| SelectorError::Failed {
                    context: format!("tenant `{}`", self.name),
                    cause: Arc::new(e),
                })?;
        for (ti, (req, opt)) in sub.required.into_iter().zip(sub.optional).enumerate() {
            let si = self.map[ti];
            routed.required[si].extend(req);
            routed.optional[si].extend(opt);
        }
        Ok(())
    }
}

impl ChannelSelector for TenantRouter {
    fn route(&self, events: Vec<Event>) -> Result<Routed, SelectorError> {
        self.route_or_set_aside(events, &mut DeadLetters::disabled())
    }

    /// A tenant's interceptors and selector set events aside into the routing source's
    /// dead-letter channel.
    fn route_or_set_aside(
        &self,
        events: Vec<Event>,
        dead: &mut DeadLetters,
    ) -> Result<Routed, SelectorError> {
        let groups = self.group_by_tenant(events);
        let admitted = self.admit(&groups)?;
        let mut routed = Routed::new(self.source_channels);
        for ((t, g), admitted) in self.tenants.iter().zip(groups).zip(admitted) {
            if g.is_empty() {
                continue;
            }
            let n = g.len() as u64;
            t.counters.event_received.fetch_add(n, Ordering::Relaxed);
            if !admitted {
                t.counters.event_dropped.fetch_add(n, Ordering::Relaxed);
                if crate::tap::active() {
                    crate::tap::publish(
                        &format!("tenant.{}", t.name),
                        crate::tap::Point::Verdict("over-quota"),
                        &g,
                    );
                }
                continue;
            }
            t.charge(&g);
            t.route(g, &mut routed, dead)?;
        }
        Ok(routed)
    }
}

#[cfg(test)]
mod tests;
