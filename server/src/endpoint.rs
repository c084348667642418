//! The client-server endpoint catalogue: names, URL prefixes and methods, and path classification.

use crate::config::ServerConfig;
use percent_encoding::percent_decode_str;

/// A client-server API endpoint the mock homeserver knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `GET /_matrix/client/versions`
    Versions,
    /// `GET /.well-known/matrix/client`
    WellKnown,
    /// `GET`/`POST /login`
    Login,
    /// `POST /register`
    Register,
    /// `POST /refresh`
    Refresh,
    /// `POST /logout`
    Logout,
    /// `POST /logout/all`
    LogoutAll,
    /// `GET /account/whoami`
    Whoami,
    /// `GET /sync`
    Sync,
    /// `POST /createRoom`
    CreateRoom,
    /// `PUT /rooms/{roomId}/send/{eventType}/{txnId}` (and `POST` without a txnId)
    Send,
    /// `GET /rooms/{roomId}/messages`
    Messages,
    /// `GET /joined_rooms`
    JoinedRooms,
    /// `GET /devices`
    Devices,
    /// `GET`/`PUT`/`DELETE /devices/{deviceId}`
    Device,
    /// `GET /capabilities`
    Capabilities,
    /// `GET /pushrules/…`
    Pushrules,
    /// `POST /user/{userId}/filter`, `GET /user/{userId}/filter/{filterId}`
    Filter,
    /// `GET /profile/{userId}` and its fields
    Profile,
    /// `GET /_matrix/client/v1/auth_metadata` (and the unstable MSC2965 path)
    AuthMetadata,
    /// `POST /oauth2/registration` (RFC 7591)
    OAuthRegistration,
    /// `GET /oauth2/authorize` (RFC 6749 §4.1.1)
    OAuthAuthorize,
    /// `POST /oauth2/token` (RFC 6749 §4.1.3, §6)
    OAuthToken,
    /// `POST /oauth2/revoke` (RFC 7009)
    OAuthRevoke,
}

impl Endpoint {
    /// Every endpoint.
    pub const ALL: [Endpoint; 24] = [
        Endpoint::Versions,
        Endpoint::WellKnown,
        Endpoint::Login,
        Endpoint::Register,
        Endpoint::Refresh,
        Endpoint::Logout,
        Endpoint::LogoutAll,
        Endpoint::Whoami,
        Endpoint::Sync,
        Endpoint::CreateRoom,
        Endpoint::Send,
        Endpoint::Messages,
        Endpoint::JoinedRooms,
        Endpoint::Devices,
        Endpoint::Device,
        Endpoint::Capabilities,
        Endpoint::Pushrules,
        Endpoint::Filter,
        Endpoint::Profile,
        Endpoint::AuthMetadata,
        Endpoint::OAuthRegistration,
        Endpoint::OAuthAuthorize,
        Endpoint::OAuthToken,
        Endpoint::OAuthRevoke,
    ];

    /// The name used in traces and fault rules.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Versions => "versions",
            Endpoint::WellKnown => "well_known",
            Endpoint::Login => "login",
            Endpoint::Register => "register",
            Endpoint::Refresh => "refresh",
            Endpoint::Logout => "logout",
            Endpoint::LogoutAll => "logout_all",
            Endpoint::Whoami => "whoami",
            Endpoint::Sync => "sync",
            Endpoint::CreateRoom => "create_room",
            Endpoint::Send => "send",
            Endpoint::Messages => "messages",
            Endpoint::JoinedRooms => "joined_rooms",
            Endpoint::Devices => "devices",
            Endpoint::Device => "device",
            Endpoint::Capabilities => "capabilities",
            Endpoint::Pushrules => "pushrules",
            Endpoint::Filter => "filter",
            Endpoint::Profile => "profile",
            Endpoint::AuthMetadata => "auth_metadata",
            Endpoint::OAuthRegistration => "oauth_registration",
            Endpoint::OAuthAuthorize => "oauth_authorize",
            Endpoint::OAuthToken => "oauth_token",
            Endpoint::OAuthRevoke => "oauth_revoke",
        }
    }
}

/// Every name a fault rule's `endpoint` may use: the endpoints plus `unknown` (unrecognised paths).
pub fn endpoint_names() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = Endpoint::ALL.iter().map(|e| e.name()).collect();
    v.push("unknown");
    v
}

const R0_V3_UNSTABLE: &[&str] = &[
    "/_matrix/client/r0",
    "/_matrix/client/v3",
    "/_matrix/client/unstable",
];
const WITH_API_V1: &[&str] = &[
    "/_matrix/client/r0",
    "/_matrix/client/v3",
    "/_matrix/client/unstable",
    "/_matrix/client/api/v1",
];

