//! The real server binaries as child processes, for what only a separate
//! process shows: signals, exit statuses, files written at exit.
//!
//! [`binary`] finds `orex-gateway`, `orex-sharing`, `orex-risk` and
//! `orex-emergency` beside the test executable (`target/<profile>/`). When
//! cargo runs the tests (`CARGO` is set) they are built first, once per test
//! process, so a test never runs a binary older than the code under test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The server binaries.
pub const SERVERS: [&str; 4] = [
    "orex-gateway",
    "orex-sharing",
    "orex-risk",
    "orex-emergency",
];

/// The path of a server binary, built first when cargo runs the tests.
pub fn binary(name: &str) -> PathBuf {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let dir = DIR
        .get_or_init(prepare)
        .as_ref()
        .unwrap_or_else(|e| panic!("{e}"));
    dir.join(name)
}

fn prepare() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    // target/<profile>/deps/e2e-<hash> → target/<profile>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("the test executable has no target folder")?
        .to_path_buf();
    if let Some(cargo) = std::env::var_os("CARGO") {
        let mut cmd = Command::new(cargo);
        cmd.current_dir(workspace_root())
            .args(["build", "--quiet", "--locked", "--bins"]);
        for name in SERVERS {
            cmd.args(["-p", name]);
        }
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().map_err(|e| format!("cargo build: {e}"))?;
        if !status.success() {
            return Err(format!("cargo build of {SERVERS:?} failed: {status}"));
        }
    }
    for name in SERVERS {
        if !dir.join(name).is_file() {
            return Err(format!(
                "{} missing: run `cargo build --bins` first",
                dir.join(name).display()
            ));
        }
    }
    Ok(dir)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

/// A running server process, killed (and reaped) on drop if still running.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Starts `binary` with `--config config`, extra environment `env` and
    /// its output in `<log_dir>/<binary>.log`.
    pub fn start(binary_name: &str, config: &Path, env: &[(&str, String)], log_dir: &Path) -> Proc {
        let log = log_dir.join(format!("{binary_name}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new(binary(binary_name))
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {binary_name}: {e}"));
        Proc {
            name: binary_name.to_owned(),
            child,
            log,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM, as Kubernetes does to stop a pod.
    pub fn terminate(&self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("send SIGTERM");
    }

    /// Waits up to `limit` for the process to exit; `None` if it is still
    /// running then.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Panics, with the end of its log, if the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("wait") {
            panic!("{} exited ({status}):\n{}", self.name, self.log_tail());
        }
    }

    /// The process's whole output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last lines of the process's output.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A port free on 127.0.0.1 now (the OS may hand it out again later; the
/// process that binds it fails loudly if so).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// `GET /metrics` on an ops port over HTTP/1.1, as Prometheus scrapes it;
/// the whole answer, status line and headers included. Panics unless 200.
pub async fn scrape(ops: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(ops)
        .await
        .expect("connect to the ops port");
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: ops\r\nConnection: close\r\n\r\n")
        .await
        .expect("send the scrape");
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_string(&mut answer))
        .await
        .expect("the scrape answers within 10 s")
        .expect("read the scrape");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    answer
}
