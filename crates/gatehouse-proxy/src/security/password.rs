//! Password hashes for basic auth: verification of argon2 (PHC strings) and bcrypt
//! hashes, and new argon2id hashes for `gatehouse hash-password`.
//!
//! Verifying costs milliseconds of CPU by design: callers run it off the worker threads
//! (`tokio::task::spawn_blocking`) and keep what passed in a cache (`filter::auth`).

use argon2::password_hash::{PasswordHash, PasswordVerifier, SaltString};
use argon2::{Argon2, PasswordHasher};

/// Whether `password` matches `hash` (argon2 or bcrypt); a malformed hash matches nothing.
pub fn verify(hash: &str, password: &[u8]) -> bool {
    if hash.starts_with("$argon2") {
        return PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password, &h).is_ok());
    }
    if hash.starts_with("$2") {
        return bcrypt::verify(password, hash).unwrap_or(false);
    }
    false
}

/// A new argon2id hash of `password` with the crate's default parameters (19 MiB, two
/// passes) and a random 16-byte salt.
pub fn hash(password: &[u8]) -> Result<String, String> {
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| "no randomness for the salt".to_string())?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default().hash_password(password, &salt).map(|h| h.to_string()).map_err(|e| e.to_string())
}

/// The SHA-256 of an API key, as `sha256:HEX` (what `api_key.keys` holds).
pub fn api_key_digest(key: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key);
    let mut out = String::from("sha256:");
    for b in d.as_ref() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2_and_bcrypt_hashes_verify() {
        let h = hash(b"correct horse").expect("hash");
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify(&h, b"correct horse"));
        assert!(!verify(&h, b"correct horsE"));
        let b = bcrypt::hash("s3cret", 4).expect("bcrypt");
        assert!(verify(&b, b"s3cret") && !verify(&b, b"s3cre"));
        assert!(!verify("$argon2id$garbage", b"x") && !verify("plain", b"plain"));
        assert_eq!(api_key_digest(b"abc"), "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
