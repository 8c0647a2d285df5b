//! A private PostgreSQL cluster for one test, for faults that must not touch
//! the shared server (an immediate restart under load).
//!
//! What must hold:
//! - The cluster lives in a temporary directory on a free loopback port and
//!   is stopped and removed when dropped, also when the test panics. If the
//!   test process is killed outright (a nextest timeout), a guardian `sh`
//!   that holds the read end of a pipe from this process sees it close and
//!   stops the cluster, so no postmaster outlives its test.
//! - `initdb` refuses to run as root: as root every PostgreSQL program runs
//!   as `postgres` through `runuser`, and the directory is handed to that user.
//! - The binaries come from `WARDLINE_PG_BIN_DIR`, else the newest
//!   `/usr/lib/postgresql/<version>/bin`, else `pg_config --bindir`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::TestDb;

/// A PostgreSQL cluster of its own, started with `pg_ctl`.
pub struct TestPgCluster {
    dir: tempfile::TempDir,
    port: u16,
    bin: PathBuf,
    as_postgres: bool,
    guardian: Option<Child>,
    /// Server options that turn TLS on (empty without TLS).
    tls_opts: String,
}

fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("WARDLINE_PG_BIN_DIR") {
        return PathBuf::from(d);
    }
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .max_by_key(|(v, _)| *v)
        .map(|(_, bin)| bin);
    if let Some(bin) = newest {
        return bin;
    }
    let out = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .expect("no PostgreSQL binaries: set WARDLINE_PG_BIN_DIR or install postgresql");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    #[allow(unsafe_code)]
    unsafe {
        libc::geteuid() == 0
    }
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl TestPgCluster {
    /// Creates and starts a cluster (trust authentication, superuser
    /// `postgres`, loopback only) and waits until it accepts connections.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// [`Self::start`] with `ssl=on`, presenting `cert` and `key` (PEM
    /// files), and refusing connections without TLS (`hostnossl ... reject`):
    /// a database as production runs it, for `sslmode=verify-full` tests.
    pub fn start_tls(cert: &Path, key: &Path) -> Self {
        Self::start_with(Some((cert, key)))
    }

    fn start_with(tls: Option<(&Path, &Path)>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("wardline-pg-")
            .tempdir()
            .expect("temporary cluster directory");
        let as_postgres = is_root();
        if as_postgres {
            let ok = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path())
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "cannot hand {:?} to user postgres", dir.path());
        }
        let mut cluster = Self {
            dir,
            port: crate::stable_port(),
            bin: bin_dir(),
            as_postgres,
            guardian: None,
            tls_opts: String::new(),
        };
        let data = cluster.data();
        cluster.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        if let Some((cert, key)) = tls {
            cluster.tls_opts = cluster.enable_tls(cert, key);
        }
        cluster.start_server();
        cluster.guard();
        cluster
    }

    fn start_server(&self) {
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories={} \
             -c max_connections=200 -c fsync=off -c full_page_writes=off \
             -c shared_buffers=32MB -c log_min_messages=warning",
            self.port,
            self.dir.path().display()
        );
        let opts = format!("{opts}{}", self.tls_opts);
        let (data, log) = (self.data(), self.log());
        self.run(
            "pg_ctl",
            &[
                "-D", &data, "-l", &log, "-w", "-t", "60", "-o", &opts, "start",
            ],
        );
    }

    /// `pg_ctl stop -m immediate`: the server is gone (as in a crash) until
    /// [`Self::start_again`]; connections are refused meanwhile.
    pub fn stop_immediate(&self) {
        let data = self.data();
        self.run("pg_ctl", &["-D", &data, "-w", "-m", "immediate", "stop"]);
    }

    /// Starts a stopped server again on the same port and data; returns once
    /// it accepts connections.
    pub fn start_again(&self) {
        self.start_server();
    }

    /// Copies the server's certificate and key into the cluster (the key
    /// owned by the server's user, 0600, as PostgreSQL demands), puts
    /// `hostnossl ... reject` first in `pg_hba.conf`, and returns the
    /// server options that turn TLS on.
    fn enable_tls(&self, cert: &Path, key: &Path) -> String {
        let (cert_to, key_to) = (
            self.dir.path().join("server.crt"),
            self.dir.path().join("server.key"),
        );
        std::fs::copy(cert, &cert_to).expect("copy server certificate");
        std::fs::copy(key, &key_to).expect("copy server key");
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&key_to, std::fs::Permissions::from_mode(0o600))
                .expect("key mode");
        }
        let hba = self.dir.path().join("data").join("pg_hba.conf");
        let rest = std::fs::read_to_string(&hba).expect("pg_hba.conf");
        std::fs::write(
            &hba,
            format!("hostnossl all all 0.0.0.0/0 reject\nhostnossl all all ::/0 reject\n{rest}"),
        )
        .expect("write pg_hba.conf");
        if self.as_postgres {
            for f in [&cert_to, &key_to, &hba] {
                let ok = Command::new("chown")
                    .arg("postgres:postgres")
                    .arg(f)
                    .status()
                    .is_ok_and(|s| s.success());
                assert!(ok, "cannot hand {f:?} to user postgres");
            }
        }
        format!(
            " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
            cert_to.display(),
            key_to.display()
        )
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`: a superuser URL.
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A fresh database on this cluster.
    pub async fn create_db(&self, prefix: &str) -> TestDb {
        TestDb::create_on(&self.admin_url(), prefix).await
    }

    /// `pg_ctl restart -m immediate`: every backend dies without a
    /// checkpoint (as in a crash), the server recovers from its WAL and
    /// accepts connections again on the same port. Returns once it does.
    pub fn restart_immediate(&self) {
        let (data, log) = (self.data(), self.log());
        self.run(
            "pg_ctl",
            &[
                "-D",
                &data,
                "-l",
                &log,
                "-w",
                "-t",
                "60",
                "-m",
                "immediate",
                "restart",
            ],
        );
    }

    /// The server log (for a failing test's message).
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn log(&self) -> String {
        self.dir.path().join("server.log").display().to_string()
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn run(&self, program: &str, args: &[&str]) {
        let out = self
            .command(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program} from {:?}: {e}", self.bin));
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}{}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log_tail()
        );
    }

    /// Starts the guardian: it waits for its stdin (our pipe) to close, which
    /// happens when this value is dropped or this process dies, and then
    /// stops the cluster.
    fn guard(&mut self) {
        let mut stop = format!(
            "{} -D {} -m immediate -w stop",
            quote(&self.bin.join("pg_ctl").display().to_string()),
            quote(&self.data())
        );
        if self.as_postgres {
            stop = format!("runuser -u postgres -- {stop}");
        }
        let guardian = Command::new("sh")
            .arg("-c")
            .arg(format!("cat >/dev/null; {stop} >/dev/null 2>&1"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the cluster's guardian");
        self.guardian = Some(guardian);
    }

    /// The directory the cluster lives in.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TestPgCluster {
    fn drop(&mut self) {
        if let Some(mut g) = self.guardian.take() {
            drop(g.stdin.take());
            let _ = g.wait();
        }
    }
}
