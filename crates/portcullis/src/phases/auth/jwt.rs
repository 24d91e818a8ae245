//! JWT checks, strict by construction:
//!
//! - size capped before any parsing; exactly three base64url parts without padding; a
//!   non-empty signature that is not all zero bytes;
//! - `alg` must be one of the provider's algorithms, spelled exactly (so `none`, `None`,
//!   `NONE` never are); `crit` is refused (we implement no extensions); `jku`, `x5u`, `x5c`
//!   and `jwk` are never read, so a token cannot name its own key;
//! - a key is used only for its own family (an RSA key is never an HMAC secret) and, when the
//!   key states one, its own algorithm;
//! - claims have their types checked: a string `exp` is invalid, not skipped. `exp` is
//!   required; `nbf` is honoured; `iss` must equal the issuer; `aud` must name an audience.
//!
//! Errors say *why* for the log, but all map to `auth.invalid_token` except an otherwise valid
//! token past its `exp` (`auth.expired`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};

/// The algorithm families; a key belongs to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// HS256/384/512.
    Hmac,
    /// RS* and PS*.
    Rsa,
    /// ES256, ES384.
    Ec,
    /// EdDSA (Ed25519).
    Ed,
}

/// Parses an algorithm name, exactly as JWA spells it.
pub fn parse_alg(name: &str) -> Option<Algorithm> {
    use Algorithm::*;
    Some(match name {
        "HS256" => HS256,
        "HS384" => HS384,
        "HS512" => HS512,
        "RS256" => RS256,
        "RS384" => RS384,
        "RS512" => RS512,
        "PS256" => PS256,
        "PS384" => PS384,
        "PS512" => PS512,
        "ES256" => ES256,
        "ES384" => ES384,
        "EdDSA" => EdDSA,
        _ => return None,
    })
}

/// The family an algorithm needs keys of.
pub fn family(alg: Algorithm) -> Family {
    use Algorithm::*;
    match alg {
        HS256 | HS384 | HS512 => Family::Hmac,
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => Family::Rsa,
        ES256 | ES384 => Family::Ec,
        EdDSA => Family::Ed,
    }
}

/// A verification key with what it may be used for.
#[derive(Clone)]
pub struct VerifyKey {
    /// `kid`; `None` for keys from a PEM file or secret (they match any `kid`).
    pub kid: Option<String>,
    /// The only family this key verifies.
    pub family: Family,
    /// The only algorithm, when the key says so (JWK `alg`, or the EC curve).
    pub alg: Option<Algorithm>,
    /// The key.
    pub key: DecodingKey,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material (an HMAC secret is the key).
        f.debug_struct("VerifyKey").field("kid", &self.kid).field("family", &self.family).finish_non_exhaustive()
    }
}

/// The keys a provider currently trusts.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    /// Keys in document order.
    pub keys: Vec<VerifyKey>,
}

/// What a provider requires of a token.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Exact `iss`.
    pub issuer: String,
    /// `aud` must name one of these.
    pub audiences: Vec<String>,
    /// Accepted algorithms.
    pub algorithms: Vec<Algorithm>,
    /// Allowed clock skew, seconds.
    pub leeway_secs: u64,
    /// Longest token accepted.
    pub max_token_bytes: usize,
    /// Claim naming the principal.
    pub principal_claim: String,
    /// Claim naming the tenant.
    pub tenant_claim: String,
}

/// Why a token was not accepted (the text is for the log only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// Malformed, wrongly signed, wrong issuer or audience, not yet valid, bad claim types.
    Invalid(String),
    /// Valid but past `exp` (+ leeway).
    Expired,
    /// Signed with a `kid` not in the key set (a refetch may find it).
    UnknownKid(String),
}

fn invalid(why: impl Into<String>) -> TokenError {
    TokenError::Invalid(why.into())
}

/// A token split and its header checked, before the signature.
#[derive(Debug)]
pub struct Parsed<'t> {
    /// The accepted algorithm.
    pub alg: Algorithm,
    /// `kid`, if any.
    pub kid: Option<String>,
    signing_input: &'t str,
    signature: &'t str,
    payload: &'t str,
}

fn decode_part(part: &str, what: &str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD.decode(part).map_err(|_| invalid(format!("{what} is not base64url without padding")))
}

/// Splits a token and checks its header against the rules.
pub fn parse<'t>(token: &'t str, rules: &Rules) -> Result<Parsed<'t>, TokenError> {
    if token.len() > rules.max_token_bytes {
        return Err(invalid(format!("token of {} bytes is over the limit", token.len())));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("a JWS compact token has exactly three parts"));
    };
    let sig = decode_part(signature, "signature")?;
    if sig.iter().all(|&b| b == 0) {
        return Err(invalid("empty or all-zero signature"));
    }
    let header: Map<String, Value> =
        serde_json::from_slice(&decode_part(header, "header")?).map_err(|_| invalid("header is not a JSON object"))?;
    let alg_name = header.get("alg").and_then(Value::as_str).ok_or_else(|| invalid("header has no string alg"))?;
    let alg = parse_alg(alg_name)
        .filter(|a| rules.algorithms.contains(a))
        .ok_or_else(|| invalid(format!("alg {alg_name:?} is not accepted by this provider")))?;
    if header.contains_key("crit") {
        return Err(invalid("crit header extensions are not supported"));
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(invalid("kid is not a string")),
    };
    let signing_input = token.get(..token.len() - signature.len() - 1).unwrap_or_default();
    Ok(Parsed { alg, kid, signing_input, signature, payload })
}

