//! Secrets of the superuser (used by the agents and the controller) and of each declared role.
//!
//! The password values are an input: the controller generates them at runtime
//! and passes them in [`BuildOptions::passwords`](super::BuildOptions). Without
//! them (rendering to files) a Secret is a *shape*: name, labels, type and the
//! non-secret keys (`username`, `host`, `port`, `dbname`); the annotation
//! [`ANNOTATION_FILLED_KEYS`] names the keys the controller fills. Applying a
//! shape never removes a password the controller set (the key is not in it).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use pgcluster_core::ValidatedCluster;
use pgcluster_core::names::SUPERUSER_ROLE;

use super::POSTGRES_PORT;
use super::labels::{Component, meta};

/// Annotation listing the keys the controller fills at runtime.
pub const ANNOTATION_FILLED_KEYS: &str = "pgcluster.dev/filled-by-controller";
/// The key holding the password.
pub const PASSWORD_KEY: &str = "password";
/// Secret type: `username` + `password`, understood by many tools.
pub const SECRET_TYPE: &str = "kubernetes.io/basic-auth";

fn secret(
    cluster: &ValidatedCluster,
    owner: Option<&OwnerReference>,
    name: String,
    role: &str,
    dbname: Option<&str>,
    passwords: &BTreeMap<String, String>,
) -> Secret {
    let mut metadata = meta(cluster, name, Component::Credentials, owner);
    metadata.annotations = Some(BTreeMap::from([(
        ANNOTATION_FILLED_KEYS.to_owned(),
        PASSWORD_KEY.to_owned(),
    )]));
    let mut data = BTreeMap::from([
        ("username".to_owned(), role.to_owned()),
        (
            "host".to_owned(),
            format!(
                "{}.{}.svc",
                cluster.name().rw_service(),
                cluster.namespace()
            ),
        ),
        ("port".to_owned(), POSTGRES_PORT.to_string()),
    ]);
    if let Some(db) = dbname {
        data.insert("dbname".to_owned(), db.to_owned());
    }
    if let Some(password) = passwords.get(role) {
        data.insert(PASSWORD_KEY.to_owned(), password.clone());
    }
    Secret {
        metadata,
        type_: Some(SECRET_TYPE.to_owned()),
        data: Some(
            data.into_iter()
                .map(|(k, v)| (k, ByteString(v.into_bytes())))
                .collect(),
        ),
        ..Secret::default()
    }
}

/// The Secrets: the superuser's (the agents and the controller use it), then
/// each declared role's in spec order.
/// A role's `dbname` is the first database it owns, if any.
pub fn secrets(
    cluster: &ValidatedCluster,
    owner: Option<&OwnerReference>,
    passwords: &BTreeMap<String, String>,
) -> Vec<Secret> {
    let mut out = vec![secret(
        cluster,
        owner,
        cluster.name().superuser_secret(),
        SUPERUSER_ROLE,
        None,
        passwords,
    )];
    for role in cluster.roles() {
        let owned = cluster
            .databases()
            .iter()
            .find(|db| db.owner == role.name)
            .map(|db| db.name.as_str());
        out.push(secret(
            cluster,
            owner,
            cluster.name().role_secret(&role.name),
            &role.name,
            owned,
            passwords,
        ));
    }
    out
}
