//! Properties of Rotary's parsers of untrusted input, shared by the cargo-fuzz targets in
//! `fuzz/fuzz_targets/` and the proptest suite in `tests/tests/robustness_fuzz.rs` (which includes this
//! file with `#[path]`). Each entry point takes raw bytes, parses them with `rotary-server`'s public
//! functions, and panics — with a message naming the input — only when a property breaks.

use rotary_server::{
    ApplicationType, Classified, ClientMetadata, Dialect, Endpoint, FaultRule, FaultSet, MatrixScope,
    Profile, RequestFacts, ServerConfig, TokenKind, TokenStore, check_oauth_token_shape, check_redirect_uri,
    check_token_shape, classify, endpoint_names, faults_from_toml, format_duration, generate_oauth_token,
    generate_token, glob_match, is_valid_device_id, is_valid_verifier, parse_duration,
    parse_optional_duration, parse_scope, s256_challenge, verify_s256,
};

/// Longest text the quadratic reference checks look at, so that one input stays fast.
const MAX_TEXT: usize = 512;

/// Splits `data` into `n` parts at `0xFF` bytes (a byte that never occurs in UTF-8); missing parts
/// are empty and the last part keeps any further separators.
pub fn split(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut parts: Vec<&[u8]> = data.splitn(n.max(1), |b| *b == 0xFF).collect();
    parts.resize(n.max(1), &[]);
    parts
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn short(s: &str) -> &str {
    match s.char_indices().nth(MAX_TEXT) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

const METHODS: [&str; 10] = [
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "get", "PROPFIND",
];
const SERVED_METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];

/// A config picked by one byte: the profile and the knobs that decide where paths are served.
pub fn config_for(selector: u8) -> ServerConfig {
    let mut cfg = ServerConfig::for_profile(Profile::ALL[usize::from(selector) % Profile::ALL.len()]);
    cfg.serve_v1_refresh ^= selector & 0x08 != 0;
    cfg.serve_unstable_refresh ^= selector & 0x10 != 0;
    cfg.oauth ^= selector & 0x20 != 0;
    if selector & 0x40 != 0 {
        cfg.refreshable_access_token_lifetime = None;
    }
    cfg
}

/// Fuzz entry: `[config byte][method byte] path…`.
pub fn classify_input(data: &[u8]) {
    let (cfg_byte, rest) = data.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
    let (method_byte, path) = rest.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
    let path = text(path);
    let method_text;
    let method = if usize::from(method_byte) < METHODS.len() * 20 {
        METHODS[usize::from(method_byte) % METHODS.len()]
    } else {
        // Anything at all as a method, e.g. the path's first word.
        method_text = path.split('/').next().unwrap_or_default().to_owned();
        &method_text
    };
    check_classify(&path, method, &config_for(cfg_byte));
}

/// How many path parameters a found endpoint may carry.
fn param_counts(endpoint: Endpoint) -> &'static [usize] {
    match endpoint {
        Endpoint::Send => &[2, 3],
        Endpoint::Filter | Endpoint::Profile => &[1, 2],
        Endpoint::Messages | Endpoint::Device | Endpoint::Pushrules => &[1],
        _ => &[0],
    }
}

/// Whether an endpoint's paths depend on the knobs (refresh paths and the OAuth 2.0 API).
fn knob_dependent(endpoint: Endpoint) -> bool {
    matches!(
        endpoint,
        Endpoint::Refresh
            | Endpoint::AuthMetadata
            | Endpoint::OAuthRegistration
            | Endpoint::OAuthAuthorize
            | Endpoint::OAuthToken
            | Endpoint::OAuthRevoke
    )
}

