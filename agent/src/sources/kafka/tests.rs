use std::sync::Arc;

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::config::Props;
use crate::event::Event;

use super::client_errors::ClientErrors;
use super::source::Batch;
use super::{KafkaSourceConfig, Subscription};

#[test]
fn config_defaults_and_topics() {
    let p = Props::from_pairs(&[
        ("kafka.bootstrap.servers", "127.0.0.1:9092"),
        ("kafka.topics", "a, b,c"),
    ]);
    let c = KafkaSourceConfig::from_props(&p).map_err(|e| e.to_string());
    let c = match c {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(
        c.subscription,
        Subscription::Topics(vec!["a".into(), "b".into(), "c".into()])
    );
    assert_eq!(c.batch_size, 1000);
    assert_eq!(c.client.0.get("group.id"), Some("flume"));
    assert_eq!(c.client.0.get("enable.auto.commit"), Some("false"));
    assert!(c.set_topic_header);
}

#[test]
fn revocation_drops_only_revoked_partitions() {
    let t: Arc<str> = Arc::from("t");
    let mut b = Batch::default();
    for (p, o) in [(0, 10), (1, 20), (0, 11), (2, 30)] {
        b.events.push(Some(Event::new(format!("{p}-{o}"))));
        b.origins.push((t.clone(), p, o));
    }
    let dropped = b.drop_partitions(&[("t".into(), 0), ("u".into(), 1)]);
    assert_eq!(dropped, 2);
    let left: Vec<i64> = b.origins.iter().map(|o| o.2).collect();
    assert_eq!(left, vec![20, 30]);
    assert_eq!(b.events.len(), 2);
}

#[test]
fn client_errors_are_counted_rate_limited_and_clear_on_a_record() {
    let down = KafkaError::MessageConsumption(RDKafkaErrorCode::AllBrokersDown);
    let transport = KafkaError::MessageConsumption(RDKafkaErrorCode::BrokerTransportFailure);
    let topic = KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition);
    let mut e = ClientErrors::default();
    e.error("r1", &topic);
    assert!(
        !e.brokers_down(),
        "an unknown topic says nothing about the brokers"
    );
    for _ in 0..5 {
        e.error("r1", &down);
        e.error("r1", &transport);
    }
    assert!(e.brokers_down());
    assert_eq!(e.count, 11);
    // Each kind logged once; its repeats within the interval are only counted.
    let unlogged: Vec<(&str, u64)> = e.logged.iter().map(|(k, _, n)| (k.as_str(), *n)).collect();
    assert_eq!(
        unlogged,
        vec![
            ("UnknownTopicOrPartition", 0),
            ("AllBrokersDown", 4),
            ("BrokerTransportFailure", 4)
        ]
    );
    e.record("r1");
    assert!(!e.brokers_down());
    assert_eq!(e.count, 0);
    // The interval survives the record: a flapping broker does not log every error.
    e.error("r1", &down);
    assert_eq!(e.logged[1].2, 5);
}

#[test]
fn regex_is_anchored_and_topics_required() {
    let p = Props::from_pairs(&[
        ("kafka.bootstrap.servers", "h:1"),
        ("kafka.topics.regex", "logs-.*"),
    ]);
    let c = KafkaSourceConfig::from_props(&p)
        .ok()
        .map(|c| c.subscription);
    assert_eq!(c, Some(Subscription::Pattern("^logs-.*".into())));
    let p = Props::from_pairs(&[("kafka.bootstrap.servers", "h:1")]);
    let e = KafkaSourceConfig::from_props(&p)
        .err()
        .map(|e| e.to_string());
    assert!(e.is_some_and(|e| e.contains("kafka.topics")));
}
