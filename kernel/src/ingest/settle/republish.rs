//! Optional re-publish of stored events, normalized, to one stream.

use redis::aio::ConnectionLike;

use crate::protocol::Event;
use crate::redis_io::RedisIoError;

/// XADDs each event with `MAXLEN ~ maxlen`, in one pipelined round trip.
pub async fn publish(
    conn: &mut impl ConnectionLike,
    stream: &str,
    maxlen: usize,
    events: &[&Event],
) -> Result<(), RedisIoError> {
    if events.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    for event in events {
        let tags: serde_json::Map<String, serde_json::Value> = event
            .tags
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
            .collect();
        let mut fields: Vec<(&str, String)> = vec![
            ("id", event.id.to_string()),
            ("ts", event.ts_ns.to_string()),
            ("tags", serde_json::Value::Object(tags).to_string()),
            ("payload", event.payload.clone()),
            ("source_stream", event.source.stream.to_string()),
            ("source_id", event.source.id.to_string()),
        ];
        if let Some(subject) = &event.subject {
            fields.push(("subject", subject.clone()));
        }
        if let Some(producer) = event.producer_id {
            fields.push(("producer_id", producer.to_string()));
        }
        pipe.cmd("XADD")
            .arg(stream)
            .arg("MAXLEN")
            .arg("~")
            .arg(maxlen)
            .arg("*")
            .arg(fields)
            .ignore();
    }
    pipe.query_async::<()>(conn).await?;
    Ok(())
}
