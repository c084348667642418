//! The load generator: N keep-alive HTTP/1.1 connections (hyper's client connection API), each
//! sending its requests one after another (the next as soon as the previous response is read),
//! for a fixed duration, recording every latency.
//!
//! It is meant to be cheap: requests are built from pre-made header values, a response body is
//! read and (for `/refresh`) parsed only as far as the load needs, and every connection runs as a
//! task on the caller's runtime (the bench uses a 1-thread runtime on its own OS thread).

use crate::stats::Latencies;
use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// `GET /account/whoami` path.
pub const WHOAMI_PATH: &str = "/_matrix/client/v3/account/whoami";
/// `POST /refresh` path.
pub const REFRESH_PATH: &str = "/_matrix/client/v3/refresh";
/// `POST /login` path.
pub const LOGIN_PATH: &str = "/_matrix/client/v3/login";
/// A password login of the mock's default user that asks for a refresh token.
const LOGIN_BODY: &[u8] = br#"{"type":"m.login.password","identifier":{"type":"m.id.user","user":"alice"},"password":"wonderland","refresh_token":true}"#;
/// The longest a batch of logins may take.
const LOGINS_TIMEOUT: Duration = Duration::from_secs(300);

/// What each connection sends.
#[derive(Clone, Debug)]
pub enum Load {
    /// `GET /account/whoami` with this access token on every connection.
    Whoami {
        /// The access token.
        token: String,
    },
    /// `POST /refresh` in a chain: connection `i` starts from `refresh_tokens[i]` and always
    /// sends the refresh token the previous response issued.
    Refresh {
        /// One session's refresh token per connection.
        refresh_tokens: Vec<String>,
    },
}

/// What one timed run measured.
#[derive(Debug)]
pub struct RunResult {
    /// Responses completed within the duration.
    pub requests: u64,
    /// The timed duration.
    pub elapsed: Duration,
    /// Every counted request's latency.
    pub latencies: Latencies,
    /// CPU time of the load generator's thread during the run.
    pub generator_cpu: Duration,
    /// CPU time of the whole process during the run (servers + generator).
    pub process_cpu: Duration,
}

impl RunResult {
    /// Requests per second.
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

#[derive(serde::Deserialize)]
struct Refreshed {
    refresh_token: String,
}

/// One request on a ready connection; returns the next refresh token for the refresh load.
async fn one(
    sender: &mut SendRequest<Full<Bytes>>,
    host: &HeaderValue,
    auth: Option<&HeaderValue>,
    refresh: Option<&str>,
) -> Result<Option<String>> {
    sender.ready().await?;
    let req = match refresh {
        None => {
            let mut b = Request::get(WHOAMI_PATH).header(HOST, host);
            if let Some(a) = auth {
                b = b.header(AUTHORIZATION, a);
            }
            b.body(Full::new(Bytes::new()))?
        }
        Some(rt) => {
            let body = format!("{{\"refresh_token\":\"{rt}\"}}");
            Request::post(REFRESH_PATH)
                .header(HOST, host)
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(Full::new(Bytes::from(body)))?
        }
    };
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        bail!("HTTP {status}: {}", String::from_utf8_lossy(&body));
    }
    match refresh {
        None => Ok(None),
        Some(_) => {
            let r: Refreshed = serde_json::from_slice(&body).context("refresh response")?;
            Ok(Some(r.refresh_token))
        }
    }
}

fn thread_cpu() -> Duration {
    cpu_of(nix::sys::resource::UsageWho::RUSAGE_THREAD)
}

/// CPU time (user + system) of `who`, zero if it cannot be read.
pub fn cpu_of(who: nix::sys::resource::UsageWho) -> Duration {
    match nix::sys::resource::getrusage(who) {
        Ok(u) => tv(u.user_time()) + tv(u.system_time()),
        Err(_) => Duration::ZERO,
    }
}

fn tv(t: nix::sys::time::TimeVal) -> Duration {
    Duration::from_secs(u64::try_from(t.tv_sec()).unwrap_or(0))
        + Duration::from_micros(u64::try_from(t.tv_usec()).unwrap_or(0))
}

