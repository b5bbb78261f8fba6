//! The ingest side of auth: token -> producer identity, or a denial with a `why` label.
//!
//! Signature checks are the expensive part, so verified claims are cached for `cache_ttl`,
//! keyed by SHA-256 of the token (the token itself is never kept as a key or logged); within a
//! batch each distinct token is hashed and looked up once.
//! Revocation lives in Postgres; each producer's state is cached for `cache_ttl` as well, so a
//! revocation takes effect on every replica within `cache_ttl`.
//!
//! Postgres outages never block ingest here. A producer whose state is cached (even past
//! `cache_ttl`) is decided from that last known state; a revocation made meanwhile takes effect
//! once Postgres answers again (the first lookup after it is back, at most
//! [`breaker::MAX_PAUSE`](crate::retry::breaker::MAX_PAUSE) later). A producer never seen has no known
//! state: its entries are left undecided (`None`), and the gate keeps them pending.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use super::last_seen::LastSeen;
use super::metrics::AuthMetrics;
use super::producers_db::{self, SeenProducer};
use crate::retry::breaker::OutageBreaker;
use fdc_common::config::auth::AuthConfig;
use fdc_common::keys;
use fdc_common::token::{Claims, TokenVerifier};

/// Who sent an entry, from its verified token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub producer_id: Uuid,
}

/// Why an entry was refused: `why` is the metric label and the DLQ `detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("authentication failed: {why}")]
pub struct Denial {
    pub why: &'static str,
}

/// The outcome for one entry.
pub type Verdict = Result<Identity, Denial>;

