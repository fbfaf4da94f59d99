//! pg_hba.conf rendered from the access model, and a small evaluator of the
//! rendered lines with PostgreSQL's first-match-wins semantics.
//!
//! Pod sources render as the pod CIDR: pg_hba cannot see namespaces or labels,
//! so the NetworkPolicy narrows the pod CIDR to the allowed pods. CIDR sources
//! render as themselves. Every network line uses `scram-sha-256`; final
//! lines reject everything else explicitly. The superuser lines for
//! pgcluster's own components (the agents stream, clone and rewind as the
//! superuser; the controller manages databases and roles) come first and
//! admit only the pod CIDR; they are not part of the access model (a spec
//! cannot declare the superuser role), so `explain` does not report them.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use super::{AccessModel, Source};
use crate::names::SUPERUSER_ROLE;

/// Connection type of a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HbaConnection {
    /// Unix-domain socket.
    Local,
    /// TCP/IP (with or without TLS).
    Host,
}

/// The database or user field of a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HbaMatch {
    /// The keyword `all` (for databases: every database, not replication).
    All,
    /// The keyword `replication` (database field only: physical replication connections).
    Replication,
    /// One name (rendered quoted, so it never acts as a keyword).
    Name(String),
}

/// Authentication method of a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HbaMethod {
    /// OS user name must equal the role (local sockets only).
    Peer,
    /// SCRAM-SHA-256 password authentication.
    ScramSha256,
    /// Refuse the connection.
    Reject,
}

/// One pg_hba.conf line, with an optional comment rendered above it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HbaLine {
    /// Comment printed on the line(s) before this one.
    pub comment: Option<String>,
    /// `local` or `host`.
    pub connection: HbaConnection,
    /// Database field.
    pub database: HbaMatch,
    /// User field.
    pub user: HbaMatch,
    /// Client addresses (`host` lines only).
    pub address: Option<IpNet>,
    /// Method.
    pub method: HbaMethod,
}

impl fmt::Display for HbaMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HbaMatch::All => f.write_str("all"),
            HbaMatch::Replication => f.write_str("replication"),
            HbaMatch::Name(n) => write!(f, "\"{}\"", n.replace('"', "\"\"")),
        }
    }
}

impl fmt::Display for HbaLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(comment) = &self.comment {
            for line in comment.lines() {
                writeln!(f, "# {line}")?;
            }
        }
        let connection = match self.connection {
            HbaConnection::Local => "local",
            HbaConnection::Host => "host",
        };
        let method = match self.method {
            HbaMethod::Peer => "peer",
            HbaMethod::ScramSha256 => "scram-sha-256",
            HbaMethod::Reject => "reject",
        };
        let address = self.address.map(|a| a.to_string()).unwrap_or_default();
        write!(
            f,
            "{connection:<6} {:<14} {:<24} {address:<18} {method}",
            self.database.to_string(),
            self.user.to_string()
        )
    }
}

fn host(database: HbaMatch, user: HbaMatch, address: IpNet, method: HbaMethod) -> HbaLine {
    HbaLine {
        comment: None,
        connection: HbaConnection::Host,
        database,
        user,
        address: Some(address),
        method,
    }
}

fn commented(mut line: HbaLine, comment: impl Into<String>) -> HbaLine {
    line.comment = Some(comment.into());
    line
}

