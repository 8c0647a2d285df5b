#![allow(unsafe_code)] // one pre_exec hook; see `spawn`.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A private nats-server with JetStream for one test.
pub struct TestNats {
    child: Option<Child>,
    port: u16,
    store: tempfile::TempDir,
}

fn binary() -> PathBuf {
    std::env::var_os("WARDLINE_NATS_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("nats-server"))
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A free loopback port below the kernel's default ephemeral range
/// (32768–60999), for a server that must get its port back after a
/// restart: a port from the ephemeral range can meanwhile become the
/// source port of any outgoing connection on the machine.
pub fn stable_port() -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEED: AtomicU64 = AtomicU64::new(0);
    loop {
        let r = (uuid::Uuid::new_v4().as_u128() as u64) ^ SEED.fetch_add(7919, Ordering::Relaxed);
        let port = 20_000 + (r % 12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl TestNats {
    /// Starts a server on a free port and waits until it accepts connections.
    pub fn start() -> Self {
        let store = tempfile::tempdir().expect("temporary JetStream store");
        let mut nats = Self {
            child: None,
            port: stable_port(),
            store,
        };
        nats.spawn();
        nats
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL), keeping its store for [`Self::restart`].
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port and store.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(binary());
        cmd.args([
            "-a",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-js",
            "-sd",
        ])
        .arg(self.store.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe; it makes the
        // kernel kill the server when the test process dies, so a crashed or
        // timed-out test never leaves a server behind.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {:?} ({e}); set WARDLINE_NATS_SERVER_BIN or run scripts/test.sh",
                binary()
            )
        });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestNats {
    fn drop(&mut self) {
        self.kill();
    }
}
