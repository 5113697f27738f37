//! The child processes of a run: the `paywarden` nodes and a private `redis-server`.
//!
//! Every child is owned by a [`ChildProcess`], which kills it (SIGKILL) and reaps it when
//! dropped, so nothing outlives the run, even when the harness fails or a test panics half-way.
//! A hard kill (`kill -9`) is exactly what [`ChildProcess::kill`] does: `std::process::Child::kill`
//! sends SIGKILL on Unix.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// How long a node or Redis gets to answer after it was started.
const START_LIMIT: Duration = Duration::from_secs(60);
/// Starts tried before a node counts as broken (a start can fail while Redis is restarting).
const START_TRIES: u32 = 5;

/// A running child, killed and reaped on drop.
pub struct ChildProcess {
    name: String,
    child: std::process::Child,
}

impl ChildProcess {
    fn spawn(name: &str, command: &mut Command) -> anyhow::Result<Self> {
        let child = command
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("failed to start {name}"))?;
        Ok(Self {
            name: name.to_owned(),
            child,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        if let Err(err) = self.child.kill() {
            tracing::warn!(name = %self.name, error.message = %err, "kill failed (already exited?)");
        }
        if let Err(err) = self.child.wait() {
            tracing::warn!(name = %self.name, error.message = %err, "reaping failed");
        }
    }

    /// Whether the process has exited (and how).
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if self.exited().is_none() {
            self.kill();
        }
    }
}

/// A free TCP port on 127.0.0.1 (the OS picks it; it is released at once for the child).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("failed to find a free port")?;
    Ok(listener.local_addr().context("bound socket has no address")?.port())
}

/// An append-mode log file for a child's stdout and stderr (kept across restarts).
fn log_file(path: &Path) -> anyhow::Result<(Stdio, Stdio)> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("failed to open {}", path.display()))?;
    let second = file.try_clone().context("failed to share a log file")?;
    Ok((Stdio::from(file), Stdio::from(second)))
}

/// The workspace root (this crate lives in `tests/fault`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..")
}

/// The `paywarden` binary the nodes run.
///
/// `CARGO_BIN_EXE_paywarden` exists only inside the `paywarden` package, so the harness finds
/// the binary itself: `PAYWARDEN_BIN` when set; otherwise `target/<profile>/paywarden` next to
/// the running executable (`target/<profile>/` for the `paywarden-fault` binary,
/// `target/<profile>/deps/` for a test), as `cargo nextest run --workspace` leaves it (it
/// builds every binary before it runs a test). That binary is used when it is newer than every
/// source it is built from; when it is missing or older, the harness runs
/// `cargo build -p paywarden` with the same profile and target directory first, so a run never
/// tests a stale binary. (Not always building: a build of one package can unify features
/// differently from the workspace build and would recompile what the workspace just built.)
/// nextest runs tests only after its build finished, so no cargo lock is held then.
pub fn paywarden_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("PAYWARDEN_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().context("failed to find the running executable")?;
    let mut dir = exe.parent().context("the executable has no directory")?;
    if dir.file_name().is_some_and(|name| name == "deps") {
        dir = dir.parent().context("deps/ has no parent")?;
    }
    let profile_dir = dir.to_path_buf();
    let binary = profile_dir.join("paywarden");
    if built_after_sources(&binary) {
        return Ok(binary);
    }
    let target_dir = profile_dir.parent().context("the profile directory has no parent")?;
    let profile = match profile_dir.file_name().and_then(|name| name.to_str()) {
        Some("debug") => "dev".to_owned(),
        Some(name) => name.to_owned(),
        None => bail!("cannot tell the cargo profile from {}", profile_dir.display()),
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_owned());
    let mut command = Command::new(&cargo);
    // What cargo sets for the crate it runs (a test gets CARGO_MANIFEST_DIR, CARGO_PKG_*...)
    // must not reach this build: a build script that watches such a variable (ring's watches
    // CARGO_MANIFEST_DIR) would run again and rebuild everything above it.
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy();
        let set_for_a_crate = name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_BIN_")
            || matches!(
                name.as_ref(),
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "CARGO_RUSTC_CURRENT_DIR"
                    | "OUT_DIR"
            );
        if set_for_a_crate {
            command.env_remove(&key);
        }
    }
    let status = command
        .args(["build", "--quiet", "-p", "paywarden", "--bin", "paywarden", "--profile"])
        .arg(&profile)
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(workspace_root())
        .status()
        .with_context(|| format!("failed to run {cargo} build -p paywarden"))?;
    if !status.success() {
        bail!("cargo build -p paywarden --profile {profile} failed: {status}");
    }
    if !binary.exists() {
        bail!("{} does not exist after the build", binary.display());
    }
    Ok(binary)
}

