//! pgcluster-k8s: everything pgcluster puts into Kubernetes.
//!
//! What this crate owns: the pure resource builders ([`build`](mod@build)) that turn a
//! [`ValidatedCluster`](pgcluster_core::ValidatedCluster) into typed
//! k8s-openapi objects, and the stable multi-document YAML rendering of them
//! ([`render`]) used by `pgcluster render`, the goldens and GitOps. The
//! controller ([`controller`]: reconcile, apply, status), the HA coordinator
//! on a Kubernetes Lease ([`lease`]), the pods' role label ([`pod_role`]) and
//! the table of API calls the RBAC is checked against ([`api_calls`]), and
//! the agent's Kubernetes mode ([`agent_mode`]: environment -> agent).
//!
//! Everything that talks to the API server is tested against tower-test
//! mocks, and the Lease coordinator, the CRD and controller manifests and a
//! reconcile under the shipped ClusterRole also against a real kube-apiserver
//! (`tests/e2e.rs`, run by `scripts/test-k8s`; see `docs/testenv.md`).
//!
//! What it must not do: the builders never perform I/O, never read a clock
//! and never generate secrets; passwords arrive as inputs
//! ([`build::BuildOptions::passwords`]) and are never rendered to files.
//!
//! ```text
//! ValidatedCluster + BuildOptions --build()--> Bundle (typed objects) --render::to_yaml--> multi-doc YAML
//!                                                   \--(controller)--> server-side apply
//! agent --Coordinator trait--> lease::KubeLeaseCoordinator --> Lease `<name>-leader` + pod annotations
//! ```
//!
//! # Golden files
//!
//! `tests/golden/*.yaml` hold the rendered output of `examples/*.yaml`. After
//! an intended change, update them with one command and review the diff:
//!
//! ```text
//! UPDATE_GOLDEN=1 cargo test -p pgcluster-k8s --test golden
//! ```
//!
//! The same test runs `../shared/tools/validate-manifests` (strict, its
//! default Kubernetes version) over the golden directory; it uses
//! `$PGCLUSTER_VALIDATE_PYTHON`, else `~/.cache/pgcluster-venv/bin/python`,
//! else `python3`.

#![warn(missing_docs)]

pub mod agent_mode;
pub mod api_calls;
pub mod build;
pub mod client_ops;
pub mod controller;
pub mod lease;
pub mod pod_role;
pub mod render;

pub use build::{BuildError, BuildOptions, Bundle, build};
pub mod testing;
