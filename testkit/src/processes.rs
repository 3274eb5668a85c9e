//! The real-process harness: child processes killed when dropped (the test
//! passing or not), whose first stdout line says where they listen; free
//! loopback ports; and waiting on a condition with a deadline.

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, anyhow};
use tokio::time::Instant;

/// How long a process has to print its first line.
const STARTUP: Duration = Duration::from_secs(30);

/// A child process, killed when dropped.
#[derive(Debug)]
pub struct Process {
    child: Child,
    /// The first line it printed on stdout, trimmed.
    pub first_line: String,
}

impl Process {
    /// Starts `command` (stdout piped, stderr inherited) and waits for its first stdout line.
    pub fn start(command: Command) -> Self {
        Self::try_start(command).unwrap_or_else(|error| panic!("{error:#}"))
    }

    /// As `start`, its stderr (its log) written to `log`.
    pub fn start_logging_to(mut command: Command, log: &std::path::Path) -> Self {
        let file =
            std::fs::File::create(log).unwrap_or_else(|error| panic!("cannot create {}: {error}", log.display()));
        command.stderr(file);
        Self::try_start_with(command).unwrap_or_else(|error| panic!("{error:#}"))
    }

    /// As `start`, with an error instead of a panic.
    pub fn try_start(mut command: Command) -> anyhow::Result<Self> {
        command.stderr(Stdio::inherit());
        Self::try_start_with(command)
    }

    fn try_start_with(mut command: Command) -> anyhow::Result<Self> {
        let what = format!("{command:?}");
        let mut child = command.stdout(Stdio::piped()).spawn().with_context(|| format!("cannot start {what}"))?;
        let stdout = child.stdout.take().with_context(|| format!("{what}: stdout is not piped"))?;
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = sender.send(line);
            // Keep reading, so that the child never blocks on a full pipe.
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let mut process = Self { child, first_line: String::new() };
        let line = receiver.recv_timeout(STARTUP).map_err(|_| anyhow!("{what} printed nothing in {STARTUP:?}"))?;
        process.first_line = line.trim().to_string();
        Ok(process)
    }

    /// Its operating-system process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops it now (SIGKILL: a crash, as far as it knows).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Ports handed out by this process: never twice.
static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());
/// Below Linux's ephemeral range (32768 and up by default): a port the OS picked for us
/// could be picked again for another socket, or for an outgoing connection, before the
/// process it is meant for binds it.
const PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A free port on loopback, for a process to bind later: outside the ephemeral range,
/// free when chosen, and never handed out twice by this process.
pub fn free_port() -> u16 {
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    for _ in 0..10_000 {
        let port = rand::random_range(PORTS);
        if !handed_out.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.insert(port);
            return port;
        }
    }
    panic!("no free port in {PORTS:?}")
}

/// Waits until `condition` holds, checking every 50 ms; panics naming `what` at the deadline.
pub async fn wait_until<F, Fut>(what: &str, deadline: Duration, condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    try_wait_until(what, deadline, condition).await.unwrap_or_else(|error| panic!("{error}"));
}

/// As `wait_until`, with an error naming `what` at the deadline instead of a panic.
pub async fn try_wait_until<F, Fut>(what: &str, deadline: Duration, mut condition: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let until = Instant::now() + deadline;
    let mut poll = tokio::time::interval(Duration::from_millis(50));
    while !condition().await {
        anyhow::ensure!(Instant::now() < until, "timed out after {deadline:?} waiting until {what}");
        poll.tick().await;
    }
    Ok(())
}