/// Whether `binary` exists and is newer than every source of the `paywarden` binary (the
/// crates it is built from, the embedded configuration, the manifests and the lock file).
fn built_after_sources(binary: &Path) -> bool {
    let Ok(built) = std::fs::metadata(binary).and_then(|meta| meta.modified()) else {
        return false;
    };
    let root = workspace_root();
    let sources = [
        "src",
        "actors",
        "entities",
        "migration",
        "config",
        "Cargo.toml",
        "Cargo.lock",
    ];
    sources
        .iter()
        .all(|source| newest_change(&root.join(source)).is_some_and(|changed| changed <= built))
}

/// The latest modification time under `path` (a file, or a directory walked recursively).
fn newest_change(path: &Path) -> Option<std::time::SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    let mut newest = meta.modified().ok()?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).ok()? {
            let changed = newest_change(&entry.ok()?.path())?;
            newest = newest.max(changed);
        }
    }
    Some(newest)
}

/// One `paywarden` node: how to start it, and the running process when it runs.
pub struct Node {
    pub index: usize,
    pub port: u16,
    binary: PathBuf,
    env: Vec<(String, String)>,
    log: PathBuf,
    process: Option<ChildProcess>,
    http: reqwest::Client,
}

impl Node {
    pub fn new(
        index: usize,
        port: u16,
        binary: PathBuf,
        mut env: Vec<(String, String)>,
        log: PathBuf,
    ) -> anyhow::Result<Self> {
        // The same port at every restart: clients, notification URLs and sandbox code URLs
        // keep pointing at the node.
        env.push(("PAYWARDEN__SERVER__ADDR".to_owned(), format!("127.0.0.1:{port}")));
        Ok(Self {
            index,
            port,
            binary,
            env,
            log,
            process: None,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .context("failed to build an HTTP client")?,
        })
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(ChildProcess::pid)
    }

