use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An application database.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseSpec {
    /// Database name.
    pub name: String,
    /// Declared role that owns the database (full rights on it, none elsewhere).
    pub owner: String,
    /// Extensions created in the database (must ship with the image).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<String>,
}

/// An application role. Its password is generated into a Secret `<cluster>-role-<name>`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleSpec {
    /// Role name; `postgres`, `pg_*` and the replication role are reserved.
    pub name: String,
    /// Privileges on databases the role does not own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<GrantSpec>,
    /// Maximum concurrent connections of the role (default -1, no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_limit: Option<i32>,
}

/// Privileges of a role on one database.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrantSpec {
    /// Declared database the privileges apply to.
    pub database: String,
    /// `readOnly` (default) or `readWrite` on the database's tables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileges: Option<Privileges>,
}

/// A level of table privileges.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Privileges {
    /// CONNECT, USAGE and SELECT.
    #[default]
    ReadOnly,
    /// readOnly plus INSERT, UPDATE, DELETE.
    ReadWrite,
}