/// Classification is deterministic, names a known endpoint, and is consistent across methods and
/// knobs.
pub fn check_classify(path: &str, method: &str, cfg: &ServerConfig) {
    let c = classify(path, method, cfg);
    assert_eq!(
        c,
        classify(path, method, cfg),
        "classify is not deterministic for {path:?}"
    );
    assert!(
        endpoint_names().contains(&c.name()),
        "{path:?} classified as the unknown name {:?}",
        c.name()
    );
    let endpoint = match &c {
        Classified::Found { endpoint, params } => {
            assert!(
                param_counts(*endpoint).contains(&params.len()),
                "{path:?} {method}: {endpoint:?} with {} parameters",
                params.len()
            );
            assert!(
                SERVED_METHODS.contains(&method),
                "{path:?} found for the method {method:?}"
            );
            assert!(
                path.starts_with("/_matrix/client/")
                    || path.starts_with("/oauth2/")
                    || path == "/.well-known/matrix/client",
                "{path:?} found outside the served roots"
            );
            Some(*endpoint)
        }
        Classified::MethodNotAllowed(endpoint) => {
            let allowed = SERVED_METHODS.iter().any(
                |m| matches!(classify(path, m, cfg), Classified::Found { endpoint: e, .. } if e == *endpoint),
            );
            assert!(allowed, "{path:?}: 405 for {endpoint:?} but no method finds it");
            Some(*endpoint)
        }
        Classified::Unserved(endpoint) => {
            assert!(knob_dependent(*endpoint), "{path:?}: {endpoint:?} unserved");
            None
        }
        Classified::NotFound => {
            for m in SERVED_METHODS {
                assert_eq!(
                    classify(path, m, cfg),
                    Classified::NotFound,
                    "{path:?}: not found for {method:?} but not for {m}"
                );
            }
            None
        }
    };
    // Only refresh paths and the OAuth API follow the knobs; everything else is the same under
    // every profile.
    if endpoint.is_none_or(|e| !knob_dependent(e)) && !matches!(c, Classified::Unserved(_)) {
        for profile in Profile::ALL {
            assert_eq!(
                classify(path, method, &ServerConfig::for_profile(profile)),
                c,
                "{path:?} {method}: classified differently under {}",
                profile.name()
            );
        }
    }
}

/// Fuzz entry: a duration as text.
pub fn duration_input(data: &[u8]) {
    check_duration(&text(data));
}

/// Parsing never panics; what parses prints back to the same value, and the
/// optional form agrees.
pub fn check_duration(s: &str) {
    match parse_duration(s) {
        Ok(d) => {
            assert_eq!(
                parse_optional_duration(s),
                Ok(Some(d)),
                "{s:?}: parse_optional_duration disagrees"
            );
            let printed = format_duration(d);
            assert_eq!(
                parse_duration(&printed),
                Ok(d),
                "{s:?} = {d:?} prints as {printed:?}, which does not read back"
            );
        }
        Err(e) => {
            assert!(e.to_string().contains("invalid duration"), "{s:?}: odd error {e}");
            assert!(
                !matches!(parse_optional_duration(s), Ok(Some(_))),
                "{s:?}: only the optional form parses"
            );
        }
    }
}

/// Fuzz entry: a config as TOML text, and the same bytes as a JSON patch.
pub fn config_input(data: &[u8]) {
    if let Ok(cfg) = ServerConfig::from_toml(&text(data)) {
        check_config(&cfg);
    }
    if let Ok(patch) = serde_json::from_slice::<serde_json::Value>(data)
        && let Ok(cfg) = ServerConfig::default().patched(&patch)
    {
        check_config(&cfg);
    }
}

/// An accepted config is valid, and what the control API shows of it (`GET /_rotary/config`)
/// patches back to the same config.
pub fn check_config(cfg: &ServerConfig) {
    assert_eq!(
        cfg.validate(),
        Ok(()),
        "an accepted config does not validate: {cfg:?}"
    );
    let shown = match serde_json::to_value(cfg) {
        Ok(v) => v,
        Err(e) => panic!("a config does not serialise: {e}: {cfg:?}"),
    };
    match ServerConfig::default().patched(&shown) {
        Ok(back) => assert_eq!(&back, cfg, "the config changed on a round trip through {shown}"),
        Err(e) => panic!("the config's own knobs are refused: {e}: {shown}"),
    }
    for path in [
        "/_matrix/client/v3/refresh",
        "/oauth2/token",
        "/_matrix/client/v1/refresh",
    ] {
        check_classify(path, "POST", cfg);
    }
}

