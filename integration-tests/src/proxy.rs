//! A TCP proxy in front of an S3 server, started by a test, to see and
//! shape what crosses the wire:
//!
//! * it records every HTTP request (method, path, conditional headers), so
//!   a test can assert which requests shoplake makes (no DELETE, one
//!   probe per table);
//! * it can serve responses slowly (a byte rate), or stop serving them
//!   (a stalled connection);
//! * it can hold back a request until the test releases it, so a test can
//!   change the store between two requests of one run.
//!
//! Requests are parsed as HTTP/1.1 with a Content-Length (what object_store
//! sends); anything else on a connection is forwarded unparsed and counted.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request seen by the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub if_none_match: bool,
    pub if_match: bool,
    /// A ranged GET (`Range:`).
    pub range: bool,
}

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<Seen>>,
    /// Server-to-client bytes per second; 0 is unlimited.
    rate: AtomicU64,
    stalled: AtomicBool,
    /// Hold the first request whose method and path match: (method, path fragment).
    hold: Mutex<Option<(String, String)>>,
    held: AtomicBool,
    released: AtomicBool,
    unparsed: AtomicU64,
}

/// A running proxy; it stops when dropped.
pub struct Proxy {
    pub endpoint: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    /// Starts a proxy to `upstream` (`http://host:port`).
    pub async fn start(upstream: &str) -> Proxy {
        let target: SocketAddr =
            upstream.trim_start_matches("http://").trim_end_matches('/').parse().expect("an http://ip:port endpoint");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a local port");
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared::default());
        let accept = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let shared = accept.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(target).await {
                        let _ = client.set_nodelay(true);
                        relay(client, server, shared).await;
                    }
                });
            }
        });
        Proxy { endpoint, shared, task }
    }

    /// Serve responses at most this fast (bytes per second; 0: unlimited).
    pub fn throttle(&self, bytes_per_second: u64) {
        self.shared.rate.store(bytes_per_second, Ordering::SeqCst);
    }

    /// Stop (or resume) passing responses on, without closing connections.
    pub fn stall(&self, stalled: bool) {
        self.shared.stalled.store(stalled, Ordering::SeqCst);
    }

    /// Hold the next `method` request whose path contains `fragment` until [`Proxy::release`].
    pub fn hold(&self, method: &str, fragment: &str) {
        *self.shared.hold.lock().unwrap() = Some((method.to_string(), fragment.to_string()));
        self.shared.held.store(false, Ordering::SeqCst);
        self.shared.released.store(false, Ordering::SeqCst);
    }

    /// Waits until the held request has arrived.
    pub async fn wait_held(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.shared.held.load(Ordering::SeqCst) {
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    pub fn release(&self) {
        self.shared.released.store(true, Ordering::SeqCst);
    }

    /// Every request seen so far.
    pub fn requests(&self) -> Vec<Seen> {
        self.shared.requests.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.shared.requests.lock().unwrap().clear();
    }

    /// Connections whose requests could not be parsed (then forwarded as is).
    pub fn unparsed(&self) -> u64 {
        self.shared.unparsed.load(Ordering::SeqCst)
    }
}

async fn relay(client: TcpStream, server: TcpStream, shared: Arc<Shared>) {
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let upstream = tokio::spawn(requests(client_read, server_write, shared.clone()));
    let downstream = tokio::spawn(responses(server_read, client_write, shared));
    let _ = tokio::join!(upstream, downstream);
}

/// Client to server: parse and record each request, hold it if asked.
async fn requests(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    shared: Arc<Shared>,
) {
    let mut buffer: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        // The header block of the next request.
        let header_end = loop {
            if let Some(at) = find(&buffer, b"\r\n\r\n") {
                break at + 4;
            }
            match from.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buffer[..header_end]).into_owned();
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next().unwrap_or_default().split(' ');
        let (method, path) =
            (request_line.next().unwrap_or_default().to_string(), request_line.next().unwrap_or_default().to_string());
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        if header("transfer-encoding").is_some() {
            // Not what object_store sends: forward the rest unparsed.
            shared.unparsed.fetch_add(1, Ordering::SeqCst);
            let _ = to.write_all(&buffer).await;
            let _ = tokio::io::copy(&mut from, &mut to).await;
            return;
        }
        let length: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        let seen = Seen {
            method: method.clone(),
            path: path.clone(),
            if_none_match: header("if-none-match").is_some(),
            if_match: header("if-match").is_some(),
            range: header("range").is_some(),
        };
        shared.requests.lock().unwrap().push(seen);
        let matches_hold =
            shared.hold.lock().unwrap().as_ref().is_some_and(|(m, f)| *m == method && path.contains(f.as_str()));
        if matches_hold && !shared.held.load(Ordering::SeqCst) {
            shared.held.store(true, Ordering::SeqCst);
            while !shared.released.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            *shared.hold.lock().unwrap() = None;
        }
        // The header block and the body.
        let request_end = header_end + length;
        while buffer.len() < request_end {
            match from.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
        if to.write_all(&buffer[..request_end]).await.is_err() {
            return;
        }
        buffer.drain(..request_end);
    }
}

/// Server to client: pass responses on, at the configured rate.
async fn responses(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    shared: Arc<Shared>,
) {
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        while shared.stalled.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let rate = shared.rate.load(Ordering::SeqCst);
        let size = if rate == 0 { chunk.len() } else { chunk.len().min((rate / 20).max(1) as usize) };
        let n = match from.read(&mut chunk[..size]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if to.write_all(&chunk[..n]).await.is_err() {
            return;
        }
        if rate > 0 {
            tokio::time::sleep(Duration::from_secs_f64(n as f64 / rate as f64)).await;
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