    /// Starts the process and waits until `/healthz` answers 200. A start that dies (Redis
    /// restarting at that moment, the port still held) is tried again.
    pub async fn start(&mut self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        for attempt in 1..=START_TRIES {
            let (stdout, stderr) = log_file(&self.log)?;
            let mut command = Command::new(&self.binary);
            // Nothing of the harness's own environment configures a node by accident.
            for (key, _) in std::env::vars_os() {
                if key.to_string_lossy().starts_with("PAYWARDEN") || key == "RUST_LOG" {
                    command.env_remove(key);
                }
            }
            command
                .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .current_dir(workspace_root())
                .stdout(stdout)
                .stderr(stderr);
            let mut process = ChildProcess::spawn(&format!("node {}", self.index), &mut command)?;
            let deadline = Instant::now() + START_LIMIT;
            loop {
                if let Some(status) = process.exited() {
                    tracing::warn!(node = self.index, attempt, %status, "node exited while starting; trying again");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    break;
                }
                let healthy = self
                    .http
                    .get(format!("{}/healthz", self.base_url()))
                    .send()
                    .await
                    .is_ok_and(|response| response.status().is_success());
                if healthy {
                    self.process = Some(process);
                    return Ok(started.elapsed());
                }
                if Instant::now() > deadline {
                    bail!(
                        "node {} did not answer /healthz within {START_LIMIT:?}; see {}",
                        self.index,
                        self.log.display()
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        bail!(
            "node {} failed to start {START_TRIES} times; see {}",
            self.index,
            self.log.display()
        )
    }

    /// Sends `signal` (`STOP` pauses the process as a stalled machine would, `CONT` resumes it).
    ///
    /// # Errors
    /// The node is not running, or `kill` failed.
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let pid = self
            .pid()
            .with_context(|| format!("node {} is not running", self.index))?;
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .context("failed to run kill")?;
        anyhow::ensure!(status.success(), "kill -{signal} {pid} failed: {status}");
        Ok(())
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }
}

/// A private `redis-server` (no persistence: a restart loses every key), so that restarting
/// it disturbs nothing but this run.
pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    log: PathBuf,
    process: Option<ChildProcess>,
}

impl RedisServer {
    pub async fn start(dir: &Path) -> anyhow::Result<Self> {
        let mut redis = Self {
            port: free_port()?,
            dir: dir.to_path_buf(),
            log: dir.join("redis.log"),
            process: None,
        };
        redis.launch().await?;
        Ok(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn launch(&mut self) -> anyhow::Result<()> {
        let (stdout, stderr) = log_file(&self.log)?;
        let mut command = Command::new("redis-server");
        command
            .args(["--bind", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(&self.dir)
            .stdout(stdout)
            .stderr(stderr);
        let mut process = ChildProcess::spawn("redis-server", &mut command)?;
        let deadline = Instant::now() + START_LIMIT;
        while self.command("PING").ok().as_deref() != Some("+PONG") {
            if let Some(status) = process.exited() {
                bail!("redis-server exited at start ({status}); see {}", self.log.display());
            }
            if Instant::now() > deadline {
                bail!("redis-server did not answer within {START_LIMIT:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.process = Some(process);
        Ok(())
    }

    /// `kill -9` and start again on the same port, empty.
    pub async fn kill_and_restart(&mut self) -> anyhow::Result<()> {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
        self.launch().await
    }

    /// One inline command, answered with the first line of the reply (`+PONG`, `:12`).
    pub fn command(&self, command: &str) -> anyhow::Result<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).context("redis is not answering")?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(format!("{command}\r\n").as_bytes())?;
        let mut reply = Vec::new();
        let mut byte = [0u8; 1];
        while stream.read(&mut byte)? == 1 {
            if byte[0] == b'\n' {
                break;
            }
            reply.push(byte[0]);
        }
        Ok(String::from_utf8_lossy(&reply).trim_end().to_owned())
    }

    /// The sum of `ZCARD` over `keys`.
    pub fn zcard_sum(&self, keys: &[String]) -> anyhow::Result<i64> {
        keys.iter().map(|key| self.zcard(key)).sum()
    }

    /// `ZCARD key` as a number.
    pub fn zcard(&self, key: &str) -> anyhow::Result<i64> {
        let reply = self.command(&format!("ZCARD {key}"))?;
        reply
            .strip_prefix(':')
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("unexpected ZCARD reply {reply:?}"))
    }
}

/// How long a Redis Cluster gets to report `cluster_state:ok` once its slots are assigned.
const CLUSTER_OK_LIMIT: Duration = Duration::from_secs(30);

/// A private three-master Redis Cluster (no replicas, no persistence), for running paywarden
/// with `redis.mode = "cluster"`: each master in its own directory on its own port (and its
/// own cluster bus port), the slots spread over them by `redis-cli --cluster create`.
/// Every master is killed when the cluster is dropped.
pub struct RedisCluster {
    /// The masters' client ports.
    pub ports: Vec<u16>,
    processes: Vec<ChildProcess>,
}

impl RedisCluster {
    /// Masters started.
    pub const MASTERS: usize = 3;

    /// Starts the masters, forms the cluster and waits until every master reports
    /// `cluster_state:ok`.
    ///
    /// # Errors
    /// A master that does not start, a failed `redis-cli --cluster create`, or a cluster that
    /// does not become ready in time.
    pub async fn start(dir: &Path) -> anyhow::Result<Self> {
        let mut cluster = Self {
            ports: Vec::new(),
            processes: Vec::new(),
        };
        for _ in 0..Self::MASTERS {
            let port = free_port()?;
            // The bus port is chosen too: the default (port + 10000) may be out of range for
            // an ephemeral port.
            let bus_port = free_port()?;
            let node_dir = dir.join(format!("redis-{port}"));
            std::fs::create_dir_all(&node_dir).with_context(|| format!("failed to create {}", node_dir.display()))?;
            let log = node_dir.join("redis.log");
            let (stdout, stderr) = log_file(&log)?;
            let mut command = Command::new("redis-server");
            command
                .args(["--bind", "127.0.0.1", "--port"])
                .arg(port.to_string())
                .args(["--cluster-enabled", "yes", "--cluster-port"])
                .arg(bus_port.to_string())
                .arg("--cluster-config-file")
                .arg(node_dir.join(format!("nodes-{port}.conf")))
                .args(["--save", "", "--appendonly", "no", "--dir"])
                .arg(&node_dir)
                .stdout(stdout)
                .stderr(stderr);
            let mut process = ChildProcess::spawn(&format!("redis-server (cluster) {port}"), &mut command)?;
            let deadline = Instant::now() + START_LIMIT;
            while redis_reply(port, "PING").ok().as_deref() != Some("+PONG") {
                if let Some(status) = process.exited() {
                    bail!(
                        "redis-server on {port} exited at start ({status}); see {}",
                        log.display()
                    );
                }
                if Instant::now() > deadline {
                    bail!("redis-server on {port} did not answer within {START_LIMIT:?}");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            cluster.ports.push(port);
            cluster.processes.push(process);
        }
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(cluster.ports.iter().map(|port| format!("127.0.0.1:{port}")))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .context("failed to run redis-cli --cluster create")?;
        if !created.status.success() {
            bail!(
                "redis-cli --cluster create failed ({}): {}{}",
                created.status,
                String::from_utf8_lossy(&created.stdout),
                String::from_utf8_lossy(&created.stderr)
            );
        }
        let deadline = Instant::now() + CLUSTER_OK_LIMIT;
        loop {
            let mut ready = true;
            for port in &cluster.ports {
                let info = redis_reply(*port, "CLUSTER INFO").unwrap_or_default();
                ready &= info.lines().any(|line| line.trim() == "cluster_state:ok");
            }
            if ready {
                return Ok(cluster);
            }
            if Instant::now() > deadline {
                bail!(
                    "the Redis Cluster on {:?} did not reach cluster_state:ok within {CLUSTER_OK_LIMIT:?}",
                    cluster.ports
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The seed list paywarden's `redis.url` takes in cluster mode:
    /// `redis://127.0.0.1:p1,redis://127.0.0.1:p2,redis://127.0.0.1:p3`.
    pub fn url(&self) -> String {
        self.ports
            .iter()
            .map(|port| format!("redis://127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `DBSIZE` of each master, in the order of [`RedisCluster::ports`].
    ///
    /// # Errors
    /// A master that does not answer, or an unexpected reply.
    pub fn dbsizes(&self) -> anyhow::Result<Vec<i64>> {
        self.ports.iter().map(|port| integer_reply(*port, "DBSIZE")).collect()
    }

    /// How many keys matching `pattern` each master holds (`KEYS`: a test's small key space
    /// only), in the order of [`RedisCluster::ports`].
    ///
    /// # Errors
    /// A master that does not answer, or an unexpected reply.
    pub fn count_keys(&self, pattern: &str) -> anyhow::Result<Vec<i64>> {
        self.ports
            .iter()
            .map(|port| {
                let reply = redis_reply(*port, &format!("KEYS {pattern}"))?;
                reply
                    .strip_prefix('*')
                    .and_then(|n| n.parse().ok())
                    .with_context(|| format!("unexpected KEYS reply {reply:?} from {port}"))
            })
            .collect()
    }

    /// One inline command to the master on `port`, answered as [`redis_reply`] does.
    ///
    /// # Errors
    /// The master does not answer.
    pub fn command(&self, port: u16, command: &str) -> anyhow::Result<String> {
        redis_reply(port, command)
    }
}

/// One inline command to the Redis server on `127.0.0.1:port`: the first line of the reply
/// (`+PONG`, `:12`, `*3` for an array), or a bulk string's whole content (`CLUSTER INFO`).
///
/// # Errors
/// The server does not answer, or the reply is cut off.
pub fn redis_reply(port: u16, command: &str) -> anyhow::Result<String> {
    let mut stream =
        TcpStream::connect(("127.0.0.1", port)).with_context(|| format!("redis on {port} is not answering"))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(format!("{command}\r\n").as_bytes())?;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while stream.read(&mut byte)? == 1 {
        if byte[0] == b'\n' {
            break;
        }
        line.push(byte[0]);
    }
    let line = String::from_utf8_lossy(&line).trim_end().to_owned();
    let Some(length) = line.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()) else {
        return Ok(line);
    };
    // A bulk string: its bytes, then CRLF.
    let mut bulk = vec![0u8; length.saturating_add(2)];
    stream
        .read_exact(&mut bulk)
        .with_context(|| format!("the reply to {command} from {port} was cut off"))?;
    bulk.truncate(length);
    Ok(String::from_utf8_lossy(&bulk).into_owned())
}

/// An integer reply (`:12`) as a number.
fn integer_reply(port: u16, command: &str) -> anyhow::Result<i64> {
    let reply = redis_reply(port, command)?;
    reply
        .strip_prefix(':')
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("unexpected {command} reply {reply:?} from {port}"))
}