/// Fuzz entry: fault rules as TOML (one rule, or `[[fault]]` tables) and as JSON.
pub fn fault_input(data: &[u8]) {
    let s = text(data);
    if let Ok(rule) = FaultRule::from_toml(&s) {
        check_rule(&rule);
    }
    if let Ok(rules) = faults_from_toml(&s) {
        rules.iter().for_each(check_rule);
    }
    if let Ok(rule) = serde_json::from_slice::<FaultRule>(data) {
        check_rule(&rule);
    }
}

/// A rule either fails validation or round-trips through JSON and can be matched against requests.
pub fn check_rule(rule: &FaultRule) {
    if rule.validate(&endpoint_names()).is_err() {
        return;
    }
    let shown = match serde_json::to_value(rule) {
        Ok(v) => v,
        Err(e) => panic!("a valid rule does not serialise: {e}: {rule:?}"),
    };
    match serde_json::from_value::<FaultRule>(shown.clone()) {
        Ok(back) => assert_eq!(&back, rule, "the rule changed on a round trip through {shown}"),
        Err(e) => panic!("a valid rule does not read back: {e}: {shown}"),
    }
    let mut set = FaultSet::default();
    set.add(rule.clone());
    for endpoint in endpoint_names() {
        for (method, path) in [
            ("GET", "/_matrix/client/v3/x"),
            ("POST", "/oauth2/token"),
            ("PUT", ""),
        ] {
            let _ = set.decide(&RequestFacts {
                endpoint,
                method,
                path,
                access_label: Some("at#1"),
                refresh_label: None,
                user_id: Some("@alice:localhost"),
                refresh_grant: path == "/oauth2/token",
            });
        }
    }
    if let Some(p) = &rule.path {
        check_glob(p, p);
    }
}

/// Fuzz entry: `pattern 0xFF text`.
pub fn glob_input(data: &[u8]) {
    let parts = split(data, 2);
    check_glob(&text(parts[0]), &text(parts[1]));
}

/// A straightforward dynamic-programming matcher for patterns where `*` is any run.
fn reference_glob(pattern: &str, text: &str) -> bool {
    let t: Vec<char> = text.chars().collect();
    let mut matched = vec![false; t.len() + 1];
    matched[0] = true;
    for pc in pattern.chars() {
        let mut next = vec![false; t.len() + 1];
        if pc == '*' {
            let mut any = false;
            for j in 0..=t.len() {
                any |= matched[j];
                next[j] = any;
            }
        } else {
            for j in 1..=t.len() {
                next[j] = matched[j - 1] && t[j - 1] == pc;
            }
        }
        matched = next;
    }
    matched[t.len()]
}

/// `glob_match` agrees with the reference matcher, and a pattern matches what it was built from.
pub fn check_glob(pattern: &str, text: &str) {
    let (pattern, text) = (short(pattern), short(text));
    assert_eq!(
        glob_match(pattern, text),
        reference_glob(pattern, text),
        "glob_match({pattern:?}, {text:?})"
    );
    let literal = pattern.replace('*', "");
    assert!(
        glob_match(pattern, &literal),
        "{pattern:?} does not match {literal:?}"
    );
    let wild = format!("*{literal}*");
    assert!(
        glob_match(&wild, &format!("{text}{literal}{text}")),
        "{wild:?} misses its middle"
    );
}

/// Fuzz entry: one string as a scope, a redirect URI, a PKCE verifier and a token; the bytes as
/// client metadata JSON.
pub fn oauth_input(data: &[u8]) {
    let s = text(data);
    check_scope(&s);
    for app in [ApplicationType::Web, ApplicationType::Native] {
        let _ = check_redirect_uri(&s, app);
    }
    check_verifier(&s);
    check_token_strings(&s);
    if let Ok(m) = serde_json::from_slice::<ClientMetadata>(data) {
        let shown = serde_json::to_value(&m).unwrap_or_default();
        match serde_json::from_value::<ClientMetadata>(shown.clone()) {
            Ok(back) => assert_eq!(back, m, "client metadata changed on a round trip through {shown}"),
            Err(e) => panic!("client metadata does not read back: {e}: {shown}"),
        }
    }
}