struct Route {
    endpoint: Endpoint,
    prefixes: &'static [&'static str],
    /// Segments after the prefix; `{}` is a parameter, `{*}` the rest of the path.
    pattern: &'static [&'static str],
    methods: &'static [&'static str],
}

const ROUTES: &[Route] = &[
    Route {
        endpoint: Endpoint::Login,
        prefixes: WITH_API_V1,
        pattern: &["login"],
        methods: &["GET", "POST"],
    },
    Route {
        endpoint: Endpoint::Register,
        prefixes: R0_V3_UNSTABLE,
        pattern: &["register"],
        methods: &["POST"],
    },
    Route {
        endpoint: Endpoint::Logout,
        prefixes: WITH_API_V1,
        pattern: &["logout"],
        methods: &["POST"],
    },
    Route {
        endpoint: Endpoint::LogoutAll,
        prefixes: WITH_API_V1,
        pattern: &["logout", "all"],
        methods: &["POST"],
    },
    Route {
        endpoint: Endpoint::Whoami,
        prefixes: R0_V3_UNSTABLE,
        pattern: &["account", "whoami"],
        methods: &["GET"],
    },
    Route {
        endpoint: Endpoint::Sync,
        prefixes: R0_V3_UNSTABLE,
        pattern: &["sync"],
        methods: &["GET"],
    },
    Route {
        endpoint: Endpoint::CreateRoom,
        prefixes: WITH_API_V1,
        pattern: &["createRoom"],
        methods: &["POST"],
    },
    Route {
        endpoint: Endpoint::Send,
        prefixes: WITH_API_V1,
        pattern: &["rooms", "{}", "send", "{}", "{}"],
        methods: &["PUT"],
    },
    Route {
        endpoint: Endpoint::Send,
        prefixes: WITH_API_V1,
        pattern: &["rooms", "{}", "send", "{}"],
        methods: &["POST"],
    },
    Route {
        endpoint: Endpoint::Messages,
        prefixes: WITH_API_V1,
        pattern: &["rooms", "{}", "messages"],
        methods: &["GET"],
    },
    Route {
        endpoint: Endpoint::JoinedRooms,
        prefixes: R0_V3_UNSTABLE,
        pattern: &["joined_rooms"],
        methods: &["GET"],
    },
    Route {
        endpoint: Endpoint::Devices,
        prefixes: R0_V3_UNSTABLE,
        pattern: &["devices"],
        methods: &["GET"],
    },
    Route {
        endpoint: Endpoint::Device,
        prefixes: R0_V3_UNSTABLE,
        pattern: &["devices", "{}"],
        methods: &["GET", "PUT", "DELETE"],
    },
    Route {
        endpoint: Endpoint::Capabilities,
        prefixes: R0_V3_UNSTABLE,
        pattern: &["capabilities"],
        methods: &["GET"],
    },
    Route {
        endpoint: Endpoint::Pushrules,
        prefixes: WITH_API_V1,
        pattern: &["pushrules", "{*}"],
        methods: &["GET"],
    },
    Route {
        endpoint: Endpoint::Filter,
        prefixes: WITH_API_V1,
        pattern: &["user", "{}", "filter"],
        methods: &["POST"],
    },
    Route {
        endpoint: Endpoint::Filter,
        prefixes: WITH_API_V1,
        pattern: &["user", "{}", "filter", "{}"],
        methods: &["GET"],
    },
    Route {
        endpoint: Endpoint::Profile,
        prefixes: WITH_API_V1,
        pattern: &["profile", "{}"],
        methods: &["GET"],
    },
    Route {
        endpoint: Endpoint::Profile,
        prefixes: WITH_API_V1,
        pattern: &["profile", "{}", "{}"],
        methods: &["GET", "PUT"],
    },
];

/// Where a request path leads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Classified {
    /// A known endpoint served with this method; `params` are the decoded path parameters.
    Found {
        /// The endpoint.
        endpoint: Endpoint,
        /// Decoded path parameters, in order.
        params: Vec<String>,
    },
    /// A known endpoint that does not take this method (405 `M_UNRECOGNIZED`).
    MethodNotAllowed(Endpoint),
    /// A known endpoint's path that the current knobs do not serve, e.g. `/refresh` on a server
    /// without refresh support (404 `M_UNRECOGNIZED`, but the trace still names the endpoint).
    Unserved(Endpoint),
    /// No such endpoint (404 `M_UNRECOGNIZED`).
    NotFound,
}

impl Classified {
    /// The endpoint name for traces and fault rules.
    pub fn name(&self) -> &'static str {
        match self {
            Classified::Found { endpoint, .. }
            | Classified::MethodNotAllowed(endpoint)
            | Classified::Unserved(endpoint) => endpoint.name(),
            Classified::NotFound => "unknown",
        }
    }
}

