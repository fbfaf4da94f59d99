//! Whether a password matches a stored SCRAM-SHA-256 verifier (what
//! `pg_authid.rolpassword` holds): so a password that already works is
//! never set again (each `ALTER ROLE ... PASSWORD` would store a new salt
//! and rewrite the catalog for nothing).
//!
//! postgres-protocol computes verifiers but only with a random salt; this is
//! RFC 5802's derivation with the stored salt and iteration count, the
//! password prepared with SASLprep as libpq and the server do.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Iteration counts above this are not recomputed (a hostile or corrupt
/// catalog entry must not make a check take minutes); such a verifier is
/// treated as not matching, so the password is set again.
const MAX_ITERATIONS: u32 = 100_000;

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// RFC 5802's Hi(): PBKDF2 with HMAC-SHA-256 and one block.
fn hi(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut first = salt.to_vec();
    first.extend_from_slice(&1u32.to_be_bytes());
    let mut u = hmac(password, &first);
    let mut out = u;
    for _ in 1..iterations {
        u = hmac(password, &u);
        for (o, x) in out.iter_mut().zip(u) {
            *o ^= x;
        }
    }
    out
}

/// The password as SCRAM hashes it: SASLprep'd when that succeeds, else the
/// bytes as they are (libpq's and the server's rule).
fn prepared(password: &str) -> Vec<u8> {
    match stringprep::saslprep(password) {
        Ok(p) => p.into_owned().into_bytes(),
        Err(_) => password.as_bytes().to_vec(),
    }
}

/// Whether `password` matches `verifier` (`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`);
/// `false` for anything else (MD5, plain text, malformed).
pub fn verifies(password: &str, verifier: &str) -> bool {
    let Some(rest) = verifier.strip_prefix("SCRAM-SHA-256$") else {
        return false;
    };
    let Some((params, keys)) = rest.split_once('$') else {
        return false;
    };
    let (Some((iterations, salt)), Some((stored_key, server_key))) =
        (params.split_once(':'), keys.split_once(':'))
    else {
        return false;
    };
    let (Ok(iterations), Ok(salt), Ok(stored_key), Ok(server_key)) = (
        iterations.parse::<u32>(),
        STANDARD.decode(salt),
        STANDARD.decode(stored_key),
        STANDARD.decode(server_key),
    ) else {
        return false;
    };
    if iterations == 0 || iterations > MAX_ITERATIONS {
        return false;
    }
    let salted = hi(&prepared(password), &salt, iterations);
    let client_key = hmac(&salted, b"Client Key");
    let stored: [u8; 32] = Sha256::digest(client_key).into();
    stored.as_slice() == stored_key.as_slice()
        && hmac(&salted, b"Server Key").as_slice() == server_key.as_slice()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A verifier postgres-protocol made (random salt, as the server
    /// stores it) verifies its password and no other; other formats and
    /// garbage never verify.
    #[test]
    fn matches_verifiers_made_elsewhere() {
        for password in ["s3cret", "pässwörd", "with space", ""] {
            let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
            assert!(verifies(password, &verifier), "{password:?}");
            assert!(!verifies("other", &verifier), "{password:?}");
        }
        for garbage in [
            "",
            "md5abcdef",
            "SCRAM-SHA-256$",
            "SCRAM-SHA-256$4096:!!!$a:b",
            "SCRAM-SHA-256$999999999:c2FsdA==$YQ==:Yg==",
        ] {
            assert!(!verifies("s3cret", garbage), "{garbage:?}");
        }
    }
}
