//! JWT authentication: valid tokens pass with their identity sent to the backend; every
//! known token attack is refused with a stable code and never reaches the backend; scopes
//! and claims are enforced; JWKS keys rotate.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)] // tests: a panic is a failed assertion

use jsonwebtoken::{Algorithm, Header};
use portcullis_testkit::client::{self, Opts, empty, req};
use portcullis_testkit::tokens::{self, SigningKey, claims, raw_token};
use portcullis_testkit::{MockUpstream, Reply, TestGateway, eventually};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ISS: &str = "https://id.example.com/";

async fn call(gw: &TestGateway, path: &str, headers: &[(&str, &str)]) -> client::Resp {
    let mut b = req("GET", path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    client::send(gw.addr(), &Opts::default(), b.body(empty()).unwrap()).await.unwrap()
}

async fn bearer(gw: &TestGateway, path: &str, token: &str) -> client::Resp {
    call(gw, path, &[("authorization", &format!("Bearer {token}"))]).await
}

/// A gateway whose `main` provider trusts `key` (PEM) for `alg`.
async fn gateway_with_pem(key: &SigningKey, up: &MockUpstream, extra_routes: &str) -> TestGateway {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("idp.pem"), &key.public_pem).unwrap();
    let yaml = format!(
        r#"
listeners: [{{ name: public, bind: "127.0.0.1:0" }}]
admin: {{ bind: "127.0.0.1:0" }}
log: {{ access: "{{dir}}/access.log" }}
upstreams: {{ up: {{ targets: ["{up}"] }} }}
auth:
  jwt:
    main: {{ issuer: "{ISS}", audiences: [orders], algorithms: [{alg:?}], public_key: idp.pem }}
routes:
  - {{ name: orders, match: {{ path: "/orders/*" }}, upstream: up, auth: {{ jwt: main, strip_headers: [x-user-id] }} }}
  - {{ name: open, match: {{ path: /open }}, upstream: up, auth: none }}
{extra_routes}
"#,
        up = up.url(),
        alg = key.alg,
    );
    TestGateway::start_in(dir, &yaml, false).await.unwrap()
}

fn assert_refused(r: &client::Resp, status: u16, code: &str, what: &str) {
    assert_eq!((r.status, r.json()["code"].as_str()), (status, Some(code)), "{what}: {}", r.text());
}

#[tokio::test]
async fn valid_tokens_pass_and_only_the_verified_identity_reaches_the_backend() {
    let up = MockUpstream::start().await;
    let key = SigningKey::rsa(Algorithm::RS256, None);
    let gw = gateway_with_pem(&key, &up, "").await;
    let token = key.sign(&claims(ISS, "orders", 300, json!({"scope": "orders:read orders:write", "tenant": "acme"})));
    let spoof = [
        ("authorization", format!("bearer {token}")),
        ("x-portcullis-principal", "admin".to_string()),
        ("X_Portcullis_Principal", "admin".to_string()),
        ("x-portcullis-tenant", "evil".to_string()),
        ("X-User-Id", "0".to_string()),
        ("x_user_id", "0".to_string()),
    ];
    let headers: Vec<(&str, &str)> = spoof.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = call(&gw, "/orders/1", &headers).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let got = &up.requests()[0];
    assert_eq!(got.header_all("x-portcullis-principal"), vec!["user-1"]);
    assert_eq!(got.header_all("x-portcullis-tenant"), vec!["acme"]);
    assert_eq!(got.header("x-portcullis-scopes").as_deref(), Some("orders:read orders:write"));
    for n in ["x_portcullis_principal", "x-user-id", "x_user_id"] {
        assert!(got.header(n).is_none(), "{n} was stripped");
    }
    // Open routes strip the namespace too: a backend may trust it on any path.
    let r = call(&gw, "/open", &[("x-portcullis-principal", "admin")]).await;
    assert_eq!(r.status, 200);
    assert!(up.requests()[1].header("x-portcullis-principal").is_none());
    assert!(eventually(Duration::from_secs(3), || gw.access_log().len() >= 2).await);
    let line = &gw.access_log()[0];
    assert_eq!(line["principal"], "user-1");
    let log = std::fs::read_to_string(gw.dir().join("access.log")).unwrap();
    assert!(!log.contains(&token[token.len() - 20..]), "the token never appears in the log");
}

