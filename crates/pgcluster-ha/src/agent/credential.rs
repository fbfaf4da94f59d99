//! [`MemberCredential`]: what a member shows on the members' routes of the
//! agent API (`/member`, `/failsafe`): a bearer token derived from the
//! cluster's superuser password, which every member already holds (its
//! Secret in Kubernetes, its password file locally) and nobody outside the
//! cluster should. No second secret to distribute or rotate; a changed
//! superuser password changes it on every member's next start.

use sha2::{Digest, Sha256};

/// Domain separation: the token is not the password, nor its hash elsewhere.
const CONTEXT: &[u8] = b"pgcluster agent API v1\0";

/// The members' bearer token.
#[derive(Clone, PartialEq, Eq)]
pub struct MemberCredential {
    token: String,
}

impl std::fmt::Debug for MemberCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemberCredential(<redacted>)")
    }
}

impl MemberCredential {
    /// The credential of a cluster whose superuser password is `password`.
    pub fn of(password: &str) -> Self {
        let mut h = Sha256::new();
        h.update(CONTEXT);
        h.update(password.as_bytes());
        let token = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Self { token }
    }

    /// The `Authorization` header value.
    pub fn header(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// Whether an `Authorization` header value carries this credential.
    /// Both sides are hashed first, so the comparison's time says nothing
    /// about the token.
    pub fn admits(&self, header: Option<&str>) -> bool {
        let Some(given) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
            return false;
        };
        Sha256::digest(given.as_bytes()) == Sha256::digest(self.token.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same password gives the same credential on every member; another
    /// password, a missing header or another scheme is refused; the token
    /// is neither the password nor shown by Debug.
    #[test]
    fn members_share_it_and_nobody_else_has_it() {
        let a = MemberCredential::of("s3cret");
        let b = MemberCredential::of("s3cret");
        assert!(b.admits(Some(&a.header())));
        assert!(!MemberCredential::of("other").admits(Some(&a.header())));
        assert!(!a.admits(None));
        assert!(!a.admits(Some("Basic czNjcmV0")));
        assert!(!a.header().contains("s3cret"));
        assert!(!format!("{a:?}").contains(&a.token));
    }
}
