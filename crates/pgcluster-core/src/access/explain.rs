//! `explain`: may this client reach this database as this role through this
//! endpoint, and by which rule? Answers from the same [`AccessModel`] every
//! rendering uses.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::Serialize;

use super::{AccessModel, Rule, Source};
use crate::api::v1alpha1::AccessEndpoint;
use crate::validate::endpoint_name;
use crate::validated::ValidatedCluster;

/// Who is connecting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum Client {
    /// A host on the network, known by its address.
    Address {
        /// Its address.
        ip: IpAddr,
    },
    /// A pod in the Kubernetes cluster.
    Pod {
        /// Its namespace.
        namespace: String,
        /// Its labels.
        labels: BTreeMap<String, String>,
        /// Its address, if known (matched against CIDR sources).
        ip: Option<IpAddr>,
    },
}

/// Why a string is not a client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientParseError {
    /// Neither an address nor `namespace/NS...`.
    #[error("`{input}` is neither an IP address nor `namespace/NS[,label=value...]`")]
    Malformed {
        /// the input
        input: String,
    },
    /// A label without `=`.
    #[error("`{label}` is not `key=value`")]
    Label {
        /// the label as written
        label: String,
    },
}

impl FromStr for Client {
    type Err = ClientParseError;
    /// `10.0.10.7`, `fd00::7`, `namespace/apps` or `namespace/apps,app=web,tier=frontend`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Ok(ip) = s.parse() {
            return Ok(Client::Address { ip });
        }
        let Some(rest) = s.strip_prefix("namespace/") else {
            return Err(ClientParseError::Malformed {
                input: s.to_owned(),
            });
        };
        let mut parts = rest.split(',');
        let namespace = parts.next().unwrap_or_default().trim().to_owned();
        if namespace.is_empty() {
            return Err(ClientParseError::Malformed {
                input: s.to_owned(),
            });
        }
        let mut labels = BTreeMap::new();
        for part in parts {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| ClientParseError::Label {
                    label: part.to_owned(),
                })?;
            labels.insert(k.trim().to_owned(), v.trim().to_owned());
        }
        Ok(Client::Pod {
            namespace,
            labels,
            ip: None,
        })
    }
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Client::Address { ip } => write!(f, "{ip}"),
            Client::Pod {
                namespace,
                labels,
                ip,
            } => {
                write!(f, "a pod in namespace {namespace}")?;
                if !labels.is_empty() {
                    let l: Vec<_> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    write!(f, " with labels {}", l.join(","))?;
                }
                if let Some(ip) = ip {
                    write!(f, " ({ip})")?;
                }
                Ok(())
            }
        }
    }
}

/// Why one rule does not admit the connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "reason")]
pub enum Miss {
    /// The client uses an endpoint the rule does not admit through.
    Endpoint {
        /// The rule's endpoints.
        allowed: Vec<String>,
    },
    /// The client is not one of the rule's sources.
    Source {
        /// The rule's sources, described.
        sources: Vec<String>,
    },
    /// The database is not one of the rule's.
    Database {
        /// The rule's databases.
        allowed: Vec<String>,
    },
    /// The role is not one of the rule's.
    Role {
        /// The rule's roles.
        allowed: Vec<String>,
    },
}

impl fmt::Display for Miss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Miss::Endpoint { allowed } => {
                write!(f, "wrong endpoint (rule admits {})", allowed.join(", "))
            }
            Miss::Source { sources } => write!(
                f,
                "client is not a source (rule admits {})",
                sources.join("; ")
            ),
            Miss::Database { allowed } => {
                write!(f, "wrong database (rule admits {})", allowed.join(", "))
            }
            Miss::Role { allowed } => write!(f, "wrong role (rule admits {})", allowed.join(", ")),
        }
    }
}

/// One rule that does not admit the connection, and every reason why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleMiss {
    /// Rule name.
    pub rule: String,
    /// Every way the connection differs from what the rule admits.
    pub misses: Vec<Miss>,
}

/// The answer of [`explain`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "decision")]
pub enum Decision {
    /// The connection is admitted.
    Allowed {
        /// The first rule admitting it.
        rule: String,
        /// The source of that rule the client matched.
        source: String,
    },
    /// No rule admits the connection.
    Denied {
        /// Each rule, with why it does not apply.
        rules: Vec<RuleMiss>,
        /// What to change in the spec to admit it.
        fix: String,
    },
}

impl Decision {
    /// Whether the connection is admitted.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed { .. })
    }
}

/// A source described for people.
pub fn describe_source(source: &Source) -> String {
    match source {
        Source::Cidr(net) => format!("addresses in {net}"),
        Source::Pods {
            namespaces,
            pod_labels,
        } => {
            let ns: Vec<_> = namespaces.iter().map(String::as_str).collect();
            let mut s = format!("pods in namespace {}", ns.join(", "));
            if !pod_labels.is_empty() {
                let l: Vec<_> = pod_labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                s.push_str(&format!(" with labels {}", l.join(",")));
            }
            s
        }
    }
}

/// Whether `client` is one of `source`.
pub fn source_matches(source: &Source, client: &Client) -> bool {
    match (source, client) {
        (Source::Cidr(net), Client::Address { ip }) => net.contains(ip),
        (Source::Cidr(net), Client::Pod { ip, .. }) => ip.is_some_and(|ip| net.contains(&ip)),
        (Source::Pods { .. }, Client::Address { .. }) => false,
        (
            Source::Pods {
                namespaces,
                pod_labels,
            },
            Client::Pod {
                namespace, labels, ..
            },
        ) => {
            namespaces.contains(namespace)
                && pod_labels
                    .iter()
                    .all(|(k, v)| labels.get(k).is_some_and(|have| have == v))
        }
    }
}

