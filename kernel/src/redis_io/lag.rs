//! The group's lag from ids rather than Redis's `entries-read` counter.
//!
//! Redis 7.0 derives `XINFO GROUPS` `lag` from the group's `entries-read` counter, which can
//! drift after a restart (AOF replay) and then report a backlog that is not there. The ids do
//! not drift: a group whose last-delivered-id is the stream's last-generated-id has delivered
//! everything, so its lag is 0. Otherwise Redis's figure is kept, bounded by the stream's
//! length (undelivered entries are entries of the stream).

use redis::Script;

/// The stream's last-generated-id and length, from XINFO STREAM run inside Redis so that
/// the first and last entries it also returns never travel to the kernel (they may be big).
pub fn tail_script() -> Script {
    Script::new(
        r#"#!lua flags=no-writes
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local last, length = '0-0', 0
for i = 1, #info, 2 do
  if info[i] == 'last-generated-id' then last = info[i + 1] end
  if info[i] == 'length' then length = info[i + 1] end
end
return {last, length}
"#,
    )
}

/// A stream id as (milliseconds, sequence); `None` when it is not one.
fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// The lag to report: 0 when `last_delivered` has reached `last_generated`, else Redis's
/// `reported` lag (if it has one) capped at the stream's `length`.
pub fn true_lag(
    last_delivered: Option<&str>,
    last_generated: &str,
    reported: Option<i64>,
    length: i64,
) -> Option<i64> {
    let delivered = last_delivered.and_then(parse_id);
    match (delivered, parse_id(last_generated)) {
        (Some(d), Some(g)) if d >= g => Some(0),
        _ => reported.map(|lag| lag.clamp(0, length.max(0))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caught_up_is_no_lag_whatever_redis_counts() {
        assert_eq!(true_lag(Some("5-3"), "5-3", Some(44_679), 10), Some(0));
        assert_eq!(true_lag(Some("6-0"), "5-3", None, 10), Some(0));
    }

    #[test]
    fn behind_keeps_redis_lag_within_the_stream_length() {
        assert_eq!(true_lag(Some("5-2"), "5-3", Some(1), 10), Some(1));
        assert_eq!(true_lag(Some("4-9"), "5-3", Some(44_679), 10), Some(10));
        assert_eq!(true_lag(Some("4-9"), "5-3", None, 10), None);
        assert_eq!(true_lag(None, "5-3", Some(3), 10), Some(3));
        // Ids compare as numbers, not text.
        assert_eq!(true_lag(Some("9-0"), "10-0", Some(2), 10), Some(2));
    }
}
