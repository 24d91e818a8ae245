//! Configuration of authentication (providers, what routes require) and resource policies.
//! Like the rest of the model, every struct rejects unknown keys.

use super::units::{Dur, Size};
use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Authentication providers, referenced by name from routes.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthProviders {
    /// JWT issuers by name (`auth: { jwt: <name> }` on a route).
    #[serde(default)]
    pub jwt: BTreeMap<String, JwtProvider>,
    /// External authorizers by name (`auth: { external: <name> }` on a route).
    #[serde(default)]
    pub external: BTreeMap<String, ExternalAuthorizer>,
    /// Prefix of the headers that carry the caller's identity to backends (default
    /// `x-portcullis-`). Clients' headers with this prefix are removed in every spelling.
    #[serde(default)]
    pub identity_prefix: Option<String>,
}

/// One JWT issuer: where its keys come from and what its tokens must say.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JwtProvider {
    /// Required `iss`, compared as an exact string.
    pub issuer: String,
    /// A token's `aud` must name at least one of these.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Accepted `alg` values: HS256/384/512, RS256/384/512, PS256/384/512, ES256, ES384, EdDSA.
    /// Never `none`; never HS* together with an asymmetric algorithm.
    #[serde(default)]
    pub algorithms: Vec<String>,
    /// JWKS document (https, or http to a loopback address).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// PEM CA bundle trusted for `jwks_url` instead of the system roots.
    #[serde(default)]
    pub jwks_ca: Option<PathBuf>,
    /// How often the JWKS is fetched again (default 10m).
    #[serde(default)]
    pub jwks_refresh: Option<Dur>,
    /// A token with an unknown `kid` fetches the JWKS at most this often (default 30s).
    #[serde(default)]
    pub jwks_min_refetch: Option<Dur>,
    /// Deadline of one JWKS fetch (default 5s).
    #[serde(default)]
    pub jwks_timeout: Option<Dur>,
    /// PEM public key (RSA, EC or Ed25519).
    #[serde(default)]
    pub public_key: Option<PathBuf>,
    /// HMAC secret: the file's bytes, one trailing newline trimmed.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// HMAC secret from an environment variable.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Clock skew allowed on `exp` and `nbf` (default 30s).
    #[serde(default)]
    pub leeway: Option<Dur>,
    /// Longer tokens are refused before any parsing (default 8KiB).
    #[serde(default)]
    pub max_token_bytes: Option<Size>,
    /// Claim naming the principal (default `sub`).
    #[serde(default)]
    pub principal_claim: Option<String>,
    /// Claim naming the tenant (default `tenant`).
    #[serde(default)]
    pub tenant_claim: Option<String>,
    /// Verified tokens remembered, so a token's signature is checked once per 5 minutes
    /// rather than on every request (default 10000; 0 turns it off). `exp` and `nbf` are
    /// still checked on every request.
    #[serde(default)]
    pub cache_entries: Option<u64>,
}

/// An HTTP service that decides (like an AWS Lambda authorizer).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExternalAuthorizer {
    /// Where decisions are asked (POST, JSON): https, or http to a loopback address.
    pub url: String,
    /// PEM CA bundle trusted for `url` instead of the system roots.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Deadline of one call (default 200ms).
    #[serde(default)]
    pub timeout: Option<Dur>,
    /// Request headers sent; they are the identity source (at least one must be present, or
    /// the request is 401 `auth.missing` without a call). Default `[authorization]`.
    #[serde(default)]
    pub send_headers: Vec<String>,
    /// Other request parts sent: `method`, `path`, `query`, `client_ip`.
    #[serde(default)]
    pub send: Vec<String>,
    /// How long an allow is reused for the same inputs (default 60s; 0s disables caching).
    #[serde(default)]
    pub cache_ttl: Option<Dur>,
    /// How long a deny is reused (default 5s, at most `cache_ttl`).
    #[serde(default)]
    pub negative_ttl: Option<Dur>,
    /// Decisions kept at most (default 100000).
    #[serde(default)]
    pub cache_entries: Option<u64>,
    /// What a failed call (timeout, error, bad answer) means: `deny` (default) or `allow`.
    #[serde(default)]
    pub on_error: Option<OnError>,
}

/// The decision when an authorizer cannot be asked.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Refuse (503 `auth.unavailable`).
    #[default]
    Deny,
    /// Let the request through without a principal (logged and counted).
    Allow,
}

/// What a route requires of a caller: `none`, or a map of methods and requirements.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum RouteAuthSpec {
    /// `auth: none`: explicitly open.
    None(NoneMarker),
    /// Methods and requirements.
    Require(RouteAuth),
}

