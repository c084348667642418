//! Discovery rewriting, so clients stay behind the proxy: `/.well-known/matrix/client` answers the
//! proxy's base URL, and the OAuth server metadata (`auth_metadata`, an issuer's
//! `/.well-known/openid-configuration`) comes back with its endpoint URLs pointing through the
//! proxy. Endpoints on another origin than the homeserver (MAS on its own host) are reached through
//! `/_rotary-origin/{n}/…` — only origins that the upstream's own metadata named, so the proxy is
//! never an open proxy.

use super::upstream::Origin;
use serde_json::Value;
use std::sync::RwLock;

/// The path prefix under which the proxy reaches a learned origin other than the homeserver's.
pub const ORIGIN_PREFIX: &str = "/_rotary-origin/";

/// The origins the proxy may forward to (the homeserver first), and the OAuth endpoints learned
/// from metadata.
#[derive(Debug)]
pub struct Origins {
    homeserver: Origin,
    learned: RwLock<Learned>,
}

#[derive(Debug, Default)]
struct Learned {
    /// Other origins, by index from 1.
    others: Vec<Origin>,
    /// (origin index, path) → endpoint name (`oauth_token`, …).
    endpoints: Vec<(usize, String, &'static str)>,
}

/// Where a request goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Index of the origin (0 = the homeserver).
    pub index: usize,
    /// The origin.
    pub origin: Origin,
    /// Path and query on that origin.
    pub path_and_query: String,
}

/// Metadata keys whose URL is an endpoint the client calls with tokens, and their trace names.
const OAUTH_ENDPOINTS: [(&str, &str); 4] = [
    ("token_endpoint", "oauth_token"),
    ("revocation_endpoint", "oauth_revoke"),
    ("registration_endpoint", "oauth_registration"),
    ("authorization_endpoint", "oauth_authorize"),
];

impl Origins {
    /// Origins with the homeserver only.
    pub fn new(homeserver: Origin) -> Self {
        Origins {
            homeserver,
            learned: RwLock::new(Learned::default()),
        }
    }

