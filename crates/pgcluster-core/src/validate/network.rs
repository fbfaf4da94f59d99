//! Checks of the cluster network and the endpoints: pod and service CIDRs,
//! the rw/ro Services and the MetalLB LoadBalancer.

use std::net::IpAddr;

use ipnet::IpNet;

use super::RESOLVED;
use super::error::{Check, Problems};
use super::k8s::is_dns_subdomain;
use crate::access::cidr::{CidrError, is_private_addr, is_private_net, parse_cidr};
use crate::api::v1alpha1::{NetworkSpec, ServicesSpec};
use crate::defaults::{DEFAULT_POD_CIDR, DEFAULT_SERVICE_CIDR};
use crate::validated::{ResolvedLoadBalancer, ResolvedNetwork, ResolvedServices};

/// Parses a CIDR at `path`, reporting a problem when it does not parse.
pub(crate) fn cidr(problems: &mut Problems, path: &str, value: &str) -> Option<IpNet> {
    match parse_cidr(value) {
        Ok(net) => Some(net),
        Err(e) => {
            let hint = match &e {
                CidrError::HostBits { network, .. } => format!("did you mean `{network}`?"),
                CidrError::LeadingZero { decimal, .. } => format!(
                    "write the numbers without leading zeros: `{decimal}` if you mean decimal"
                ),
                CidrError::MissingPrefix { input } => {
                    let bits = if input.contains(':') { 128 } else { 32 };
                    format!("add a prefix length, e.g. `{input}/{bits}` for one address")
                }
                CidrError::Malformed { .. } => {
                    "write address/prefix length, e.g. `10.0.10.0/24` or `fd00::/64`".to_owned()
                }
            };
            problems.push(Check::InvalidAddress, path, e.to_string(), hint);
            None
        }
    }
}

/// Reports a public range at `path` unless allowed; `allow_path` names the switch.
pub(crate) fn check_private(
    problems: &mut Problems,
    path: &str,
    net: &IpNet,
    allow_public: bool,
    allow_path: &str,
) {
    if !allow_public && !is_private_net(net) {
        problems.push(
            Check::PublicAddress,
            path,
            format!("{net} is a public (internet-routable) range"),
            format!(
                "use a private range (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7), or set {allow_path}: true if you really mean to admit it"
            ),
        );
    }
}

pub(crate) fn check_network(problems: &mut Problems, n: &NetworkSpec) -> ResolvedNetwork {
    let fallback = |s: &str| {
        s.parse::<IpNet>()
            .expect("the default CIDRs are valid constants")
    };
    let pod = cidr(
        problems,
        "spec.network.podCidr",
        n.pod_cidr.as_deref().expect(RESOLVED),
    );
    if let Some(net) = &pod
        && !is_private_net(net)
    {
        problems.push(
            Check::PublicAddress,
            "spec.network.podCidr",
            format!("{net} is a public (internet-routable) range, and pg_hba.conf admits the pod CIDR for every pod rule and for the superuser"),
            "copy the cluster's pod range (K3s: --cluster-cidr, default 10.42.0.0/16); it must lie in a private range (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7)",
        );
    }
    let svc = cidr(
        problems,
        "spec.network.serviceCidr",
        n.service_cidr.as_deref().expect(RESOLVED),
    );
    if let (Some(pod), Some(svc)) = (pod, svc)
        && (pod.contains(&svc) || svc.contains(&pod))
    {
        problems.push(
            Check::OverlappingRanges,
            "spec.network.serviceCidr",
            format!("the service CIDR {svc} overlaps the pod CIDR {pod}"),
            "copy both from the cluster's configuration (K3s: --cluster-cidr and --service-cidr)",
        );
    }
    ResolvedNetwork {
        pod_cidr: pod.unwrap_or_else(|| fallback(DEFAULT_POD_CIDR)),
        service_cidr: svc.unwrap_or_else(|| fallback(DEFAULT_SERVICE_CIDR)),
    }
}

pub(crate) fn check_services(
    problems: &mut Problems,
    s: &ServicesSpec,
    network: &ResolvedNetwork,
) -> ResolvedServices {
    let enabled = |e: &Option<crate::api::v1alpha1::EndpointSpec>| {
        e.as_ref().and_then(|e| e.enabled).expect(RESOLVED)
    };
    let lb = s.load_balancer.as_ref().expect(RESOLVED);
    let base = "spec.services.loadBalancer";
    let allow_public = lb.allow_public.expect(RESOLVED);
    let allow_path = format!("{base}.allowPublic");
    let mut allowed_ranges = Vec::new();
    for (i, range) in lb.allowed_ranges.iter().enumerate() {
        let path = format!("{base}.allowedRanges[{i}]");
        if let Some(net) = cidr(problems, &path, range) {
            check_private(problems, &path, &net, allow_public, &allow_path);
            allowed_ranges.push(net);
        }
    }
    let mut address = None;
    if let Some(text) = &lb.address {
        let path = format!("{base}.address");
        match text.trim().parse::<IpAddr>() {
            Err(_) => problems.push(
                Check::InvalidAddress,
                &path,
                format!("`{text}` is not an IP address"),
                "write one address from the MetalLB pool, e.g. `10.0.20.210`",
            ),
            Ok(ip) => {
                address = Some(ip);
                if !allow_public && !is_private_addr(&ip) {
                    problems.push(
                        Check::PublicAddress,
                        &path,
                        format!("{ip} is a public (internet-routable) address"),
                        format!("use an address of a private pool, or set {allow_path}: true"),
                    );
                }
                if !lb.allowed_ranges.is_empty()
                    && allowed_ranges.len() == lb.allowed_ranges.len()
                    && !allowed_ranges.iter().any(|r| r.contains(&ip))
                {
                    problems.push(
                        Check::AddressOutOfRange,
                        &path,
                        format!("{ip} lies outside every range in {base}.allowedRanges"),
                        "pick an address of the MetalLB pool, or add the pool's range to allowedRanges",
                    );
                }
                for (what, net) in [("pod", network.pod_cidr), ("service", network.service_cidr)] {
                    if net.contains(&ip) {
                        problems.push(
                            Check::AddressOutOfRange,
                            &path,
                            format!("{ip} lies inside the {what} CIDR {net}"),
                            "pick an address of the MetalLB pool on the node network",
                        );
                    }
                }
            }
        }
    }
    if let Some(pool) = &lb.pool
        && !is_dns_subdomain(pool)
    {
        problems.push(
            Check::InvalidName,
            format!("{base}.pool"),
            format!("`{pool}` is not an IPAddressPool name"),
            "use a name from `kubectl get ipaddresspools -n metallb-system`",
        );
    }
    let load_balancer = lb.enabled.expect(RESOLVED).then(|| ResolvedLoadBalancer {
        address,
        pool: lb.pool.clone(),
        endpoint: lb.endpoint.expect(RESOLVED),
        allowed_ranges,
        allow_public,
    });
    ResolvedServices {
        rw: enabled(&s.rw),
        ro: enabled(&s.ro),
        load_balancer,
    }
}