/// Failures building an authenticator from config.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error(transparent)]
    Key(#[from] keys::KeyError),
    #[error("cannot register auth metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// Shared, not cloned: a batch of a thousand entries from one producer looks its claims up a
/// thousand times.
struct CachedClaims {
    claims: Arc<Claims>,
    until: Instant,
}

pub struct Authenticator {
    verifier: TokenVerifier,
    pool: PgPool,
    ttl: Duration,
    max_entries: usize,
    tokens: Mutex<HashMap<[u8; 32], CachedClaims>>,
    /// producer id -> (revoked, valid until). Entries past `until` are kept (until the cache
    /// is over its bound) as the last known state for Postgres outages.
    producers: Mutex<HashMap<Uuid, (bool, Instant)>>,
    breaker: OutageBreaker,
    last_seen: LastSeen,
    metrics: AuthMetrics,
}

impl Authenticator {
    pub fn new(
        verifier: TokenVerifier,
        pool: PgPool,
        config: &AuthConfig,
        metrics: AuthMetrics,
    ) -> Authenticator {
        Authenticator {
            verifier,
            pool,
            ttl: config.cache_ttl,
            max_entries: config.cache_max_entries,
            tokens: Mutex::new(HashMap::new()),
            producers: Mutex::new(HashMap::new()),
            breaker: OutageBreaker::default(),
            last_seen: LastSeen::new(config.cache_max_entries),
            metrics,
        }
    }

    /// Build from config: verify keys = `verify_keys` plus the public half of `signing_key`.
    pub fn from_config(
        config: &AuthConfig,
        pool: PgPool,
        metrics: AuthMetrics,
    ) -> Result<Authenticator, AuthSetupError> {
        let verifier = verifier_from_config(config)?;
        Ok(Authenticator::new(verifier, pool, config, metrics))
    }

    pub fn metrics(&self) -> &AuthMetrics {
        &self.metrics
    }

    /// Kids of the accepted verification keys.
    pub fn kids(&self) -> Vec<String> {
        self.verifier.kids()
    }

    /// Note producers as seen now; written to `producers.last_seen_at` by
    /// [`flush_last_seen`](Self::flush_last_seen), never on the ingest path.
    pub fn note_seen(&self, producer_ids: impl IntoIterator<Item = Uuid>) {
        self.last_seen.note(producer_ids, chrono::Utc::now());
    }

    /// Write the noted last-seen times (best effort: on failure they wait for the next call).
    pub async fn flush_last_seen(&self) -> Result<usize, sqlx::Error> {
        self.last_seen.flush(&self.pool).await
    }

    /// Authenticate a batch: one verdict per token, in order, with at most one Postgres round
    /// trip for the producers whose state is not cached (or is older than `cache_ttl`).
    /// Denials are counted in `kernel_auth_denied_total`.
    ///
    /// Never fails: when Postgres cannot answer, producers with a cached state are decided
    /// from it (`kernel_auth_stale_decisions_total`), and entries of producers never seen are
    /// `None` (undecided; the caller keeps them pending).
    pub async fn authenticate_batch(&self, tokens: &[Option<&str>]) -> Vec<Option<Verdict>> {
        let now = Instant::now();
        let claims = self.verify_all(tokens, now);

        // Producers whose revocation state must come from Postgres.
        let mut unknown: HashMap<Uuid, SeenProducer> = HashMap::new();
        {
            let cache = self.producers.lock().expect("producer cache lock");
            for c in claims.iter().flatten() {
                let fresh = cache.get(&c.sub).is_some_and(|(_, until)| *until > now);
                if !fresh {
                    unknown.entry(c.sub).or_insert_with(|| SeenProducer {
                        producer_id: c.sub,
                        name: c.name.clone(),
                        schema: c.schema.clone(),
                    });
                }
            }
        }
        if !unknown.is_empty() && self.breaker.allows(now) {
            let seen: Vec<SeenProducer> = unknown.into_values().collect();
            match producers_db::ensure_and_check(&self.pool, &seen).await {
                Ok(fetched) => {
                    if self.breaker.is_open() {
                        tracing::info!("Postgres answers again; revocation states refreshed");
                    }
                    self.breaker.success();
                    let mut cache = self.producers.lock().expect("producer cache lock");
                    if cache.len() + fetched.len() > self.max_entries {
                        cache.retain(|_, (_, until)| *until > now);
                    }
                    for (id, revoked) in fetched {
                        cache.insert(id, (revoked, now + self.ttl));
                    }
                }
                Err(e) => {
                    let pause = self.breaker.failure(Instant::now());
                    tracing::warn!(
                        error = %e,
                        producers = seen.len(),
                        pause_ms = pause.as_millis() as u64,
                        "revocation check failed; deciding from the last known state, unknown producers stay pending"
                    );
                }
            }
        }
        let cache = self.producers.lock().expect("producer cache lock");
        let mut stale = 0u64;
        let verdicts: Vec<Option<Verdict>> = claims
            .into_iter()
            .map(|c| {
                let c = match c {
                    Ok(c) => c,
                    Err(why) => return Some(Err(Denial { why })),
                };
                // No state: never seen, and Postgres could not tell.
                let (revoked, until) = cache.get(&c.sub).copied()?;
                if until <= now {
                    stale += 1;
                }
                if revoked {
                    return Some(Err(Denial { why: "revoked" }));
                }
                Some(Ok(Identity { producer_id: c.sub }))
            })
            .collect();
        drop(cache);
        self.metrics.stale_decisions.inc_by(stale);
        for v in verdicts.iter().flatten() {
            if let Err(d) = v {
                self.metrics.denied.with_label_values(&[d.why]).inc();
            }
        }
        verdicts
    }

    /// Verified claims of each token, from the cache or the verifier; the error is the denial
    /// label. Work is per distinct token of the batch, not per entry (a producer's entries
    /// repeat its token): one SHA-256, one cache lookup, at most one signature check each.
    /// The batch's own token map borrows the entries' tokens and is gone after the call.
    fn verify_all(
        &self,
        tokens: &[Option<&str>],
        now: Instant,
    ) -> Vec<Result<Arc<Claims>, &'static str>> {
        let mut distinct: Vec<&str> = Vec::new();
        let mut index: foldhash::HashMap<&str, usize> = foldhash::HashMap::default();
        let slots: Vec<Option<usize>> = tokens
            .iter()
            .map(|t| {
                let t = t.filter(|t| !t.is_empty())?;
                Some(*index.entry(t).or_insert_with(|| {
                    distinct.push(t);
                    distinct.len() - 1
                }))
            })
            .collect();
        let keys: Vec<[u8; 32]> = distinct
            .iter()
            .map(|t| Sha256::digest(t.as_bytes()).into())
            .collect();
        let cached: Vec<Option<Arc<Claims>>> = {
            let cache = self.tokens.lock().expect("token cache lock");
            keys.iter()
                .map(|key| {
                    let hit = cache.get(key).filter(|c| c.until > now)?;
                    Some(hit.claims.clone())
                })
                .collect()
        };
        let from_cache = cached.iter().flatten().count();
        let mut fresh = Vec::new();
        let results: Vec<Result<Arc<Claims>, &'static str>> = distinct
            .iter()
            .zip(&keys)
            .zip(cached)
            .map(|((token, key), cached)| {
                if let Some(claims) = cached {
                    return Ok(claims);
                }
                let claims = Arc::new(self.verifier.verify(token).map_err(|e| e.why())?);
                // Never cache past the token's own expiry.
                let left = claims.exp - chrono::Utc::now().timestamp();
                let until = now + self.ttl.min(Duration::from_secs(left.max(0) as u64));
                fresh.push((
                    *key,
                    CachedClaims {
                        claims: claims.clone(),
                        until,
                    },
                ));
                Ok(claims)
            })
            .collect();

        // miss: a signature checked (valid or not); hit: an accepted entry whose claims were
        // verified before (cache, or an earlier entry of this batch). A refused token repeated
        // in a batch is neither: a healthy hit ratio must not hide refusals.
        let verified = distinct.len() - from_cache;
        let accepted = slots
            .iter()
            .flatten()
            .filter(|&&i| results[i].is_ok())
            .count();
        let metrics = &self.metrics.token_cache;
        metrics
            .with_label_values(&["hit"])
            .inc_by((accepted - fresh.len()) as u64);
        metrics.with_label_values(&["miss"]).inc_by(verified as u64);
        if !fresh.is_empty() {
            fresh.truncate(self.max_entries);
            let mut cache = self.tokens.lock().expect("token cache lock");
            if cache.len() + fresh.len() > self.max_entries {
                cache.retain(|_, c| c.until > now);
                if cache.len() + fresh.len() > self.max_entries {
                    // Still full of live entries: start over rather than grow without bound.
                    cache.clear();
                }
            }
            cache.extend(fresh);
        }
        slots
            .into_iter()
            .map(|slot| match slot {
                Some(i) => results[i].clone(),
                None => Err("missing"),
            })
            .collect()
    }
}

