//! The postmaster as a supervised child process: started directly (not
//! through pg_ctl) so that we hold its PID, with its output going to a log
//! file or to our own stderr ([`ServerLog`]), and stopped by signalling that
//! PID only.

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::command::tail;
use super::error::{PgError, StartLog};
use super::instance::{Instance, ServerLog};

/// How often we poll while waiting for the server.
const POLL: Duration = Duration::from_millis(50);

/// How long a fencer may take to start the server and report its PID.
const FENCER_REPORT: Duration = Duration::from_secs(10);

/// How to stop the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// SIGINT: abort transactions, disconnect clients, write a shutdown checkpoint.
    Fast,
    /// SIGQUIT: exit at once without a checkpoint (crash recovery at the next
    /// start). This is the fence: no write is accepted after the signal.
    Immediate,
}

impl StopMode {
    fn signal(self) -> Signal {
        match self {
            Self::Fast => Signal::SIGINT,
            Self::Immediate => Signal::SIGQUIT,
        }
    }

    /// "fast" or "immediate".
    pub fn name(self) -> &'static str {
        match self {
            Self::Fast => "fast",
            Self::Immediate => "immediate",
        }
    }
}

/// A running postmaster started by us. Dropping it leaves the server
/// running (a supervisor decides how it stops); stop it with
/// [`Postmaster::stop`] or [`Postmaster::fence`].
#[derive(Debug)]
pub struct Postmaster {
    child: tokio::process::Child,
    pid: u32,
    data_dir: PathBuf,
    server_log: ServerLog,
}

impl Instance {
    /// Starts the postmaster and waits until it accepts connections (at most
    /// `timeout`). Refuses when the port is taken; on failure the child is
    /// stopped and the error carries the end of the server log (or says
    /// where it went).
    pub async fn start(&self, timeout: Duration) -> Result<Postmaster, PgError> {
        ensure_port_free(self.port)?;
        let mut postmaster = self.spawn_postmaster().await?;
        match self.wait_ready(&mut postmaster, timeout).await {
            Ok(()) => Ok(postmaster),
            Err(err) => {
                let _ = postmaster
                    .stop(StopMode::Immediate, Duration::from_secs(10))
                    .await;
                Err(err)
            }
        }
    }

    async fn spawn_postmaster(&self) -> Result<Postmaster, PgError> {
        let (stdout, stderr) = self.postmaster_output()?;
        let (child, pid, command) = match &self.fence {
            None => {
                let mut cmd = self.tool("postgres");
                cmd.arg("-D")
                    .arg(&self.layout.data_dir)
                    .stdin(Stdio::null())
                    .stdout(stdout)
                    .stderr(stderr)
                    // Own process group: a Ctrl-C on our terminal must not reach the
                    // server; the agent decides how it stops.
                    .process_group(0);
                let command = super::command::describe(&cmd);
                let child = cmd.spawn().map_err(|source| PgError::Spawn {
                    command: command.clone(),
                    source,
                })?;
                let pid = child
                    .id()
                    .expect("a just-spawned child has a pid because it was not yet awaited");
                (child, pid, command)
            }
            Some(fence) => self.spawn_fenced(fence, stderr).await?,
        };
        tracing::info!(pid, data_dir = %self.layout.data_dir.display(), port = self.port, fencer = self.fence.is_some(), %command, "postmaster started");
        Ok(Postmaster {
            child,
            pid,
            data_dir: self.layout.data_dir.clone(),
            server_log: self.layout.server_log.clone(),
        })
    }

