//! Finding the PostgreSQL server binaries: `--pg-bin`, then `PATH`, then
//! `pg_config --bindir`, then the Debian/Ubuntu layout
//! `/usr/lib/postgresql/<major>/bin` (newest major first).

use std::path::{Path, PathBuf};

use super::error::PgError;

/// The binaries pgcluster needs in one directory.
const REQUIRED: [&str; 5] = [
    "initdb",
    "postgres",
    "pg_basebackup",
    "pg_rewind",
    "pg_controldata",
];

/// A directory holding initdb, postgres, pg_basebackup, pg_rewind and friends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgBinaries {
    bindir: PathBuf,
}

impl PgBinaries {
    /// Uses `dir` as given (for `--pg-bin`); fails when a required binary is missing.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Result<Self, PgError> {
        let dir = dir.into();
        if let Some(binary) = REQUIRED.iter().find(|b| !is_executable(&dir.join(b))) {
            return Err(PgError::MissingBinary { dir, binary });
        }
        Ok(Self { bindir: dir })
    }

    /// Finds the binaries: `explicit` (from `--pg-bin`) if given, else `PATH`,
    /// `pg_config --bindir`, `/usr/lib/postgresql/<major>/bin`.
    pub async fn locate(explicit: Option<&Path>) -> Result<Self, PgError> {
        if let Some(dir) = explicit {
            return Self::in_dir(dir);
        }
        let mut searched = Vec::new();
        let path_var = std::env::var_os("PATH").unwrap_or_default();
        let mut candidates: Vec<PathBuf> = std::env::split_paths(&path_var).collect();
        if let Some(dir) = pg_config_bindir(&candidates).await {
            candidates.push(dir);
        }
        candidates.extend(debian_bindirs(Path::new("/usr/lib/postgresql")));
        for dir in candidates {
            if REQUIRED.iter().all(|b| is_executable(&dir.join(b))) {
                return Ok(Self { bindir: dir });
            }
            searched.push(dir);
        }
        searched.push(PathBuf::from("pg_config --bindir"));
        Err(PgError::BinariesNotFound { searched })
    }

    /// The directory.
    pub fn bindir(&self) -> &Path {
        &self.bindir
    }

    /// The full path of one tool in the directory (`initdb`, `pgbench`, ...).
    pub fn tool(&self, name: &str) -> PathBuf {
        self.bindir.join(name)
    }
}

/// `pg_config --bindir` using the first `pg_config` on PATH.
async fn pg_config_bindir(path: &[PathBuf]) -> Option<PathBuf> {
    let pg_config = path
        .iter()
        .map(|d| d.join("pg_config"))
        .find(|p| is_executable(p))?;
    let out = tokio::process::Command::new(pg_config)
        .arg("--bindir")
        .output()
        .await
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// `<root>/<major>/bin` for every numeric major below `root`, newest first.
fn debian_bindirs(root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut majors: Vec<(u32, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((major, e.path().join("bin")))
        })
        .collect();
    majors.sort_by_key(|m| std::cmp::Reverse(m.0));
    majors.into_iter().map(|(_, dir)| dir).collect()
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory without the binaries is refused and the error names the
    /// directory and the missing binary.
    #[test]
    fn explicit_dir_without_binaries_names_what_is_missing() {
        let err = PgBinaries::in_dir("/nonexistent/pg/bin").expect_err("no binaries there");
        let msg = err.to_string();
        assert!(
            msg.contains("/nonexistent/pg/bin") && msg.contains("initdb"),
            "{msg}"
        );
        assert_eq!(err.category(), "binaries");
    }

    /// The not-found error lists every searched place and how to install.
    #[test]
    fn not_found_error_says_how_to_install() {
        let err = PgError::BinariesNotFound {
            searched: vec![
                PathBuf::from("/usr/bin"),
                PathBuf::from("/usr/lib/postgresql/15/bin"),
            ],
        };
        let msg = err.to_string();
        assert!(
            msg.contains("/usr/bin, /usr/lib/postgresql/15/bin"),
            "{msg}"
        );
        assert!(
            msg.contains("postgresql-15") && msg.contains("--pg-bin"),
            "{msg}"
        );
    }

    /// Debian majors are tried newest first.
    #[test]
    fn debian_majors_newest_first() {
        let dir = std::env::temp_dir().join(format!("pgcluster-bindirs-{}", std::process::id()));
        for major in ["9", "15", "13", "notes"] {
            std::fs::create_dir_all(dir.join(major)).expect("temp dir is writable");
        }
        let found = debian_bindirs(&dir);
        std::fs::remove_dir_all(&dir).expect("we created it");
        assert_eq!(
            found,
            vec![dir.join("15/bin"), dir.join("13/bin"), dir.join("9/bin")]
        );
    }
}