/// The literal `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoneMarker;

impl Serialize for NoneMarker {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("none")
    }
}

impl<'de> Deserialize<'de> for RouteAuthSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RouteAuthSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("`none` or a map like { jwt: main, scopes: [...] }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RouteAuthSpec, E> {
                if v == "none" {
                    Ok(RouteAuthSpec::None(NoneMarker))
                } else {
                    Err(E::custom(format!("auth must be `none` or a map of methods, not {v:?}")))
                }
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RouteAuthSpec, A::Error> {
                RouteAuth::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(RouteAuthSpec::Require)
            }
        }
        d.deserialize_any(V)
    }
}

impl schemars::JsonSchema for RouteAuthSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RouteAuthSpec".into()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let methods = generator.subschema_for::<RouteAuth>();
        schemars::json_schema!({
            "description": "`none`, or the methods a caller must pass and what it must hold",
            "anyOf": [ { "const": "none" }, methods ]
        })
    }
}

impl RouteAuthSpec {
    /// The requirements, unless the route is open.
    pub fn required(&self) -> Option<&RouteAuth> {
        match self {
            RouteAuthSpec::None(_) => None,
            RouteAuthSpec::Require(a) => Some(a),
        }
    }
}

/// Whether every listed method must pass, or one is enough.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Require {
    /// Every method must pass (the default).
    #[default]
    All,
    /// One method passing is enough.
    Any,
}

/// Methods a route accepts and what the caller must hold.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteAuth {
    /// A valid API key (it selects the caller's plan).
    #[serde(default)]
    pub api_key: Option<bool>,
    /// A bearer token from this JWT provider.
    #[serde(default)]
    pub jwt: Option<String>,
    /// A client certificate verified by the listener's `client_auth` CA.
    #[serde(default)]
    pub mtls: Option<bool>,
    /// An allow decision from this external authorizer.
    #[serde(default)]
    pub external: Option<String>,
    /// `all` (default) or `any` of the methods above.
    #[serde(default)]
    pub require: Option<Require>,
    /// Scopes the caller must hold (from the token's `scope` or `scp`).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Claims the token must carry with these values (a list claim must contain the value).
    #[serde(default)]
    pub claims: BTreeMap<String, serde_json::Value>,
    /// More request headers removed in every spelling, besides the identity prefix.
    #[serde(default)]
    pub strip_headers: Vec<String>,
}

/// A resource policy on the trusted client IP.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// When set, only these networks may call.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub allow_ips: Vec<IpNet>,
    /// These networks may never call (checked before `allow_ips`).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub deny_ips: Vec<IpNet>,
    /// Log and count what would be refused, and let it through.
    #[serde(default)]
    pub dry_run: Option<bool>,
}

/// Request signing towards an upstream (HMAC-SHA256, see docs/backend-verification.md).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sign {
    /// The shared secret: the file's bytes, one trailing newline trimmed (re-read on reload).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// The shared secret from an environment variable.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// `hash` (default): the body is read whole (within the route's body limit) and its
    /// SHA-256 signed; `unsigned`: bodies stream and are not covered.
    #[serde(default)]
    pub body: Option<SignBody>,
}

/// Whether the signature covers the body.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SignBody {
    /// Read the body and sign its SHA-256.
    #[default]
    Hash,
    /// Stream the body; sign `UNSIGNED-PAYLOAD` in its place.
    Unsigned,
}

/// A route's CORS policy.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Cors {
    /// Allowed origins (`https://app.example.com`), or `["*"]` (not with credentials).
    pub origins: Vec<String>,
    /// Allowed methods (default: the route's methods, or GET, HEAD, POST).
    #[serde(default)]
    pub methods: Vec<String>,
    /// Request headers a browser may send (beyond the CORS-safelisted ones).
    #[serde(default)]
    pub headers: Vec<String>,
    /// Response headers a browser script may read.
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// Allow cookies and credentials.
    #[serde(default)]
    pub credentials: Option<bool>,
    /// How long a browser may reuse a preflight answer (default 10m, at most 24h).
    #[serde(default)]
    pub max_age: Option<Dur>,
}

/// TLS from the gateway to an upstream's `https://` targets.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    /// PEM CA bundle: the only CAs trusted for these targets (pins them to a private CA).
    /// Default: the system roots.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// PEM client certificate chain presented to the upstream (mTLS); needs `key`.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// Name checked in the upstream's certificate (and sent as SNI) instead of the target host.
    #[serde(default)]
    pub server_name: Option<String>,
}
