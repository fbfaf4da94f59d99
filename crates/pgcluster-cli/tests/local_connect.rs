//! The connection lines `up` prints connect as printed (no password on the
//! line, none in the environment, none in ~/.pgpass), also for the sudo user
//! who ran `up` as root; `pgcluster psql` connects as the superuser or a
//! role, to rw or ro. Real PostgreSQL, through the binary.

mod local_support;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use local_support::{TestCluster, bin, fast_spec};

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `line` (a printed `psql '...'`) plus `extra` in sh, as `user` when
/// given, with no password from anywhere but the line's passfile.
fn run_printed(line: &str, extra: &str, user: Option<&str>, home: &std::path::Path) -> Output {
    let script = format!("{line} -X -At {extra}");
    let mut cmd = match user {
        Some(u) => {
            let mut c = Command::new("runuser");
            c.args(["-u", u, "--", "sh", "-c", &script]);
            c
        }
        None => {
            let mut c = Command::new("sh");
            c.args(["-c", &script]);
            c
        }
    };
    cmd.env_remove("PGPASSWORD")
        .env_remove("PGPASSFILE")
        .env_remove("PGSERVICE")
        .env("HOME", home)
        .env(
            "PATH",
            "/usr/lib/postgresql/15/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        )
        .stdin(Stdio::null())
        .output()
        .expect("run sh")
}

/// Every psql line `up` prints connects as it is printed: rw as the
/// superuser, ro to a replica, the database line as its owner; run as root
/// through sudo, the password file belongs to the sudo user, for whom the
/// line works too; `pgcluster psql` connects as printed by its help.
#[test]
fn printed_lines_and_pgcluster_psql_connect() {
    let spec = format!(
        "{}  roles: [{{name: app}}]\n  databases: [{{name: appdb, owner: app}}]\n",
        fast_spec("conn", "async", "")
    );
    let cluster = TestCluster::new(&spec);
    let base = cluster.base.to_string();
    let spec_path = cluster.spec.display().to_string();
    let mut up = Command::new(bin());
    up.args([
        "up",
        "-f",
        &spec_path,
        "--port",
        &base,
        "--detach",
        "--timeout",
        "90",
    ])
    .arg("--data-dir")
    .arg(cluster.data())
    .stdin(Stdio::null());
    // As if run through sudo by `nobody` (the test runs as root).
    let as_root = nix::unistd::geteuid().is_root();
    if as_root {
        up.env("SUDO_UID", "65534")
            .env("SUDO_GID", "65534")
            .env("SUDO_USER", "nobody");
    }
    let out = up.output().expect("run up");
    let printed = text(&out);
    eprintln!("{printed}");
    assert!(out.status.success(), "{printed}");
    cluster.wait_ready(1, Duration::from_secs(40));
    assert!(
        !printed.contains(&cluster.password()),
        "no password in the output"
    );

    let line = |prefix: &str| -> String {
        printed
            .lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{printed}"))
            .trim()
            .to_owned()
    };
    let rw = line("rw:");
    let ro = line("ro:");
    let app = line("database appdb as app:");
    for l in [&rw, &ro, &app] {
        assert!(l.starts_with("psql '") && l.contains("passfile="), "{l}");
    }
    let home = tempfile::tempdir().expect("temp home");

    let q = |line: &str, sql: &str, user: Option<&str>| -> String {
        let out = run_printed(line, &format!("-c \"{sql}\""), user, home.path());
        assert!(out.status.success(), "{line} as {user:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(q(&rw, "select pg_is_in_recovery()", None), "f");
    assert_eq!(q(&ro, "select pg_is_in_recovery()", None), "t");
    assert_eq!(
        q(
            &app,
            "select current_user || '@' || current_database()",
            None
        ),
        "app@appdb"
    );
    if as_root {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(cluster.data().join("pgpass")).expect("passfile");
        assert_eq!((meta.uid(), meta.mode() & 0o777), (65534, 0o600));
        assert!(printed.contains("readable by nobody"), "{printed}");
        // The temp dir above the data dir is the test's; nobody must pass it.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(cluster.dir.path(), std::fs::Permissions::from_mode(0o711))
            .expect("chmod");
        std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        assert_eq!(q(&rw, "select 1", Some("nobody")), "1");
    }

    let psql = |args: &[&str]| -> String {
        let out = Command::new(bin())
            .arg("psql")
            .arg("--data-dir")
            .arg(cluster.data())
            .args(args)
            .env_remove("PGPASSWORD")
            .env("HOME", home.path())
            .stdin(Stdio::null())
            .output()
            .expect("run pgcluster psql");
        assert!(
            out.status.success(),
            "pgcluster psql {args:?}: {}",
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(psql(&["-X", "-At", "-c", "select 1"]), "1");
    assert_eq!(
        psql(&["--ro", "-X", "-At", "-c", "select pg_is_in_recovery()"]),
        "t"
    );
    assert_eq!(
        psql(&[
            "--role",
            "app",
            "--",
            "-X",
            "-At",
            "-c",
            "select current_user || '@' || current_database()"
        ]),
        "app@appdb"
    );
    let unknown = Command::new(bin())
        .args(["psql", "--role", "nope", "--data-dir"])
        .arg(cluster.data())
        .output()
        .expect("run pgcluster psql");
    assert_eq!(unknown.status.code(), Some(1), "{}", text(&unknown));
    assert!(
        text(&unknown).contains("no role nope"),
        "{}",
        text(&unknown)
    );
}