    /// The homeserver's origin.
    pub fn homeserver(&self) -> &Origin {
        &self.homeserver
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Learned> {
        self.learned.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Where a request to the proxy at `path_and_query` goes; `None` for an `/_rotary-origin/n`
    /// that discovery never named.
    pub fn target(&self, path_and_query: &str) -> Option<Target> {
        let Some(rest) = path_and_query.strip_prefix(ORIGIN_PREFIX) else {
            return Some(Target {
                index: 0,
                origin: self.homeserver.clone(),
                path_and_query: path_and_query.to_owned(),
            });
        };
        let (n, tail) = rest.split_once('/').map_or((rest, ""), |(n, t)| (n, t));
        let index: usize = n.parse().ok()?;
        let origin = self.read().others.get(index.checked_sub(1)?)?.clone();
        Some(Target {
            index,
            origin,
            path_and_query: format!("/{tail}"),
        })
    }

    /// The OAuth endpoint a target is, if discovery named it.
    pub fn oauth_endpoint(&self, target: &Target) -> Option<&'static str> {
        let path = target.path_and_query.split('?').next().unwrap_or("");
        self.read()
            .endpoints
            .iter()
            .find(|(i, p, _)| *i == target.index && p == path)
            .map(|(_, _, name)| *name)
    }

    fn index_of(&self, origin: &Origin) -> usize {
        if *origin == self.homeserver {
            return 0;
        }
        if let Some(i) = self.read().others.iter().position(|o| o == origin) {
            return i + 1;
        }
        let mut w = self.learned.write().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = w.others.iter().position(|o| o == origin) {
            return i + 1;
        }
        w.others.push(origin.clone());
        w.others.len()
    }

    /// The proxy URL for an upstream URL (learning its origin).
    fn through_proxy(&self, url: &str, proxy_base: &str) -> Option<(usize, String, String)> {
        let (origin, rest) = Origin::of_url(url)?;
        let index = self.index_of(&origin);
        let path = rest.split('?').next().unwrap_or("").to_owned();
        let rewritten = if index == 0 {
            format!("{proxy_base}{rest}")
        } else {
            format!("{proxy_base}{ORIGIN_PREFIX}{index}{rest}")
        };
        Some((index, path, rewritten))
    }

    /// Rewrites an OAuth server metadata document (auth_metadata or openid-configuration):
    /// every `*_endpoint` and `jwks_uri` goes through the proxy. The `issuer` stays: it is an
    /// identifier that tokens and clients compare, not a location.
    pub fn rewrite_metadata(&self, body: &mut Value, proxy_base: &str) -> usize {
        let Some(map) = body.as_object_mut() else {
            return 0;
        };
        let mut changed = 0;
        for (key, value) in map.iter_mut() {
            if !(key.ends_with("_endpoint") || key == "jwks_uri") {
                continue;
            }
            let Some(url) = value.as_str() else { continue };
            let Some((index, path, rewritten)) = self.through_proxy(url, proxy_base) else {
                continue;
            };
            if let Some((_, name)) = OAUTH_ENDPOINTS.iter().find(|(k, _)| k == key) {
                let mut w = self.learned.write().unwrap_or_else(|p| p.into_inner());
                w.endpoints.retain(|(_, _, n)| n != name);
                w.endpoints.push((index, path, name));
            }
            *value = Value::String(rewritten);
            changed += 1;
        }
        changed
    }
}

/// Rewrites a `/.well-known/matrix/client` answer: the homeserver is the proxy.
///
/// ```
/// let mut v = serde_json::json!({"m.homeserver": {"base_url": "https://hs"}, "m.identity_server": {"base_url": "https://is"}});
/// rotary_rollout::proxy::discovery::rewrite_well_known(&mut v, "http://127.0.0.1:8009");
/// assert_eq!(v["m.homeserver"]["base_url"], "http://127.0.0.1:8009");
/// assert_eq!(v["m.identity_server"]["base_url"], "https://is");
/// ```
pub fn rewrite_well_known(body: &mut Value, proxy_base: &str) {
    if let Some(map) = body.as_object_mut() {
        let hs = map
            .entry("m.homeserver")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(hs) = hs.as_object_mut() {
            hs.insert("base_url".into(), Value::String(proxy_base.to_owned()));
        }
    }
}

/// Whether a path is one of the metadata documents to rewrite.
pub fn is_metadata_path(path: &str) -> bool {
    matches!(
        path,
        "/_matrix/client/v1/auth_metadata"
            | "/_matrix/client/unstable/org.matrix.msc2965/auth_metadata"
            | "/.well-known/openid-configuration"
            | "/.well-known/oauth-authorization-server"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn origins() -> Origins {
        Origins::new(Origin::parse("https://hs.example").unwrap())
    }

    #[test]
    fn endpoints_on_the_homeserver_and_elsewhere_go_through_the_proxy() {
        let o = origins();
        let mut m = json!({
            "issuer": "https://auth.example/",
            "token_endpoint": "https://auth.example/oauth2/token",
            "revocation_endpoint": "https://hs.example/_synapse/revoke",
            "jwks_uri": "https://auth.example/oauth2/keys.json",
            "response_types_supported": ["code"],
        });
        assert_eq!(o.rewrite_metadata(&mut m, "http://p:1"), 3);
        assert_eq!(m["issuer"], "https://auth.example/");
        assert_eq!(m["token_endpoint"], "http://p:1/_rotary-origin/1/oauth2/token");
        assert_eq!(m["revocation_endpoint"], "http://p:1/_synapse/revoke");
        let t = o.target("/_rotary-origin/1/oauth2/token").unwrap();
        assert_eq!(
            (t.origin.to_string().as_str(), t.path_and_query.as_str()),
            ("https://auth.example", "/oauth2/token")
        );
        assert_eq!(o.oauth_endpoint(&t), Some("oauth_token"));
        let hs = o.target("/_synapse/revoke").unwrap();
        assert_eq!(o.oauth_endpoint(&hs), Some("oauth_revoke"));
    }

    #[test]
    fn never_an_open_proxy() {
        let o = origins();
        assert_eq!(o.target("/_rotary-origin/1/x"), None);
        assert_eq!(o.target("/_rotary-origin/0/x"), None);
        assert_eq!(o.target("/_rotary-origin/zz/x"), None);
        assert_eq!(
            o.target("/_matrix/client/versions").unwrap().origin,
            *o.homeserver()
        );
    }
}