#[tokio::test]
async fn token_attacks_never_reach_the_backend() {
    let up = MockUpstream::start().await;
    let key = SigningKey::rsa(Algorithm::RS256, Some("k1"));
    let gw = gateway_with_pem(&key, &up, "").await;
    let good = claims(ISS, "orders", 300, json!({}));
    let other = SigningKey::rsa(Algorithm::RS256, Some("k1"));
    // Key confusion: the provider's own public key used as an HMAC secret.
    let confused = SigningKey::hmac(Algorithm::HS256, key.public_pem.as_bytes());
    let mut jku = other.header();
    jku.jku = Some("http://127.0.0.1:1/attacker-jwks.json".into());
    let mut x5u = other.header();
    x5u.x5u = Some("http://127.0.0.1:1/attacker.pem".into());
    let mut embedded = other.header();
    embedded.jwk = Some(serde_json::from_value(other.jwk()).unwrap());
    let mut traversal = Header::new(Algorithm::HS256);
    traversal.kid = Some("../../../../dev/null".into());
    let empty_secret = SigningKey::hmac(Algorithm::HS256, b"");
    let signed = key.sign(&good);
    let (head_payload, sig) = signed.rsplit_once('.').unwrap();
    let mut attacks: Vec<(String, String, &str)> = vec![
        (confused.sign(&good), "auth.invalid_token".into(), "RSA public key as HMAC secret"),
        (other.sign_with(&jku, &good), "auth.invalid_token".into(), "jku to an attacker key set"),
        (other.sign_with(&x5u, &good), "auth.invalid_token".into(), "x5u to an attacker certificate"),
        (other.sign_with(&embedded, &good), "auth.invalid_token".into(), "embedded jwk"),
        (empty_secret.sign_with(&traversal, &good), "auth.invalid_token".into(), "kid path traversal, empty secret"),
        (format!("{head_payload}."), "auth.invalid_token".into(), "empty signature"),
        (format!("{head_payload}.{}", "A".repeat(342)), "auth.invalid_token".into(), "all-zero signature"),
        (format!("{head_payload}.{sig}="), "auth.invalid_token".into(), "padded signature"),
        (format!("{head_payload}.{sig}.x"), "auth.invalid_token".into(), "four parts"),
        (head_payload.to_string(), "auth.invalid_token".into(), "two parts"),
        (other.sign(&good), "auth.invalid_token".into(), "signed by another key"),
        (key.sign(&claims("https://evil.example/", "orders", 300, json!({}))), "auth.invalid_token".into(), "issuer"),
        (key.sign(&claims(ISS, "billing", 300, json!({}))), "auth.invalid_token".into(), "audience"),
        (key.sign(&claims(ISS, "orders", -120, json!({}))), "auth.expired".into(), "expired beyond leeway"),
        (key.sign(&json!({"iss": ISS, "aud": "orders", "sub": "u"})), "auth.invalid_token".into(), "no exp"),
        (
            key.sign(&json!({"iss": ISS, "aud": "orders", "exp": (tokens::now() + 300).to_string()})),
            "auth.invalid_token".into(),
            "string exp",
        ),
        (
            key.sign(&claims(ISS, "orders", 3600, json!({"nbf": tokens::now() + 600}))),
            "auth.invalid_token".into(),
            "not valid yet",
        ),
        (
            key.sign(&claims(ISS, "orders", 300, json!({"pad": "x".repeat(9000)}))),
            "auth.invalid_token".into(),
            "over max_token_bytes",
        ),
    ];
    for alg in ["none", "None", "NONE", "nOnE"] {
        let t = raw_token(&json!({"alg": alg, "typ": "JWT"}), &good, b"");
        attacks.push((t.clone(), "auth.invalid_token".into(), "alg none without signature"));
        attacks.push((format!("{t}AAAA"), "auth.invalid_token".into(), "alg none with a signature"));
    }
    let crit = raw_token(&json!({"alg": "RS256", "crit": ["exp"], "exp": 1}), &good, &[1; 256]);
    attacks.push((crit, "auth.invalid_token".into(), "crit header"));
    for (token, code, what) in &attacks {
        let r = bearer(&gw, "/orders/1", token).await;
        assert_refused(&r, 401, code, what);
        let challenge = r.header("www-authenticate").unwrap_or_default();
        assert!(challenge.starts_with("Bearer realm=\"portcullis\""), "{what}: {challenge}");
        assert!(challenge.contains("invalid_token"), "{what}: {challenge}");
    }
    let r = call(&gw, "/orders/1", &[]).await;
    assert_refused(&r, 401, "auth.missing", "no Authorization");
    assert_eq!(r.header("www-authenticate").as_deref(), Some("Bearer realm=\"portcullis\""));
    let signed_ok = key.sign(&good);
    let headers_cases: [(&[(&str, &str)], &str); 3] = [
        (&[("authorization", "Basic dXNlcjpwYXNz")], "Basic scheme"),
        (&[("authorization", "Bearer")], "no token"),
        (&[("authorization", &format!("Bearer {signed_ok}")), ("authorization", "Bearer x")], "two Authorization"),
    ];
    for (h, what) in headers_cases {
        assert_refused(&call(&gw, "/orders/1", h).await, 401, "auth.invalid_token", what);
    }
    assert_eq!(up.count(), 0, "no attack reached the backend");
    // The same claims, properly signed, pass: the refusals above were the attacks'.
    assert_eq!(bearer(&gw, "/orders/1", &key.sign(&good)).await.status, 200);
    let leeway = key.sign(&claims(ISS, "orders", -10, json!({})));
    assert_eq!(bearer(&gw, "/orders/1", &leeway).await.status, 200, "10 s past exp is within the 30 s leeway");
}

