use crate::config::Props;
use crate::event::Event;

use super::sink::substitute;
use super::{DEFAULT_TOPIC, KafkaSinkConfig};

#[test]
fn config_defaults() {
    let p = Props::from_pairs(&[("kafka.bootstrap.servers", "127.0.0.1:9092")]);
    let c = KafkaSinkConfig::from_props(&p).ok();
    let c = c.as_ref();
    assert_eq!(c.map(|c| c.topic.as_str()), Some(DEFAULT_TOPIC));
    assert_eq!(c.map(|c| c.batch_size), Some(100));
    assert_eq!(c.and_then(|c| c.client.0.get("acks")), Some("1"));
    assert_eq!(c.and_then(|c| c.client.0.get("linger.ms")), Some("1"));
    assert_eq!(c.map(|c| c.allow_topic_override), Some(true));
    let p = Props::from_pairs(&[
        ("kafka.bootstrap.servers", "127.0.0.1:9092"),
        ("kafka.producer.linger.ms", "20"),
    ]);
    let c = KafkaSinkConfig::from_props(&p).ok();
    assert_eq!(
        c.as_ref().and_then(|c| c.client.0.get("linger.ms")),
        Some("20")
    );
}

#[test]
fn topic_substitution() {
    let mut e = Event::new("x");
    e.headers.insert("app", "web");
    assert_eq!(substitute("logs-%{app}-%{none}", &e), "logs-web-");
    assert_eq!(substitute("plain", &e), "plain");
    assert_eq!(substitute("bad-%{app", &e), "bad-%{app");
}
