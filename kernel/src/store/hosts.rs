//! Several Postgres servers in one URL, and following the one that accepts writes.
//!
//! `postgres://user@h1:5432,h2:5432/db?target_session_attrs=read-write` names a primary and its
//! standbys, as libpq takes it. sqlx connects to one host only, so the store selects the host
//! itself: it tries the hosts in order and keeps the first that answers
//! `SHOW transaction_read_only` with `off` (with `target_session_attrs=any`, the first that
//! answers at all). The pool then connects there. An error that says the server went away or
//! turned read-only marks the choice stale; the next operation selects again, and connections
//! opened before the switch are closed instead of being handed out. A new connection is
//! checked too: one that lands on a read-only server is refused, so a batch is never sent to a
//! standby.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

use super::reach::Endpoint;

/// libpq's `target_session_attrs`, the values the kernel supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionAttrs {
    /// Any server that answers.
    Any,
    /// A server that accepts writes (`read-write`, or `primary`).
    ReadWrite,
}

/// A Postgres URL split into one URL per host, and what the session must allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostUrls {
    pub urls: Vec<String>,
    pub attrs: SessionAttrs,
}

/// Splits `scheme://userinfo@h1:p1,h2:p2/db?query` into one URL per host, dropping
/// `target_session_attrs` from the query (sqlx does not know it). The error says what to fix;
/// it never echoes the URL (it may hold a password).
pub fn split_hosts(url: &str) -> Result<HostUrls, String> {
    let Some(scheme_end) = url.find("://") else {
        return Err("must start with postgres://".into());
    };
    let (scheme, rest) = (&url[..scheme_end + 3], &url[scheme_end + 3..]);
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = (&rest[..authority_end], &rest[authority_end..]);
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(at) => (&authority[..=at], &authority[at + 1..]),
        None => ("", authority),
    };
    let (path, query) = match tail.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (tail, None),
    };
    let mut attrs = SessionAttrs::Any;
    let mut kept = Vec::new();
    for param in query.into_iter().flat_map(|q| q.split('&')) {
        match param.split_once('=') {
            Some(("target_session_attrs", value)) => {
                attrs = match value {
                    "any" => SessionAttrs::Any,
                    "read-write" | "primary" => SessionAttrs::ReadWrite,
                    other => {
                        return Err(format!(
                            "target_session_attrs={other} is not supported; use read-write \
                             (the kernel writes) or any"
                        ))
                    }
                }
            }
            _ => kept.push(param),
        }
    }
    let query = if kept.is_empty() {
        String::new()
    } else {
        format!("?{}", kept.join("&"))
    };
    let urls: Vec<String> = hosts
        .split(',')
        .map(|host| {
            if host.is_empty() && authority.contains(',') {
                Err("has an empty host in its host list (h1:5432,h2:5432)".to_string())
            } else {
                Ok(format!("{scheme}{userinfo}{host}{path}{query}"))
            }
        })
        .collect::<Result<_, _>>()?;
    Ok(HostUrls { urls, attrs })
}

/// The candidate servers of a pool and which one it connects to now.
pub struct Hosts {
    candidates: Vec<PgConnectOptions>,
    attrs: SessionAttrs,
    current: AtomicUsize,
    /// The current choice may be wrong: select again before the next operation.
    stale: AtomicBool,
    /// When the pool last switched servers: older connections are closed, not reused.
    switched_at: Mutex<Instant>,
    selecting: tokio::sync::Mutex<()>,
}

impl Hosts {
    /// `candidates` in the URL's order; the first is the pool's until a selection says
    /// otherwise. Starts stale: the first operation selects.
    pub fn new(candidates: Vec<PgConnectOptions>, attrs: SessionAttrs) -> Arc<Hosts> {
        assert!(!candidates.is_empty(), "a URL names at least one host");
        Arc::new(Hosts {
            candidates,
            attrs,
            current: AtomicUsize::new(0),
            stale: AtomicBool::new(true),
            switched_at: Mutex::new(Instant::now()),
            selecting: tokio::sync::Mutex::new(()),
        })
    }

    pub fn current(&self) -> Endpoint {
        Endpoint::of(&self.candidates[self.current.load(Ordering::Acquire)])
    }

    /// All servers, for an error that none would do.
    pub fn all(&self) -> String {
        let names: Vec<String> = self
            .candidates
            .iter()
            .map(|c| Endpoint::of(c).to_string())
            .collect();
        names.join(",")
    }

    pub fn mark_stale(&self) {
        self.stale.store(true, Ordering::Release);
    }

    pub fn is_stale(&self) -> bool {
        self.stale.load(Ordering::Acquire)
    }

    /// False for a connection opened before the pool last switched servers.
    pub fn is_current(&self, age: Duration) -> bool {
        let switched_at = *self.switched_at.lock().expect("not poisoned");
        Instant::now().checked_sub(age).unwrap_or(switched_at) >= switched_at
    }

