//! Services: headless (stable pod DNS for replication), `<name>-rw` (primary),
//! `<name>-ro` (replicas) and the optional MetalLB LoadBalancer.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use pgcluster_core::ValidatedCluster;
use pgcluster_core::access::{AccessModel, Source};
use pgcluster_core::api::v1alpha1::{AccessEndpoint, ServiceEndpoint};
use pgcluster_core::validated::ResolvedLoadBalancer;

use super::labels::{
    Component, ROLE_PRIMARY, ROLE_REPLICA, meta, pod_selector_labels, role_selector_labels,
};
use super::{AGENT_PORT, AGENT_PORT_NAME, BuildError, POSTGRES_PORT, POSTGRES_PORT_NAME};

/// MetalLB (v0.14+) annotation requesting fixed addresses.
pub const METALLB_IPS: &str = "metallb.io/loadBalancerIPs";
/// MetalLB (v0.14+) annotation naming the address pool.
pub const METALLB_POOL: &str = "metallb.io/address-pool";

pub(crate) fn service_port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_owned()),
        port,
        target_port: Some(IntOrString::String(name.to_owned())),
        protocol: Some("TCP".to_owned()),
        ..ServicePort::default()
    }
}

/// The pod role an in-cluster endpoint routes to.
pub fn endpoint_role(endpoint: ServiceEndpoint) -> &'static str {
    match endpoint {
        ServiceEndpoint::Rw => ROLE_PRIMARY,
        ServiceEndpoint::Ro => ROLE_REPLICA,
    }
}

/// The union of the CIDR sources of every rule admitting the `loadBalancer`
/// endpoint, sorted and without duplicates. The single derivation of
/// `loadBalancerSourceRanges` from the access model.
pub fn load_balancer_source_ranges(access: &AccessModel) -> BTreeSet<IpNet> {
    access
        .rules
        .iter()
        .filter(|rule| rule.endpoints.contains(&AccessEndpoint::LoadBalancer))
        .flat_map(|rule| rule.sources.iter())
        .filter_map(|source| match source {
            Source::Cidr(net) => Some(*net),
            Source::Pods { .. } => None,
        })
        .collect()
}

fn load_balancer(
    cluster: &ValidatedCluster,
    lb: &ResolvedLoadBalancer,
    owner: Option<&OwnerReference>,
) -> Result<Service, BuildError> {
    let name = cluster.name().lb_service();
    let ranges = load_balancer_source_ranges(cluster.access());
    if ranges.is_empty() {
        return Err(BuildError::LoadBalancerWithoutSources { service: name });
    }
    if !lb.allow_public
        && let Some(public) = ranges
            .iter()
            .find(|net| !pgcluster_core::access::cidr::is_private_net(net))
    {
        return Err(BuildError::PublicSourceRange {
            service: name,
            cidr: public.to_string(),
        });
    }
    let mut metadata = meta(cluster, name, Component::Postgres, owner);
    let mut annotations = BTreeMap::new();
    if let Some(address) = lb.address {
        annotations.insert(METALLB_IPS.to_owned(), address.to_string());
    }
    if let Some(pool) = &lb.pool {
        annotations.insert(METALLB_POOL.to_owned(), pool.clone());
    }
    metadata.annotations = (!annotations.is_empty()).then_some(annotations);
    Ok(Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".to_owned()),
            selector: Some(role_selector_labels(cluster, endpoint_role(lb.endpoint))),
            ports: Some(vec![service_port(POSTGRES_PORT_NAME, POSTGRES_PORT)]),
            // Local: no SNAT, so NetworkPolicy ipBlocks and pg_hba see the client's address.
            external_traffic_policy: Some("Local".to_owned()),
            load_balancer_source_ranges: Some(ranges.iter().map(ToString::to_string).collect()),
            // MetalLB answers for the address itself; NodePorts would open 5432 on every node.
            allocate_load_balancer_node_ports: Some(false),
            ..ServiceSpec::default()
        }),
        status: None,
    })
}

/// Every Service of the cluster: headless, rw, ro, LoadBalancer (those enabled).
pub fn services(
    cluster: &ValidatedCluster,
    owner: Option<&OwnerReference>,
) -> Result<Vec<Service>, BuildError> {
    let mut out = vec![Service {
        metadata: meta(
            cluster,
            cluster.name().headless_service(),
            Component::Postgres,
            owner,
        ),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            selector: Some(pod_selector_labels(cluster)),
            // Replicas must resolve their peers before those are ready (to clone the primary).
            publish_not_ready_addresses: Some(true),
            ports: Some(vec![
                service_port(POSTGRES_PORT_NAME, POSTGRES_PORT),
                service_port(AGENT_PORT_NAME, AGENT_PORT),
            ]),
            ..ServiceSpec::default()
        }),
        status: None,
    }];
    let in_cluster = |name: String, role: &str| Service {
        metadata: meta(cluster, name, Component::Postgres, owner),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(role_selector_labels(cluster, role)),
            ports: Some(vec![service_port(POSTGRES_PORT_NAME, POSTGRES_PORT)]),
            ..ServiceSpec::default()
        }),
        status: None,
    };
    if cluster.services().rw {
        out.push(in_cluster(cluster.name().rw_service(), ROLE_PRIMARY));
    }
    if cluster.services().ro {
        out.push(in_cluster(cluster.name().ro_service(), ROLE_REPLICA));
    }
    if let Some(lb) = &cluster.services().load_balancer {
        out.push(load_balancer(cluster, lb, owner)?);
    }
    Ok(out)
}