/// The verifier described by `config`: every `verify_keys` file plus the signing key's public
/// half, with the configured issuer, audience and leeway.
pub fn verifier_from_config(config: &AuthConfig) -> Result<TokenVerifier, keys::KeyError> {
    let mut verifier =
        TokenVerifier::from_key_files(&config.verify_keys, &config.issuer, &config.audience)?
            .with_leeway(config.leeway);
    if let Some(path) = &config.signing_key {
        verifier.add_key(&keys::load_signing_key(path)?.verifying_key());
    }
    Ok(verifier)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fdc_common::token::TokenIssuer;
    use fdc_testenv::TestEnv;

    fn cache_count(metrics: &AuthMetrics, result: &str) -> u64 {
        metrics.token_cache.with_label_values(&[result]).get()
    }

    #[tokio::test]
    async fn a_token_is_verified_once_and_then_answered_from_the_cache() {
        let env = TestEnv::start().await.unwrap();
        let pool = env.pg().await;
        crate::store::MIGRATOR.run(&pool).await.unwrap();
        let key = keys::generate();
        let config = AuthConfig::default();
        let issuer = TokenIssuer::new(&key, &config.issuer, &config.audience).unwrap();
        let verifier =
            TokenVerifier::new(&config.issuer, &config.audience).with_key(&key.verifying_key());
        let metrics = AuthMetrics::register(&prometheus::Registry::new()).unwrap();
        let auth = Authenticator::new(verifier, pool, &config, metrics.clone());
        let (a, b) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
        let token_a = issuer
            .issue(a, "a", None, Duration::from_secs(600))
            .unwrap()
            .token;
        let token_b = issuer
            .issue(b, "b", None, Duration::from_secs(600))
            .unwrap()
            .token;

        // One batch: token a three times, b once, one entry without a token, one malformed.
        let batch = [
            Some(token_a.as_str()),
            Some(token_a.as_str()),
            None,
            Some(token_b.as_str()),
            Some("not-a-jwt"),
            Some(token_a.as_str()),
        ];
        let ids: Vec<Result<Uuid, &str>> = auth
            .authenticate_batch(&batch)
            .await
            .into_iter()
            .map(|v| v.unwrap().map(|i| i.producer_id).map_err(|d| d.why))
            .collect();
        assert_eq!(
            ids,
            [Ok(a), Ok(a), Err("missing"), Ok(b), Err("malformed"), Ok(a)]
        );
        // Signature checks: a, b and the malformed one; the other two a's reuse a's.
        assert_eq!(cache_count(&metrics, "miss"), 3);
        assert_eq!(cache_count(&metrics, "hit"), 2);

        // The next batch finds a and b cached; a refused token is never cached.
        let again = auth
            .authenticate_batch(&[Some(&token_b), Some("not-a-jwt"), Some(&token_a)])
            .await;
        assert_eq!(again.len(), 3);
        assert_eq!(cache_count(&metrics, "miss"), 4);
        assert_eq!(cache_count(&metrics, "hit"), 4);

        // A refused token repeated: checked once, and no hits for it.
        let refused = auth
            .authenticate_batch(&[Some("not-a-jwt"), Some("not-a-jwt")])
            .await;
        assert!(refused.iter().all(|v| matches!(v, Some(Err(_)))));
        assert_eq!(cache_count(&metrics, "miss"), 5);
        assert_eq!(cache_count(&metrics, "hit"), 4);
    }
}
