//! The stack as separate processes, for cases that measure a server's own
//! memory (the in-process harness would mix in the clients' memory): the
//! release `orex-sharing` and `orex-gateway` binaries started as children
//! with the configs `orex up` would write, killed when the guard drops
//! (also on panic). Also finds (and if run by cargo, builds) those binaries
//! and `orex`.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use orex_cli::devstack::{self, DevLayout, Ports};

use crate::stack::{Api, member_client, without_rate_limits};

/// Where the release binaries are.
#[derive(Debug, Clone)]
pub(crate) struct Binaries {
    /// The folder holding `orex-gateway`, `orex-sharing` and `orex`.
    pub(crate) dir: PathBuf,
}

const BINARIES: [&str; 3] = ["orex-gateway", "orex-sharing", "orex"];

impl Binaries {
    /// The binaries next to this one. When cargo runs the tool (`cargo run`
    /// sets `CARGO`), they are built first in the same profile, so they are
    /// never older than the code under test; otherwise they must exist.
    pub(crate) fn prepare() -> Result<Binaries, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let dir = exe
            .parent()
            .ok_or("the tool's binary has no folder")?
            .to_path_buf();
        if let Some(cargo) = std::env::var_os("CARGO") {
            let release = dir.file_name().is_some_and(|n| n == "release");
            let mut cmd = Command::new(cargo);
            cmd.current_dir(crate::machine::workspace_root())
                .args([
                    "build",
                    "--quiet",
                    "-p",
                    "orex-gateway",
                    "-p",
                    "orex-sharing",
                ])
                .args(["-p", "orex-cli", "--bins"]);
            if release {
                cmd.arg("--release");
            }
            let status = cmd
                .status()
                .map_err(|e| format!("running cargo build: {e}"))?;
            if !status.success() {
                return Err(format!("cargo build of {BINARIES:?} failed: {status}"));
            }
        }
        for b in BINARIES {
            if !dir.join(b).is_file() {
                return Err(format!(
                    "{} missing: cargo build --release -p orex-gateway -p orex-sharing -p orex-cli",
                    dir.join(b).display()
                ));
            }
        }
        Ok(Binaries { dir })
    }

    /// The path of one binary.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Opt-in: a command to run the gateway under, as whitespace-separated
/// words put before its binary, e.g. `valgrind --tool=massif
/// --massif-out-file=/tmp/massif.gw.%p`. For heap profiling the server
/// process itself: a profiler around `orex-bench` sees only the clients.
/// The guard's pid is then the wrapper's (valgrind's is the gateway's), and
/// the guard kills with SIGKILL, so a profiler that writes at exit writes
/// nothing: take snapshots while it runs (massif: `vgdb --pid=<pid>
/// detailed_snapshot <file>`). The cases' time caps still apply.
const WRAP_GATEWAY: &str = "OREX_BENCH_WRAP_GATEWAY";

/// A child process killed (and reaped) on drop.
#[derive(Debug)]
pub(crate) struct Guard {
    name: &'static str,
    child: Child,
}