/// Most path segments any endpoint has (after the version prefix); longer paths are unknown.
const MAX_SEGMENTS: usize = 16;

const PREFIXES: [&str; 4] = [
    "/_matrix/client/r0",
    "/_matrix/client/v3",
    "/_matrix/client/unstable",
    "/_matrix/client/api/v1",
];

fn shape_matches(pattern: &[&str], segments: &[&str]) -> bool {
    let (fixed, tail) = match pattern.split_last() {
        Some((&"{*}", fixed)) => (fixed, true),
        _ => (pattern, false),
    };
    let len_ok = if tail {
        segments.len() >= fixed.len()
    } else {
        segments.len() == fixed.len()
    };
    len_ok && fixed.iter().zip(segments).all(|(p, s)| *p == "{}" || p == s)
}

fn extract_params(pattern: &[&str], segments: &[&str]) -> Vec<String> {
    let mut params = Vec::new();
    for (i, p) in pattern.iter().enumerate() {
        match *p {
            "{}" => params.push(percent_decode_str(segments[i]).decode_utf8_lossy().into_owned()),
            "{*}" => params.push(segments[i..].join("/")),
            _ => {}
        }
    }
    params
}

/// Where the OAuth 2.0 API lives: path, endpoint, methods. Served only with the `oauth` knob.
const OAUTH_ROUTES: &[(&str, Endpoint, &[&str])] = &[
    (
        "/_matrix/client/v1/auth_metadata",
        Endpoint::AuthMetadata,
        &["GET"],
    ),
    (
        "/_matrix/client/unstable/org.matrix.msc2965/auth_metadata",
        Endpoint::AuthMetadata,
        &["GET"],
    ),
    ("/oauth2/registration", Endpoint::OAuthRegistration, &["POST"]),
    ("/oauth2/authorize", Endpoint::OAuthAuthorize, &["GET"]),
    ("/oauth2/token", Endpoint::OAuthToken, &["POST"]),
    ("/oauth2/revoke", Endpoint::OAuthRevoke, &["POST"]),
];

/// Classifies a request path under the current knobs (which decide where `/refresh` is served).
/// It allocates nothing unless the endpoint has path parameters.
///
/// ```
/// use rotary_server::{classify, Classified, Endpoint, ServerConfig};
/// let cfg = ServerConfig::default();
/// assert!(matches!(classify("/_matrix/client/v3/refresh", "POST", &cfg), Classified::Found { endpoint: Endpoint::Refresh, .. }));
/// assert_eq!(classify("/_matrix/client/v3/refresh", "GET", &cfg), Classified::MethodNotAllowed(Endpoint::Refresh));
/// // Switched off by a knob: 404, but the trace still says `refresh`.
/// assert_eq!(classify("/_matrix/client/v1/refresh", "POST", &cfg), Classified::Unserved(Endpoint::Refresh));
/// // The OAuth 2.0 API follows the `oauth` knob.
/// assert_eq!(classify("/oauth2/token", "POST", &cfg), Classified::Unserved(Endpoint::OAuthToken));
/// ```
pub fn classify(path: &str, method: &str, cfg: &ServerConfig) -> Classified {
    match path {
        "/_matrix/client/versions" => return found_or_405(Endpoint::Versions, method, &["GET"]),
        "/.well-known/matrix/client" => return found_or_405(Endpoint::WellKnown, method, &["GET"]),
        _ => {}
    }
    if let Some((_, endpoint, methods)) = OAUTH_ROUTES.iter().find(|(p, _, _)| *p == path) {
        return if cfg.oauth {
            found_or_405(*endpoint, method, methods)
        } else {
            Classified::Unserved(*endpoint)
        };
    }
    let served = match path {
        "/_matrix/client/r0/refresh" | "/_matrix/client/v3/refresh" | "/_matrix/client/unstable/refresh" => {
            Some(cfg.refresh_enabled())
        }
        "/_matrix/client/v1/refresh" => Some(cfg.refresh_enabled() && cfg.serve_v1_refresh),
        "/_matrix/client/unstable/org.matrix.msc2918/refresh" => {
            Some(cfg.refresh_enabled() && cfg.serve_unstable_refresh)
        }
        _ => None,
    };
    match served {
        Some(true) => return found_or_405(Endpoint::Refresh, method, &["POST"]),
        Some(false) => return Classified::Unserved(Endpoint::Refresh),
        None => {}
    }
    let Some((prefix, rest)) = PREFIXES.iter().find_map(|p| {
        path.strip_prefix(p)
            .and_then(|r| r.strip_prefix('/'))
            .map(|r| (*p, r))
    }) else {
        return Classified::NotFound;
    };
    let mut buf = [""; MAX_SEGMENTS];
    let mut n = 0;
    for seg in rest.split('/') {
        if n == MAX_SEGMENTS {
            return Classified::NotFound;
        }
        buf[n] = seg;
        n += 1;
    }
    let segments = &buf[..n];
    let mut same_shape = None;
    for route in ROUTES.iter().filter(|r| r.prefixes.contains(&prefix)) {
        if shape_matches(route.pattern, segments) {
            if route.methods.contains(&method) {
                let params = extract_params(route.pattern, segments);
                return Classified::Found {
                    endpoint: route.endpoint,
                    params,
                };
            }
            same_shape.get_or_insert(route.endpoint);
        }
    }
    same_shape.map_or(Classified::NotFound, Classified::MethodNotAllowed)
}

