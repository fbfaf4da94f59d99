//! Checks of databases, roles and access rules, and construction of the
//! [`AccessModel`].

use std::collections::{BTreeMap, BTreeSet};

use super::RESOLVED;
use super::error::{Check, Problems};
use super::k8s::{MAX_LABEL_LEN, check_labels, check_namespace, is_database_name};
use super::network::{check_private, cidr};
use crate::access::{AccessModel, Rule, Source};
use crate::api::v1alpha1::{AccessEndpoint, AccessRule, DatabaseSpec, RoleSpec};
use crate::names::{REPLICATION_ROLE, SUPERUSER_ROLE, check_dns_label};
use crate::validated::{ResolvedDatabase, ResolvedRole, ResolvedServices};

/// Databases PostgreSQL creates itself.
const RESERVED_DATABASES: &[&str] = &["postgres", "template0", "template1"];

/// Why `name` may not be declared as a role, if it is reserved.
pub fn reserved_role(name: &str) -> Option<&'static str> {
    if name == SUPERUSER_ROLE {
        Some("the superuser pgcluster uses to manage the cluster")
    } else if name == REPLICATION_ROLE {
        Some("reserved for pgcluster's own replication role")
    } else if name.starts_with("pg_") {
        Some("PostgreSQL reserves the `pg_` prefix for its predefined roles")
    } else {
        None
    }
}

/// Reports the second and later occurrences of each name.
fn check_unique<'a>(
    problems: &mut Problems,
    names: impl Iterator<Item = &'a str>,
    path: impl Fn(usize) -> String,
    what: &str,
) {
    let mut first: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, name) in names.enumerate() {
        if let Some(j) = first.get(name) {
            problems.push(
                Check::DuplicateName,
                path(i),
                format!("{what} `{name}` is declared twice (first at index {j})"),
                "remove one of them or give it another name",
            );
        } else {
            first.insert(name, i);
        }
    }
}

pub(crate) fn check_roles(
    problems: &mut Problems,
    roles: &[RoleSpec],
    databases: &[DatabaseSpec],
) -> Vec<ResolvedRole> {
    check_unique(
        problems,
        roles.iter().map(|r| r.name.as_str()),
        |i| format!("spec.roles[{i}].name"),
        "role",
    );
    let declared_dbs: BTreeSet<&str> = databases.iter().map(|d| d.name.as_str()).collect();
    let mut out = Vec::new();
    for (i, role) in roles.iter().enumerate() {
        let path = format!("spec.roles[{i}].name");
        if let Some(why) = reserved_role(&role.name) {
            problems.push(
                Check::ReservedName,
                &path,
                format!("role `{}` is reserved: {why}", role.name),
                "choose another name for the application role",
            );
        } else if let Err(e) = check_dns_label(&role.name, MAX_LABEL_LEN) {
            problems.push(
                Check::InvalidName,
                &path,
                format!("role name `{}` {e}", role.name),
                "role names become part of the Secret name `<cluster>-role-<name>`: use lowercase letters, digits and `-`",
            );
        }
        let mut grants = BTreeMap::new();
        for (k, grant) in role.grants.iter().enumerate() {
            let gpath = format!("spec.roles[{i}].grants[{k}].database");
            if !declared_dbs.contains(grant.database.as_str()) {
                problems.push(
                    Check::UndeclaredReference,
                    &gpath,
                    format!(
                        "database `{}` is not declared in spec.databases",
                        grant.database
                    ),
                    "declare it in spec.databases or fix the name",
                );
            }
            if grants
                .insert(grant.database.clone(), grant.privileges.expect(RESOLVED))
                .is_some()
            {
                problems.push(
                    Check::DuplicateName,
                    &gpath,
                    format!(
                        "role `{}` has two grants on `{}`",
                        role.name, grant.database
                    ),
                    "keep one grant per database",
                );
            }
        }
        let connection_limit = role.connection_limit.expect(RESOLVED);
        if connection_limit < -1 {
            problems.push(
                Check::OutOfRange,
                format!("spec.roles[{i}].connectionLimit"),
                format!("{connection_limit} is not a connection limit"),
                "use -1 for no limit, or a positive number",
            );
        }
        out.push(ResolvedRole {
            name: role.name.clone(),
            grants,
            connection_limit,
        });
    }
    out
}

