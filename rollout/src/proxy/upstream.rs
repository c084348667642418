//! The upstream side: the homeserver URL (and the OAuth issuer origins learned from discovery),
//! the pooled HTTP/1.1 client (rustls for `https://`), and the header hygiene of a reverse proxy.

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// A request or response body as the proxy passes it on.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;
/// An error from a body stream.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A bad `--upstream`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UpstreamError {
    /// Not a URL.
    #[error("--upstream {0:?} is not a URL: {1}")]
    NotAUrl(String, String),
    /// Not http or https.
    #[error("--upstream {0:?}: the scheme must be http or https")]
    Scheme(String),
    /// A path, query or credentials that a base URL cannot have.
    #[error(
        "--upstream {0:?}: give the homeserver's base URL (scheme, host and port only), e.g. https://matrix.example.org"
    )]
    NotABase(String),
}

/// An origin the proxy forwards to: scheme, host and port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// `http` or `https`.
    pub scheme: String,
    /// Host and port as in a URL authority (`matrix.example.org`, `127.0.0.1:8008`).
    pub authority: String,
}

impl Origin {
    /// Parses a base URL (`https://host[:port]`, an optional trailing `/`).
    ///
    /// ```
    /// use rotary_rollout::proxy::upstream::Origin;
    /// let o = Origin::parse("https://matrix.example.org/").unwrap();
    /// assert_eq!(o.to_string(), "https://matrix.example.org");
    /// assert!(Origin::parse("ftp://x").is_err());
    /// assert!(Origin::parse("https://x/_matrix").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Origin, UpstreamError> {
        let url =
            url::Url::parse(text).map_err(|e| UpstreamError::NotAUrl(text.to_owned(), e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(UpstreamError::Scheme(text.to_owned()));
        }
        if url.path() != "/"
            || url.query().is_some()
            || url.fragment().is_some()
            || !url.username().is_empty()
        {
            return Err(UpstreamError::NotABase(text.to_owned()));
        }
        let Some(host) = url.host_str() else {
            return Err(UpstreamError::NotABase(text.to_owned()));
        };
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        };
        Ok(Origin {
            scheme: url.scheme().to_owned(),
            authority,
        })
    }

    /// The origin of an absolute URL, if it is http(s).
    pub fn of_url(text: &str) -> Option<(Origin, String)> {
        let url = url::Url::parse(text).ok()?;
        if !matches!(url.scheme(), "http" | "https") {
            return None;
        }
        let host = url.host_str()?;
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        };
        let mut rest = url.path().to_owned();
        if let Some(q) = url.query() {
            rest.push('?');
            rest.push_str(q);
        }
        Some((
            Origin {
                scheme: url.scheme().to_owned(),
                authority,
            },
            rest,
        ))
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.scheme, self.authority)
    }
}

/// The pooled client to the upstream(s).
pub type UpstreamClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, ProxyBody>;

/// The TLS provider: *ring* (no C toolchain beyond cc; aws-lc-rs needs cmake). Its lack of
/// post-quantum key exchange does not matter for a test proxy.
#[allow(deprecated)]
pub fn tls_provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the client: keep-alive pool, TLS with the system's roots for `https://` upstreams.
pub fn client(connect_timeout: Duration) -> std::io::Result<UpstreamClient> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let tls = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(tls_provider())?
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(tls))
}

/// Headers that belong to one hop (RFC 9110 §7.6.1) and are never forwarded.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers, including those the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(n);
    }
}

/// Prepares a client's request headers for the upstream: hop-by-hop headers out, `Host` set by
/// the client from the upstream URL, `X-Forwarded-*` added.
pub fn forward_headers(headers: &mut HeaderMap, peer: Option<std::net::IpAddr>, proto: &str) {
    strip_hop_by_hop(headers);
    let original_host = headers.remove(header::HOST);
    if let Some(ip) = peer {
        let value = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(prior) => format!("{prior}, {ip}"),
            None => ip.to_string(),
        };
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert("x-forwarded-for", v);
        }
    }
    headers.insert(
        "x-forwarded-proto",
        HeaderValue::from_static(if proto == "https" { "https" } else { "http" }),
    );
    if let Some(h) = original_host {
        headers.insert("x-forwarded-host", h);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_upstreams_name_the_flag() {
        for bad in [
            "not a url",
            "ftp://x",
            "https://x/path",
            "https://u:p@x",
            "https://x/?q=1",
        ] {
            let e = Origin::parse(bad).unwrap_err();
            assert!(e.to_string().contains("--upstream"), "{e}");
        }
        assert_eq!(
            Origin::parse("http://127.0.0.1:8008").unwrap().authority,
            "127.0.0.1:8008"
        );
    }

    #[test]
    fn hop_by_hop_headers_do_not_pass() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        h.insert(header::HOST, HeaderValue::from_static("proxy:1"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        forward_headers(&mut h, Some(std::net::Ipv4Addr::LOCALHOST.into()), "http");
        assert!(h.get("x-secret").is_none() && h.get(header::CONNECTION).is_none());
        assert!(h.get(header::TRANSFER_ENCODING).is_none() && h.get(header::HOST).is_none());
        assert_eq!(h["x-forwarded-host"], "proxy:1");
        assert_eq!(h["x-forwarded-for"], "127.0.0.1");
        assert_eq!(h[header::AUTHORIZATION], "Bearer t");
    }
}
