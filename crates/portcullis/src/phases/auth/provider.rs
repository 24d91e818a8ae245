//! A compiled JWT provider: the rules its tokens must meet and the keys that sign them.

use super::jwt::{self, Claims, KeySet, Rules, TokenError};
use super::keys::Jwks;
use crate::state::Gateway;
use std::sync::Arc;
use std::time::Instant;

/// Where a provider's keys come from.
#[derive(Debug)]
pub enum KeySource {
    /// A PEM public key or an HMAC secret, read when the config was compiled.
    Fixed(Arc<KeySet>),
    /// A JWKS endpoint.
    Jwks(Arc<Jwks>),
}

/// A JWT provider.
#[derive(Debug)]
pub struct JwtProvider {
    /// Config name.
    pub name: Arc<str>,
    /// `jwt:<name>`, the method named in logs and identity headers.
    pub method: Arc<str>,
    /// What tokens must say.
    pub rules: Rules,
    /// Signing keys.
    pub source: KeySource,
}

impl JwtProvider {
    /// Verifies a token; `now` is Unix seconds.
    pub async fn verify(&self, gw: &Arc<Gateway>, token: &str, now: u64) -> Result<Claims, TokenError> {
        let parsed = jwt::parse(token, &self.rules)?;
        match &self.source {
            KeySource::Fixed(set) => jwt::verify_signature(&parsed, set)?,
            KeySource::Jwks(jwks) => {
                jwks.refresh_if_due(gw);
                let asked = Instant::now();
                let keys = jwks.keys();
                let first = if keys.keys.is_empty() {
                    Err(TokenError::UnknownKid(parsed.kid.clone().unwrap_or_default()))
                } else {
                    jwt::verify_signature(&parsed, &keys)
                };
                match first {
                    Err(TokenError::UnknownKid(kid)) => {
                        if !jwks.refetch_for_unknown_kid(asked, &gw.metrics).await {
                            return Err(TokenError::Invalid(format!("kid {kid:?} is not in the key set")));
                        }
                        jwt::verify_signature(&parsed, &jwks.keys())?;
                    }
                    other => other?,
                }
            }
        }
        jwt::check_claims(&parsed, &self.rules, now)
    }

    /// Starts fetching keys that are due (used at start and after a reload).
    pub fn warm(&self, gw: &Arc<Gateway>) {
        if let KeySource::Jwks(jwks) = &self.source {
            jwks.refresh_if_due(gw);
        }
    }
}
