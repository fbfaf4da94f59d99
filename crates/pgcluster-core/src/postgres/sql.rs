//! The SQL that brings a server's databases and roles to the spec: a pure
//! [`plan`] of idempotent statements from the [`ValidatedCluster`] and an
//! [`Inventory`] of what exists. No I/O: the Kubernetes controller
//! (pgcluster-k8s) and local mode (pgcluster-ha) each read the inventory and
//! run the statements themselves.
//!
//! Least privilege:
//! - every role is `LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION
//!   NOBYPASSRLS` with its connection limit;
//! - `PUBLIC` loses every right on each declared database and its `public`
//!   schema; the owner owns the database and the schema; other roles get
//!   exactly their grant (`readOnly`: CONNECT, USAGE, SELECT; `readWrite`:
//!   plus INSERT, UPDATE, DELETE and sequence use), including on tables the
//!   owner creates later (default privileges);
//! - a role removed from the spec is disabled (`NOLOGIN`), never dropped:
//!   its objects and data stay. pgcluster marks the roles it manages with a
//!   comment ([`MANAGED_COMMENT`]) so it never touches other roles.
//!
//! Passwords never appear in statements in clear: callers pass each role's
//! SCRAM-SHA-256 verifier, and [`Statement`]'s `Display` hides it anyway.
//!
//! ```text
//! ValidatedCluster + Inventory + verifiers --plan--> [Statement { database, sql }]
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::ValidatedCluster;
use crate::api::v1alpha1::Privileges;

/// The comment marking roles pgcluster manages.
pub const MANAGED_COMMENT: &str = "pgcluster: managed";

/// What exists on the server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inventory {
    /// Every role name.
    pub roles: BTreeSet<String>,
    /// Roles carrying [`MANAGED_COMMENT`].
    pub managed_roles: BTreeSet<String>,
    /// Every database name.
    pub databases: BTreeSet<String>,
    /// Each role's stored password verifier (`pg_authid.rolpassword`), where
    /// it has one: a password that already verifies is not set again.
    pub verifiers: BTreeMap<String, String>,
}

/// One SQL statement and the database it runs in.
#[derive(Clone, PartialEq, Eq)]
pub struct Statement {
    /// Database to connect to (`None`: the maintenance database `postgres`).
    pub database: Option<String>,
    /// The SQL.
    pub sql: String,
    /// Whether the SQL carries a credential (a SCRAM verifier): never shown.
    pub sensitive: bool,
}

impl fmt::Display for Statement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let db = self.database.as_deref().unwrap_or("postgres");
        if self.sensitive {
            let head = self.sql.split(" PASSWORD ").next().unwrap_or_default();
            write!(f, "[{db}] {head} PASSWORD <redacted>")
        } else {
            write!(f, "[{db}] {}", self.sql)
        }
    }
}

impl fmt::Debug for Statement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `"name"` with embedded quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'` with embedded quotes doubled (standard_conforming_strings is on).
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn top(sql: String) -> Statement {
    Statement {
        database: None,
        sql,
        sensitive: false,
    }
}

fn inside(db: &str, sql: String) -> Statement {
    Statement {
        database: Some(db.to_owned()),
        sql,
        sensitive: false,
    }
}