pub(crate) fn check_databases(
    problems: &mut Problems,
    databases: &[DatabaseSpec],
    roles: &[RoleSpec],
) -> Vec<ResolvedDatabase> {
    check_unique(
        problems,
        databases.iter().map(|d| d.name.as_str()),
        |i| format!("spec.databases[{i}].name"),
        "database",
    );
    let declared_roles: BTreeSet<&str> = roles.iter().map(|r| r.name.as_str()).collect();
    let mut out = Vec::new();
    for (i, db) in databases.iter().enumerate() {
        let path = format!("spec.databases[{i}].name");
        if RESERVED_DATABASES.contains(&db.name.as_str()) {
            problems.push(
                Check::ReservedName,
                &path,
                format!("database `{}` is created by PostgreSQL itself", db.name),
                "choose another name for the application database",
            );
        } else if !is_database_name(&db.name) {
            problems.push(
                Check::InvalidName,
                &path,
                format!("`{}` is not an accepted database name", db.name),
                "use at most 63 lowercase letters, digits, `_` or `-`, starting with a letter",
            );
        }
        if !declared_roles.contains(db.owner.as_str()) {
            problems.push(
                Check::UndeclaredReference,
                format!("spec.databases[{i}].owner"),
                format!("owner `{}` is not declared in spec.roles", db.owner),
                "declare the role in spec.roles (the superuser cannot own application databases)",
            );
        }
        for (k, ext) in db.extensions.iter().enumerate() {
            if ext.is_empty()
                || !ext
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
            {
                problems.push(
                    Check::InvalidName,
                    format!("spec.databases[{i}].extensions[{k}]"),
                    format!("`{ext}` is not an extension name"),
                    "use the name as in CREATE EXTENSION, e.g. `pg_stat_statements`",
                );
            }
        }
        out.push(ResolvedDatabase {
            name: db.name.clone(),
            owner: db.owner.clone(),
            extensions: db.extensions.clone(),
        });
    }
    out
}

