//! HTTP Digest authentication for SIP (RFC 3261 §22, RFC 7616, RFC 8760 SHA-256).
//!
//! Owns: stateless nonces (a timestamp and a keyed hash, so any restart or any number of
//! registrations costs no memory), challenge headers, credential checks in constant
//! time, and the client side used towards trunks and by the test user agent.
//! Must not own: which user may do what (the registrar and the call router decide).
//!
//! Credentials are stored as HA1 = H(user:realm:password) per algorithm, never as
//! passwords.

use md5::{Digest as _, Md5};
use sha2::Sha256;

use super::header::AuthParams;

/// How long a nonce stays fresh. Past it the client gets `stale=true` and retries
/// without asking the user again (RFC 7616 §3.3).
pub const NONCE_LIFETIME_S: i64 = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    pub fn parse(s: Option<&str>) -> Option<Algorithm> {
        match s.map(str::to_ascii_uppercase).as_deref() {
            None | Some("MD5") => Some(Algorithm::Md5),
            Some("SHA-256") => Some(Algorithm::Sha256),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    pub fn hash(self, data: &str) -> String {
        match self {
            Algorithm::Md5 => to_hex(&Md5::digest(data.as_bytes())),
            Algorithm::Sha256 => to_hex(&Sha256::digest(data.as_bytes())),
        }
    }
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// H(user:realm:password), what the account store keeps.
pub fn ha1(alg: Algorithm, user: &str, realm: &str, password: &str) -> String {
    alg.hash(&format!("{user}:{realm}:{password}"))
}

/// The request-digest of RFC 7616 §3.4.1 for `qop=auth` (or none, RFC 2069 style).
#[allow(clippy::too_many_arguments)]
pub fn response(
    alg: Algorithm,
    ha1: &str,
    nonce: &str,
    nc: &str,
    cnonce: &str,
    qop: Option<&str>,
    method: &str,
    uri: &str,
) -> String {
    let ha2 = alg.hash(&format!("{method}:{uri}"));
    match qop {
        Some(q) => alg.hash(&format!("{ha1}:{nonce}:{nc}:{cnonce}:{q}:{ha2}")),
        None => alg.hash(&format!("{ha1}:{nonce}:{ha2}")),
    }
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Issues and checks nonces without remembering them.
#[derive(Clone)]
pub struct Nonces {
    secret: [u8; 32],
}

impl std::fmt::Debug for Nonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Nonces { secret: <redacted> }")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    Fresh,
    Stale,
    Invalid,
}

impl Nonces {
    pub fn new(secret: [u8; 32]) -> Nonces {
        Nonces { secret }
    }

    pub fn random() -> Nonces {
        Nonces::new(rand::random())
    }

    fn mac(&self, stamp: &str) -> String {
        let mut h = Sha256::new();
        h.update(self.secret);
        h.update(stamp.as_bytes());
        to_hex(&h.finalize()[..16])
    }

    pub fn issue(&self, now_unix_s: i64) -> String {
        let stamp = format!("{now_unix_s:x}");
        format!("{stamp}.{}", self.mac(&stamp))
    }

    pub fn check(&self, nonce: &str, now_unix_s: i64) -> NonceCheck {
        let Some((stamp, mac)) = nonce.split_once('.') else {
            return NonceCheck::Invalid;
        };
        if !constant_time_eq(mac, &self.mac(stamp)) {
            return NonceCheck::Invalid;
        }
        match i64::from_str_radix(stamp, 16) {
            Ok(t) if (0..=NONCE_LIFETIME_S).contains(&(now_unix_s - t)) => NonceCheck::Fresh,
            Ok(_) => NonceCheck::Stale,
            Err(_) => NonceCheck::Invalid,
        }
    }
}

/// A `WWW-Authenticate`/`Proxy-Authenticate` value.
pub fn challenge(alg: Algorithm, realm: &str, nonce: &str, stale: bool) -> String {
    format!(
        "Digest realm=\"{realm}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"{}",
        alg.name(),
        if stale { ", stale=true" } else { "" }
    )
}

/// Digest credentials from an `Authorization`/`Proxy-Authorization` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub algorithm: Algorithm,
    pub qop: Option<String>,
    pub nc: String,
    pub cnonce: String,
}

impl Credentials {
    /// `None` for another scheme or missing fields (the request is then challenged
    /// again, RFC 4475 §3.3.7).
    pub fn parse(value: &str) -> Option<Credentials> {
        let p = AuthParams::parse(value).ok()?;
        if !p.scheme.eq_ignore_ascii_case("Digest") {
            return None;
        }
        let qop = p.get("qop").map(str::to_string);
        if qop.as_deref().is_some_and(|q| q != "auth") {
            return None;
        }
        Some(Credentials {
            username: p.get("username")?.to_string(),
            realm: p.get("realm")?.to_string(),
            nonce: p.get("nonce")?.to_string(),
            uri: p.get("uri")?.to_string(),
            response: p.get("response")?.to_ascii_lowercase(),
            algorithm: Algorithm::parse(p.get("algorithm"))?,
            nc: p.get("nc").unwrap_or_default().to_string(),
            cnonce: p.get("cnonce").unwrap_or_default().to_string(),
            qop,
        })
    }

    /// Checks the response against the stored HA1 for this algorithm.
    pub fn verify(&self, method: &str, ha1: &str) -> bool {
        let expected = response(
            self.algorithm,
            ha1,
            &self.nonce,
            &self.nc,
            &self.cnonce,
            self.qop.as_deref(),
            method,
            &self.uri,
        );
        constant_time_eq(&expected, &self.response)
    }
}

/// A parsed challenge, for the client side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub algorithm: Algorithm,
    pub qop_auth: bool,
    pub opaque: Option<String>,
}