/// The statements that bring the server to the spec. `verifiers` holds the
/// SCRAM verifier of each declared role's password; a role without one keeps
/// its password. Idempotent: running the plan twice changes nothing the
/// second time (every statement is `CREATE` only when missing per
/// `inventory`, otherwise `ALTER`/`GRANT`/`REVOKE`, all repeatable).
pub fn plan(
    cluster: &ValidatedCluster,
    inventory: &Inventory,
    verifiers: &BTreeMap<String, String>,
) -> Vec<Statement> {
    let mut out = Vec::new();
    for role in &cluster.roles {
        let r = quote_ident(&role.name);
        let verb = if inventory.roles.contains(&role.name) {
            "ALTER"
        } else {
            "CREATE"
        };
        let mut sql = format!(
            "{verb} ROLE {r} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS CONNECTION LIMIT {}",
            role.connection_limit
        );
        let sensitive = if let Some(v) = verifiers.get(&role.name) {
            sql.push_str(&format!(" PASSWORD {}", quote_literal(v)));
            true
        } else {
            false
        };
        out.push(Statement {
            database: None,
            sql,
            sensitive,
        });
        out.push(top(format!(
            "COMMENT ON ROLE {r} IS {}",
            quote_literal(MANAGED_COMMENT)
        )));
    }
    for db in &cluster.databases {
        let (d, o) = (quote_ident(&db.name), quote_ident(&db.owner));
        if inventory.databases.contains(&db.name) {
            out.push(top(format!("ALTER DATABASE {d} OWNER TO {o}")));
        } else {
            out.push(top(format!("CREATE DATABASE {d} OWNER {o}")));
        }
        out.push(top(format!("REVOKE ALL ON DATABASE {d} FROM PUBLIC")));
        out.push(inside(
            &db.name,
            format!("ALTER SCHEMA public OWNER TO {o}"),
        ));
        out.push(inside(
            &db.name,
            "REVOKE ALL ON SCHEMA public FROM PUBLIC".to_owned(),
        ));
        for ext in &db.extensions {
            out.push(inside(
                &db.name,
                format!("CREATE EXTENSION IF NOT EXISTS {}", quote_ident(ext)),
            ));
        }
    }
    for role in &cluster.roles {
        let r = quote_ident(&role.name);
        for (db_name, level) in &role.grants {
            let Some(db) = cluster.databases.iter().find(|d| &d.name == db_name) else {
                continue;
            };
            let (d, o) = (quote_ident(&db.name), quote_ident(&db.owner));
            let tables = match level {
                Privileges::ReadOnly => "SELECT",
                Privileges::ReadWrite => "SELECT, INSERT, UPDATE, DELETE",
            };
            out.push(top(format!("GRANT CONNECT ON DATABASE {d} TO {r}")));
            out.push(inside(
                db_name,
                format!("GRANT USAGE ON SCHEMA public TO {r}"),
            ));
            out.push(inside(
                db_name,
                format!("GRANT {tables} ON ALL TABLES IN SCHEMA public TO {r}"),
            ));
            out.push(inside(
                db_name,
                format!(
                    "ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA public GRANT {tables} ON TABLES TO {r}"
                ),
            ));
            if *level == Privileges::ReadWrite {
                out.push(inside(
                    db_name,
                    format!("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {r}"),
                ));
                out.push(inside(
                    db_name,
                    format!(
                        "ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {r}"
                    ),
                ));
            }
        }
    }
    revoke_undeclared(cluster, inventory, &mut out);
    let desired: BTreeSet<&str> = cluster.roles.iter().map(|r| r.name.as_str()).collect();
    for removed in inventory
        .managed_roles
        .iter()
        .filter(|r| !desired.contains(r.as_str()))
    {
        out.push(top(format!("ALTER ROLE {} NOLOGIN", quote_ident(removed))));
    }
    out
}