/// The pg_hba lines for an access model in a cluster whose pods use `pod_cidr`.
pub fn hba_lines(model: &AccessModel, pod_cidr: IpNet) -> Vec<HbaLine> {
    let name = |s: &str| HbaMatch::Name(s.to_owned());
    let any_v4: IpNet = "0.0.0.0/0"
        .parse()
        .expect("0.0.0.0/0 is a valid CIDR because it is a constant");
    let any_v6: IpNet = "::/0"
        .parse()
        .expect("::/0 is a valid CIDR because it is a constant");
    let mut lines = vec![
        commented(
            HbaLine {
                comment: None,
                connection: HbaConnection::Local,
                database: HbaMatch::All,
                user: name(SUPERUSER_ROLE),
                address: None,
                method: HbaMethod::Peer,
            },
            "The agent manages PostgreSQL over the local socket as the OS user postgres.",
        ),
        HbaLine {
            comment: None,
            connection: HbaConnection::Local,
            database: HbaMatch::All,
            user: HbaMatch::All,
            address: None,
            method: HbaMethod::ScramSha256,
        },
        commented(
            host(
                HbaMatch::Replication,
                name(SUPERUSER_ROLE),
                pod_cidr,
                HbaMethod::ScramSha256,
            ),
            "The agents stream, clone (pg_basebackup) and rewind as the superuser from their pods.",
        ),
        commented(
            host(
                HbaMatch::All,
                name(SUPERUSER_ROLE),
                pod_cidr,
                HbaMethod::ScramSha256,
            ),
            "The superuser from pods: the agents (rewind source, slots) and the controller (databases and roles).\n\
             Outside the access model; the NetworkPolicy admits only the instances and the controller's namespace\n\
             to 5432, and the password lives only in the superuser Secret.",
        ),
    ];
    for rule in &model.rules {
        let mut addresses = BTreeSet::new();
        let mut has_pods = false;
        for source in &rule.sources {
            match source {
                Source::Pods { .. } => {
                    has_pods = true;
                    addresses.insert(pod_cidr);
                }
                Source::Cidr(net) => {
                    addresses.insert(*net);
                }
            }
        }
        let mut comment = Some(if has_pods {
            format!(
                "access rule {}: pod sources appear as the pod CIDR {pod_cidr}; the NetworkPolicy narrows it to the rule's namespaces and labels.",
                rule.name
            )
        } else {
            format!("access rule {}", rule.name)
        });
        for database in &rule.databases {
            for role in &rule.roles {
                for address in &addresses {
                    let mut line =
                        host(name(database), name(role), *address, HbaMethod::ScramSha256);
                    line.comment = comment.take();
                    lines.push(line);
                }
            }
        }
    }
    lines.push(commented(
        host(HbaMatch::All, HbaMatch::All, any_v4, HbaMethod::Reject),
        "Everything else is refused.",
    ));
    lines.push(host(
        HbaMatch::All,
        HbaMatch::All,
        any_v6,
        HbaMethod::Reject,
    ));
    lines.push(host(
        HbaMatch::Replication,
        HbaMatch::All,
        any_v4,
        HbaMethod::Reject,
    ));
    lines.push(host(
        HbaMatch::Replication,
        HbaMatch::All,
        any_v6,
        HbaMethod::Reject,
    ));
    lines
}

/// The full pg_hba.conf text (header, lines, trailing newline).
pub fn render_hba(model: &AccessModel, pod_cidr: IpNet) -> String {
    let mut out = String::from(
        "# pg_hba.conf rendered by pgcluster from spec.access; the agent rewrites it, do not edit.\n\
         # First match wins. Network lines use scram-sha-256 only; nothing is trusted.\n",
    );
    for line in hba_lines(model, pod_cidr) {
        out.push_str(&line.to_string());
        out.push('\n');
    }
    out
}

fn matches_name(field: &HbaMatch, value: &str) -> bool {
    match field {
        HbaMatch::All => true,
        HbaMatch::Replication => false,
        HbaMatch::Name(n) => n == value,
    }
}

/// The first `host` line matching a TCP connection from `addr` to `database` as
/// `role` (not a replication connection), as PostgreSQL picks it.
pub fn hba_first_match<'a>(
    lines: &'a [HbaLine],
    addr: IpAddr,
    database: &str,
    role: &str,
) -> Option<&'a HbaLine> {
    lines.iter().find(|l| {
        l.connection == HbaConnection::Host
            && l.address.is_some_and(|a| a.contains(&addr))
            && matches_name(&l.database, database)
            && matches_name(&l.user, role)
    })
}