/// Runs `load` against `addr` over `connections` connections for `duration`. Must be called on a
/// current-thread runtime (the generator's thread CPU is read with `RUSAGE_THREAD`).
/// The refresh load's chains continue from the tokens it ends with, which are written back.
pub async fn run(
    addr: SocketAddr,
    load: &mut Load,
    connections: usize,
    duration: Duration,
) -> Result<RunResult> {
    let host = HeaderValue::from_str(&addr.to_string())?;
    let mut senders = Vec::with_capacity(connections);
    for _ in 0..connections {
        senders.push(connect(addr).await?);
    }
    let auth = match load {
        Load::Whoami { token } => Some(HeaderValue::from_str(&format!("Bearer {token}"))?),
        Load::Refresh { refresh_tokens } => {
            if refresh_tokens.len() < connections {
                bail!(
                    "{} refresh sessions for {connections} connections",
                    refresh_tokens.len()
                );
            }
            None
        }
    };
    let cpu0 = (thread_cpu(), cpu_of(nix::sys::resource::UsageWho::RUSAGE_SELF));
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, mut sender) in senders.into_iter().enumerate() {
        let host = host.clone();
        let auth = auth.clone();
        let mut refresh = match load {
            Load::Refresh { refresh_tokens } => Some(std::mem::take(&mut refresh_tokens[i])),
            Load::Whoami { .. } => None,
        };
        tasks.spawn(async move {
            let mut lat = Vec::new();
            let mut count = 0u64;
            let mut error = None;
            loop {
                let t0 = Instant::now();
                if t0 >= deadline {
                    break;
                }
                match one(&mut sender, &host, auth.as_ref(), refresh.as_deref()).await {
                    Ok(next) => {
                        if next.is_some() {
                            refresh = next;
                        }
                    }
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                }
                let t1 = Instant::now();
                if t1 <= deadline {
                    count += 1;
                    lat.push(u32::try_from((t1 - t0).as_micros()).unwrap_or(u32::MAX));
                }
            }
            (i, count, lat, refresh, error)
        });
    }
    let mut requests = 0;
    let mut latencies = Latencies::default();
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        let (i, count, lat, refresh, error) = joined?;
        requests += count;
        latencies.extend(lat);
        if let (Load::Refresh { refresh_tokens }, Some(t)) = (&mut *load, refresh) {
            refresh_tokens[i] = t;
        }
        if first_error.is_none() {
            first_error = error;
        }
    }
    let elapsed = duration.min(start.elapsed());
    let cpu1 = (thread_cpu(), cpu_of(nix::sys::resource::UsageWho::RUSAGE_SELF));
    if let Some(e) = first_error {
        return Err(e.context("a request failed"));
    }
    Ok(RunResult {
        requests,
        elapsed,
        latencies,
        generator_cpu: cpu1.0.saturating_sub(cpu0.0),
        process_cpu: cpu1.1.saturating_sub(cpu0.1),
    })
}

#[derive(serde::Deserialize)]
struct LoggedIn {
    access_token: String,
    refresh_token: Option<String>,
}

/// A session's tokens as a login issued them.
#[derive(Clone, Debug)]
pub struct Tokens {
    /// The access token.
    pub access: String,
    /// The refresh token.
    pub refresh: String,
}

/// `n` password logins (with refresh tokens) against `addr` over `connections` keep-alive
/// connections, each sending its share one after another; returns the tokens of the first
/// `keep` (the others are dropped as they arrive, so that a memory measurement sees the
/// server's growth and not the generator's). Bounded by [`LOGINS_TIMEOUT`].
pub async fn logins(addr: SocketAddr, n: usize, connections: usize, keep: usize) -> Result<Vec<Tokens>> {
    let all = async {
        let host = HeaderValue::from_str(&addr.to_string())?;
        let connections = connections.clamp(1, n.max(1));
        let mut tasks = tokio::task::JoinSet::new();
        for c in 0..connections {
            let count = n / connections + usize::from(c < n % connections);
            let keep_here = keep / connections + usize::from(c < keep % connections);
            let mut sender = connect(addr).await?;
            let host = host.clone();
            tasks.spawn(async move {
                let mut kept = Vec::with_capacity(keep_here.min(count));
                for _ in 0..count {
                    sender.ready().await?;
                    let req = Request::post(LOGIN_PATH)
                        .header(HOST, &host)
                        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                        .body(Full::new(Bytes::from_static(LOGIN_BODY)))?;
                    let resp = sender.send_request(req).await?;
                    let status = resp.status();
                    let body = resp.into_body().collect().await?.to_bytes();
                    if !status.is_success() {
                        bail!("login: HTTP {status}: {}", String::from_utf8_lossy(&body));
                    }
                    if kept.len() < keep_here {
                        let l: LoggedIn = serde_json::from_slice(&body).context("login response")?;
                        kept.push(Tokens {
                            access: l.access_token,
                            refresh: l.refresh_token.context("the login issued no refresh token")?,
                        });
                    }
                }
                Ok::<_, anyhow::Error>(kept)
            });
        }
        let mut out = Vec::with_capacity(keep);
        while let Some(joined) = tasks.join_next().await {
            out.extend(joined??);
        }
        Ok::<_, anyhow::Error>(out)
    };
    tokio::time::timeout(LOGINS_TIMEOUT, all)
        .await
        .map_err(|_| anyhow::anyhow!("{n} logins took longer than {LOGINS_TIMEOUT:?}"))?
}