/// Revokes what pgcluster may have granted earlier and the spec no longer
/// declares: a grant removed (everything on that database), readWrite
/// lowered to readOnly (DML and sequences), a role removed from the spec
/// (its grants; the role itself is disabled, its objects stay). Only for
/// databases and managed roles that existed before this plan (nothing can
/// have been granted on new ones), never for a database's owner. Revoking
/// something not held is a no-op, so this is idempotent too.
fn revoke_undeclared(cluster: &ValidatedCluster, inventory: &Inventory, out: &mut Vec<Statement>) {
    let managed: BTreeSet<&str> = cluster
        .roles
        .iter()
        .map(|r| r.name.as_str())
        .chain(inventory.managed_roles.iter().map(String::as_str))
        .filter(|r| inventory.roles.contains(*r))
        .collect();
    for db in cluster
        .databases
        .iter()
        .filter(|d| inventory.databases.contains(&d.name))
    {
        let (d, o) = (quote_ident(&db.name), quote_ident(&db.owner));
        for role in managed.iter().filter(|r| **r != db.owner) {
            let r = quote_ident(role);
            let declared = cluster
                .roles
                .iter()
                .find(|x| x.name == *role)
                .and_then(|x| x.grants.get(&db.name));
            let inner = |sql: String| inside(&db.name, sql);
            match declared {
                None => {
                    out.push(top(format!("REVOKE ALL ON DATABASE {d} FROM {r}")));
                    out.push(inner(format!(
                        "REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {r}"
                    )));
                    out.push(inner(format!(
                        "REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {r}"
                    )));
                    out.push(inner(format!("REVOKE ALL ON SCHEMA public FROM {r}")));
                    out.push(inner(format!(
                        "ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA public REVOKE ALL ON TABLES FROM {r}"
                    )));
                    out.push(inner(format!(
                        "ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA public REVOKE ALL ON SEQUENCES FROM {r}"
                    )));
                }
                Some(Privileges::ReadOnly) => {
                    out.push(inner(format!(
                        "REVOKE INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public FROM {r}"
                    )));
                    out.push(inner(format!(
                        "REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {r}"
                    )));
                    out.push(inner(format!(
                        "ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA public REVOKE INSERT, UPDATE, DELETE ON TABLES FROM {r}"
                    )));
                    out.push(inner(format!(
                        "ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA public REVOKE ALL ON SEQUENCES FROM {r}"
                    )));
                }
                Some(Privileges::ReadWrite) => {}
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;

    fn load(spec: &str) -> ValidatedCluster {
        crate::load::load_one(&format!(
            "apiVersion: pgcluster.dev/v1alpha1
kind: PostgresCluster
metadata: {{name: pg, namespace: default}}
spec: {spec}
"
        ))
        .unwrap()
        .validate()
        .unwrap()
    }

    /// A valid two-instance cluster with database `app` owned by role `app`.
    fn with_app() -> ValidatedCluster {
        load("{instances: 2, databases: [{name: app, owner: app}], roles: [{name: app}]}")
    }

    /// [`with_app`] and a read-only role `reporting` limited to 5 connections.
    fn reporting() -> ValidatedCluster {
        load(
            "{instances: 2, databases: [{name: app, owner: app}], roles: [{name: app}, \
             {name: reporting, connectionLimit: 5, grants: [{database: app, privileges: readOnly}]}]}",
        )
    }

    fn sqls(statements: &[Statement]) -> Vec<String> {
        statements.iter().map(|s| s.to_string()).collect()
    }

    /// A fresh server: roles and the database are created, PUBLIC loses its
    /// rights, the reader gets exactly read-only access (incl. future tables).
    #[test]
    fn fresh_server_creates_with_least_privilege() {
        let verifiers = BTreeMap::from([("app".to_owned(), "SCRAM-SHA-256$4096:x$y:z".to_owned())]);
        let out = sqls(&plan(&reporting(), &Inventory::default(), &verifiers));
        let expected = [
            "[postgres] CREATE ROLE \"app\" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS CONNECTION LIMIT -1 PASSWORD <redacted>",
            "[postgres] COMMENT ON ROLE \"app\" IS 'pgcluster: managed'",
            "[postgres] CREATE ROLE \"reporting\" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS CONNECTION LIMIT 5",
            "[postgres] COMMENT ON ROLE \"reporting\" IS 'pgcluster: managed'",
            "[postgres] CREATE DATABASE \"app\" OWNER \"app\"",
            "[postgres] REVOKE ALL ON DATABASE \"app\" FROM PUBLIC",
            "[app] ALTER SCHEMA public OWNER TO \"app\"",
            "[app] REVOKE ALL ON SCHEMA public FROM PUBLIC",
            "[postgres] GRANT CONNECT ON DATABASE \"app\" TO \"reporting\"",
            "[app] GRANT USAGE ON SCHEMA public TO \"reporting\"",
            "[app] GRANT SELECT ON ALL TABLES IN SCHEMA public TO \"reporting\"",
            "[app] ALTER DEFAULT PRIVILEGES FOR ROLE \"app\" IN SCHEMA public GRANT SELECT ON TABLES TO \"reporting\"",
        ];
        assert_eq!(out, expected);
    }

    /// Once everything exists the plan only ALTERs/GRANTs (idempotent), and
    /// the plan for an unchanged inventory is the same every time.
    #[test]
    fn existing_objects_are_altered_not_created() {
        let inventory = Inventory {
            roles: BTreeSet::from(["app".into(), "reporting".into(), "postgres".into()]),
            managed_roles: BTreeSet::from(["app".into(), "reporting".into()]),
            databases: BTreeSet::from(["app".into(), "postgres".into()]),
            verifiers: BTreeMap::new(),
        };
        let out = plan(&reporting(), &inventory, &BTreeMap::new());
        assert!(out.iter().all(|s| !s.sql.starts_with("CREATE ROLE") && !s.sql.starts_with("CREATE DATABASE")));
        assert!(
            out.iter()
                .any(|s| s.sql == "ALTER DATABASE \"app\" OWNER TO \"app\"")
        );
        assert_eq!(out, plan(&reporting(), &inventory, &BTreeMap::new()));
    }

    /// A managed role removed from the spec is disabled, not dropped; roles
    /// pgcluster does not manage are never touched.
    #[test]
    fn removed_roles_are_disabled_not_dropped() {
        let inventory = Inventory {
            roles: BTreeSet::from(["app".into(), "old".into(), "human".into()]),
            managed_roles: BTreeSet::from(["app".into(), "old".into()]),
            databases: BTreeSet::new(),
            verifiers: BTreeMap::new(),
        };
        let out = sqls(&plan(&with_app(), &inventory, &BTreeMap::new()));
        assert!(out.contains(&"[postgres] ALTER ROLE \"old\" NOLOGIN".to_owned()));
        assert!(
            out.iter()
                .all(|s| !s.contains("DROP") && !s.contains("\"human\""))
        );
    }

    fn existing(roles: &[&str]) -> Inventory {
        Inventory {
            roles: roles
                .iter()
                .map(|r| (*r).to_owned())
                .chain(["postgres".to_owned()])
                .collect(),
            managed_roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            databases: BTreeSet::from(["app".into(), "postgres".into()]),
            verifiers: BTreeMap::new(),
        }
    }

    /// A grant removed from the spec is revoked on the existing database
    /// (database, schema, tables, sequences, default privileges); the
    /// owner is never revoked from.
    #[test]
    fn removed_grant_is_revoked() {
        let mut c = reporting();
        c.roles[1].grants.clear();
        let out = sqls(&plan(
            &c,
            &existing(&["app", "reporting"]),
            &BTreeMap::new(),
        ));
        for expected in [
            "[postgres] REVOKE ALL ON DATABASE \"app\" FROM \"reporting\"",
            "[app] REVOKE ALL ON ALL TABLES IN SCHEMA public FROM \"reporting\"",
            "[app] REVOKE ALL ON SCHEMA public FROM \"reporting\"",
            "[app] ALTER DEFAULT PRIVILEGES FOR ROLE \"app\" IN SCHEMA public REVOKE ALL ON TABLES FROM \"reporting\"",
        ] {
            assert!(
                out.contains(&expected.to_owned()),
                "missing {expected}: {out:#?}"
            );
        }
        assert!(
            out.iter()
                .all(|s| !s.contains("GRANT CONNECT ON DATABASE \"app\" TO \"reporting\""))
        );
        assert!(
            out.iter()
                .all(|s| !(s.contains("REVOKE") && s.ends_with("FROM \"app\"")))
        );
    }

    /// readWrite lowered to readOnly loses DML and sequences (now and by
    /// default), keeps SELECT; a still-declared readWrite loses nothing.
    #[test]
    fn lowered_grant_loses_write_privileges() {
        let out = sqls(&plan(
            &reporting(),
            &existing(&["app", "reporting"]),
            &BTreeMap::new(),
        ));
        assert!(out.contains(&"[app] REVOKE INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public FROM \"reporting\"".to_owned()));
        assert!(out.contains(&"[app] ALTER DEFAULT PRIVILEGES FOR ROLE \"app\" IN SCHEMA public REVOKE ALL ON SEQUENCES FROM \"reporting\"".to_owned()));
        assert!(out.iter().all(|s| !s.contains("REVOKE SELECT")
            && !s.contains("REVOKE ALL ON DATABASE \"app\" FROM \"reporting\"")));
        let mut rw = reporting();
        rw.roles[1]
            .grants
            .insert("app".into(), Privileges::ReadWrite);
        let out = sqls(&plan(
            &rw,
            &existing(&["app", "reporting"]),
            &BTreeMap::new(),
        ));
        assert!(
            out.iter()
                .all(|s| !(s.contains("REVOKE") && s.contains("\"reporting\""))),
            "{out:#?}"
        );
    }

    /// A role removed from the spec loses its grants on the declared
    /// databases and is disabled (NOLOGIN), never dropped.
    #[test]
    fn removed_role_loses_grants_and_login() {
        let c = with_app();
        let out = sqls(&plan(&c, &existing(&["app", "old"]), &BTreeMap::new()));
        assert!(out.contains(&"[postgres] REVOKE ALL ON DATABASE \"app\" FROM \"old\"".to_owned()));
        assert_eq!(
            out.last().map(String::as_str),
            Some("[postgres] ALTER ROLE \"old\" NOLOGIN")
        );
        assert!(out.iter().all(|s| !s.contains("DROP")));
    }

    /// readWrite adds DML and sequences; nothing ever grants CREATE, superuser or replication.
    #[test]
    fn read_write_grant_and_no_escalation() {
        let mut c = reporting();
        c.roles[1]
            .grants
            .insert("app".into(), Privileges::ReadWrite);
        let out = sqls(&plan(&c, &Inventory::default(), &BTreeMap::new()));
        assert!(out.contains(&"[app] GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO \"reporting\"".to_owned()));
        assert!(
            out.contains(
                &"[app] GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO \"reporting\""
                    .to_owned()
            )
        );
        assert!(out.iter().all(|s| !s.contains("GRANT CREATE")
            && !s.contains(" SUPERUSER")
            && !s.contains(" REPLICATION ")));
    }

    /// Identifiers and literals cannot break out of their quotes, and a
    /// statement with a credential never prints it.
    #[test]
    fn quoting_and_redaction() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        let s = Statement {
            database: None,
            sql: "ALTER ROLE \"x\" WITH LOGIN PASSWORD 'SCRAM-secret'".into(),
            sensitive: true,
        };
        assert!(!s.to_string().contains("SCRAM-secret"));
        assert!(!format!("{s:?}").contains("SCRAM-secret"));
    }
}