/// Whether the lines admit a TCP connection from `addr` to `database` as `role`
/// (first match wins; no match means refused, as in PostgreSQL).
pub fn hba_allows(lines: &[HbaLine], addr: IpAddr, database: &str, role: &str) -> bool {
    hba_first_match(lines, addr, database, role).is_some_and(|l| l.method != HbaMethod::Reject)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::access::Rule;
    use crate::api::v1alpha1::AccessEndpoint;

    fn model() -> AccessModel {
        AccessModel {
            rules: vec![
                Rule {
                    name: "apps".into(),
                    sources: vec![Source::Pods {
                        namespaces: BTreeSet::from(["apps".to_owned()]),
                        pod_labels: BTreeMap::new(),
                    }],
                    endpoints: BTreeSet::from([AccessEndpoint::Rw]),
                    databases: BTreeSet::from(["app".to_owned()]),
                    roles: BTreeSet::from(["app".to_owned()]),
                },
                Rule {
                    name: "admins".into(),
                    sources: vec![Source::Cidr("10.0.10.0/24".parse().expect("cidr"))],
                    endpoints: BTreeSet::from([AccessEndpoint::LoadBalancer]),
                    databases: BTreeSet::from(["app".to_owned()]),
                    roles: BTreeSet::from(["admin".to_owned()]),
                },
            ],
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    /// Rendered lines admit exactly the rules' triples and refuse the rest.
    #[test]
    fn evaluator_follows_rules() {
        let lines = hba_lines(&model(), "10.42.0.0/16".parse().expect("cidr"));
        assert!(hba_allows(&lines, ip("10.42.3.4"), "app", "app"));
        assert!(!hba_allows(&lines, ip("10.42.3.4"), "app", "admin"));
        assert!(hba_allows(&lines, ip("10.0.10.7"), "app", "admin"));
        assert!(!hba_allows(&lines, ip("10.0.11.7"), "app", "admin"));
        assert!(!hba_allows(&lines, ip("8.8.8.8"), "app", "app"));
        assert!(!hba_allows(&lines, ip("::1"), "app", "app"));
    }

    /// The superuser (agents, controller) is admitted from the pod CIDR only,
    /// with scram-sha-256, for databases and replication; nowhere else.
    #[test]
    fn superuser_only_from_pods() {
        let pod_cidr: IpNet = "10.42.0.0/16".parse().expect("cidr");
        let lines = hba_lines(&model(), pod_cidr);
        assert!(hba_allows(
            &lines,
            ip("10.42.9.9"),
            "postgres",
            SUPERUSER_ROLE
        ));
        assert!(hba_allows(&lines, ip("10.42.9.9"), "app", SUPERUSER_ROLE));
        assert!(!hba_allows(&lines, ip("10.0.10.7"), "app", SUPERUSER_ROLE));
        assert!(!hba_allows(
            &lines,
            ip("10.43.0.1"),
            "postgres",
            SUPERUSER_ROLE
        ));
        let superuser: Vec<&HbaLine> = lines
            .iter()
            .filter(|l| l.user == HbaMatch::Name(SUPERUSER_ROLE.to_owned()))
            .filter(|l| l.connection == HbaConnection::Host)
            .collect();
        assert_eq!(superuser.len(), 2);
        for line in superuser {
            assert_eq!(line.address, Some(pod_cidr));
            assert_eq!(line.method, HbaMethod::ScramSha256);
        }
        assert!(lines.iter().any(|l| l.database == HbaMatch::Replication
            && l.user == HbaMatch::Name(SUPERUSER_ROLE.to_owned())
            && l.address == Some(pod_cidr)));
    }

    /// No network line trusts anyone; the file ends in explicit rejects.
    #[test]
    fn no_trust_and_final_reject() {
        let text = render_hba(&model(), "10.42.0.0/16".parse().expect("cidr"));
        assert!(
            !text
                .lines()
                .any(|l| !l.starts_with('#') && l.contains("trust"))
        );
        for line in text.lines().filter(|l| l.starts_with("host")) {
            assert!(
                line.ends_with("scram-sha-256") || line.ends_with("reject"),
                "{line}"
            );
        }
        let last: Vec<_> = text.lines().rev().take(4).collect();
        assert!(last.iter().all(|l| l.ends_with("reject")));
        assert!(text.contains("NetworkPolicy narrows"));
    }
}
