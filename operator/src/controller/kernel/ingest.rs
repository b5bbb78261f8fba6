//! Ingest figures of a kernel from its pods' `/metrics` (pure): the consumer group's lag, the
//! events stored per second between two scrapes, and whether ingest moves.
//!
//! - Lag and pending are the group's figures (every replica reports the same): the largest
//!   reading per stream, summed over the streams.
//! - Stored/s is the growth of `kernel_events_stored_total` between this scrape and the one
//!   before, over the pods scraped both times (a counter that went down restarted from 0).
//! - Ingest is stalled when a pod reports a stage stalled (`kernel_stalled`), or when entries
//!   wait (lag or pending above 0) and no pod acknowledged any since the scrape before.
//!   Acknowledged, not stored: an entry dead-lettered, a duplicate or spilled to disk is
//!   progress too.

use std::collections::BTreeMap;

use fdc_common::contract::{
    ACKED_METRIC, EVENTS_STORED_METRIC, GROUP_LAG_METRIC, GROUP_PENDING_METRIC,
};
use k8s_openapi::jiff::Timestamp;

use crate::crd::StreamStatus;
use crate::kernel_api::{parse_gauge_sum, samples_by_label, stalled_stages};

/// At most this many streams are listed in the status (the most lag first).
pub const STATUS_STREAMS: usize = 50;

/// What one pod's `/metrics` says about ingest.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodReading {
    pub pod: String,
    /// `kernel_group_lag` per stream.
    pub lag: BTreeMap<String, f64>,
    /// `kernel_group_pending` per stream.
    pub pending: BTreeMap<String, f64>,
    /// `kernel_events_stored_total` (`None`: not exported).
    pub stored: Option<f64>,
    /// `kernel_redis_ack_total` (`None`: not exported).
    pub acked: Option<f64>,
    /// Stages with `kernel_stalled{stage}` above 0.
    pub stalled: Vec<String>,
}

impl PodReading {
    /// Reads `pod`'s `/metrics` text.
    pub fn parse(pod: &str, metrics: &str) -> PodReading {
        let per_stream = |metric: &str| -> BTreeMap<String, f64> {
            samples_by_label(metrics, metric, "stream")
                .into_iter()
                .collect()
        };
        PodReading {
            pod: pod.to_string(),
            lag: per_stream(GROUP_LAG_METRIC),
            pending: per_stream(GROUP_PENDING_METRIC),
            stored: parse_gauge_sum(metrics, EVENTS_STORED_METRIC),
            acked: parse_gauge_sum(metrics, ACKED_METRIC),
            stalled: stalled_stages(metrics),
        }
    }
}

/// The counters of one scrape of a kernel's pods, kept for the next pass's rates.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub at: Timestamp,
    /// Per pod: (`kernel_events_stored_total`, `kernel_redis_ack_total`).
    pub counters: BTreeMap<String, (f64, f64)>,
}

/// Whether ingest moves.
#[derive(Debug, Clone, PartialEq)]
pub enum Flow {
    /// Entries were acknowledged since the scrape before, or none wait.
    Moving,
    /// Not known yet: no scrape before this one (or no pod scraped both times).
    Unknown,
    /// Stalled: the condition reason and message.
    Stalled {
        reason: &'static str,
        message: String,
    },
}

/// The ingest figures of one pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Ingest {
    /// Entries not yet delivered to the group, all streams (`None`: no pod reported it).
    pub lag: Option<i64>,
    /// Entries delivered and not yet acknowledged, all streams.
    pub pending: Option<i64>,
    /// Events stored per second since the scrape before (`None`: no scrape before).
    pub stored_per_second: Option<f64>,
    /// Per stream, the most lag first, at most [`STATUS_STREAMS`].
    pub streams: Vec<StreamStatus>,
    pub flow: Flow,
}

/// The group's figure per stream: the largest reading over the pods (negative read as 0).
fn per_stream<'a>(
    per_pod: impl Iterator<Item = &'a BTreeMap<String, f64>>,
) -> BTreeMap<&'a str, i64> {
    let mut per_stream: BTreeMap<&str, f64> = BTreeMap::new();
    for readings in per_pod {
        for (stream, value) in readings {
            let v = per_stream.entry(stream).or_insert(0.0);
            *v = v.max(*value);
        }
    }
    per_stream
        .into_iter()
        .map(|(stream, v)| (stream, v.max(0.0) as i64))
        .collect()
}

/// Summed over the streams (`None`: no stream reported).
fn total(per_stream: &BTreeMap<&str, i64>) -> Option<i64> {
    (!per_stream.is_empty()).then(|| per_stream.values().sum())
}

/// The streams of `lag` and `pending`, the most lag first (then by name), at most
/// [`STATUS_STREAMS`].
fn streams(lag: &BTreeMap<&str, i64>, pending: &BTreeMap<&str, i64>) -> Vec<StreamStatus> {
    let mut names: Vec<&str> = lag.keys().chain(pending.keys()).copied().collect();
    names.sort_unstable();
    names.dedup();
    let mut streams: Vec<StreamStatus> = names
        .into_iter()
        .map(|name| StreamStatus {
            name: name.to_string(),
            lag: lag.get(name).copied().unwrap_or(0),
            pending: pending.get(name).copied().unwrap_or(0),
        })
        .collect();
    streams.sort_by(|a, b| b.lag.cmp(&a.lag).then_with(|| a.name.cmp(&b.name)));
    streams.truncate(STATUS_STREAMS);
    streams
}