fn misses(
    rule: &Rule,
    client: &Client,
    endpoint: AccessEndpoint,
    database: &str,
    role: &str,
) -> Vec<Miss> {
    let mut out = Vec::new();
    if !rule.endpoints.contains(&endpoint) {
        out.push(Miss::Endpoint {
            allowed: rule
                .endpoints
                .iter()
                .map(|e| endpoint_name(*e).to_owned())
                .collect(),
        });
    }
    if !rule.sources.iter().any(|s| source_matches(s, client)) {
        out.push(Miss::Source {
            sources: rule.sources.iter().map(describe_source).collect(),
        });
    }
    if !rule.databases.contains(database) {
        out.push(Miss::Database {
            allowed: rule.databases.iter().cloned().collect(),
        });
    }
    if !rule.roles.contains(role) {
        out.push(Miss::Role {
            allowed: rule.roles.iter().cloned().collect(),
        });
    }
    out
}

/// Whether `client` may connect through `endpoint` to `database` as `role`,
/// naming the first rule that allows it, or saying per rule why not and what to add.
pub fn explain(
    model: &AccessModel,
    client: &Client,
    endpoint: AccessEndpoint,
    database: &str,
    role: &str,
) -> Decision {
    let mut rules = Vec::new();
    for rule in &model.rules {
        let m = misses(rule, client, endpoint, database, role);
        if m.is_empty() {
            let source = rule
                .sources
                .iter()
                .find(|s| source_matches(s, client))
                .map(describe_source)
                .unwrap_or_default();
            return Decision::Allowed {
                rule: rule.name.clone(),
                source,
            };
        }
        rules.push(RuleMiss {
            rule: rule.name.clone(),
            misses: m,
        });
    }
    let fix = suggest_fix(model, &rules, client, endpoint, database, role);
    Decision::Denied { rules, fix }
}

fn rule_sources(model: &AccessModel, i: usize) -> &[Source] {
    model
        .rules
        .get(i)
        .map(|r| r.sources.as_slice())
        .unwrap_or_default()
}

fn suggest_fix(
    model: &AccessModel,
    rules: &[RuleMiss],
    client: &Client,
    endpoint: AccessEndpoint,
    database: &str,
    role: &str,
) -> String {
    // A rule that misses in exactly one way is the smallest change.
    let near = rules.iter().enumerate().find(|(_, r)| r.misses.len() == 1);
    if let Some((i, r)) = near {
        let place = format!("spec.access[{i}] ({})", r.rule);
        return match &r.misses[0] {
            Miss::Endpoint { .. } => format!(
                "add `{}` to the endpoints of {place}",
                endpoint_name(endpoint)
            ),
            Miss::Database { .. } => format!("add `{database}` to the databases of {place}"),
            Miss::Role { .. } => format!("add `{role}` to the roles of {place}"),
            Miss::Source { .. } => match client {
                Client::Address { ip } => {
                    format!("add a CIDR containing {ip} to from.cidrs of {place}")
                }
                Client::Pod {
                    namespace, labels, ..
                } => {
                    let missing: Vec<String> = rule_sources(model, i)
                        .iter()
                        .filter_map(|s| match s {
                            Source::Pods {
                                namespaces,
                                pod_labels,
                            } if namespaces.contains(namespace) => Some(
                                pod_labels
                                    .iter()
                                    .filter(|(k, v)| labels.get(*k) != Some(*v))
                                    .map(|(k, v)| format!("{k}={v}"))
                                    .collect::<Vec<_>>()
                                    .join(","),
                            ),
                            _ => None,
                        })
                        .collect();
                    match missing.first() {
                        Some(l) => format!(
                            "give the pod the labels {l} (see --from namespace/{namespace},{l}), or relax from.podLabels of {place}"
                        ),
                        None => {
                            format!("add namespace `{namespace}` to from.namespaces of {place}")
                        }
                    }
                }
            },
        };
    }
    let from = match client {
        Client::Address { ip } => {
            let bits = if ip.is_ipv4() { 32 } else { 128 };
            format!("cidrs: [{ip}/{bits}]")
        }
        Client::Pod { namespace, .. } => format!("namespaces: [{namespace}]"),
    };
    format!(
        "add a rule to spec.access: {{name: ..., from: {{{from}}}, endpoints: [{}], databases: [{database}], roles: [{role}]}}",
        endpoint_name(endpoint)
    )
}

impl ValidatedCluster {
    /// [`explain`] on this cluster's access model.
    pub fn explain(
        &self,
        client: &Client,
        endpoint: AccessEndpoint,
        database: &str,
        role: &str,
    ) -> Decision {
        explain(&self.access, client, endpoint, database, role)
    }

    /// The pg_hba.conf text of this cluster ([`super::hba::render_hba`]).
    pub fn pg_hba(&self) -> String {
        super::hba::render_hba(&self.access, self.network.pod_cidr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Clients parse from the CLI's `--from` forms.
    #[test]
    fn client_forms() {
        assert_eq!(
            "10.0.10.7".parse::<Client>(),
            Ok(Client::Address {
                ip: "10.0.10.7".parse().expect("ip")
            })
        );
        let pod: Client = "namespace/apps,app=web".parse().expect("pod");
        assert_eq!(
            pod,
            Client::Pod {
                namespace: "apps".into(),
                labels: BTreeMap::from([("app".into(), "web".into())]),
                ip: None
            }
        );
        assert!("apps".parse::<Client>().is_err());
        assert!("namespace/apps,app".parse::<Client>().is_err());
    }
}