/// One whoami over a fresh connection; for the start-up measurement.
pub async fn whoami_once(addr: SocketAddr, token: &str) -> Result<()> {
    let mut sender = connect(addr).await?;
    let host = HeaderValue::from_str(&addr.to_string())?;
    let auth = HeaderValue::from_str(&format!("Bearer {token}"))?;
    one(&mut sender, &host, Some(&auth), None).await?;
    Ok(())
}

/// A full read of the trace through `GET /_rotary/trace`, page by page, while another thread
/// asks `/versions` every millisecond: how long the dump took and how long `/versions` waited.
#[derive(Debug)]
pub struct DumpResult {
    /// Pages read.
    pub pages: usize,
    /// Entries read.
    pub entries: usize,
    /// Bytes of JSON read.
    pub bytes: usize,
    /// Time of the whole dump.
    pub elapsed: Duration,
    /// `/versions` answers during the dump.
    pub probes: usize,
    /// Their latencies.
    pub versions: Latencies,
    /// The slowest of them.
    pub versions_max: Duration,
}

#[derive(serde::Deserialize)]
struct Page {
    next_after: u64,
    more: bool,
    trace: Vec<serde::de::IgnoredAny>,
}

async fn get(sender: &mut SendRequest<Full<Bytes>>, host: &HeaderValue, path: &str) -> Result<Bytes> {
    sender.ready().await?;
    let req = Request::get(path)
        .header(HOST, host)
        .body(Full::new(Bytes::new()))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        bail!("GET {path}: HTTP {status}");
    }
    Ok(body)
}

/// Probes `/versions` on its own thread and runtime (so that parsing pages here cannot delay its
/// clock) until `stop`; returns the latencies.
fn probe_versions(
    addr: SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Result<(Latencies, Duration, usize)>> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let host = HeaderValue::from_str(&addr.to_string())?;
            let mut sender = connect(addr).await?;
            let mut samples = Vec::new();
            let mut max = Duration::ZERO;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t0 = Instant::now();
                get(&mut sender, &host, "/_matrix/client/versions").await?;
                let took = t0.elapsed();
                max = max.max(took);
                samples.push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let n = samples.len();
            let mut lat = Latencies::default();
            lat.extend(samples);
            Ok((lat, max, n))
        })
    })
}

/// Reads the whole trace of the server at `addr`, `limit` entries a page, while probing
/// `/versions`.
pub async fn dump_while_probing(addr: SocketAddr, limit: usize) -> Result<DumpResult> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probe = probe_versions(addr, stop.clone());
    // Let the probe connect and settle first.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let host = HeaderValue::from_str(&addr.to_string())?;
    let mut sender = connect(addr).await?;
    let (mut after, mut pages, mut entries, mut bytes) = (0, 0, 0, 0);
    let t0 = Instant::now();
    loop {
        let body = get(
            &mut sender,
            &host,
            &format!("/_rotary/trace?after={after}&limit={limit}"),
        )
        .await?;
        let page: Page = serde_json::from_slice(&body).context("a trace page")?;
        pages += 1;
        entries += page.trace.len();
        bytes += body.len();
        after = page.next_after;
        if !page.more {
            break;
        }
    }
    let elapsed = t0.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (versions, versions_max, probes) = probe
        .join()
        .map_err(|_| anyhow::anyhow!("the /versions probe panicked"))??;
    Ok(DumpResult {
        pages,
        entries,
        bytes,
        elapsed,
        probes,
        versions,
        versions_max,
    })
}