/// Checks the signature with the keys that may verify it.
pub fn verify_signature(token: &Parsed<'_>, keys: &KeySet) -> Result<(), TokenError> {
    let fam = family(token.alg);
    let mut tried = 0;
    for k in &keys.keys {
        let kid_ok = match (&k.kid, &token.kid) {
            (None, _) => true,
            (Some(a), Some(b)) => a == b,
            // A key set with kids and a token without one: try the keys of the right family.
            (Some(_), None) => true,
        };
        if !kid_ok || k.family != fam || k.alg.is_some_and(|a| a != token.alg) {
            continue;
        }
        tried += 1;
        if jsonwebtoken::crypto::verify(token.signature, token.signing_input.as_bytes(), &k.key, token.alg)
            .unwrap_or(false)
        {
            return Ok(());
        }
        if tried >= 8 {
            break;
        }
    }
    match (&token.kid, tried) {
        (Some(kid), 0) => Err(TokenError::UnknownKid(kid.clone())),
        (None, 0) => Err(invalid(format!("no {fam:?} key to verify {:?}", token.alg))),
        _ => Err(invalid("signature does not verify")),
    }
}

/// What a valid token says about its holder.
#[derive(Debug, Clone, Default)]
pub struct Claims {
    /// Principal claim, scopes (from `scope`, space-separated, or `scp`, a list), tenant
    /// claim, and every claim for route claim requirements.
    pub id: std::sync::Arc<super::Identity>,
    /// `exp`, Unix seconds.
    pub exp: f64,
    /// `nbf`, Unix seconds.
    pub nbf: Option<f64>,
}

/// `exp` and `nbf` against `now` (Unix seconds) with the leeway: checked on every use of a
/// token, including one whose signature was verified earlier.
pub fn check_times(exp: f64, nbf: Option<f64>, leeway_secs: u64, now: u64) -> Result<(), TokenError> {
    let (leeway, now) = (leeway_secs as f64, now as f64);
    if let Some(nbf) = nbf
        && now + leeway < nbf
    {
        return Err(invalid("token is not valid yet (nbf)"));
    }
    if now > exp + leeway {
        return Err(TokenError::Expired);
    }
    Ok(())
}

fn number(claims: &Map<String, Value>, name: &str) -> Result<Option<f64>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(_) => Err(invalid(format!("{name} is not a number"))),
    }
}

fn string(claims: &Map<String, Value>, name: &str) -> Result<Option<String>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(format!("{name} is not a string"))),
    }
}

/// Checks the claims of a token whose signature verified. `now` is Unix seconds.
pub fn check_claims(token: &Parsed<'_>, rules: &Rules, now: u64) -> Result<Claims, TokenError> {
    let all: Map<String, Value> = serde_json::from_slice(&decode_part(token.payload, "payload")?)
        .map_err(|_| invalid("payload is not a JSON object"))?;
    let exp = number(&all, "exp")?.ok_or_else(|| invalid("exp is missing"))?;
    let nbf = number(&all, "nbf")?;
    number(&all, "iat")?;
    match string(&all, "iss")? {
        Some(iss) if iss == rules.issuer => {}
        Some(iss) => return Err(invalid(format!("issuer {iss:?} is not {:?}", rules.issuer))),
        None => return Err(invalid("iss is missing")),
    }
    let aud_ok = match all.get("aud") {
        Some(Value::String(a)) => rules.audiences.contains(a),
        Some(Value::Array(list)) => {
            let mut any = false;
            for a in list {
                let a = a.as_str().ok_or_else(|| invalid("aud holds a non-string"))?;
                any |= rules.audiences.iter().any(|x| x == a);
            }
            any
        }
        Some(_) => return Err(invalid("aud is not a string or a list")),
        None => false,
    };
    if !aud_ok {
        return Err(invalid("aud names none of the provider's audiences"));
    }
    check_times(exp, nbf, rules.leeway_secs, now)?;
    let scopes = match (all.get("scope"), all.get("scp")) {
        (Some(Value::String(s)), _) => s.split(' ').filter(|s| !s.is_empty()).map(str::to_string).collect(),
        (Some(_), _) => return Err(invalid("scope is not a string")),
        (None, Some(Value::Array(list))) => list
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(|| invalid("scp holds a non-string")))
            .collect::<Result<_, _>>()?,
        (None, Some(Value::String(s))) => s.split(' ').filter(|s| !s.is_empty()).map(str::to_string).collect(),
        (None, Some(_)) => return Err(invalid("scp is not a list")),
        (None, None) => Vec::new(),
    };
    let subject = string(&all, &rules.principal_claim)?;
    let tenant = string(&all, &rules.tenant_claim)?;
    let id = super::Identity::new(subject, scopes, tenant, std::sync::Arc::new(all));
    if !id.names_fit_headers() {
        return Err(invalid("principal or tenant claim cannot be sent in a header"));
    }
    Ok(Claims { id: std::sync::Arc::new(id), exp, nbf })
}
