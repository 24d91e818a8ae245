//! A compiled JWT provider: the rules its tokens must meet, the keys that sign them, and a
//! cache of tokens whose signature already verified.
//!
//! Signature checks cost 30–80 µs (RS256, ES256, EdDSA with ring; `cargo bench --bench
//! auth`), several times the gateway's whole per-request cost, while clients send the same
//! token for minutes. So a verified token is remembered — keyed by the whole token string,
//! compared exactly — for at most 5 minutes, and only with the key set it was verified
//! against: a JWKS fetch that changes the keys makes every remembered token verify again.
//! `exp` and `nbf` are checked on every request, remembered or not.

use super::jwt::{self, Claims, KeySet, Rules, TokenError};
use super::keys::Jwks;
use crate::state::Gateway;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest a verified token is remembered.
const REMEMBER_FOR: Duration = Duration::from_secs(300);

/// Where a provider's keys come from.
#[derive(Debug)]
pub enum KeySource {
    /// A PEM public key or an HMAC secret, read when the config was compiled.
    Fixed(Arc<KeySet>),
    /// A JWKS endpoint.
    Jwks(Arc<Jwks>),
}

impl KeySource {
    fn current(&self) -> Arc<KeySet> {
        match self {
            KeySource::Fixed(set) => set.clone(),
            KeySource::Jwks(jwks) => jwks.keys(),
        }
    }
}

/// A token that verified, and the key set that verified it.
struct Verified {
    token: Box<str>,
    claims: Arc<Claims>,
    keys: Arc<KeySet>,
    at: Instant,
}

const SHARDS: usize = 16;

/// Verified tokens by a 64-bit fingerprint of their last bytes (the signature's tail), each
/// compared exactly on a hit. Hashing ~40 bytes instead of a whole token (often 500+ bytes)
/// is what makes a hit cheap; only tokens that verified are ever stored, so nobody can
/// choose colliding entries. A full shard drops its oldest-found expired entry, else an
/// arbitrary one.
struct VerifiedTokens {
    shards: [Mutex<HashMap<u64, Verified>>; SHARDS],
    per_shard: usize,
    hasher: RandomState,
}

impl VerifiedTokens {
    fn new(entries: u64) -> VerifiedTokens {
        let per_shard = usize::try_from(entries).unwrap_or(usize::MAX).div_ceil(SHARDS).max(1);
        VerifiedTokens {
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            per_shard,
            hasher: RandomState::new(),
        }
    }

    fn fingerprint(&self, token: &str) -> u64 {
        let tail = token.as_bytes().get(token.len().saturating_sub(40)..).unwrap_or_default();
        self.hasher.hash_one((token.len(), tail))
    }

    fn shard(&self, fp: u64) -> std::sync::MutexGuard<'_, HashMap<u64, Verified>> {
        #[allow(clippy::indexing_slicing, clippy::cast_possible_truncation)] // < SHARDS by construction
        let shard = &self.shards[(fp % SHARDS as u64) as usize];
        shard.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn get(&self, token: &str, keys: &Arc<KeySet>) -> Option<Arc<Claims>> {
        let fp = self.fingerprint(token);
        let shard = self.shard(fp);
        let v = shard.get(&fp)?;
        (*v.token == *token && Arc::ptr_eq(&v.keys, keys) && v.at.elapsed() < REMEMBER_FOR).then(|| v.claims.clone())
    }

    fn insert(&self, token: &str, claims: Arc<Claims>, keys: Arc<KeySet>) {
        let fp = self.fingerprint(token);
        let mut shard = self.shard(fp);
        if shard.len() >= self.per_shard && !shard.contains_key(&fp) {
            let victim = shard.iter().find(|(_, v)| v.at.elapsed() >= REMEMBER_FOR).or_else(|| shard.iter().next());
            if let Some(k) = victim.map(|(k, _)| *k) {
                shard.remove(&k);
            }
        }
        shard.insert(fp, Verified { token: token.into(), claims, keys, at: Instant::now() });
    }
}

/// A JWT provider.
pub struct JwtProvider {
    /// Config name.
    pub name: Arc<str>,
    /// What tokens must say.
    pub rules: Rules,
    /// Signing keys.
    pub source: KeySource,
    verified: Option<VerifiedTokens>,
}

impl std::fmt::Debug for JwtProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtProvider").field("name", &self.name).field("source", &self.source).finish_non_exhaustive()
    }
}

impl JwtProvider {
    /// A provider remembering up to `cache_entries` verified tokens (0: none).
    pub fn new(name: &str, rules: Rules, source: KeySource, cache_entries: u64) -> JwtProvider {
        let verified = (cache_entries > 0).then(|| VerifiedTokens::new(cache_entries));
        JwtProvider { name: Arc::from(name), rules, source, verified }
    }

    /// Verifies a token; `now` is Unix seconds.
    pub async fn verify(&self, gw: &Arc<Gateway>, token: &str, now: u64) -> Result<Arc<Claims>, TokenError> {
        if let KeySource::Jwks(jwks) = &self.source {
            jwks.refresh_if_due(gw);
        }
        if let Some(claims) = self.verified.as_ref().and_then(|c| c.get(token, &self.source.current())) {
            jwt::check_times(claims.exp, claims.nbf, self.rules.leeway_secs, now)?;
            return Ok(claims);
        }
        let parsed = jwt::parse(token, &self.rules)?;
        let keys = match &self.source {
            KeySource::Fixed(set) => {
                jwt::verify_signature(&parsed, set)?;
                set.clone()
            }
            KeySource::Jwks(jwks) => {
                let asked = Instant::now();
                let keys = jwks.keys();
                let first = if keys.keys.is_empty() {
                    Err(TokenError::UnknownKid(parsed.kid.clone().unwrap_or_default()))
                } else {
                    jwt::verify_signature(&parsed, &keys).map(|()| keys)
                };
                match first {
                    Err(TokenError::UnknownKid(kid)) => {
                        if !jwks.refetch_for_unknown_kid(asked, &gw.metrics).await {
                            return Err(TokenError::Invalid(format!("kid {kid:?} is not in the key set")));
                        }
                        let keys = jwks.keys();
                        jwt::verify_signature(&parsed, &keys)?;
                        keys
                    }
                    other => other?,
                }
            }
        };
        let claims = Arc::new(jwt::check_claims(&parsed, &self.rules, now)?);
        if let Some(cache) = &self.verified {
            cache.insert(token, claims.clone(), keys);
        }
        Ok(claims)
    }

    /// Starts fetching keys that are due (used at start and after a reload).
    pub fn warm(&self, gw: &Arc<Gateway>) {
        if let KeySource::Jwks(jwks) = &self.source {
            jwks.refresh_if_due(gw);
        }
    }
}
