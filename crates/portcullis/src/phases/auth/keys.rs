//! Where a JWT provider's keys come from: a PEM file or HMAC secret (fixed), or a JWKS URL
//! fetched with a deadline, kept between fetches, refreshed on a schedule in the background,
//! and fetched again when a token names an unknown `kid` — at most once per `min_refetch`,
//! so random `kid`s cannot make the gateway hammer the identity provider.
//!
//! A failed fetch keeps the keys already known (tokens they sign keep working); tokens with
//! unknown `kid`s fail until a fetch succeeds. Nothing here fails open.

use super::jwt::{Family, KeySet, VerifyKey, parse_alg};
use crate::observe::metrics::Metrics;
use crate::outbound::{self, Target};
use crate::state::Gateway;
use arc_swap::ArcSwap;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 512 * 1024;

/// The settings that identify a JWKS source; a reload that keeps them keeps the fetched keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksSettings {
    /// The URL as configured.
    pub url: String,
    /// Parsed URL.
    pub target: Target,
    /// CA bundle, when not the system roots.
    pub ca: Option<std::path::PathBuf>,
    /// Deadline of one fetch.
    pub timeout: Duration,
    /// Background refresh interval.
    pub refresh: Duration,
    /// Least time between fetches caused by unknown `kid`s.
    pub min_refetch: Duration,
}

#[derive(Debug, Default)]
struct FetchTimes {
    last_attempt: Option<Instant>,
    last_success: Option<Instant>,
    in_flight: bool,
}

/// A JWKS endpoint and the keys last fetched from it.
#[derive(Debug)]
pub struct Jwks {
    /// Provider name, for logs and metrics.
    pub provider: Arc<str>,
    /// Where and how often.
    pub settings: JwksSettings,
    tls: Arc<rustls::ClientConfig>,
    keys: ArcSwap<KeySet>,
    times: Mutex<FetchTimes>,
    fetch_lock: tokio::sync::Mutex<()>,
}

