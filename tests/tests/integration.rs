//! Every integration suite in one test binary, one module per suite:
//! `cargo test -p sluice-integration --test integration kafka::` runs one of them.

mod avro;
mod avro_flume;
mod avro_ha;
mod conf_sources;
mod core;
mod file_channel;
mod flume_fixture;
mod hardening;
mod hdfs;
mod http_sink;
mod http_source;
mod kafka;
mod kafka_channel;
mod kafka_tls;
mod netcat_exec;
mod operator;
mod spillable;
mod spooldir;
mod substitution;
mod syslog;
mod taildir;
mod tenants;
mod thrift;
mod wasm;
mod wasm_new;