impl Guard {
    /// Starts `bin` with `args`, output to `<log_dir>/<name>.log`; the
    /// gateway under [`WRAP_GATEWAY`]'s command if that is set.
    pub(crate) fn start(
        name: &'static str,
        bin: &Path,
        args: &[&std::ffi::OsStr],
        log_dir: &Path,
    ) -> Result<Guard, String> {
        let log = std::fs::File::create(log_dir.join(format!("{name}.log")))
            .map_err(|e| format!("{name} log: {e}"))?;
        let err = log.try_clone().map_err(|e| format!("{name} log: {e}"))?;
        let wrapper = match name {
            "gateway" => std::env::var(WRAP_GATEWAY).unwrap_or_default(),
            _ => String::new(),
        };
        let mut words = wrapper.split_whitespace();
        let mut cmd = match words.next() {
            Some(program) => {
                let mut cmd = Command::new(program);
                cmd.args(words).arg(bin);
                cmd
            }
            None => Command::new(bin),
        };
        let child = cmd
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("start {}: {e}", bin.display()))?;
        Ok(Guard { name, child })
    }

    /// The child's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the child has exited.
    pub(crate) fn alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(s)) => Err(format!("{} exited: {s}", self.name)),
            Err(e) => Err(format!("{}: {e}", self.name)),
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A memory figure of a process, in KiB, from `/proc/<pid>/status`
/// (`VmRSS`: resident now; `VmHWM`: the peak).
pub(crate) fn proc_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// The sharing service and the gateway as child processes, with the dev
/// configs of a fresh folder and the rate limits lifted.
#[derive(Debug)]
pub(crate) struct ProcStack {
    // Field order: children die before their folder is removed.
    /// The gateway process.
    pub(crate) gateway: Guard,
    /// The sharing process.
    pub(crate) sharing: Guard,
    /// The dev folder (PKI, bundles, configs, data, logs).
    pub(crate) layout: DevLayout,
    /// Where members connect.
    pub(crate) gateway_addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl ProcStack {
    /// Starts both processes and waits until a member call goes through.
    pub(crate) async fn start(bins: &Binaries) -> Result<ProcStack, String> {
        ProcStack::start_with(bins, &[]).await
    }

    /// As [`ProcStack::start`], with `gateway.toml` edited first: each
    /// `(from, to)` replaces text that must be there.
    pub(crate) async fn start_with(
        bins: &Binaries,
        gateway_edits: &[(&str, &str)],
    ) -> Result<ProcStack, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let layout = DevLayout::new(dir.path().join("orex"));
        let ports = Ports {
            gateway: free_port()?,
            sharing: free_port()?,
            risk: free_port()?,
            emergency: free_port()?,
        };
        let gateway_addr = devstack::init(&layout, ports)
            .map_err(|e| format!("dev stack init: {e}"))?
            .gateway;
        let policy = layout.config("policy.toml");
        let text = std::fs::read_to_string(&policy).map_err(|e| format!("policy: {e}"))?;
        std::fs::write(&policy, without_rate_limits(&text)).map_err(|e| format!("policy: {e}"))?;
        let gateway_toml = layout.config("gateway.toml");
        let mut text =
            std::fs::read_to_string(&gateway_toml).map_err(|e| format!("gateway.toml: {e}"))?;
        for (from, to) in gateway_edits {
            if !text.contains(from) {
                return Err(format!("gateway.toml has no {from:?} to replace"));
            }
            text = text.replace(from, to);
        }
        std::fs::write(&gateway_toml, text).map_err(|e| format!("gateway.toml: {e}"))?;
        let config = |f: &str| layout.config(f).into_os_string();
        let (sharing_cfg, gateway_cfg) = (config("sharing.toml"), config("gateway.toml"));
        let sharing = Guard::start(
            "sharing",
            &bins.path("orex-sharing"),
            &["--config".as_ref(), sharing_cfg.as_os_str()],
            dir.path(),
        )?;
        let gateway = Guard::start(
            "gateway",
            &bins.path("orex-gateway"),
            &["--config".as_ref(), gateway_cfg.as_os_str()],
            dir.path(),
        )?;
        let mut stack = ProcStack {
            gateway,
            sharing,
            layout,
            gateway_addr,
            _dir: dir,
        };
        stack.wait_ready().await?;
        Ok(stack)
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Err(e) = self.gateway.alive().and_then(|()| self.sharing.alive()) {
                return Err(format!("{e}; {}", self.log_tails()));
            }
            if tokio::net::TcpStream::connect(self.gateway_addr)
                .await
                .is_ok()
            {
                let mut api = Api::Gateway(member_client(&self.layout, "us-bob").await);
                // NOT_FOUND comes from the sharing service: the whole path works.
                match api.get(&uuid::Uuid::new_v4().to_string()).await {
                    Err(s) if s.code() == tonic::Code::NotFound => return Ok(()),
                    Ok(_) => return Ok(()),
                    Err(_) => {}
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the gateway and sharing processes did not become ready in 20 s; {}",
                    self.log_tails()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last lines each process logged, for error messages.
    fn log_tails(&self) -> String {
        ["gateway", "sharing"]
            .iter()
            .map(|name| {
                let text = std::fs::read_to_string(self._dir.path().join(format!("{name}.log")))
                    .unwrap_or_default();
                let lines: Vec<&str> = text.lines().rev().take(3).collect();
                format!(
                    "{name} log: {}",
                    lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// A member's connection to the gateway process.
    pub(crate) async fn api(&self, bundle: &str) -> Api {
        Api::Gateway(member_client(&self.layout, bundle).await)
    }

    /// Pins both server processes (every thread) to `cpus`.
    pub(crate) fn pin_servers(&self, cpus: &[usize]) -> Result<(), String> {
        crate::pin::pin_process(self.gateway.pid(), cpus)?;
        crate::pin::pin_process(self.sharing.pid(), cpus)
    }

    /// The gateway's resident memory in KiB.
    pub(crate) fn gateway_rss(&self) -> u64 {
        proc_kib(self.gateway.pid(), "VmRSS").unwrap_or(0)
    }

    /// The sharing service's resident memory in KiB.
    pub(crate) fn sharing_rss(&self) -> u64 {
        proc_kib(self.sharing.pid(), "VmRSS").unwrap_or(0)
    }
}