fn found_or_405(endpoint: Endpoint, method: &str, methods: &[&str]) -> Classified {
    if methods.contains(&method) {
        Classified::Found {
            endpoint,
            params: Vec::new(),
        }
    } else {
        Classified::MethodNotAllowed(endpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Profile;

    #[test]
    fn classifies_prefixes_params_and_methods() {
        let cfg = ServerConfig::default();
        assert_eq!(
            classify(
                "/_matrix/client/v3/rooms/%21abc%3Alocalhost/send/m.room.message/t1",
                "PUT",
                &cfg
            ),
            Classified::Found {
                endpoint: Endpoint::Send,
                params: vec!["!abc:localhost".into(), "m.room.message".into(), "t1".into()]
            }
        );
        assert!(matches!(
            classify("/_matrix/client/r0/login", "GET", &cfg),
            Classified::Found {
                endpoint: Endpoint::Login,
                ..
            }
        ));
        assert_eq!(
            classify("/_matrix/client/v3/login", "DELETE", &cfg),
            Classified::MethodNotAllowed(Endpoint::Login)
        );
        assert_eq!(
            classify("/_matrix/client/v3/nope", "GET", &cfg),
            Classified::NotFound
        );
        assert_eq!(
            classify("/_matrix/client/v3/logout/all/x", "POST", &cfg),
            Classified::NotFound
        );
        assert!(matches!(
            classify("/_matrix/client/v3/user/%40a%3Ab/filter/0", "GET", &cfg),
            Classified::Found {
                endpoint: Endpoint::Filter,
                ..
            }
        ));
        assert!(matches!(
            classify("/_matrix/client/v3/user/%40a%3Ab/filter", "POST", &cfg),
            Classified::Found {
                endpoint: Endpoint::Filter,
                ..
            }
        ));
        assert!(matches!(
            classify("/_matrix/client/v3/pushrules/", "GET", &cfg),
            Classified::Found {
                endpoint: Endpoint::Pushrules,
                ..
            }
        ));
    }

    #[test]
    fn refresh_paths_follow_the_knobs() {
        let mut cfg = ServerConfig::default();
        assert_eq!(
            classify(
                "/_matrix/client/unstable/org.matrix.msc2918/refresh",
                "POST",
                &cfg
            ),
            Classified::Unserved(Endpoint::Refresh)
        );
        cfg.serve_v1_refresh = true;
        cfg.serve_unstable_refresh = true;
        assert!(matches!(
            classify("/_matrix/client/v1/refresh", "POST", &cfg),
            Classified::Found { .. }
        ));
        assert!(matches!(
            classify(
                "/_matrix/client/unstable/org.matrix.msc2918/refresh",
                "POST",
                &cfg
            ),
            Classified::Found { .. }
        ));
        let mut oauth = ServerConfig::for_profile(Profile::Mas);
        assert!(matches!(
            classify("/oauth2/token", "POST", &oauth),
            Classified::Found {
                endpoint: Endpoint::OAuthToken,
                ..
            }
        ));
        assert_eq!(
            classify("/oauth2/token", "GET", &oauth),
            Classified::MethodNotAllowed(Endpoint::OAuthToken)
        );
        assert!(matches!(
            classify(
                "/_matrix/client/unstable/org.matrix.msc2965/auth_metadata",
                "GET",
                &oauth
            ),
            Classified::Found {
                endpoint: Endpoint::AuthMetadata,
                ..
            }
        ));
        oauth.oauth = false;
        assert_eq!(
            classify("/_matrix/client/v1/auth_metadata", "GET", &oauth),
            Classified::Unserved(Endpoint::AuthMetadata)
        );
        let off = ServerConfig::for_profile(Profile::NoRefresh);
        assert_eq!(
            classify("/_matrix/client/v3/refresh", "POST", &off),
            Classified::Unserved(Endpoint::Refresh)
        );
    }
}
