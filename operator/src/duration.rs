//! Durations as people and `kubectl` columns read them: `24h5m`, `15h`, `40m`.

use std::time::Duration;

/// Exact duration in hours, minutes and seconds, largest unit first, zero parts left out:
/// `24h5m`, `1h30s`, `90ms` below a second, `0s`.
pub fn exact(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return if d.is_zero() {
            "0s".to_string()
        } else {
            format!("{}ms", d.as_millis())
        };
    }
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    for (value, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if value > 0 {
            out.push_str(&format!("{value}{unit}"));
        }
    }
    out
}

/// Time left as a column shows it, rounded down: whole hours from one hour up (`15h`),
/// 5-minute steps below (`40m`), `<5m` at the end; and how long that reading stays true.
pub fn remaining(left: Duration) -> (String, Duration) {
    let secs = left.as_secs();
    let (text, floor_secs) = if secs >= 3600 {
        (format!("{}h", secs / 3600), secs / 3600 * 3600)
    } else if secs >= 300 {
        let minutes = secs / 300 * 5;
        (format!("{minutes}m"), minutes * 60)
    } else {
        ("<5m".to_string(), 0)
    };
    // The reading changes once `left` falls below `floor_secs`.
    let stays = left.saturating_sub(Duration::from_secs(floor_secs));
    (text, stays + Duration::from_millis(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_durations_read_like_go_durations() {
        assert_eq!(exact(Duration::from_secs(24 * 3600 + 300)), "24h5m");
        assert_eq!(exact(Duration::from_secs(3600 + 30)), "1h30s");
        assert_eq!(exact(Duration::from_secs(300)), "5m");
        assert_eq!(exact(Duration::from_secs(45)), "45s");
        assert_eq!(exact(Duration::from_millis(90)), "90ms");
        assert_eq!(exact(Duration::ZERO), "0s");
    }

    #[test]
    fn remaining_rounds_down_and_says_when_it_changes() {
        let (text, stays) = remaining(Duration::from_secs(15 * 3600 + 59 * 60));
        assert_eq!(text, "15h");
        assert_eq!(
            stays,
            Duration::from_secs(59 * 60) + Duration::from_millis(1)
        );
        let (text, stays) = remaining(Duration::from_secs(42 * 60 + 5));
        assert_eq!(text, "40m");
        assert_eq!(stays, Duration::from_secs(125) + Duration::from_millis(1));
        assert_eq!(remaining(Duration::from_secs(3599)).0, "55m");
        let (text, stays) = remaining(Duration::from_secs(8));
        assert_eq!(text, "<5m");
        assert_eq!(stays, Duration::from_secs(8) + Duration::from_millis(1));
    }
}
