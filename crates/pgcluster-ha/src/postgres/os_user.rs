//! The unprivileged OS user PostgreSQL runs as. PostgreSQL refuses to run as
//! root, so when we are root we pick (or create) a user, run every server-side
//! binary as that user and hand it the directories it writes.

use std::path::Path;

use super::command::run_checked;
use super::error::PgError;

/// The user we create when we are root and neither `--os-user` nor `postgres` exists.
pub const DEFAULT_CREATED_USER: &str = "pgcluster";

/// An OS user that PostgreSQL processes run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsUser {
    /// Login name.
    pub name: String,
    /// Numeric user id.
    pub uid: u32,
    /// Numeric primary group id.
    pub gid: u32,
    /// Whether child processes must switch to this user (we run as root).
    pub switch: bool,
}

impl OsUser {
    /// The user to run PostgreSQL as.
    ///
    /// Not root: the current user, no switching. Root: `requested` if given
    /// (it must exist), else `postgres` if it exists, else `pgcluster`,
    /// created with `useradd --system` when missing.
    pub async fn resolve(requested: Option<&str>) -> Result<Self, PgError> {
        let euid = nix::unistd::geteuid();
        if !euid.is_root() {
            let me = nix::unistd::User::from_uid(euid)
                .map_err(|source| PgError::UserLookup {
                    name: euid.to_string(),
                    source,
                })?
                .ok_or_else(|| PgError::UnknownUser {
                    name: euid.to_string(),
                })?;
            return Ok(Self::from_passwd(me, false));
        }
        if let Some(name) = requested {
            return lookup(name)?
                .map(|u| Self::from_passwd(u, true))
                .ok_or_else(|| PgError::UnknownUser {
                    name: name.to_owned(),
                });
        }
        if let Some(user) = lookup("postgres")? {
            return Ok(Self::from_passwd(user, true));
        }
        Self::ensure_system_user(DEFAULT_CREATED_USER).await
    }

    /// Looks `name` up and creates it with `useradd --system` when missing.
    pub async fn ensure_system_user(name: &str) -> Result<Self, PgError> {
        if let Some(user) = lookup(name)? {
            return Ok(Self::from_passwd(user, true));
        }
        let mut cmd = tokio::process::Command::new("useradd");
        cmd.args([
            "--system",
            "--user-group",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            name,
        ]);
        run_checked(
            cmd,
            "run as root, or create the user yourself and pass --os-user",
        )
        .await?;
        lookup(name)?
            .map(|u| Self::from_passwd(u, true))
            .ok_or_else(|| PgError::UnknownUser {
                name: name.to_owned(),
            })
    }

    fn from_passwd(user: nix::unistd::User, switch: bool) -> Self {
        Self {
            name: user.name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            switch,
        }
    }

    /// Makes `cmd` run as this user (no-op when we are not root) with a
    /// working directory the user can read.
    pub fn apply(&self, cmd: &mut tokio::process::Command, workdir: &Path) {
        if let Some((uid, gid)) = self.switch_to() {
            cmd.uid(uid).gid(gid);
        }
        self.apply_env(cmd, workdir);
    }

    /// The uid and gid a child must switch to (`None` when we run as this user).
    pub fn switch_to(&self) -> Option<(u32, u32)> {
        self.switch.then_some((self.uid, self.gid))
    }

    /// This user's environment and a working directory it can read, without
    /// switching users (for a process that switches later, like the fencer).
    pub fn apply_env(&self, cmd: &mut tokio::process::Command, workdir: &Path) {
        cmd.current_dir(workdir)
            .env("USER", &self.name)
            .env("LOGNAME", &self.name);
    }

    /// Hands `path` (not recursive) to this user.
    pub fn chown(&self, path: &Path) -> Result<(), PgError> {
        if !self.switch {
            return Ok(());
        }
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))
            .map_err(|e| PgError::io("chown", path, e))
    }

    /// Creates `dir` (and parents) with `mode` and hands it to this user.
    pub fn create_dir(&self, dir: &Path, mode: u32) -> Result<(), PgError> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir).map_err(|e| PgError::io("create directory", dir, e))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
            .map_err(|e| PgError::io("set permissions of", dir, e))?;
        self.chown(dir)
    }

    /// Writes `contents` to `path` atomically (temp file + rename) with mode
    /// `mode`, owned by this user.
    pub fn write_file(&self, path: &Path, contents: &[u8], mode: u32) -> Result<(), PgError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let tmp = path.with_extension("pgcluster-tmp");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(|e| PgError::io("create", &tmp, e))?;
        file.write_all(contents)
            .map_err(|e| PgError::io("write", &tmp, e))?;
        file.sync_all().map_err(|e| PgError::io("sync", &tmp, e))?;
        self.chown(&tmp)?;
        std::fs::rename(&tmp, path).map_err(|e| PgError::io("rename into place", path, e))
    }
}

fn lookup(name: &str) -> Result<Option<nix::unistd::User>, PgError> {
    nix::unistd::User::from_name(name).map_err(|source| PgError::UserLookup {
        name: name.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As root we never run PostgreSQL as root: the resolved user switches.
    #[tokio::test]
    async fn resolves_an_unprivileged_user() {
        let user = OsUser::resolve(None)
            .await
            .expect("postgres exists or can be created");
        if nix::unistd::geteuid().is_root() {
            assert!(user.switch);
            assert_ne!(user.uid, 0);
        } else {
            assert!(!user.switch);
        }
    }

    /// A named user that does not exist is an error naming it.
    #[tokio::test]
    async fn unknown_requested_user_is_named() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let err = OsUser::resolve(Some("pgcluster-no-such-user"))
            .await
            .expect_err("does not exist");
        assert!(err.to_string().contains("pgcluster-no-such-user"), "{err}");
    }
}
