//! A real HTTP/1.1 receiver on a loopback port for tests (webhook
//! endpoints, SMS gateways, pager providers): it keeps every request it
//! received and answers with scripted statuses (e.g. 503, 503, then 200).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
    /// The status it was answered with.
    pub status: u16,
}

impl Received {
    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

struct State {
    received: Vec<Received>,
    script: Vec<u16>,
    default: u16,
    delay: Duration,
}

/// The receiver; stops when dropped.
pub struct HttpSink {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl HttpSink {
    /// Starts on a free loopback port, answering 200 by default.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind HTTP");
        let addr = listener.local_addr().expect("HTTP address");
        let state = Arc::new(Mutex::new(State {
            received: Vec::new(),
            script: Vec::new(),
            default: 200,
            delay: Duration::ZERO,
        }));
        let s = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(connection(sock, s.clone()));
            }
        });
        Self { addr, state, task }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers the next requests with `statuses`, then with the default.
    pub fn respond_with(&self, statuses: &[u16]) {
        self.lock().script.extend_from_slice(statuses);
    }

    /// The status after the script runs out.
    pub fn set_default(&self, status: u16) {
        self.lock().default = status;
    }

    /// Waits this long before answering.
    pub fn set_delay(&self, d: Duration) {
        self.lock().delay = d;
    }

    /// Every request received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for HttpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn connection(sock: tokio::net::TcpStream, state: Arc<Mutex<State>>) {
    let (read, mut write) = sock.into_split();
    let mut reader = BufReader::new(read);
    let lock = || state.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let mut request_line = String::new();
        match reader.read_line(&mut request_line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).await.is_err() {
            return;
        }
        let delay = lock().delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let status = {
            let mut st = lock();
            let status = if st.script.is_empty() {
                st.default
            } else {
                st.script.remove(0)
            };
            st.received.push(Received {
                method,
                path,
                headers,
                body,
                status,
            });
            status
        };
        let reply = format!("HTTP/1.1 {status} Test\r\nContent-Length: 0\r\n\r\n");
        if write.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}
