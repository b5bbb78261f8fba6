//! When the kernel last saw a producer (`producers.last_seen_at`, through the kernel's admin
//! API `GET /v1/producers/{id}`), for `status.lastSeenAt`. Best effort: a kernel that cannot
//! be asked leaves the last reading in place and never blocks the credentials.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use uuid::Uuid;

use crate::controller::{admin, Context};
use crate::crd::FdcKernel;

/// How often a producer's last-seen time is read again (the `Last Seen` column shows the age
/// of the time read, so it is at most this much behind).
pub const REFRESH: Duration = Duration::from_secs(300);

/// What the kernel says.
#[derive(Debug, Clone, PartialEq)]
pub enum LastSeen {
    Seen(Timestamp),
    /// The kernel never saw the producer (or has no row of it).
    Never,
    /// Not known this pass (kernel without auth, admin token missing, kernel unreachable).
    Unknown,
}

/// `status.lastSeenAt` after reading `seen`, given the one before.
pub fn last_seen_at(before: Option<&Time>, seen: &LastSeen) -> Option<Time> {
    match seen {
        LastSeen::Seen(at) => Some(Time(*at)),
        LastSeen::Never => None,
        LastSeen::Unknown => before.cloned(),
    }
}

/// Asks `kernel`'s admin API when it last saw `producer_id`.
pub async fn read_last_seen(ctx: &Context, kernel: &FdcKernel, producer_id: Uuid) -> LastSeen {
    if !kernel.spec.auth.enabled {
        return LastSeen::Unknown;
    }
    let access = match admin::access(ctx, kernel, "to read when the producer was last seen").await {
        Ok(Ok(access)) => access,
        Ok(Err(unavailable)) => {
            tracing::debug!(
                reason = unavailable.reason,
                "no last-seen time: {}",
                unavailable.message
            );
            return LastSeen::Unknown;
        }
        Err(e) => {
            tracing::debug!(error = %e, "no last-seen time");
            return LastSeen::Unknown;
        }
    };
    match ctx
        .kernel_api
        .producer_last_seen(&access.target(kernel), producer_id)
        .await
    {
        Ok(Some(at)) => LastSeen::Seen(at),
        Ok(None) => LastSeen::Never,
        Err(e) => {
            tracing::debug!(error = %e, "cannot read the producer's last-seen time");
            LastSeen::Unknown
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_reading_keeps_the_last_one() {
        let before = Time(Timestamp::from_second(1_000).unwrap());
        let later = Timestamp::from_second(2_000).unwrap();
        assert_eq!(
            last_seen_at(Some(&before), &LastSeen::Seen(later)),
            Some(Time(later))
        );
        assert_eq!(
            last_seen_at(Some(&before), &LastSeen::Unknown),
            Some(before.clone())
        );
        assert_eq!(last_seen_at(Some(&before), &LastSeen::Never), None);
        assert_eq!(last_seen_at(None, &LastSeen::Unknown), None);
    }
}
