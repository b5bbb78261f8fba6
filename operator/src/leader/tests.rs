//! Leader election against the mock API server: the Lease requests kube-lease-manager makes
//! through [`acquire`], and what [`Leadership`] reports.
//!
//! Lease timestamps are set relative to the wall clock, which is what the lease manager
//! compares them with: "renewed now" keeps a lease valid for the whole test, "renewed 11s
//! ago" (of 15s, with a 5s grace) makes the holder renew at once.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};

use super::{acquire, LEASE_DURATION_SECS};
use crate::controller::fixtures::{mock_client, ApiServer};

const NS: &str = "fdc-system";
const LEASE: &str = "fdc-operator-leader";
const ME: &str = "operator-a";
const OTHER: &str = "operator-b";

fn lease_uri() -> String {
    format!("/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/{LEASE}")
}

/// Lease writes carry this replica's own field manager.
fn patch_uri() -> String {
    format!("{}?&fieldManager=fdc-operator-lease-{ME}", lease_uri())
}

/// A Lease as the API server returns it; `holder` renewed it `ago` seconds before now.
fn lease(holder: Option<&str>, ago: i64) -> Value {
    let spec = match holder {
        None => json!({}),
        Some(h) => json!({
            "holderIdentity": h,
            "leaseDurationSeconds": LEASE_DURATION_SECS,
            "acquireTime": MicroTime(Timestamp::now() - SignedDuration::from_secs(ago)),
            "renewTime": MicroTime(Timestamp::now() - SignedDuration::from_secs(ago)),
            "leaseTransitions": 1,
        }),
    };
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": LEASE, "namespace": NS, "resourceVersion": "1"},
        "spec": spec,
    })
}

/// Takes a free Lease (created on first use); the Lease read back after taking it was
/// renewed `renewed_ago` seconds before now.
async fn take_free_lease(server: &mut ApiServer, renewed_ago: i64) {
    // Build: the Lease does not exist yet, so it is created (empty: nobody holds it).
    server.expect("GET", &lease_uri()).await.not_found();
    let call = server
        .expect(
            "POST",
            &format!("/apis/coordination.k8s.io/v1/namespaces/{NS}/leases?"),
        )
        .await;
    assert_eq!(call.body["metadata"]["name"], LEASE);
    call.ok(&lease(None, 0));
    // Watch loop: reads the Lease, finds it free, takes it with a server-side apply ...
    server.expect("GET", &lease_uri()).await.ok(&lease(None, 0));
    server.expect("GET", &lease_uri()).await.ok(&lease(None, 0));
    let call = server.expect("PATCH", &patch_uri()).await;
    assert_eq!(call.body["spec"]["holderIdentity"], ME);
    assert_eq!(
        call.body["spec"]["leaseDurationSeconds"],
        LEASE_DURATION_SECS
    );
    call.ok(&lease(Some(ME), 0));
    // ... counts the transition, and reads back who holds it.
    let call = server.expect("PATCH", &patch_uri()).await;
    assert_eq!(call.body["spec"]["leaseTransitions"], 1);
    call.ok(&lease(Some(ME), 0));
    server
        .expect("GET", &lease_uri())
        .await
        .ok(&lease(Some(ME), renewed_ago));
}

#[tokio::test]
async fn a_free_lease_is_taken_and_dropping_leadership_releases_it() {
    let (client, mut server) = mock_client();
    let task = tokio::spawn(async move { acquire(client, NS, LEASE, ME).await });
    take_free_lease(&mut server, 0).await;
    let leadership = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("acquire returns once the Lease is ours")
        .unwrap()
        .unwrap();
    // Valid for 15s and renewed 5s before expiry: no renewal during the test.
    server.expect_quiet(Duration::from_millis(300)).await;

    // Shutdown drops the leadership: the Lease is released at once, so a standby takes
    // over without waiting out the lease duration.
    drop(leadership);
    let call = server.expect("PATCH", &patch_uri()).await;
    assert_eq!(
        call.body["spec"]["holderIdentity"],
        Value::Null,
        "{}",
        call.body
    );
    call.ok(&lease(None, 0));
    server.expect("GET", &lease_uri()).await.ok(&lease(None, 0));
}

#[tokio::test]
async fn a_lease_held_by_a_live_leader_keeps_this_replica_waiting() {
    let (client, mut server) = mock_client();
    let task = tokio::spawn(async move { acquire(client, NS, LEASE, ME).await });
    server
        .expect("GET", &lease_uri())
        .await
        .ok(&lease(Some(OTHER), 0));
    server
        .expect("GET", &lease_uri())
        .await
        .ok(&lease(Some(OTHER), 0));
    // The other replica's lease is valid for 15s: no write, no return.
    server.expect_quiet(Duration::from_millis(500)).await;
    assert!(!task.is_finished(), "a standby must not lead");
    task.abort();
}

#[tokio::test]
async fn leadership_is_lost_when_another_replica_holds_the_lease_at_renewal() {
    let (client, mut server) = mock_client();
    let task = tokio::spawn(async move { acquire(client, NS, LEASE, ME).await });
    // Read back as renewed 11s ago: due for renewal right away.
    take_free_lease(&mut server, 11).await;
    let mut leadership = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("acquire returns once the Lease is ours")
        .unwrap()
        .unwrap();

    let lost = tokio::spawn(async move {
        leadership.lost().await;
        leadership
    });
    // Renewal, then the read back shows another holder (e.g. this replica was partitioned
    // from the API server long enough for a standby to take the Lease over).
    let call = server.expect("PATCH", &patch_uri()).await;
    assert_eq!(
        call.body["spec"]["leaseDurationSeconds"],
        LEASE_DURATION_SECS
    );
    assert!(call.body["spec"]["renewTime"].is_string(), "{}", call.body);
    call.ok(&lease(Some(ME), 0));
    assert!(!lost.is_finished());
    server
        .expect("GET", &lease_uri())
        .await
        .ok(&lease(Some(OTHER), 0));
    let leadership = tokio::time::timeout(Duration::from_secs(5), lost)
        .await
        .expect("lost() resolves when another replica holds the Lease")
        .unwrap();
    drop(leadership);
}