/// Growth of a counter from `before` to `now` (a counter that went down restarted from 0).
fn growth(before: f64, now: f64) -> f64 {
    if now >= before {
        now - before
    } else {
        now
    }
}

/// The ingest figures from this pass's `readings` and the `previous` sample, and the sample
/// to keep for the next pass (`None` when no pod exported the counters).
pub fn judge(
    previous: Option<&Sample>,
    readings: &[PodReading],
    now: Timestamp,
) -> (Ingest, Option<Sample>) {
    let lag_by_stream = per_stream(readings.iter().map(|r| &r.lag));
    let pending_by_stream = per_stream(readings.iter().map(|r| &r.pending));
    let (lag, pending) = (total(&lag_by_stream), total(&pending_by_stream));
    let counters: BTreeMap<String, (f64, f64)> = readings
        .iter()
        .filter_map(|r| Some((r.pod.clone(), (r.stored?, r.acked?))))
        .collect();

    // Growth since the scrape before, over the pods scraped both times.
    let since = previous.and_then(|prev| {
        let seconds = now.duration_since(prev.at).as_secs_f64();
        let mut common = prev
            .counters
            .iter()
            .filter_map(|(pod, before)| Some((before, counters.get(pod)?)))
            .peekable();
        common.peek()?;
        let (stored, acked) = common.fold((0.0, 0.0), |(s, a), (before, now)| {
            (s + growth(before.0, now.0), a + growth(before.1, now.1))
        });
        (seconds > 0.0).then_some((stored / seconds, acked, seconds))
    });

    let stalled: Vec<String> = readings
        .iter()
        .filter(|r| !r.stalled.is_empty())
        .map(|r| format!("pod {}: {}", r.pod, r.stalled.join(" and ")))
        .collect();
    let waiting = lag.unwrap_or(0) + pending.unwrap_or(0);
    let flow = if !stalled.is_empty() {
        Flow::Stalled {
            reason: "Stalled",
            message: format!(
                "ingest stalled (kernel_stalled): {}; {waiting} entries wait",
                stalled.join("; ")
            ),
        }
    } else {
        match since {
            None => Flow::Unknown,
            Some((_, acked, seconds)) if acked == 0.0 && waiting > 0 => Flow::Stalled {
                reason: "NoProgress",
                message: format!(
                    "{waiting} entries wait (lag {}, pending {}) and none was acknowledged in the last {seconds:.0}s",
                    lag.unwrap_or(0),
                    pending.unwrap_or(0)
                ),
            },
            Some(_) => Flow::Moving,
        }
    };
    let sample = (!counters.is_empty()).then_some(Sample { at: now, counters });
    let ingest = Ingest {
        lag,
        pending,
        stored_per_second: since.map(|(rate, _, _)| (rate * 10.0).round() / 10.0),
        streams: streams(&lag_by_stream, &pending_by_stream),
        flow,
    };
    (ingest, sample)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    fn metrics(lag: u64, pending: u64, stored: u64, acked: u64) -> String {
        format!(
            "# TYPE kernel_group_lag gauge\nkernel_group_lag{{stream=\"orders\"}} {lag}\nkernel_group_lag{{stream=\"audit\"}} 0\n\
             kernel_group_pending{{stream=\"orders\"}} {pending}\nkernel_group_lag_seconds 9\n\
             kernel_events_stored_total {stored}\nkernel_events_stored_total_created 1\nkernel_redis_ack_total {acked}\n\
             kernel_stalled{{stage=\"reader\"}} 0\nkernel_stalled{{stage=\"writer\"}} 0\n"
        )
    }

    #[test]
    fn reads_a_pod_by_stream() {
        let r = PodReading::parse("k-0", &metrics(7, 2, 100, 120));
        assert_eq!(
            r.lag,
            BTreeMap::from([("audit".into(), 0.0), ("orders".into(), 7.0)])
        );
        assert_eq!(r.pending, BTreeMap::from([("orders".into(), 2.0)]));
        assert_eq!((r.stored, r.acked), (Some(100.0), Some(120.0)));
        assert!(r.stalled.is_empty());
        let empty = PodReading::parse("k-1", "kernel_spill_pending_records 0\n");
        assert_eq!((empty.stored, empty.acked), (None, None));
        assert!(empty.lag.is_empty());
    }

    #[test]
    fn lag_is_the_groups_and_the_rate_sums_the_pods() {
        let first = [
            PodReading::parse("k-0", &metrics(10, 4, 1_000, 1_000)),
            PodReading::parse("k-1", &metrics(12, 4, 500, 500)),
        ];
        let (ingest, sample) = judge(None, &first, at(1_000));
        // Every replica reports the group's lag: the largest reading, not the sum.
        assert_eq!((ingest.lag, ingest.pending), (Some(12), Some(4)));
        let stream = |name: &str, lag, pending| StreamStatus {
            name: name.into(),
            lag,
            pending,
        };
        assert_eq!(
            ingest.streams,
            vec![stream("orders", 12, 4), stream("audit", 0, 0)]
        );
        assert_eq!(ingest.stored_per_second, None);
        assert_eq!(ingest.flow, Flow::Unknown);
        let sample = sample.unwrap();
        assert_eq!(sample.counters["k-1"], (500.0, 500.0));

        // 60 s later: k-0 stored 600 more, k-1 restarted (its counter went down to 30).
        let second = [
            PodReading::parse("k-0", &metrics(3, 1, 1_600, 1_610)),
            PodReading::parse("k-1", &metrics(3, 1, 30, 30)),
        ];
        let (ingest, _) = judge(Some(&sample), &second, at(1_060));
        assert_eq!(ingest.stored_per_second, Some(10.5));
        assert_eq!((ingest.lag, ingest.pending), (Some(3), Some(1)));
        assert_eq!(ingest.flow, Flow::Moving);
    }

    #[test]
    fn status_lists_the_streams_with_the_most_lag_first_and_at_most_fifty() {
        let mut text = String::from("# TYPE kernel_group_lag gauge\n");
        for i in 0..80 {
            // Lag 0..79; stream s-79 has the most. Pending only where lag is even.
            text.push_str(&format!("kernel_group_lag{{stream=\"s-{i:02}\"}} {i}\n"));
            if i % 2 == 0 {
                text.push_str(&format!("kernel_group_pending{{stream=\"s-{i:02}\"}} 1\n"));
            }
        }
        // Only pending, no lag reading: listed with lag 0.
        text.push_str("kernel_group_pending{stream=\"quiet\"} 7\n");
        let (ingest, _) = judge(None, &[PodReading::parse("k-0", &text)], at(0));
        assert_eq!(ingest.streams.len(), STATUS_STREAMS);
        assert_eq!(ingest.streams[0].name, "s-79");
        assert_eq!((ingest.streams[0].lag, ingest.streams[0].pending), (79, 0));
        assert_eq!(
            (ingest.streams[1].name.as_str(), ingest.streams[1].pending),
            ("s-78", 1)
        );
        assert_eq!(ingest.streams[49].name, "s-30");
        assert!(ingest.streams.iter().all(|s| s.name != "quiet"));
        // Totals still count every stream.
        assert_eq!(ingest.lag, Some((0..80).sum()));
        assert_eq!(ingest.pending, Some(40 + 7));
    }

    #[test]
    fn waiting_entries_with_no_ack_since_the_last_scrape_is_no_progress() {
        let before = [PodReading::parse("k-0", &metrics(40, 5, 900, 950))];
        let (_, sample) = judge(None, &before, at(0));
        let now = [PodReading::parse("k-0", &metrics(55, 5, 900, 950))];
        let (ingest, _) = judge(sample.as_ref(), &now, at(30));
        assert_eq!(ingest.stored_per_second, Some(0.0));
        assert_eq!(
            ingest.flow,
            Flow::Stalled {
                reason: "NoProgress",
                message:
                    "60 entries wait (lag 55, pending 5) and none was acknowledged in the last 30s"
                        .into()
            }
        );

        // Nothing waits: an idle kernel is not stalled.
        let idle = [PodReading::parse("k-0", &metrics(0, 0, 900, 950))];
        let (ingest, _) = judge(sample.as_ref(), &idle, at(30));
        assert_eq!(ingest.flow, Flow::Moving);

        // Entries dead-lettered (acknowledged, none stored) are progress.
        let dlq = [PodReading::parse("k-0", &metrics(40, 5, 900, 990))];
        let (ingest, _) = judge(sample.as_ref(), &dlq, at(30));
        assert_eq!(ingest.flow, Flow::Moving);
        assert_eq!(ingest.stored_per_second, Some(0.0));
    }

    #[test]
    fn a_stalled_stage_is_stalled_at_once_and_new_pods_give_no_rate() {
        let text = metrics(8, 3, 10, 10).replace(
            "kernel_stalled{stage=\"writer\"} 0",
            "kernel_stalled{stage=\"writer\"} 1",
        );
        let (ingest, sample) = judge(None, &[PodReading::parse("k-1", &text)], at(0));
        assert_eq!(
            ingest.flow,
            Flow::Stalled {
                reason: "Stalled",
                message: "ingest stalled (kernel_stalled): pod k-1: writer; 11 entries wait".into()
            }
        );
        // A later scrape of other pods only (k-1 replaced): no common pod, no rate.
        let other = [PodReading::parse("k-2", &metrics(0, 0, 5, 5))];
        let (ingest, _) = judge(sample.as_ref(), &other, at(10));
        assert_eq!(
            (ingest.stored_per_second, ingest.flow),
            (None, Flow::Unknown)
        );
        // No pod exported anything: nothing known, nothing kept.
        let (ingest, sample) = judge(None, &[], at(20));
        assert_eq!((ingest.lag, ingest.pending), (None, None));
        assert_eq!(sample, None);
    }
}
