use super::KafkaChannelConfig;
use crate::config::Props;

fn parse(pairs: &[(&str, &str)]) -> Result<KafkaChannelConfig, crate::config::ConfigError> {
    KafkaChannelConfig::from_props(&Props::from_pairs(pairs))
}

#[test]
fn flume_defaults() -> Result<(), Box<dyn std::error::Error>> {
    let c = parse(&[("kafka.bootstrap.servers", "localhost:9092")])?;
    assert_eq!(c.topic, "flume-channel");
    assert!(c.parse_as_flume_event);
    assert_eq!(c.poll_timeout.as_millis(), 500);
    assert_eq!(c.consumer.0.get("group.id"), Some("flume"));
    assert_eq!(c.consumer.0.get("auto.offset.reset"), Some("earliest"));
    assert_eq!(c.consumer.0.get("enable.auto.commit"), Some("false"));
    assert_eq!(c.producer.0.get("acks"), Some("all"));
    assert_eq!(c.default_partition, None);
    Ok(())
}

#[test]
fn user_guide_and_old_keys() -> Result<(), Box<dyn std::error::Error>> {
    let c = parse(&[
        ("kafka.bootstrap.servers", "k1:9092,k2:9092"),
        ("kafka.topic", "channel1"),
        ("kafka.consumer.group.id", "flume-consumer"),
        ("kafka.consumer.auto.offset.reset", "latest"),
        ("kafka.producer.acks", "1"),
        ("parseAsFlumeEvent", "false"),
        ("pollTimeout", "100"),
        ("defaultPartitionId", "2"),
        ("partitionIdHeader", "p"),
    ])?;
    assert_eq!(c.topic, "channel1");
    assert_eq!(c.consumer.0.get("group.id"), Some("flume-consumer"));
    assert_eq!(c.consumer.0.get("auto.offset.reset"), Some("latest"));
    assert_eq!(c.producer.0.get("acks"), Some("1"));
    assert!(!c.parse_as_flume_event);
    assert_eq!(c.default_partition, Some(2));
    assert_eq!(c.partition_header.as_deref(), Some("p"));
    let old = parse(&[
        ("brokerList", "k1:9092"),
        ("topic", "t"),
        ("groupId", "g"),
        ("readSmallestOffset", "false"),
    ])?;
    assert_eq!(old.topic, "t");
    assert_eq!(old.consumer.0.get("group.id"), Some("g"));
    assert_eq!(old.consumer.0.get("auto.offset.reset"), Some("latest"));
    Ok(())
}

#[test]
fn bad_values_name_the_key() {
    let e = |pairs: &[(&str, &str)]| match parse(pairs) {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    };
    assert!(e(&[]).contains("kafka.bootstrap.servers"));
    let base = ("kafka.bootstrap.servers", "k:9092");
    assert!(e(&[base, ("pollTimeout", "0")]).contains("pollTimeout"));
    assert!(e(&[base, ("defaultPartitionId", "-1")]).contains("defaultPartitionId"));
    assert!(e(&[base, ("parseAsFlumeEvent", "yes")]).contains("parseAsFlumeEvent"));
    assert!(e(&[base, ("kafka.topic", "t-%{h}")]).contains("kafka.topic"));
    assert!(e(&[base, ("kafka.consumer.no.such.key", "1")]).contains("kafka.consumer.no.such.key"));
    assert!(
        e(&[base, ("kafka.consumer.enable.auto.commit", "true")]).contains("enable.auto.commit")
    );
}
