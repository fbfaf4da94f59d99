//! The controller's own installation objects (Namespace, ServiceAccount,
//! ClusterRole, ClusterRoleBinding, Deployment, metrics Service) as typed
//! objects. `kubernetes/controller/*.yaml` are rendered from these (a test
//! fails when they are stale), so ports, probes and RBAC never drift from the code.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, Namespace, ObjectFieldSelector,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, Service,
    ServiceAccount, ServicePort, ServiceSpec,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::build::DEFAULT_CONTROLLER_NAMESPACE;
use crate::build::labels::{APP_NAME, Component, MANAGED_BY};
use crate::build::rbac::{CONTROLLER_NAME, controller_cluster_role};
use crate::build::security::{restricted_container, runtime_default};

/// Port of `/metrics`, `/healthz` and `/readyz`.
pub const METRICS_PORT: i32 = 8080;
/// Name of that port.
pub const METRICS_PORT_NAME: &str = "metrics";
/// uid/gid of the controller (distroless `nonroot`).
pub const CONTROLLER_UID: i64 = 65532;
/// The controller image (defined once, in pgcluster-core's defaults; users
/// override it with kustomize `images:` or the OpenTofu module's
/// `controller_image`).
pub const CONTROLLER_IMAGE: &str = pgcluster_core::defaults::DEFAULT_CONTROLLER_IMAGE;

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), APP_NAME.to_owned()),
        (
            "app.kubernetes.io/component".to_owned(),
            Component::Controller.as_str().to_owned(),
        ),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            MANAGED_BY.to_owned(),
        ),
    ])
}

fn selector() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), APP_NAME.to_owned()),
        (
            "app.kubernetes.io/component".to_owned(),
            Component::Controller.as_str().to_owned(),
        ),
    ])
}

fn meta(name: &str, namespaced: bool) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespaced.then(|| DEFAULT_CONTROLLER_NAMESPACE.to_owned()),
        labels: Some(labels()),
        ..ObjectMeta::default()
    }
}

/// The `pgcluster-system` Namespace.
pub fn namespace() -> Namespace {
    Namespace {
        metadata: meta(DEFAULT_CONTROLLER_NAMESPACE, false),
        ..Namespace::default()
    }
}

/// The controller's ServiceAccount.
pub fn service_account() -> ServiceAccount {
    ServiceAccount {
        metadata: meta(CONTROLLER_NAME, true),
        automount_service_account_token: Some(true),
        ..ServiceAccount::default()
    }
}

/// The controller's ClusterRole (from the builders: [`controller_cluster_role`]).
pub fn cluster_role() -> ClusterRole {
    controller_cluster_role()
}

/// Binds the ClusterRole to the ServiceAccount.
pub fn cluster_role_binding() -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(CONTROLLER_NAME, false),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "ClusterRole".to_owned(),
            name: CONTROLLER_NAME.to_owned(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name: CONTROLLER_NAME.to_owned(),
            namespace: Some(DEFAULT_CONTROLLER_NAMESPACE.to_owned()),
            api_group: None,
        }]),
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: Some("v1".to_owned()),
                field_path: path.to_owned(),
            }),
            ..EnvVarSource::default()
        }),
    }
}

fn probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String(METRICS_PORT_NAME.to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Probe::default()
    }
}

/// Two replicas (one leads through the Lease, the other waits), non-root,
/// read-only root filesystem, every capability dropped.
pub fn deployment() -> Deployment {
    let quantities = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
            .collect::<BTreeMap<_, _>>()
    };
    let container = Container {
        name: "controller".to_owned(),
        image: Some(CONTROLLER_IMAGE.to_owned()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        args: Some(vec![
            "--metrics-address".to_owned(),
            format!("0.0.0.0:{METRICS_PORT}"),
        ]),
        env: Some(vec![
            field_env("POD_NAME", "metadata.name"),
            field_env("POD_NAMESPACE", "metadata.namespace"),
            EnvVar {
                name: "RUST_LOG".to_owned(),
                value: Some("info,kube=warn".to_owned()),
                value_from: None,
            },
        ]),
        ports: Some(vec![ContainerPort {
            name: Some(METRICS_PORT_NAME.to_owned()),
            container_port: METRICS_PORT,
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        liveness_probe: Some(probe("/healthz", 10, 3)),
        readiness_probe: Some(probe("/readyz", 5, 2)),
        resources: Some(ResourceRequirements {
            requests: Some(quantities(&[("cpu", "50m"), ("memory", "64Mi")])),
            limits: Some(quantities(&[("memory", "256Mi")])),
            ..ResourceRequirements::default()
        }),
        security_context: Some(restricted_container(CONTROLLER_UID)),
        ..Container::default()
    };
    Deployment {
        metadata: meta(CONTROLLER_NAME, true),
        spec: Some(DeploymentSpec {
            replicas: Some(2),
            selector: LabelSelector {
                match_labels: Some(selector()),
                match_expressions: None,
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(1)),
                    max_surge: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels()),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(CONTROLLER_NAME.to_owned()),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(CONTROLLER_UID),
                        run_as_group: Some(CONTROLLER_UID),
                        seccomp_profile: Some(runtime_default()),
                        ..PodSecurityContext::default()
                    }),
                    containers: vec![container],
                    termination_grace_period_seconds: Some(30),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// The metrics Service (Prometheus scrapes the controller through it).
pub fn metrics_service() -> Service {
    Service {
        metadata: meta(&format!("{CONTROLLER_NAME}-metrics"), true),
        spec: Some(ServiceSpec {
            selector: Some(selector()),
            ports: Some(vec![ServicePort {
                name: Some(METRICS_PORT_NAME.to_owned()),
                port: METRICS_PORT,
                target_port: Some(IntOrString::String(METRICS_PORT_NAME.to_owned())),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn doc<T: serde::Serialize>(value: &T) -> String {
    format!(
        "---\n{}",
        serde_norway::to_string(value).expect("k8s-openapi objects serialize to YAML")
    )
}

/// The files of `kubernetes/controller/` rendered from code (without the
/// CRD copy and `kustomization.yaml`), as `(file name, content)`.
pub fn files() -> Vec<(&'static str, String)> {
    const HEADER: &str = "# Generated from crates/pgcluster-k8s/src/controller/install.rs; do not edit.\n# Regenerate: UPDATE_GOLDEN=1 cargo test -p pgcluster-k8s --test controller_manifests\n";
    vec![
        ("namespace.yaml", format!("{HEADER}{}", doc(&namespace()))),
        (
            "rbac.yaml",
            format!(
                "{HEADER}{}{}{}",
                doc(&service_account()),
                doc(&cluster_role()),
                doc(&cluster_role_binding())
            ),
        ),
        (
            "deployment.yaml",
            format!("{HEADER}{}{}", doc(&deployment()), doc(&metrics_service())),
        ),
    ]
}
