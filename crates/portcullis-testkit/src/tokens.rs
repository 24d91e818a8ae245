//! Signing keys and tokens for JWT tests: ES256 and Ed25519 keys from rcgen, RSA keys from
//! the `openssl` command (ring cannot generate RSA keys), HMAC secrets; their public PEM and
//! JWK forms; tokens signed with any header and claims.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// A key that signs test tokens.
#[derive(Clone)]
pub struct SigningKey {
    /// Algorithm it signs with.
    pub alg: Algorithm,
    /// `kid` put in headers and the JWK.
    pub kid: Option<String>,
    /// Public key PEM (the secret for HMAC keys).
    pub public_pem: String,
    /// Public JWK (without `kid`; see [`SigningKey::jwk`]).
    jwk: Value,
    enc: EncodingKey,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn rcgen_key(alg: &'static rcgen::SignatureAlgorithm) -> (String, String, Vec<u8>) {
    let key = rcgen::KeyPair::generate_for(alg).expect("key");
    (key.serialize_pem(), key.public_key_pem(), key.public_key_raw().to_vec())
}

fn openssl(args: &[&str], input: Option<&str>) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the openssl command is needed to make RSA test keys (apt-get install openssl)");
    if let Some(i) = input {
        child.stdin.take().expect("stdin").write_all(i.as_bytes()).expect("write");
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("openssl");
    assert!(out.status.success(), "openssl {args:?} failed");
    String::from_utf8(out.stdout).expect("utf8")
}

impl SigningKey {
    /// A P-256 key.
    pub fn es256(kid: Option<&str>) -> SigningKey {
        let (private, public_pem, raw) = rcgen_key(&rcgen::PKCS_ECDSA_P256_SHA256);
        // raw is the uncompressed point: 0x04 || x || y.
        let jwk = json!({"kty": "EC", "crv": "P-256", "x": b64(&raw[1..33]), "y": b64(&raw[33..65])});
        let enc = EncodingKey::from_ec_pem(private.as_bytes()).expect("ec key");
        SigningKey { alg: Algorithm::ES256, kid: kid.map(str::to_string), public_pem, jwk, enc }
    }

    /// An Ed25519 key.
    pub fn ed25519(kid: Option<&str>) -> SigningKey {
        let (private, public_pem, raw) = rcgen_key(&rcgen::PKCS_ED25519);
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&raw)});
        let enc = EncodingKey::from_ed_pem(private.as_bytes()).expect("ed key");
        SigningKey { alg: Algorithm::EdDSA, kid: kid.map(str::to_string), public_pem, jwk, enc }
    }

    /// A 2048-bit RSA key signing with `alg` (RS* or PS*).
    pub fn rsa(alg: Algorithm, kid: Option<&str>) -> SigningKey {
        let private = openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"], None);
        let public_pem = openssl(&["pkey", "-pubout"], Some(&private));
        let modulus = openssl(&["rsa", "-noout", "-modulus"], Some(&private));
        let n = hex_decode(modulus.trim().trim_start_matches("Modulus="));
        let jwk = json!({"kty": "RSA", "n": b64(&n), "e": "AQAB"});
        let enc = EncodingKey::from_rsa_pem(private.as_bytes()).expect("rsa key");
        SigningKey { alg, kid: kid.map(str::to_string), public_pem, jwk, enc }
    }

    /// An HMAC key.
    pub fn hmac(alg: Algorithm, secret: &[u8]) -> SigningKey {
        SigningKey {
            alg,
            kid: None,
            public_pem: String::from_utf8_lossy(secret).into_owned(),
            jwk: json!({"kty": "oct", "k": b64(secret)}),
            enc: EncodingKey::from_secret(secret),
        }
    }

    /// The public JWK with `kid` and `alg`.
    pub fn jwk(&self) -> Value {
        let mut j = self.jwk.clone();
        if let Some(k) = &self.kid {
            j["kid"] = json!(k);
        }
        j["alg"] = json!(format!("{:?}", self.alg));
        j["use"] = json!("sig");
        j
    }

    /// A header for this key: its `alg` and `kid`.
    pub fn header(&self) -> Header {
        let mut h = Header::new(self.alg);
        h.kid = self.kid.clone();
        h
    }

    /// Signs `claims` with this key's header.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with(&self.header(), claims)
    }

    /// Signs `claims` under any header (its `alg` must be one this key can sign).
    pub fn sign_with(&self, header: &Header, claims: &Value) -> String {
        jsonwebtoken::encode(header, claims, &self.enc).expect("sign")
    }
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len() / 2).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex")).collect()
}

/// A JWKS document with these keys.
pub fn jwks(keys: &[&SigningKey]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()}).to_string()
}

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Claims for `iss`/`aud`, valid for `exp_in` seconds from now, with `extra` merged in.
pub fn claims(iss: &str, aud: &str, exp_in: i64, extra: Value) -> Value {
    let mut c = json!({"iss": iss, "aud": aud, "sub": "user-1", "iat": now(), "exp": now() + exp_in});
    if let (Some(m), Value::Object(e)) = (c.as_object_mut(), extra) {
        m.extend(e);
    }
    c
}

/// A token from raw parts, for shapes no library would sign.
pub fn raw_token(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!("{}.{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()), b64(signature))
}
