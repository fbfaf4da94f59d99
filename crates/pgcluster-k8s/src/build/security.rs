//! The one container security context every pgcluster container gets (the
//! PostgreSQL pods' and the controller's), meeting the `restricted` Pod
//! Security Standard, so the two cannot drift apart.

use k8s_openapi::api::core::v1::{Capabilities, SeccompProfile, SecurityContext};

/// The container security context for a process running as `uid` (and group
/// `uid`): non-root, not privileged, no privilege escalation, every capability
/// dropped, read-only root filesystem, seccomp RuntimeDefault.
pub fn restricted_container(uid: i64) -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            add: None,
        }),
        seccomp_profile: Some(runtime_default()),
        ..SecurityContext::default()
    }
}

/// The `RuntimeDefault` seccomp profile (pods and containers).
pub fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".to_owned(),
        localhost_profile: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The context satisfies the restricted profile's container rules.
    #[test]
    fn restricted_container_is_restricted() {
        let c = restricted_container(999);
        assert_eq!(c.allow_privilege_escalation, Some(false));
        assert_eq!(c.privileged, Some(false));
        assert_eq!(c.run_as_non_root, Some(true));
        assert_eq!((c.run_as_user, c.run_as_group), (Some(999), Some(999)));
        assert_eq!(c.read_only_root_filesystem, Some(true));
        assert_eq!(
            c.capabilities.and_then(|c| c.drop),
            Some(vec!["ALL".to_owned()])
        );
        assert_eq!(
            c.seccomp_profile.map(|p| p.type_).as_deref(),
            Some("RuntimeDefault")
        );
    }
}