impl Jwks {
    /// A source with no keys yet (the first token, or [`Jwks::warm`], fetches them).
    pub fn new(provider: &str, settings: JwksSettings) -> Result<Jwks, String> {
        let tls = outbound::tls_config(settings.ca.as_deref())?;
        Ok(Jwks {
            provider: Arc::from(provider),
            settings,
            tls,
            keys: ArcSwap::from_pointee(KeySet::default()),
            times: Mutex::new(FetchTimes::default()),
            fetch_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The keys now.
    pub fn keys(&self) -> Arc<KeySet> {
        self.keys.load_full()
    }

    fn times(&self) -> std::sync::MutexGuard<'_, FetchTimes> {
        self.times.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts a background fetch when the keys are older than the refresh interval (or were
    /// never fetched) and none is running.
    pub fn refresh_if_due(self: &Arc<Self>, gw: &Arc<Gateway>) {
        {
            let mut t = self.times();
            let due = t.last_success.is_none_or(|s| s.elapsed() >= self.settings.refresh)
                && t.last_attempt.is_none_or(|a| a.elapsed() >= self.settings.min_refetch);
            if !due || t.in_flight {
                return;
            }
            t.in_flight = true;
        }
        let me = self.clone();
        let gw = gw.clone();
        tokio::spawn(async move {
            let _one = me.fetch_lock.lock().await;
            me.fetch(&gw.metrics).await;
        });
    }

    /// A token named a `kid` we do not have. Fetches again unless a fetch started after
    /// `asked_at` (its result is then used) or the last one is more recent than
    /// `min_refetch`. Returns true when the key set may have changed.
    pub async fn refetch_for_unknown_kid(&self, asked_at: Instant, metrics: &Metrics) -> bool {
        let _one = self.fetch_lock.lock().await;
        {
            let t = self.times();
            if t.last_attempt.is_some_and(|a| a > asked_at) {
                return true;
            }
            if t.last_attempt.is_some_and(|a| a.elapsed() < self.settings.min_refetch) {
                return false;
            }
        }
        self.times().in_flight = true;
        self.fetch(metrics).await
    }

    /// One fetch; the caller holds `fetch_lock`.
    async fn fetch(&self, metrics: &Metrics) -> bool {
        let s = &self.settings;
        let result =
            outbound::get(&s.target, &self.tls, s.timeout, MAX_JWKS_BYTES).await.and_then(|body| parse_jwks(&body));
        metrics.jwks_fetch(&self.provider, if result.is_ok() { "ok" } else { "error" });
        let mut t = self.times();
        t.last_attempt = Some(Instant::now());
        t.in_flight = false;
        match result {
            Ok((set, skipped)) => {
                for why in skipped {
                    tracing::warn!(provider = %self.provider, "JWKS key skipped: {why}");
                }
                tracing::info!(provider = %self.provider, keys = set.keys.len(), "JWKS fetched");
                t.last_success = Some(Instant::now());
                self.keys.store(Arc::new(set));
                true
            }
            Err(e) => {
                tracing::error!(provider = %self.provider, url = %s.url, "JWKS fetch failed, keeping the keys already known: {e}");
                false
            }
        }
    }
}

/// Reads a JWKS document. Keys that are not for signatures, are symmetric, or cannot be
/// used are skipped with a reason; a document that is not a JWKS is an error.
pub fn parse_jwks(body: &[u8]) -> Result<(KeySet, Vec<String>), String> {
    let doc: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("JWKS is not JSON: {e}"))?;
    let list = doc.get("keys").and_then(|k| k.as_array()).ok_or("JWKS has no keys array")?;
    let mut set = KeySet::default();
    let mut skipped = Vec::new();
    for (i, raw) in list.iter().enumerate() {
        match serde_json::from_value::<Jwk>(raw.clone()).map_err(|e| e.to_string()).and_then(|jwk| from_jwk(&jwk)) {
            Ok(k) => set.keys.push(k),
            Err(why) => skipped.push(format!("keys[{i}]: {why}")),
        }
    }
    Ok((set, skipped))
}

fn from_jwk(jwk: &Jwk) -> Result<VerifyKey, String> {
    let c = &jwk.common;
    if c.public_key_use.as_ref().is_some_and(|u| *u != PublicKeyUse::Signature) {
        return Err("use is not sig".into());
    }
    if c.key_operations.as_ref().is_some_and(|ops| !ops.contains(&KeyOperations::Verify)) {
        return Err("key_ops does not include verify".into());
    }
    let (family, curve_alg) = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => (Family::Rsa, None),
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => (Family::Ec, Some(Algorithm::ES256)),
            EllipticCurve::P384 => (Family::Ec, Some(Algorithm::ES384)),
            ref other => return Err(format!("curve {other:?} is not supported")),
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => (Family::Ed, None),
        AlgorithmParameters::OctetKeyPair(_) => return Err("only Ed25519 OKP keys are supported".into()),
        // A symmetric key published in a key set would let anyone who reads it sign tokens.
        AlgorithmParameters::OctetKey(_) => return Err("symmetric (oct) keys are never taken from a JWKS".into()),
    };
    let stated = match &c.key_algorithm {
        None => None,
        Some(a) => {
            let name = serde_json::to_value(a).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
            let alg = parse_alg(&name).ok_or_else(|| format!("alg {name:?} is not a signature algorithm"))?;
            if super::jwt::family(alg) != family || curve_alg.is_some_and(|c| c != alg) {
                return Err(format!("alg {name} does not fit the key type"));
            }
            Some(alg)
        }
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("unusable key: {e}"))?;
    Ok(VerifyKey { kid: c.key_id.clone(), family, alg: stated.or(curve_alg), key })
}

/// A key from a PEM file: RSA, EC (P-256/P-384) or Ed25519 public key, in that order of tries.
pub fn from_pem(pem: &[u8], algorithms: &[Algorithm]) -> Result<VerifyKey, String> {
    let wants = |f: Family| algorithms.iter().any(|a| super::jwt::family(*a) == f);
    type Parse = fn(&[u8]) -> jsonwebtoken::errors::Result<DecodingKey>;
    let tries: [(Family, Parse); 3] = [
        (Family::Rsa, DecodingKey::from_rsa_pem),
        (Family::Ec, DecodingKey::from_ec_pem),
        (Family::Ed, DecodingKey::from_ed_pem),
    ];
    for (family, parse) in tries {
        if wants(family)
            && let Ok(key) = parse(pem)
        {
            return Ok(VerifyKey { kid: None, family, alg: None, key });
        }
    }
    Err("no public key of the configured algorithms' type found (PEM RSA, EC or Ed25519 public key)".into())
}

/// An HMAC secret.
pub fn from_secret(secret: &[u8]) -> VerifyKey {
    VerifyKey { kid: None, family: Family::Hmac, alg: None, key: DecodingKey::from_secret(secret) }
}
