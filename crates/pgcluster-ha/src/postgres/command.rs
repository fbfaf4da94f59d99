//! Running PostgreSQL's command-line tools and turning failures into errors
//! that carry the command line, its stderr and a hint.

use super::error::PgError;

/// How many trailing stderr lines an error keeps.
const STDERR_LINES: usize = 8;

/// Renders a command line for error messages (passwords never appear on
/// our command lines: they go through password files).
pub fn describe(cmd: &tokio::process::Command) -> String {
    let std = cmd.as_std();
    std::iter::once(std.get_program())
        .chain(std.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` to completion, returning its stdout; a non-zero exit becomes
/// [`PgError::CommandFailed`] (or [`PgError::DiskFull`] when stderr says so)
/// with `hint`.
pub async fn run_checked(
    mut cmd: tokio::process::Command,
    hint: &'static str,
) -> Result<String, PgError> {
    let command = describe(&cmd);
    cmd.stdin(std::process::Stdio::null()).kill_on_drop(true);
    let out = cmd.output().await.map_err(|source| PgError::Spawn {
        command: command.clone(),
        source,
    })?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    if let Some(path) = disk_full_path(&stderr) {
        return Err(PgError::DiskFull { path: path.into() });
    }
    Err(PgError::CommandFailed {
        command,
        status: out.status.to_string(),
        stderr: tail(&stderr, STDERR_LINES),
        hint,
    })
}

/// The last `n` non-empty lines of `text`, joined with " | ".
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// PostgreSQL tools report ENOSPC as `could not write to file "PATH": No space
/// left on device`; returns the quoted path (or the whole line without one).
fn disk_full_path(stderr: &str) -> Option<String> {
    let line = stderr
        .lines()
        .find(|l| l.contains("No space left on device"))?;
    let quoted = line.split('"').nth(1).filter(|p| !p.is_empty());
    Some(quoted.unwrap_or(line).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ENOSPC in a tool's stderr surfaces as DiskFull with the path.
    #[test]
    fn detects_disk_full_with_path() {
        let stderr = "pg_basebackup: error: could not write to file \"/data/pg/base/1/1259\": No space left on device\n";
        assert_eq!(
            disk_full_path(stderr).as_deref(),
            Some("/data/pg/base/1/1259")
        );
        assert_eq!(disk_full_path("all fine"), None);
    }

    /// A failing command's error carries the command line and stderr.
    #[tokio::test]
    async fn failure_names_command_and_stderr() {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.args(["-c", "echo boom >&2; exit 3"]);
        let err = run_checked(cmd, "do something").await.expect_err("exits 3");
        let msg = err.to_string();
        assert!(
            msg.contains("sh -c") && msg.contains("boom") && msg.contains("do something"),
            "{msg}"
        );
    }

    /// Only the last lines of long stderr are kept.
    #[test]
    fn tail_keeps_last_lines() {
        assert_eq!(tail("a\n\nb\nc\n", 2), "b | c");
    }
}