impl Challenge {
    pub fn parse(value: &str) -> Option<Challenge> {
        let p = AuthParams::parse(value).ok()?;
        if !p.scheme.eq_ignore_ascii_case("Digest") {
            return None;
        }
        Some(Challenge {
            realm: p.get("realm")?.to_string(),
            nonce: p.get("nonce")?.to_string(),
            algorithm: Algorithm::parse(p.get("algorithm"))?,
            qop_auth: p
                .get("qop")
                .is_some_and(|q| q.split(',').any(|v| v.trim() == "auth")),
            opaque: p.get("opaque").map(str::to_string),
        })
    }

    /// The credentials header value answering this challenge.
    pub fn answer(&self, user: &str, password: &str, method: &str, uri: &str, nc: u32) -> String {
        let ha1 = ha1(self.algorithm, user, &self.realm, password);
        let cnonce = super::random_token();
        let nc = format!("{nc:08x}");
        let qop = self.qop_auth.then_some("auth");
        let resp = response(
            self.algorithm,
            &ha1,
            &self.nonce,
            &nc,
            &cnonce,
            qop,
            method,
            uri,
        );
        let mut out = format!(
            "Digest username=\"{user}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", response=\"{resp}\", algorithm={}",
            self.realm,
            self.nonce,
            self.algorithm.name()
        );
        if qop.is_some() {
            out.push_str(&format!(", qop=auth, nc={nc}, cnonce=\"{cnonce}\""));
        }
        if let Some(o) = &self.opaque {
            out.push_str(&format!(", opaque=\"{o}\""));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_2617_example_md5() {
        // RFC 2617 §3.5 (HTTP, same algorithm).
        let h = ha1(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
        );
        let r = response(
            Algorithm::Md5,
            &h,
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            "00000001",
            "0a4f113b",
            Some("auth"),
            "GET",
            "/dir/index.html",
        );
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn challenge_answer_verifies_for_both_algorithms() {
        let nonces = Nonces::new([7; 32]);
        for alg in [Algorithm::Md5, Algorithm::Sha256] {
            let nonce = nonces.issue(1000);
            let ch = Challenge::parse(&challenge(alg, "cc", &nonce, false)).unwrap();
            let value = ch.answer("alice", "secret", "REGISTER", "sip:cc", 1);
            let creds = Credentials::parse(&value).unwrap();
            assert_eq!(creds.algorithm, alg);
            assert!(creds.verify("REGISTER", &ha1(alg, "alice", "cc", "secret")));
            assert!(!creds.verify("REGISTER", &ha1(alg, "alice", "cc", "wrong")));
        }
    }

    #[test]
    fn nonces_expire_and_cannot_be_forged() {
        let n = Nonces::new([1; 32]);
        let nonce = n.issue(1000);
        assert_eq!(n.check(&nonce, 1000 + NONCE_LIFETIME_S), NonceCheck::Fresh);
        assert_eq!(n.check(&nonce, 1001 + NONCE_LIFETIME_S), NonceCheck::Stale);
        assert_eq!(
            Nonces::new([2; 32]).check(&nonce, 1000),
            NonceCheck::Invalid
        );
        assert_eq!(n.check("3e8.deadbeef", 1000), NonceCheck::Invalid);
    }

    #[test]
    fn other_schemes_are_not_credentials() {
        assert_eq!(
            Credentials::parse("NoOneKnowsThisScheme opaque-data=here"),
            None
        );
    }
}
