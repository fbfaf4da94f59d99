//! What a local cluster gives its clients: a libpq password file for the
//! user who ran `up` (`<data-dir>/pgpass`, mode 0600) and connection strings
//! that name it, so `psql '<conninfo>'` connects as printed and no password
//! ever appears on a command line or in shell history.
//!
//! ```text
//! prepare --write_passfile--> <data-dir>/pgpass (owner: the invoking user) <--passfile=-- conninfo()
//! ```
//!
//! Run as root through sudo, the file belongs to the sudo user: that user
//! asked for the cluster and could read `secrets/` with sudo anyway, and the
//! printed line must work in their own shell. The data directory is
//! traversable (not listable) by others, so they reach the file by its path.

use std::path::{Path, PathBuf};

use super::layout::{ClusterRecord, Layout, LayoutError};
use crate::postgres::escape_pgpass;

/// The user who should be able to read the password file, when it is not
/// the process's own (`up` run as root through sudo: `SUDO_UID`/`SUDO_GID`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientOwner {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// The password file's name in the data directory.
pub const PASSFILE: &str = "pgpass";

/// `<data-dir>/pgpass`.
pub fn passfile(layout: &Layout) -> PathBuf {
    layout.root().join(PASSFILE)
}

/// The password file's text: one line per port a client may use (rw, ro,
/// each member's PostgreSQL) and per login (`(user, password)`), any database.
pub fn passfile_text(record: &ClusterRecord, logins: &[(String, String)]) -> String {
    let ports = [record.rw_port, record.ro_port]
        .into_iter()
        .chain(record.members.iter().map(|m| m.pg_port));
    let mut out = String::new();
    for port in ports {
        for (user, password) in logins {
            out.push_str(&format!(
                "127.0.0.1:{port}:*:{}:{}\n",
                escape_pgpass(user),
                escape_pgpass(password)
            ));
        }
    }
    out
}

/// Writes the password file (mode 0600, atomically, owned by `owner` when
/// given) and returns its path.
pub fn write_passfile(
    layout: &Layout,
    text: &str,
    owner: Option<ClientOwner>,
) -> Result<PathBuf, LayoutError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = passfile(layout);
    let tmp = layout
        .root()
        .join(format!("{PASSFILE}.{}.tmp", std::process::id()));
    let io = |action: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| LayoutError::Io {
            action,
            path,
            source,
        }
    };
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io("create", &tmp))?;
    f.write_all(text.as_bytes()).map_err(io("write", &tmp))?;
    if let Some(o) = owner {
        std::os::unix::fs::fchown(&f, Some(o.uid), Some(o.gid)).map_err(io("chown", &tmp))?;
    }
    drop(f);
    std::fs::rename(&tmp, &path).map_err(io("replace", &path))?;
    Ok(path)
}

/// A libpq key/value connection string for 127.0.0.1:`port` that reads the
/// password from `passfile`.
pub fn conninfo(port: u16, user: &str, dbname: &str, passfile: &Path) -> String {
    format!(
        "host=127.0.0.1 port={port} user={} dbname={} passfile={}",
        conninfo_value(user),
        conninfo_value(dbname),
        conninfo_value(&passfile.to_string_lossy())
    )
}

/// A conninfo value: as is when plain, else single-quoted with `\` and `'`
/// escaped by a backslash (libpq's rules).
fn conninfo_value(value: &str) -> String {
    let plain = !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c == '\'' || c == '\\');
    if plain {
        return value.to_owned();
    }
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every client port gets a line per login; `:` and `\` are escaped.
    #[test]
    fn passfile_covers_every_port_and_login() {
        let record = ClusterRecord::demo(2);
        let text = passfile_text(
            &record,
            &[
                ("postgres".into(), "p1".into()),
                ("app".into(), r"a:b\c".into()),
            ],
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4 * 2);
        assert!(lines.contains(&"127.0.0.1:1:*:postgres:p1"), "{text}");
        assert!(lines.contains(&r"127.0.0.1:20001:*:app:a\:b\\c"), "{text}");
    }

    /// The file is private (libpq ignores a group- or world-readable one),
    /// replaced whole and given to the owner.
    #[test]
    fn passfile_is_private_and_owned() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let layout = Layout::new(dir.path());
        let path = write_passfile(&layout, "a\n", None).expect("write");
        write_passfile(&layout, "b\n", None).expect("rewrite");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "b\n");
        let meta = std::fs::metadata(&path).expect("stat");
        assert_eq!(meta.mode() & 0o777, 0o600);
        if nix::unistd::geteuid().is_root() {
            let owner = ClientOwner {
                uid: 65534,
                gid: 65534,
            };
            write_passfile(&layout, "c\n", Some(owner)).expect("write as nobody's");
            let meta = std::fs::metadata(&path).expect("stat");
            assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
        }
    }

    /// Plain values stay as they are; spaces and quotes are quoted as libpq reads them.
    #[test]
    fn conninfo_quotes_only_what_needs_it() {
        assert_eq!(
            conninfo(5432, "app", "app", Path::new("/d/pgpass")),
            "host=127.0.0.1 port=5432 user=app dbname=app passfile=/d/pgpass"
        );
        assert_eq!(conninfo_value("my dir/it's"), r"'my dir/it\'s'");
        assert_eq!(conninfo_value(""), "''");
    }
}
