//! A real SMTP server on a loopback port for tests: it speaks enough of
//! RFC 5321 for a client library (EHLO, MAIL, RCPT, DATA with dot
//! unstuffing, RSET, NOOP, QUIT), keeps what it accepted, and can be told
//! to refuse the next messages with a reply code or to answer slowly.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// A message the server accepted.
#[derive(Debug, Clone)]
pub struct Mail {
    /// Envelope sender.
    pub from: String,
    /// Envelope recipients.
    pub to: Vec<String>,
    /// The message (headers and body), dot-unstuffed.
    pub data: String,
}

impl Mail {
    /// The value of header `name` (first occurrence, case-insensitive).
    pub fn header(&self, name: &str) -> Option<String> {
        self.data.split("\r\n\r\n").next()?.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

#[derive(Default)]
struct State {
    accepted: Vec<Mail>,
    /// Reply codes for the next messages' end of DATA (refusing them).
    refuse: Vec<u16>,
    /// Messages refused so far.
    refused: usize,
    delay: Duration,
}

/// The server; stops when dropped.
pub struct TestSmtp {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestSmtp {
    /// Starts on a free loopback port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind SMTP");
        let addr = listener.local_addr().expect("SMTP address");
        let state: Arc<Mutex<State>> = Arc::default();
        let s = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(session(sock, s.clone()));
            }
        });
        Self { addr, state, task }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Messages accepted so far, in order.
    pub fn messages(&self) -> Vec<Mail> {
        self.lock().accepted.clone()
    }

    /// Messages refused so far.
    pub fn refused(&self) -> usize {
        self.lock().refused
    }

    /// Refuses the next messages with these reply codes (e.g. `[451, 451]`).
    pub fn refuse_next(&self, codes: &[u16]) {
        self.lock().refuse.extend_from_slice(codes);
    }

    /// Waits this long before answering the end of DATA.
    pub fn set_delay(&self, d: Duration) {
        self.lock().delay = d;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for TestSmtp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn address(arg: &str) -> String {
    let start = arg.find('<').map_or(0, |i| i + 1);
    let end = arg[start..].find('>').map_or(arg.len(), |i| start + i);
    arg[start..end].to_owned()
}

async fn session(sock: tokio::net::TcpStream, state: Arc<Mutex<State>>) {
    let (read, mut write) = sock.into_split();
    let mut lines = BufReader::new(read);
    let lock = || state.lock().unwrap_or_else(|e| e.into_inner());
    if write
        .write_all(b"220 wardline-test ESMTP\r\n")
        .await
        .is_err()
    {
        return;
    }
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        match lines.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let cmd = line.trim_end();
        let upper = cmd.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") {
            "250-wardline-test\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n".into()
        } else if upper.starts_with("HELO") {
            "250 wardline-test\r\n".into()
        } else if upper.starts_with("MAIL FROM:") {
            from = address(&cmd[10..]);
            to.clear();
            "250 2.1.0 OK\r\n".into()
        } else if upper.starts_with("RCPT TO:") {
            to.push(address(&cmd[8..]));
            "250 2.1.5 OK\r\n".into()
        } else if upper == "DATA" {
            if write
                .write_all(b"354 end with <CRLF>.<CRLF>\r\n")
                .await
                .is_err()
            {
                return;
            }
            let mut data = String::new();
            loop {
                line.clear();
                match lines.read_line(&mut line).await {
                    Ok(0) | Err(_) => return, // client went away: nothing accepted
                    Ok(_) => {}
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                data.push_str(line.strip_prefix('.').unwrap_or(&line));
            }
            let delay = lock().delay;
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let mut st = lock();
            if st.refuse.is_empty() {
                st.accepted.push(Mail {
                    from: from.clone(),
                    to: to.clone(),
                    data,
                });
                "250 2.0.0 queued\r\n".into()
            } else {
                let code = st.refuse.remove(0);
                st.refused += 1;
                format!("{code} refused by the test server\r\n")
            }
        } else if upper == "RSET" || upper == "NOOP" {
            "250 OK\r\n".into()
        } else if upper == "QUIT" {
            let _ = write.write_all(b"221 bye\r\n").await;
            return;
        } else {
            "502 command not implemented\r\n".into()
        };
        if write.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}