pub(crate) fn check_access(
    problems: &mut Problems,
    rules: &[AccessRule],
    databases: &[DatabaseSpec],
    roles: &[RoleSpec],
    services: &ResolvedServices,
    namespace: &str,
) -> AccessModel {
    check_unique(
        problems,
        rules.iter().map(|r| r.name.as_str()),
        |i| format!("spec.access[{i}].name"),
        "access rule",
    );
    let declared_dbs: BTreeSet<&str> = databases.iter().map(|d| d.name.as_str()).collect();
    let declared_roles: BTreeSet<&str> = roles.iter().map(|r| r.name.as_str()).collect();
    let mut model = AccessModel::default();
    for (i, rule) in rules.iter().enumerate() {
        let base = format!("spec.access[{i}]");
        if let Err(e) = check_dns_label(&rule.name, MAX_LABEL_LEN) {
            problems.push(
                Check::InvalidName,
                format!("{base}.name"),
                format!("rule name `{}` {e}", rule.name),
                "rule names appear in NetworkPolicy names: use lowercase letters, digits and `-`",
            );
        }
        let from = &rule.from;
        let mut sources = Vec::new();
        if from.namespaces.is_empty() && from.pod_labels.is_empty() && from.cidrs.is_empty() {
            problems.push(
                Check::EmptyRule,
                format!("{base}.from"),
                "the rule names no source, so it admits nobody",
                "add namespaces, podLabels or cidrs under from",
            );
        }
        for (k, ns) in from.namespaces.iter().enumerate() {
            check_namespace(problems, &format!("{base}.from.namespaces[{k}]"), ns);
        }
        check_labels(
            problems,
            &format!("{base}.from.podLabels"),
            &from.pod_labels,
        );
        if !from.namespaces.is_empty() || !from.pod_labels.is_empty() {
            let namespaces = if from.namespaces.is_empty() {
                BTreeSet::from([namespace.to_owned()])
            } else {
                from.namespaces.iter().cloned().collect()
            };
            sources.push(Source::Pods {
                namespaces,
                pod_labels: from.pod_labels.clone(),
            });
        }
        let allow_public = from.allow_public.expect(RESOLVED);
        for (k, text) in from.cidrs.iter().enumerate() {
            let path = format!("{base}.from.cidrs[{k}]");
            if let Some(net) = cidr(problems, &path, text) {
                check_private(
                    problems,
                    &path,
                    &net,
                    allow_public,
                    &format!("{base}.from.allowPublic"),
                );
                // A public range reaching the LoadBalancer also lands in its
                // loadBalancerSourceRanges, so the Service must opt in too.
                let via_lb = rule.endpoints.contains(&AccessEndpoint::LoadBalancer);
                if let Some(lb) = services.load_balancer.as_ref().filter(|_| via_lb)
                    && allow_public
                    && !lb.allow_public
                    && !crate::access::cidr::is_private_net(&net)
                {
                    problems.push(
                        Check::PublicAddress,
                        &path,
                        format!(
                            "{net} is a public range admitted through the LoadBalancer, which does not allow public source ranges"
                        ),
                        "set spec.services.loadBalancer.allowPublic: true as well, or use a private range",
                    );
                }
                sources.push(Source::Cidr(net));
            }
        }
        for (k, endpoint) in rule.endpoints.iter().enumerate() {
            let (enabled, switch) = match endpoint {
                AccessEndpoint::Rw => (services.rw, "spec.services.rw.enabled"),
                AccessEndpoint::Ro => (services.ro, "spec.services.ro.enabled"),
                AccessEndpoint::LoadBalancer => (
                    services.load_balancer.is_some(),
                    "spec.services.loadBalancer.enabled",
                ),
            };
            if !enabled {
                problems.push(
                    Check::EndpointDisabled,
                    format!("{base}.endpoints[{k}]"),
                    format!(
                        "the rule admits clients through `{}`, which is disabled",
                        endpoint_name(*endpoint)
                    ),
                    format!("set {switch}: true or remove the endpoint from the rule"),
                );
            }
        }
        for (what, list, declared, section) in [
            (
                "databases",
                &rule.databases,
                &declared_dbs,
                "spec.databases",
            ),
            ("roles", &rule.roles, &declared_roles, "spec.roles"),
        ] {
            if list.is_empty() {
                problems.push(
                    Check::EmptyRule,
                    format!("{base}.{what}"),
                    format!("the rule lists no {what}, so it admits nothing"),
                    format!("name at least one of the {what} declared in {section}"),
                );
            }
            for (k, name) in list.iter().enumerate() {
                if !declared.contains(name.as_str()) {
                    problems.push(
                        Check::UndeclaredReference,
                        format!("{base}.{what}[{k}]"),
                        format!("`{name}` is not declared in {section}"),
                        format!("declare it in {section} or fix the name"),
                    );
                }
            }
        }
        // Least privilege both ways: a rule only pairs a role with a database it may use.
        for (k, role) in rule.roles.iter().enumerate() {
            let Some(spec_role) = roles.iter().find(|r| &r.name == role) else {
                continue;
            };
            for database in &rule.databases {
                let Some(db) = databases.iter().find(|d| &d.name == database) else {
                    continue;
                };
                let granted =
                    db.owner == *role || spec_role.grants.iter().any(|g| &g.database == database);
                if !granted {
                    problems.push(
                        Check::NoPrivilege,
                        format!("{base}.roles[{k}]"),
                        format!("the rule admits role `{role}` to database `{database}`, which it neither owns nor has a grant on"),
                        format!("add `{{database: {database}}}` to the grants of role `{role}` in spec.roles, or remove the pair from the rule"),
                    );
                }
            }
        }
        model.rules.push(Rule {
            name: rule.name.clone(),
            sources,
            endpoints: rule.endpoints.iter().copied().collect(),
            databases: rule.databases.iter().cloned().collect(),
            roles: rule.roles.iter().cloned().collect(),
        });
    }
    // Pods do not come through the LoadBalancer, and a Service without
    // source ranges would admit every address: only rules with cidrs count
    // (as written: a CIDR refused above is not reported twice).
    if services.load_balancer.is_some()
        && !rules.iter().any(|r| {
            r.endpoints.contains(&AccessEndpoint::LoadBalancer) && !r.from.cidrs.is_empty()
        })
    {
        problems.push(
            Check::LoadBalancerUnused,
            "spec.services.loadBalancer.enabled",
            "the LoadBalancer is enabled but no access rule admits addresses (cidrs) through it",
            "add `loadBalancer` to the endpoints of a rule with cidrs, or disable the LoadBalancer",
        );
    }
    model
}

/// The spelling of an endpoint in the spec.
pub fn endpoint_name(e: AccessEndpoint) -> &'static str {
    match e {
        AccessEndpoint::Rw => "rw",
        AccessEndpoint::Ro => "ro",
        AccessEndpoint::LoadBalancer => "loadBalancer",
    }
}
