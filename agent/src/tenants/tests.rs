use std::path::Path;

use super::*;
use crate::config::Properties;
use crate::metrics::Registry;

/// The tenants of a collector with channels `ca cb cc`, `extra` appended to its keys.
fn config(extra: &str) -> Result<TenantsConfig, String> {
    let text = format!(
        "a1.tenants = A B C\n\
         a1.tenants.A.channels = ca\n\
         a1.tenants.A.interceptors = mark\n\
         a1.tenants.A.interceptors.mark.type = static\n\
         a1.tenants.A.interceptors.mark.key = seen-by\n\
         a1.tenants.A.interceptors.mark.value = A\n\
         a1.tenants.B.channels = cb\n\
         a1.tenants.C.channels = cc\n{extra}"
    );
    let props = Properties::parse(Path::new("t.conf"), &text);
    let top = Props::new(&props.file, "a1.", props.entries.clone(), 1);
    let names: Vec<String> = ["A", "B", "C"].map(String::from).to_vec();
    TenantsConfig::from_props(&top.sub("tenants."), &names).map_err(|e| e.to_string())
}

fn router(extra: &str) -> Result<TenantRouter, String> {
    let t = config(extra)?;
    let channels: Vec<String> = ["ca", "cb", "cc"].map(String::from).to_vec();
    TenantRouter::new(&t, &channels, &BuildContext::detached("r1.selector"))
        .map_err(|e| e.to_string())
}

fn ev(tenant: Option<&str>, body: &str) -> Event {
    let mut e = Event::new(body.to_string());
    if let Some(t) = tenant {
        e.headers.insert("tenant", t);
    }
    e
}

fn bodies(v: &[Event]) -> Vec<String> {
    v.iter()
        .map(|e| String::from_utf8_lossy(&e.body).into_owned())
        .collect()
}

#[test]
fn routes_by_tenant_and_isolates_interceptors() -> Result<(), String> {
    let r = router("")?;
    let out = r
        .route(vec![
            ev(Some("A"), "a1"),
            ev(Some("C"), "c1"),
            ev(Some("B"), "b1"),
            ev(Some("A"), "a2"),
        ])
        .map_err(|e| e.to_string())?;
    assert_eq!(bodies(&out.required[0]), ["a1", "a2"]);
    assert_eq!(bodies(&out.required[1]), ["b1"]);
    assert_eq!(bodies(&out.required[2]), ["c1"]);
    assert!(
        out.required[0]
            .iter()
            .all(|e| e.headers.get("seen-by") == Some("A"))
    );
    assert!(
        out.required[1]
            .iter()
            .chain(&out.required[2])
            .all(|e| e.headers.get("seen-by").is_none())
    );
    Ok(())
}

#[test]
fn unknown_tenants_are_rejected_and_counted_or_defaulted() -> Result<(), String> {
    let r = router("")?;
    let out = r
        .route(vec![ev(None, "x"), ev(Some("Z"), "z"), ev(Some("B"), "b")])
        .map_err(|e| e.to_string())?;
    assert_eq!(out.required.iter().map(Vec::len).sum::<usize>(), 1);
    assert_eq!(r.rejected.event_dropped.load(Ordering::Relaxed), 2);

    let r = router("a1.tenants.unknown = C\n")?;
    let out = r
        .route(vec![ev(None, "x"), ev(Some("Z"), "z")])
        .map_err(|e| e.to_string())?;
    assert_eq!(bodies(&out.required[2]), ["x", "z"]);
    Ok(())
}

#[test]
fn quota_backpressure_refuses_without_charging_others() -> Result<(), String> {
    let r = router("a1.tenants.B.quota.events-per-second = 10\na1.tenants.B.quota.burst = 1\n")?;
    let batch = |n: usize, t: &str| {
        (0..n)
            .map(|i| ev(Some(t), &i.to_string()))
            .collect::<Vec<_>>()
    };
    r.route(batch(10, "B")).map_err(|e| e.to_string())?;
    let mut mixed = batch(5, "A");
    mixed.extend(batch(5, "B"));
    let err = r
        .route(mixed)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("tenant `B` is over its quota"), "{err}");
    assert_eq!(r.tenants[1].counters.quota_hits.load(Ordering::Relaxed), 1);
    // A was not charged or counted for the refused batch.
    assert_eq!(
        r.tenants[0].counters.event_received.load(Ordering::Relaxed),
        0
    );
    // Tenant A alone is unaffected.
    let out = r.route(batch(100, "A")).map_err(|e| e.to_string())?;
    assert_eq!(out.required[0].len(), 100);
    Ok(())
}

#[test]
fn quota_drop_policy_counts_drops() -> Result<(), String> {
    let r = router("a1.tenants.B.quota.bytes-per-second = 20\na1.tenants.B.quota.policy = drop\n")?;
    let big = |t: &str| vec![ev(Some(t), "0123456789"), ev(Some(t), "0123456789")];
    let first = r.route(big("B")).map_err(|e| e.to_string())?;
    assert_eq!(first.required[1].len(), 2);
    let mut both = big("B");
    both.extend(big("C"));
    let second = r.route(both).map_err(|e| e.to_string())?;
    assert!(second.required[1].is_empty(), "B over quota: dropped");
    assert_eq!(second.required[2].len(), 2, "C unaffected");
    assert_eq!(
        r.tenants[1].counters.event_dropped.load(Ordering::Relaxed),
        2
    );
    Ok(())
}

#[test]
fn config_errors_name_the_key() {
    let e = config("a1.tenants.B.quota.policy = maybe\n")
        .err()
        .unwrap_or_default();
    assert!(
        e.contains("a1.tenants.B.quota.policy: unknown value `maybe`"),
        "{e}"
    );
    let e = config("a1.tenants.unknown = Q\n").err().unwrap_or_default();
    assert!(e.contains("a1.tenants.unknown"), "{e}");
}

#[test]
fn tenant_series_carry_a_tenant_label() {
    let reg = Registry::new();
    let t = TenantCounters::new();
    t.quota_hits.store(3, Ordering::Relaxed);
    reg.register(ComponentType::Tenant, "acme", t);
    reg.register(
        ComponentType::Wasm,
        "tenant.acme.g",
        crate::wasm::WasmCounters::new(),
    );
    let text = reg.prometheus_text();
    assert!(
        text.contains("sluice_tenant_quota_hit_count_total{component=\"acme\",tenant=\"acme\"} 3"),
        "{text}"
    );
    assert!(
        text.contains(
            "sluice_wasm_fault_count_total{component=\"tenant.acme.g\",tenant=\"acme\"} 0"
        ),
        "{text}"
    );
}
