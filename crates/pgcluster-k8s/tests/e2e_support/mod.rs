//! Helpers of the end-to-end tests: clients of the one shared test cluster
//! (started by `scripts/test-k8s`, found through [`KUBECONFIG_ENV`]), one
//! namespace per test, ServiceAccount clients through the TokenRequest API,
//! server-side apply of YAML files, and bounded waits.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

pub mod node;
pub mod sql;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::discovery::{self, Scope};
use kube::{Client, Config};

/// The admin kubeconfig of the test cluster.
pub const KUBECONFIG_ENV: &str = "PGCLUSTER_E2E_KUBECONFIG";
/// Field manager of what the tests apply as a user would with kubectl.
pub const USER_MANAGER: &str = "kubectl";

/// The test cluster: an admin client (group system:masters) and its config.
pub struct TestCluster {
    /// Client with the admin's client certificate.
    pub admin: Client,
    config: Config,
}

/// The test cluster, or `None` (after saying so) when none was started.
/// Under `CI=true` a missing cluster is a failure, never a skip.
pub async fn cluster() -> Option<TestCluster> {
    let Some(path) = std::env::var_os(KUBECONFIG_ENV) else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{KUBECONFIG_ENV} is unset under CI=true: the Kubernetes end-to-end tests need \
             the test cluster that scripts/test-k8s starts"
        );
        eprintln!("skipped: no test cluster ({KUBECONFIG_ENV} unset; run scripts/test-k8s)");
        return None;
    };
    let kubeconfig = Kubeconfig::read_from(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", Path::new(&path).display()));
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("the test cluster's kubeconfig is usable by kube-rs");
    let admin = Client::try_from(config.clone()).expect("a client from the admin kubeconfig");
    Some(TestCluster { admin, config })
}

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Polls `check` every 200 ms until it returns `Some`, for at most `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl TestCluster {
    /// Creates a fresh namespace `e2e-<prefix>-<suffix>` and returns its name.
    pub async fn namespace(&self, prefix: &str) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!("e2e-{prefix}-{:x}", nanos % 0xfffff);
        let api: Api<Namespace> = Api::all(self.admin.clone());
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        api.create(&PostParams::default(), &ns).await.unwrap();
        name
    }

    /// Waits until ServiceAccount `name` exists in `namespace`.
    pub async fn wait_service_account(&self, namespace: &str, name: &str) {
        let api: Api<ServiceAccount> = Api::namespaced(self.admin.clone(), namespace);
        wait_for(
            &format!("ServiceAccount {namespace}/{name}"),
            Duration::from_secs(30),
            || async { api.get_opt(name).await.unwrap().map(drop) },
        )
        .await;
    }

    /// A client authenticated as ServiceAccount `namespace/name` with a token
    /// from the TokenRequest API (what a pod of that ServiceAccount gets), so
    /// its requests are authorized by RBAC exactly as the pod's would be.
    pub async fn service_account_client(&self, namespace: &str, name: &str) -> Client {
        let api: Api<ServiceAccount> = Api::namespaced(self.admin.clone(), namespace);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: vec![],
                expiration_seconds: Some(3600),
                ..TokenRequestSpec::default()
            },
            ..TokenRequest::default()
        };
        let issued: TokenRequest = api
            .create_subresource("token", name, &PostParams::default(), &request)
            .await
            .unwrap_or_else(|e| panic!("TokenRequest for {namespace}/{name}: {e}"));
        let token = issued
            .status
            .expect("a TokenRequest answer has a status")
            .token;
        let mut config = self.config.clone();
        config.auth_info =
            serde_json::from_value::<AuthInfo>(serde_json::json!({ "token": token })).unwrap();
        Client::try_from(config).unwrap()
    }

    /// Server-side applies every document of `yaml` (namespaced objects
    /// without a namespace go to `default_namespace`) as `kubectl apply
    /// --server-side` would: field manager `kubectl`, no force. Returns
    /// `(kind, name)` of each object.
    pub async fn apply_yaml(
        &self,
        yaml: &str,
        default_namespace: Option<&str>,
    ) -> Vec<(String, String)> {
        let mut applied = Vec::new();
        for document in serde_norway::Deserializer::from_str(yaml) {
            let value: serde_json::Value =
                serde::Deserialize::deserialize(document).expect("valid YAML");
            if value.is_null() {
                continue;
            }
            let object: DynamicObject = serde_json::from_value(value.clone()).unwrap();
            let types = object.types.clone().expect("apiVersion and kind");
            let gvk = GroupVersionKind::try_from(&types).unwrap();
            let (resource, caps) = discovery::pinned_kind(&self.admin, &gvk)
                .await
                .unwrap_or_else(|e| panic!("discovery of {gvk:?}: {e}"));
            let name = object.metadata.name.clone().expect("metadata.name");
            let api: Api<DynamicObject> = if caps.scope == Scope::Namespaced {
                let ns = object
                    .metadata
                    .namespace
                    .clone()
                    .or_else(|| default_namespace.map(str::to_owned))
                    .unwrap_or_else(|| "default".to_owned());
                Api::namespaced_with(self.admin.clone(), &ns, &resource)
            } else {
                Api::all_with(self.admin.clone(), &resource)
            };
            api.patch(
                &name,
                &PatchParams::apply(USER_MANAGER),
                &Patch::Apply(&value),
            )
            .await
            .unwrap_or_else(|e| panic!("server-side apply of {} {name}: {e}", types.kind));
            applied.push((types.kind, name));
        }
        applied
    }

    /// Applies a kustomize base the way `kubectl apply --server-side -k DIR`
    /// does: rendered by the real kustomize inside the test cluster's kubectl
    /// (built from the same Kubernetes release), then applied object by
    /// object with server-side apply.
    pub async fn apply_kustomization(&self, dir: &Path) -> Vec<(String, String)> {
        let dir_arg = dir.to_str().expect("a UTF-8 path");
        let out = self
            .kubectl(&["kustomize", dir_arg])
            .expect("scripts/test-k8s sets PGCLUSTER_E2E_KUBECTL (kubectl from testenv/)");
        assert!(
            out.status.success(),
            "kubectl kustomize {dir_arg}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rendered = String::from_utf8(out.stdout).expect("kustomize prints UTF-8");
        self.apply_yaml(&rendered, None).await
    }

    /// Runs the test cluster's kubectl (`PGCLUSTER_E2E_KUBECTL`), if set.
    pub fn kubectl(&self, args: &[&str]) -> Option<std::process::Output> {
        let kubectl = std::env::var_os("PGCLUSTER_E2E_KUBECTL")?;
        Some(
            std::process::Command::new(kubectl)
                .args(args)
                .env("KUBECONFIG", std::env::var_os(KUBECONFIG_ENV)?)
                .output()
                .expect("kubectl runs"),
        )
    }
}
