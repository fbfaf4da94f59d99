//! (i) A cluster's life cycle on the node: deleted with the default
//! retention (Retain) and created again on its kept volumes.

use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams};
use pgcluster_core::api::v1alpha1::PostgresCluster;

use super::checks::{APP, create_table};
use super::running::{self, cluster_ip, role_target};
use super::{homelab_on_the_node, node};
use crate::e2e_support::sql::query;
use crate::e2e_support::{cluster, wait_for};

/// Deleting a cluster with `retention: Retain` keeps its volumes (and
/// nothing else: no finalizer holds the object, its Secrets go with it);
/// the same spec applied again comes back with the same data, new Secrets,
/// and every password in them working: the agents set the superuser's, the
/// controller the roles'.
#[tokio::test]
async fn recreated_on_kept_volumes_keeps_data_and_passwords() {
    let Some(c) = cluster().await else { return };
    let Some(_node) = node() else { return };
    let r = running::start(&c, "recreate", 2, |_| {}).await;
    let rw_ip = cluster_ip(&c, &r, &r.name.rw_service()).await;
    let before = role_target(&c, &r, APP, &rw_ip).await;
    // The first statement waits for the new Service's rules (kube-proxy).
    create_table(&before, "kept").await;
    query(&before, "INSERT INTO kept VALUES (42, now())")
        .await
        .unwrap();

    let clusters: Api<PostgresCluster> = Api::namespaced(c.admin.clone(), &r.ns);
    clusters
        .delete(r.name.as_str(), &DeleteParams::background())
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(c.admin.clone(), &r.ns);
    let secrets: Api<Secret> = Api::namespaced(c.admin.clone(), &r.ns);
    let selector = pgcluster_k8s::lease::instance_pod_selector(&r.name);
    wait_for(
        "the cluster, its pods and its Secrets to go",
        Duration::from_secs(180),
        || async {
            let gone = clusters.get_opt(r.name.as_str()).await.unwrap().is_none()
                && pods
                    .list(&ListParams::default().labels(&selector))
                    .await
                    .unwrap()
                    .items
                    .is_empty()
                && secrets
                    .get_opt(&r.name.role_secret(APP))
                    .await
                    .unwrap()
                    .is_none();
            gone.then_some(())
        },
    )
    .await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(c.admin.clone(), &r.ns);
    for i in 0..r.instances {
        let claim = format!("data-{}", r.name.instance(i));
        let kept = claims.get_opt(&claim).await.unwrap();
        assert!(
            kept.is_some_and(|k| k.metadata.deletion_timestamp.is_none()),
            "retention Retain lost the volume claim {claim}"
        );
    }

    let mut spec = homelab_on_the_node(&r.ns);
    spec.spec.instances = Some(r.instances);
    pgcluster_k8s::client_ops::apply(&c.admin, &spec)
        .await
        .unwrap();
    running::wait_ready(&c, &r, Duration::from_secs(420)).await;
    let rw_ip = cluster_ip(&c, &r, &r.name.rw_service()).await;
    let after = role_target(&c, &r, APP, &rw_ip).await;
    assert_ne!(
        after.password, before.password,
        "the re-created cluster's Secret holds a new password"
    );
    let rows = wait_for(
        "the role to log in with its new password and read the kept row",
        Duration::from_secs(90),
        || async { query(&after, "SELECT id FROM kept").await.ok() },
    )
    .await;
    assert_eq!(rows, vec![vec![Some("42".to_owned())]]);
}
