//! Step 1: read what the later steps need from the API: the cluster's
//! existing Secrets (their passwords are reused, never regenerated), its
//! instance pods (roles, readiness, member states) and its leader Lease.

use std::collections::BTreeMap;

use k8s_openapi::api::coordination::v1::Lease as KubeLease;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Client;
use kube::api::{Api, ListParams};
use pgcluster_ha::machine::{Lease, SwitchoverRequest};

use super::error::Error;
use crate::build::labels::{Component, LABEL_CLUSTER, LABEL_COMPONENT};
use crate::build::secrets::PASSWORD_KEY;
use crate::lease::{stored_lease, stored_switchover};

/// The current state of one cluster's objects.
#[derive(Clone, Debug, Default)]
pub struct Dereferenced {
    /// Passwords of the existing Secrets, by Secret name (only Secrets that
    /// carry a non-empty password).
    pub existing_passwords: BTreeMap<String, String>,
    /// The instance pods, by name.
    pub pods: BTreeMap<String, Pod>,
    /// The leader lease record, if any (an undecodable one counts as none).
    pub lease: Option<Lease>,
    /// A pending switchover request.
    pub switchover: Option<SwitchoverRequest>,
}

fn deref_err<'a>(cluster: &'a str, kind: &'static str) -> impl FnOnce(kube::Error) -> Error + 'a {
    move |source| Error::Dereference {
        cluster: cluster.to_owned(),
        kind,
        source,
    }
}

/// Reads the Secrets, pods and Lease of `cluster` in `namespace`.
pub async fn dereference(
    client: &Client,
    namespace: &str,
    cluster: &str,
) -> Result<Dereferenced, Error> {
    let by_cluster = format!("{LABEL_CLUSTER}={cluster}");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let existing_passwords = secrets
        .list(&ListParams::default().labels(&by_cluster))
        .await
        .map_err(deref_err(cluster, "secrets"))?
        .items
        .into_iter()
        .filter_map(|s| {
            let name = s.metadata.name?;
            let password = s.data?.remove(PASSWORD_KEY)?;
            let password = String::from_utf8(password.0)
                .ok()
                .filter(|p| !p.is_empty())?;
            Some((name, password))
        })
        .collect();
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pods = pods
        .list(&ListParams::default().labels(&format!(
            "{by_cluster},{LABEL_COMPONENT}={}",
            Component::Postgres.as_str()
        )))
        .await
        .map_err(deref_err(cluster, "pods"))?
        .items
        .into_iter()
        .filter_map(|p| Some((p.metadata.name.clone()?, p)))
        .collect();
    let leases: Api<KubeLease> = Api::namespaced(client.clone(), namespace);
    // ClusterName::leader_lease() of a name that may not have validated yet.
    let object = leases
        .get_opt(&format!("{cluster}-leader"))
        .await
        .map_err(deref_err(cluster, "lease"))?;
    let (lease, switchover) = match &object {
        Some(o) => (
            stored_lease(o).ok().flatten(),
            stored_switchover(o).ok().flatten(),
        ),
        None => (None, None),
    };
    Ok(Dereferenced {
        existing_passwords,
        pods,
        lease,
        switchover,
    })
}
