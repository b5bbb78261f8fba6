//! The bounded entry reader's own connection against a real Redis: the URL forms the kernel
//! accepts (password, user and password, database), BLOCK timeouts, reconnecting after a
//! Redis restart or a call cut short, and connection errors that name the server and the OS
//! cause.

use std::time::{Duration, Instant};

use crate::support::*;
use fdc_kernel::redis_io::{EntryBounds, EntryConn};

const BOUNDS: EntryBounds = EntryBounds {
    max_entry_bytes: 64 * 1024,
    prefix_bytes: 1024,
};

fn conn(url: &str) -> EntryConn {
    EntryConn::new(redis::Client::open(url).unwrap().get_connection_info()).unwrap()
}

fn args(words: &[&str]) -> Vec<Vec<u8>> {
    words.iter().map(|w| w.as_bytes().to_vec()).collect()
}

/// XREADGROUP of new entries on `events` for consumer `c`, blocking up to `block_ms`.
async fn read(
    conn: &mut EntryConn,
    block_ms: u64,
) -> Result<Vec<fdc_kernel::protocol::Entry>, fdc_kernel::redis_io::LinkError> {
    let block = block_ms.to_string();
    conn.read(
        &args(&[
            "GROUP", "g", "c", "COUNT", "10", "BLOCK", &block, "STREAMS", "events", ">",
        ]),
        &BOUNDS,
        Duration::from_millis(block_ms) + Duration::from_secs(5),
    )
    .await
}

async fn setup(url: &str, entries: usize) {
    let mut c = redis_conn_at(url).await;
    create_group(&c, "events", "g").await;
    for i in 0..entries {
        let _: String = redis::cmd("XADD")
            .arg("events")
            .arg("*")
            .arg("n")
            .arg(i)
            .query_async(&mut c)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn password_user_and_database_from_the_url() {
    let server = RedisServer::start().await.unwrap();
    let port = server.port();
    let mut admin = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "reader", "on", ">reader-pw", "~*", "&*", "+@all"][..])
        .query_async(&mut admin)
        .await
        .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "requirepass", "default-pw"][..])
        .query_async(&mut admin)
        .await
        .unwrap();

    // Password only, database 2: sees what was written to database 2 only.
    let url = format!("redis://:default-pw@127.0.0.1:{port}/2");
    setup(&url, 3).await;
    assert_eq!(read(&mut conn(&url), 10).await.unwrap().len(), 3);
    // User and password, database 3 (empty).
    let url = format!("redis://reader:reader-pw@127.0.0.1:{port}/3");
    setup(&url, 1).await;
    let got = read(&mut conn(&url), 10).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].field("n"), Some(&b"0"[..]));

    // A wrong password: Redis's answer, never the password.
    let url = format!("redis://reader:not-the-pw@127.0.0.1:{port}/3");
    let err = read(&mut conn(&url), 10).await.unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("Redis at 127.0.0.1:{port} answered: WRONGPASS")),
        "{err}"
    );
    assert!(!err.contains("not-the-pw"), "{err}");
}

#[tokio::test]
async fn blocks_for_block_then_returns_nothing() {
    let server = RedisServer::start().await.unwrap();
    setup(&server.url(), 0).await;
    let mut c = conn(&server.url());
    let started = Instant::now();
    assert!(read(&mut c, 300).await.unwrap().is_empty());
    assert!(started.elapsed() >= Duration::from_millis(300));
    // And the link is still good for the next read.
    setup(&server.url(), 2).await;
    assert_eq!(read(&mut c, 300).await.unwrap().len(), 2);
}

#[tokio::test]
async fn reconnects_after_a_restart_and_after_a_call_cut_short() {
    let mut server = RedisServer::start().await.unwrap();
    setup(&server.url(), 1).await;
    let mut c = conn(&server.url());
    assert_eq!(read(&mut c, 10).await.unwrap().len(), 1);

    server.restart().await.unwrap();
    // The old link is dead: the first call may fail on it, a later one connects afresh.
    let _ = read(&mut c, 10).await;
    setup(&server.url(), 2).await;
    assert_eq!(read(&mut c, 10).await.unwrap().len(), 2);

    // A blocking read abandoned mid-wait leaves its reply unread on the link; the next call
    // must not take that reply for its own.
    let cut = tokio::time::timeout(Duration::from_millis(100), read(&mut c, 2000)).await;
    assert!(cut.is_err(), "the read was cut short");
    let started = Instant::now();
    assert!(read(&mut c, 10).await.unwrap().is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "answered by a fresh link, not by the end of the abandoned BLOCK"
    );
    setup(&server.url(), 1).await;
    let got = read(&mut c, 10).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].field("n"), Some(&b"0"[..]));
}

#[tokio::test]
async fn a_refused_connection_names_the_server_and_the_os_cause() {
    let port = ports::free_port().unwrap();
    let err = read(&mut conn(&format!("redis://127.0.0.1:{port}/")), 10)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!("cannot connect to Redis at 127.0.0.1:{port}: Connection refused (os error 111)")
    );
}

/// XCLAIM and XAUTOCLAIM replies through the bounded reader: a field name that is not UTF-8
/// and a 200 KB value come back as flawed entries beside a good one, not as a failed reply.
#[tokio::test]
async fn claims_carry_flawed_entries_beside_good_ones() {
    use fdc_kernel::entry::FlawReason;

    let server = RedisServer::start().await.unwrap();
    setup(&server.url(), 0).await;
    let mut admin = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut ids = Vec::new();
    for fields in [
        vec![(b"n".to_vec(), b"1".to_vec())],
        vec![(b"\xff\xfename".to_vec(), b"v".to_vec())],
        vec![(b"big".to_vec(), vec![b'b'; 200_000])],
    ] {
        let id: String = redis::cmd("XADD")
            .arg("events")
            .arg("*")
            .arg(&fields)
            .query_async(&mut admin)
            .await
            .unwrap();
        ids.push(id);
    }
    // Delivered to a consumer that never acknowledges.
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg(&["GROUP", "g", "ghost", "STREAMS", "events", ">"][..])
        .query_async(&mut admin)
        .await
        .unwrap();

    let mut c = conn(&server.url());
    let mut claim = args(&["events", "g", "c", "0"]);
    claim.extend(ids.iter().map(|id| id.as_bytes().to_vec()));
    let got = c
        .claim("events", &claim, &BOUNDS, Duration::from_secs(5))
        .await
        .unwrap();
    let reasons: Vec<Option<FlawReason>> = got
        .iter()
        .map(|e| e.flaw.as_ref().map(|f| f.why.reason))
        .collect();
    assert_eq!(
        reasons,
        [
            None,
            Some(FlawReason::BadEncoding),
            Some(FlawReason::TooLarge)
        ]
    );
    let big = &got[2].flaw.as_ref().unwrap().fields[0];
    assert_eq!((big.value.len(), big.value_len), (1024, 200_000));

    let (next, got, deleted) = c
        .autoclaim(
            "events",
            &args(&["events", "g", "d", "0", "0-0", "COUNT", "10"]),
            &BOUNDS,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(next, "0-0");
    assert!(deleted.is_empty());
    assert_eq!(got.len(), 3);
    assert!(got[0].flaw.is_none() && got[1].flaw.is_some() && got[2].flaw.is_some());
}
