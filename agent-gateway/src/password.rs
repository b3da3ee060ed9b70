//! Passwords: argon2id PHC strings (RFC 9106) and session tokens.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

/// Why a configured hash is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an argon2 PHC string (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`): {0}")]
pub struct BadHash(String);

/// Hashes a password with argon2id, default parameters and a random salt.
pub fn hash(password: &str) -> Result<String, BadHash> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| BadHash(e.to_string()))
}

/// Checks that a configured string is an argon2 PHC hash (at config load).
pub fn check(phc: &str) -> Result<(), BadHash> {
    let parsed = PasswordHash::new(phc).map_err(|e| BadHash(e.to_string()))?;
    let alg = parsed.algorithm.as_str();
    if !alg.starts_with("argon2") {
        return Err(BadHash(format!("algorithm `{alg}` is not argon2")));
    }
    Ok(())
}

/// Whether `password` matches the PHC string.
pub fn verify(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Verifies against the account's hash, or against a throwaway hash when there is no
/// account, so an unknown name costs the same time as a wrong password.
pub(crate) fn verify_or_dummy(password: &str, phc: Option<String>) -> bool {
    match phc {
        Some(h) => verify(password, &h),
        None => {
            static DUMMY: OnceLock<Option<String>> = OnceLock::new();
            if let Some(h) = DUMMY.get_or_init(|| hash(&token()).ok()) {
                let _ = verify(password, h);
            }
            false
        }
    }
}

/// A fresh session token: 256 random bits, hex.
pub(crate) fn token() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let h = hash("alice-pw").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        check(&h).unwrap();
        assert!(verify("alice-pw", &h));
        assert!(!verify("alice-pW", &h));
        assert!(!verify_or_dummy("alice-pw", None));
    }

    #[test]
    fn bad_hashes_are_refused_with_the_reason() {
        assert!(check("alice-pw").is_err());
        assert!(!verify("x", "nonsense"));
        let e = check("$pbkdf2-sha256$i=1000$c2FsdA$aGFzaA").unwrap_err();
        assert!(e.to_string().contains("argon2"), "{e}");
    }

    #[test]
    fn tokens_are_long_and_distinct() {
        let (a, b) = (token(), token());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
