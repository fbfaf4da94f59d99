//! The `pgcluster.dev/role` label on instance pods: the rw and ro Services
//! select on it, so relabelling a pod moves traffic at once.
//!
//! An agent labels its own pod; a new primary also relabels the old
//! primary's pod to `replica`. That works even when the old pod's node is
//! dead: a label is part of the Pod object in the API server, not something
//! the kubelet has to do, and the EndpointSlice controller drops the pod from
//! the rw Service as soon as its labels stop matching.
//!
//! One JSON merge patch per call (no read, no resourceVersion: the label has
//! one writer at a time, and the last write is the one that must win).
//! Tested only through tower-test mocks of the API server.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use pgcluster_ha::machine::RoleLabel;

use crate::build::labels::{LABEL_ROLE, ROLE_PRIMARY, ROLE_REPLICA};

/// Why a pod could not be relabelled.
#[derive(Debug, thiserror::Error)]
pub enum PodRoleError {
    /// The API call failed.
    #[error("failed to set the role label of pod {pod}")]
    Patch {
        /// The pod.
        pod: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

impl PodRoleError {
    /// A bounded label for metrics and events.
    pub fn category(&self) -> &'static str {
        match self {
            PodRoleError::Patch { .. } => "pod_role_patch",
        }
    }
}

/// What a relabel did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relabel {
    /// The label now has the requested value.
    Set,
    /// The pod does not exist (deleted with its node): nothing routes to it.
    PodGone,
}

/// The label value of a role.
pub fn role_value(role: RoleLabel) -> &'static str {
    match role {
        RoleLabel::Primary => ROLE_PRIMARY,
        RoleLabel::Replica => ROLE_REPLICA,
    }
}

/// The merge patch setting the role label.
pub fn role_patch(role: RoleLabel) -> serde_json::Value {
    serde_json::json!({ "metadata": { "labels": { LABEL_ROLE: role_value(role) } } })
}

/// Sets the role label of instance pods in one namespace.
#[derive(Clone)]
pub struct PodLabeler {
    pods: Api<Pod>,
}

impl PodLabeler {
    /// A labeler for pods in `namespace`.
    pub fn new(client: Client, namespace: &str) -> Self {
        Self {
            pods: Api::namespaced(client, namespace),
        }
    }

    /// Sets `pgcluster.dev/role` of `pod` to `role`.
    pub async fn set_role(&self, pod: &str, role: RoleLabel) -> Result<Relabel, PodRoleError> {
        match self
            .pods
            .patch(
                pod,
                &PatchParams::default(),
                &Patch::Merge(&role_patch(role)),
            )
            .await
        {
            Ok(_) => Ok(Relabel::Set),
            Err(kube::Error::Api(s)) if s.is_not_found() => Ok(Relabel::PodGone),
            Err(source) => Err(PodRoleError::Patch {
                pod: pod.to_owned(),
                source,
            }),
        }
    }

    /// The new primary's relabelling: itself `primary`, then `old` (if any
    /// and different) `replica`. The own label comes first so the rw Service
    /// is never empty longer than necessary; the old primary is already
    /// fenced (its lease expired or was handed over) before this runs.
    pub async fn take_over(&self, me: &str, old: Option<&str>) -> Result<(), PodRoleError> {
        self.set_role(me, RoleLabel::Primary).await?;
        if let Some(old) = old.filter(|o| *o != me) {
            self.set_role(old, RoleLabel::Replica).await?;
        }
        Ok(())
    }
}