    /// Starts the server behind its fencer (`<exe> fence -- postgres -D ...`),
    /// connects the fencer to the agent's deadlines and returns the fencer
    /// (whose exit is the server's exit) with the postmaster's PID.
    async fn spawn_fenced(
        &self,
        fence: &crate::fence::FenceSpawn,
        server_output: Stdio,
    ) -> Result<(tokio::process::Child, u32, String), PgError> {
        use tokio::io::AsyncBufReadExt;
        let (feed_read, feed_write) = crate::fence::link::feed_pipe()
            .map_err(|e| PgError::io("create the fencer's pipe for", &self.layout.data_dir, e))?;
        let mut cmd = tokio::process::Command::new(&fence.exe);
        self.os_user.apply_env(&mut cmd, self.workdir());
        cmd.env("PGPASSFILE", &self.layout.passfile)
            .env_remove("PGDATA")
            .arg("fence");
        if let Some((uid, gid)) = self.os_user.switch_to() {
            cmd.arg("--uid")
                .arg(uid.to_string())
                .arg("--gid")
                .arg(gid.to_string());
        }
        cmd.arg("--")
            .arg(self.bin.tool("postgres"))
            .arg("-D")
            .arg(&self.layout.data_dir)
            .stdin(Stdio::from(feed_read))
            .stdout(Stdio::piped())
            .stderr(server_output)
            // Own process group: a Ctrl-C on our terminal reaches neither
            // the fencer nor the server; the agent decides how it stops.
            .process_group(0)
            .kill_on_drop(false);
        let command = super::command::describe(&cmd);
        let mut child = cmd.spawn().map_err(|source| PgError::Spawn {
            command: command.clone(),
            source,
        })?;
        // Connected before anything else: from now on the agent's death fences.
        fence.hub.attach(feed_write);
        let stdout = child
            .stdout
            .take()
            .expect("stdout was piped just above because the fencer reports the PID there");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let first = tokio::time::timeout(FENCER_REPORT, lines.next_line()).await;
        let pid = match first {
            Ok(Ok(Some(line))) => line
                .strip_prefix(crate::fence::PID_LINE)
                .and_then(|p| p.trim().parse::<u32>().ok()),
            _ => None,
        };
        match pid {
            Some(pid) => Ok((child, pid, command)),
            None => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                Err(PgError::Spawn {
                    command,
                    source: std::io::Error::other(
                        "the fencer did not report the server's PID; check that the pgcluster binary provides `fence`",
                    ),
                })
            }
        }
    }

    /// The postmaster's stdout and stderr. A log file is opened for append
    /// and owned by the OS user like the instance's other files. With
    /// [`ServerLog::Inherit`] both go to our stderr: stdout too, because ours
    /// carries only the agent's JSON lines and log shippers parse it as such.
    fn postmaster_output(&self) -> Result<(Stdio, Stdio), PgError> {
        match &self.layout.server_log {
            ServerLog::File(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| PgError::io("open", path, e))?;
                self.os_user.chown(path)?;
                let second = file.try_clone().map_err(|e| PgError::io("open", path, e))?;
                Ok((file.into(), second.into()))
            }
            ServerLog::Inherit => {
                let stderr = std::io::stderr()
                    .as_fd()
                    .try_clone_to_owned()
                    .map_err(|e| PgError::io("duplicate", "this process's stderr", e))?;
                Ok((stderr.into(), Stdio::inherit()))
            }
        }
    }

    async fn wait_ready(
        &self,
        postmaster: &mut Postmaster,
        timeout: Duration,
    ) -> Result<(), PgError> {
        let started = Instant::now();
        loop {
            if let Some(status) = postmaster.try_exit_status()? {
                return Err(postmaster.start_failed(
                    started.elapsed(),
                    format!("the postmaster exited ({status})"),
                ));
            }
            if self.connect().await.is_ok() {
                return Ok(());
            }
            if started.elapsed() >= timeout {
                return Err(postmaster.start_failed(
                    started.elapsed(),
                    "it did not accept connections".to_owned(),
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Postmaster {
    /// The postmaster's PID.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Where the server's output goes.
    pub fn server_log(&self) -> &ServerLog {
        &self.server_log
    }

    /// `Some(status)` once the postmaster has exited (crash or stop).
    pub fn try_exit_status(&mut self) -> Result<Option<ExitStatus>, PgError> {
        self.child
            .try_wait()
            .map_err(|e| PgError::io("wait for the postmaster of", &self.data_dir, e))
    }

    /// Waits until the postmaster exits (for supervision).
    pub async fn wait(&mut self) -> Result<ExitStatus, PgError> {
        self.child
            .wait()
            .await
            .map_err(|e| PgError::io("wait for the postmaster of", &self.data_dir, e))
    }

    /// Sends the stop signal for `mode` to our postmaster. Returns at once;
    /// with [`StopMode::Immediate`] the server accepts no further writes.
    pub fn signal(&mut self, mode: StopMode) -> Result<(), PgError> {
        if self.try_exit_status()?.is_some() {
            return Ok(());
        }
        let pid = i32::try_from(self.pid)
            .expect("PIDs fit in i32 because the kernel's pid_max is below 2^22");
        nix::sys::signal::kill(Pid::from_raw(pid), mode.signal()).map_err(|source| {
            PgError::Signal {
                pid: self.pid,
                signal: mode.signal().as_str(),
                source,
            }
        })
    }

    /// Stops the server with `mode` and waits up to `timeout` for it to exit.
    #[tracing::instrument(name = "stop_postgres", skip_all, fields(pid = self.pid, mode = mode.name()))]
    pub async fn stop(mut self, mode: StopMode, timeout: Duration) -> Result<ExitStatus, PgError> {
        self.signal(mode)?;
        match tokio::time::timeout(timeout, self.wait()).await {
            Ok(status) => {
                tracing::info!(pid = self.pid, mode = mode.name(), "postmaster stopped");
                status
            }
            Err(_) => Err(PgError::StopTimeout {
                pid: self.pid,
                mode: mode.name(),
                waited: timeout,
            }),
        }
    }

    /// Fences the server: an immediate stop (SIGQUIT), waiting up to `timeout`.
    pub async fn fence(self, timeout: Duration) -> Result<ExitStatus, PgError> {
        self.stop(StopMode::Immediate, timeout).await
    }

    fn start_failed(&self, waited: Duration, reason: String) -> PgError {
        let log = match &self.server_log {
            ServerLog::File(path) => {
                let text = std::fs::read_to_string(path).unwrap_or_default();
                StartLog::File {
                    path: path.clone(),
                    tail: tail(&text, 5),
                }
            }
            ServerLog::Inherit => StartLog::Inherited,
        };
        PgError::StartFailed {
            data_dir: self.data_dir.clone(),
            waited,
            reason,
            log,
        }
    }
}

/// Fails with [`PgError::PortInUse`] when 127.0.0.1:`port` cannot be bound.
pub fn ensure_port_free(port: u16) -> Result<(), PgError> {
    match std::net::TcpListener::bind(("127.0.0.1", port)) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(PgError::PortInUse { port }),
        Err(e) => Err(PgError::io("bind", format!("127.0.0.1:{port}"), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A taken port is reported by number before anything is started.
    #[test]
    fn port_in_use_is_named() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let port = listener.local_addr().expect("bound").port();
        let err = ensure_port_free(port).expect_err("port is taken");
        assert!(matches!(err, PgError::PortInUse { port: p } if p == port));
        assert!(err.to_string().contains(&format!("127.0.0.1:{port}")));
    }
}
