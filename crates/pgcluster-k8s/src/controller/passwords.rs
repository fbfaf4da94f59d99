//! Passwords of the cluster's Secrets: reused when the Secret exists,
//! generated once otherwise. The only randomness of the pipeline lives here,
//! between dereference and build (the builders take passwords as inputs).

use std::collections::{BTreeMap, BTreeSet};

use pgcluster_core::ValidatedCluster;
use pgcluster_core::names::SUPERUSER_ROLE;
use rand::RngExt;

/// Characters of generated passwords: letters and digits only, so they are
/// safe in connection strings, URLs and shell snippets without escaping.
const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
/// Length of generated passwords: 32 of 62 symbols is about 190 bits.
pub const PASSWORD_LEN: usize = 32;

/// A new password from the thread-local CSPRNG (ChaCha12 seeded by the OS).
pub fn generate() -> String {
    let mut rng = rand::rng();
    (0..PASSWORD_LEN)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// `(role, Secret name)` of every Secret the cluster has.
pub fn secret_names(cluster: &ValidatedCluster) -> Vec<(String, String)> {
    let mut out = vec![(SUPERUSER_ROLE.to_owned(), cluster.name().superuser_secret())];
    out.extend(
        cluster
            .roles()
            .iter()
            .map(|r| (r.name.clone(), cluster.name().role_secret(&r.name))),
    );
    out
}

/// The passwords by role, and the names of the Secrets that already exist
/// (those are never applied again). `generate` is called once per missing Secret.
pub fn passwords(
    cluster: &ValidatedCluster,
    existing: &BTreeMap<String, String>,
    mut generate: impl FnMut() -> String,
) -> (BTreeMap<String, String>, BTreeSet<String>) {
    let mut by_role = BTreeMap::new();
    let mut kept = BTreeSet::new();
    for (role, secret) in secret_names(cluster) {
        let password = match existing.get(&secret) {
            Some(p) => {
                kept.insert(secret);
                p.clone()
            }
            None => generate(),
        };
        by_role.insert(role, password);
    }
    (by_role, kept)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::testing::spec;

    /// Generated passwords are long, alphanumeric and different each time.
    #[test]
    fn generated_passwords_are_strong() {
        let a = generate();
        assert_eq!(a.len(), PASSWORD_LEN);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(a, generate());
    }

    /// Existing Secrets keep their password; only missing ones are generated.
    #[test]
    fn existing_passwords_are_reused() {
        let c = spec("pg", 2).with_app("app").validated();
        let existing = BTreeMap::from([("pg-superuser".to_owned(), "kept".to_owned())]);
        let mut n = 0;
        let (by_role, kept) = passwords(&c, &existing, || {
            n += 1;
            format!("new{n}")
        });
        assert_eq!(by_role["postgres"], "kept");
        assert_eq!(by_role["app"], "new1");
        assert_eq!(by_role.len(), 2, "the superuser's and the role's");
        assert_eq!(kept, BTreeSet::from(["pg-superuser".to_owned()]));
    }
}