#[tokio::test]
async fn scopes_and_claims_are_required_per_route() {
    let up = MockUpstream::start().await;
    let key = SigningKey::es256(None);
    let routes = r#"
  - name: admin
    match: { path: "/admin/*" }
    upstream: up
    auth: { jwt: main, scopes: ["orders:admin"], claims: { tenant: acme, groups: ops } }
"#;
    let gw = gateway_with_pem(&key, &up, routes).await;
    let sign = |extra| key.sign(&claims(ISS, "orders", 300, extra));
    let cases = [
        (json!({"scope": "orders:read"}), 403, "lacks the scope"),
        (json!({"scp": ["orders:admin"], "tenant": "other", "groups": ["ops"]}), 403, "wrong tenant"),
        (json!({"scope": "orders:admin", "tenant": "acme", "groups": ["dev"]}), 403, "group list without ops"),
        (json!({"scope": "orders:admin", "tenant": "acme"}), 403, "claim missing"),
        (json!({"scope": 5, "tenant": "acme", "groups": "ops"}), 401, "scope of the wrong type"),
        (json!({"scp": ["orders:admin"], "tenant": "acme", "groups": ["dev", "ops"]}), 200, "all present"),
        (json!({"scope": "x orders:admin", "tenant": "acme", "groups": "ops"}), 200, "space-separated scope"),
    ];
    for (extra, status, what) in cases {
        let r = bearer(&gw, "/admin/x", &sign(extra)).await;
        assert_eq!(r.status, status, "{what}: {}", r.text());
        if status == 403 {
            assert_eq!(r.json()["code"], "auth.forbidden", "{what}");
            assert!(r.header("www-authenticate").unwrap().contains("insufficient_scope"));
        }
    }
    assert_eq!(up.count(), 2, "only the two sufficient tokens reached the backend");
}