    /// Tries the servers in order and points `pool` at the first that fits `attrs`. Returns
    /// whether the pool moved to another server; the error lists why each one was passed over.
    pub async fn select(&self, pool: &PgPool, timeout: Duration) -> Result<bool, String> {
        let _one_at_a_time = self.selecting.lock().await;
        if !self.is_stale() {
            return Ok(false);
        }
        let mut passed_over = Vec::new();
        for (i, candidate) in self.candidates.iter().enumerate() {
            let endpoint = Endpoint::of(candidate);
            let verdict = match tokio::time::timeout(timeout, self.fits(candidate)).await {
                Ok(verdict) => verdict,
                Err(_) => Err(format!(
                    "no answer within {}",
                    humantime::format_duration(timeout)
                )),
            };
            match verdict {
                Ok(()) => {
                    let moved = self.current.swap(i, Ordering::AcqRel) != i;
                    if moved {
                        pool.set_connect_options(candidate.clone());
                        *self.switched_at.lock().expect("not poisoned") = Instant::now();
                        tracing::warn!(server = %endpoint, "Postgres: switched to another server");
                    }
                    self.stale.store(false, Ordering::Release);
                    return Ok(moved);
                }
                Err(why) => passed_over.push(format!("{endpoint}: {why}")),
            }
        }
        Err(passed_over.join("; "))
    }

    async fn fits(&self, candidate: &PgConnectOptions) -> Result<(), String> {
        let mut conn = candidate.connect().await.map_err(|e| e.to_string())?;
        let verdict = self.accepts(&mut conn).await.map_err(|e| e.to_string());
        let _ = conn.close().await;
        match verdict? {
            true => Ok(()),
            false => Err("read-only (a standby), target_session_attrs=read-write".into()),
        }
    }

    /// Whether a connection's server fits `attrs`.
    pub async fn accepts(&self, conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
        if self.attrs == SessionAttrs::Any {
            return Ok(true);
        }
        let read_only: String = sqlx::query_scalar("SHOW transaction_read_only")
            .fetch_one(&mut *conn)
            .await?;
        Ok(read_only == "off")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use fdc_common::config::PostgresConfig;

    #[test]
    fn one_url_per_host_with_the_rest_kept() {
        let split = split_hosts(
            "postgres://u:pw@h1:5432,h2:6543/db?sslmode=disable&target_session_attrs=read-write",
        )
        .unwrap();
        assert_eq!(
            split.urls,
            [
                "postgres://u:pw@h1:5432/db?sslmode=disable",
                "postgres://u:pw@h2:6543/db?sslmode=disable"
            ]
        );
        assert_eq!(split.attrs, SessionAttrs::ReadWrite);
    }

    #[test]
    fn a_single_host_url_stays_as_it_is() {
        let split = split_hosts("postgres://u@db/x").unwrap();
        assert_eq!(split.urls, ["postgres://u@db/x"]);
        assert_eq!(split.attrs, SessionAttrs::Any);
        let split = split_hosts("postgres://[::1]:5432,db?target_session_attrs=primary").unwrap();
        assert_eq!(split.urls, ["postgres://[::1]:5432", "postgres://db"]);
        assert_eq!(split.attrs, SessionAttrs::ReadWrite);
    }

    #[test]
    fn unsupported_attrs_and_empty_hosts_are_refused_without_the_password() {
        let err =
            split_hosts("postgres://u:s3cret@a,b/x?target_session_attrs=standby").unwrap_err();
        assert!(err.contains("target_session_attrs=standby"), "{err}");
        assert!(err.contains("read-write"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
        let err = split_hosts("postgres://u:s3cret@a,,b/x").unwrap_err();
        assert!(err.contains("empty host"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[tokio::test]
    async fn an_unsupported_target_session_attrs_names_the_key_and_the_fix() {
        let config = PostgresConfig {
            url: "postgres://u:s3cret@a:5432,b:5432/db?target_session_attrs=standby".into(),
            ..PostgresConfig::default()
        };
        let err = Store::connect_lazy(&config, "test").err().expect("refused");
        let text = err.to_string();
        assert!(text.starts_with("postgres.url is invalid"), "{text}");
        assert!(text.contains("target_session_attrs=standby"), "{text}");
        assert!(text.contains("use read-write"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
    }

    #[tokio::test]
    async fn several_hosts_start_at_the_first() {
        let config = PostgresConfig {
            url: "postgres://u@h1:5433,h2:5434/db?target_session_attrs=read-write".into(),
            ..PostgresConfig::default()
        };
        let store = Store::connect_lazy(&config, "test").unwrap();
        assert_eq!(store.endpoint().unwrap().to_string(), "h1:5433");
    }
}
