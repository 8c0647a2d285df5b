#![allow(unsafe_code)] // a pre_exec hook and signals to our own child; see below.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A service binary running as its own process, for crash tests: it can be
/// killed with SIGKILL (no shutdown code runs) and started again.
pub struct ServiceProcess {
    child: Option<Child>,
    log: std::path::PathBuf,
}

impl ServiceProcess {
    /// Starts `bin` with `envs`, logging to `log` (appended).
    ///
    /// The child gets SIGKILL when the *thread* that spawned it exits
    /// (`PR_SET_PDEATHSIG` follows the thread), so spawn from the test's
    /// own thread or a runtime worker, never from `spawn_blocking`, whose
    /// threads exit when idle.
    pub fn spawn(bin: &Path, envs: &[(String, String)], log: &Path) -> Self {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log handle"))
            .stderr(out);
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe; the service
        // dies with the test process, so no test leaves one running.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin:?}: {e}"));
        Self {
            child: Some(child),
            log: log.to_owned(),
        }
    }

    /// Waits until `GET /readyz` on `admin` answers 200.
    pub fn wait_ready(&mut self, admin: std::net::SocketAddr, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("service exited with {status}; log:\n{}", self.log_tail());
            }
            if http_status(admin, "/readyz") == Some(200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "service not ready in {secs}s; log:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: no graceful shutdown, exactly like a crash.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGSTOP: the process freezes (its sockets stay open, nothing it
    /// holds is released) until [`Self::resume`].
    pub fn suspend(&mut self) {
        self.signal(libc::SIGSTOP);
    }

    /// SIGCONT after [`Self::suspend`].
    pub fn resume(&mut self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&mut self, sig: libc::c_int) {
        let pid = self
            .pid()
            .and_then(|p| libc::pid_t::try_from(p).ok())
            .expect("the process runs");
        // SAFETY: sending a signal to our own child process, by its pid.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
    }

    /// SIGTERM, then wait up to `secs` for a clean exit; returns the exit code.
    pub fn terminate(&mut self, secs: u64) -> Option<i32> {
        let mut c = self.child.take()?;
        let pid = libc::pid_t::try_from(c.id()).ok()?;
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last lines of the log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn http_status(addr: std::net::SocketAddr, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.split_whitespace().nth(1)?.parse().ok()
}