/// A JWKS endpoint whose document a test can change; counts fetches.
fn jwks_server(doc: Arc<Mutex<String>>) -> impl std::future::Future<Output = MockUpstream> {
    MockUpstream::with(move |_| Reply::ok(doc.lock().unwrap().clone()).header("content-type", "application/json"))
}

#[tokio::test]
async fn jwks_keys_rotate_and_unknown_kids_cannot_hammer_the_issuer() {
    let a = SigningKey::es256(Some("a"));
    let b = SigningKey::ed25519(Some("b"));
    let doc = Arc::new(Mutex::new(tokens::jwks(&[&a])));
    let idp = jwks_server(doc.clone()).await;
    let up = MockUpstream::start().await;
    let yaml = format!(
        r#"
listeners: [{{ name: public, bind: "127.0.0.1:0" }}]
upstreams: {{ up: {{ targets: ["{up}"] }} }}
auth:
  jwt:
    main: {{ issuer: "{ISS}", audiences: [orders], algorithms: [ES256, EdDSA], jwks_url: "{idp}/jwks.json",
             jwks_min_refetch: 1s }}
routes:
  - {{ name: orders, match: {{ path: "/orders/*" }}, upstream: up, auth: {{ jwt: main }} }}
"#,
        up = up.url(),
        idp = idp.url()
    );
    let gw = TestGateway::start(&yaml).await;
    let good = claims(ISS, "orders", 300, json!({}));
    let token_a = a.sign(&good);
    assert_eq!(bearer(&gw, "/orders/1", &token_a).await.status, 200, "key a from the first fetch");
    // Rotate: the issuer now publishes only b.
    *doc.lock().unwrap() = tokens::jwks(&[&b]);
    let token_b = b.sign(&good);
    let mut accepted = false;
    for _ in 0..60 {
        if bearer(&gw, "/orders/1", &token_b).await.status == 200 {
            accepted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(accepted, "a token with the new kid is accepted once the key set is fetched again");
    let r = bearer(&gw, "/orders/1", &token_a).await;
    assert_refused(&r, 401, "auth.invalid_token", "a token verified (and remembered) with the removed key a");
    // A flood of made-up kids triggers at most one fetch per jwks_min_refetch.
    let fetches_before = idp.count();
    let stranger = SigningKey::es256(None);
    for i in 0..50 {
        let mut h = stranger.header();
        h.kid = Some(format!("random-{i}"));
        assert_eq!(bearer(&gw, "/orders/1", &stranger.sign_with(&h, &good)).await.status, 401);
    }
    assert!(idp.count() - fetches_before <= 2, "{} fetches for 50 unknown kids", idp.count() - fetches_before);
    assert_eq!(up.count(), 2);
}

#[tokio::test]
async fn remembered_tokens_still_expire() {
    let up = MockUpstream::start().await;
    let key = SigningKey::es256(None);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("idp.pem"), &key.public_pem).unwrap();
    let yaml = format!(
        r#"
listeners: [{{ name: public, bind: "127.0.0.1:0" }}]
log: {{ access: off }}
upstreams: {{ up: {{ targets: ["{up}"] }} }}
auth:
  jwt:
    main: {{ issuer: "{ISS}", audiences: [orders], algorithms: [ES256], public_key: idp.pem, leeway: 0s }}
routes:
  - {{ name: orders, match: {{ path: "/orders/*" }}, upstream: up, auth: {{ jwt: main }} }}
"#,
        up = up.url()
    );
    let gw = TestGateway::start_in(dir, &yaml, false).await.unwrap();
    let token = key.sign(&claims(ISS, "orders", 1, json!({})));
    assert_eq!(bearer(&gw, "/orders/1", &token).await.status, 200);
    assert_eq!(bearer(&gw, "/orders/1", &token).await.status, 200, "remembered");
    // Wall-clock expiry is the behaviour under test: wait until `exp` has passed.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = bearer(&gw, "/orders/1", &token).await;
    assert_refused(&r, 401, "auth.expired", "a remembered token past its exp");
}