/// A parsed scope grants the API, names a valid device if any, and parses again to itself.
pub fn check_scope(s: &str) {
    let Ok(scope) = parse_scope(s) else { return };
    let MatrixScope { tokens, device_id } = &scope;
    assert!(
        tokens.iter().any(|t| t.contains("client:api:")),
        "{s:?}: a scope without the API token was accepted"
    );
    if let Some(d) = device_id {
        assert!(is_valid_device_id(d), "{s:?}: invalid device id {d:?} accepted");
    }
    let again = parse_scope(&scope.to_scope_string());
    assert_eq!(
        again.as_ref().ok(),
        Some(&scope),
        "{s:?}: the scope string does not read back"
    );
}

/// A well-formed verifier verifies against its own challenge, which is itself well formed;
/// anything else never verifies.
pub fn check_verifier(s: &str) {
    let challenge = s256_challenge(s);
    if is_valid_verifier(s) {
        assert!(
            is_valid_verifier(&challenge),
            "{s:?}: challenge {challenge:?} malformed"
        );
        assert!(verify_s256(&challenge, s), "{s:?} does not verify");
    } else {
        assert!(
            !verify_s256(&challenge, s),
            "the malformed verifier {s:?} verifies"
        );
    }
}

/// Arbitrary strings never pass for tokens a store did not issue, and every one-character change
/// of a real token fails its checksum.
pub fn check_token_strings(s: &str) {
    let kinds = [TokenKind::Access, TokenKind::Refresh];
    for dialect in [Dialect::Synapse, Dialect::Spec, Dialect::Mas] {
        for kind in kinds {
            let _ = check_token_shape(dialect, kind, s);
            let real = generate_token(dialect, kind, s);
            assert!(
                check_token_shape(dialect, kind, &real),
                "{real:?} fails its own check"
            );
            assert_mutations_fail(&real, s, |t| check_token_shape(dialect, kind, t));
        }
    }
    for kind in kinds {
        let _ = check_oauth_token_shape(kind, s);
        let real = generate_oauth_token(kind);
        assert!(
            check_oauth_token_shape(kind, &real),
            "{real:?} fails its own check"
        );
        assert_mutations_fail(&real, s, |t| check_oauth_token_shape(kind, t));
    }
    for profile in Profile::ALL {
        let cfg = ServerConfig::for_profile(profile);
        let mut store = TokenStore::new("localhost");
        if store.add_user("alice", "wonderland").is_err() {
            panic!("cannot add alice");
        }
        let Ok(issued) = store.login(&cfg, 0, "@alice:localhost", None, None, true) else {
            panic!("alice cannot log in");
        };
        let known = [
            Some(issued.access_token.as_str()),
            issued.refresh_token.as_deref(),
        ];
        if known.contains(&Some(s)) {
            continue;
        }
        assert!(store.refresh(&cfg, 1, s).is_err(), "{s:?} refreshed");
        assert!(
            store.refresh_oauth(&cfg, 1, s, None).is_err(),
            "{s:?} refreshed (OAuth)"
        );
        assert!(
            store.authenticate(&cfg, 1, s, true).is_err(),
            "{s:?} authenticated"
        );
        assert_eq!(store.label_of(s), None, "{s:?} has a label");
        assert_eq!(store.owner_of(s), None, "{s:?} has an owner");
        assert_eq!(
            store.revoke_oauth_token(&cfg, 1, s),
            None,
            "{s:?} revoked a session"
        );
    }
}

/// Replaces one character of `token` (chosen by `seed`) and checks the result fails.
fn assert_mutations_fail(token: &str, seed: &str, check: impl Fn(&str) -> bool) {
    let chars: Vec<char> = token.chars().collect();
    let picks = seed.chars().take(8).chain(['x']);
    for (n, c) in picks.enumerate() {
        let i = (c as usize).wrapping_add(n * 7) % chars.len();
        let mut changed = chars.clone();
        if changed[i] == c {
            continue;
        }
        changed[i] = c;
        let changed: String = changed.into_iter().collect();
        assert!(
            !check(&changed),
            "{changed:?} (one character off {token:?}) passes"
        );
    }
}
