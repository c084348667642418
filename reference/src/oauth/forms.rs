//! The form-encoded requests to the OAuth endpoints: the token endpoint's two grants and revocation,
//! and how they are `POST`ed.

use reqwest::{Method, Url};
use std::time::Duration;

use super::login::REDIRECT_URI;
use crate::api::{self, Body, Call, Reply};
use crate::error::ClientError;

/// `application/x-www-form-urlencoded` encoding of `pairs`, in order.
pub(crate) fn form(pairs: &[(&str, &str)]) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        out.append_pair(name, value);
    }
    out.finish()
}

/// The refresh token grant (RFC 6749 §6).
pub(crate) fn refresh_form(refresh_token: &str, client_id: &str) -> String {
    form(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
        ("client_id", client_id),
    ])
}

/// The authorization code grant's token request (RFC 6749 §4.1.3, with the PKCE verifier).
pub(crate) fn code_form(code: &str, client_id: &str, verifier: &str) -> String {
    form(&[
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT_URI),
        ("client_id", client_id),
        ("code_verifier", verifier),
    ])
}

/// A revocation request (RFC 7009 §2.1).
pub(crate) fn revocation_form(token: &str, token_type_hint: &str, client_id: &str) -> String {
    form(&[
        ("token", token),
        ("token_type_hint", token_type_hint),
        ("client_id", client_id),
    ])
}

/// `POST` a form to an OAuth endpoint (no access token: the client is public and names itself).
pub(crate) async fn post_form(
    http: &reqwest::Client,
    url: &Url,
    form: String,
    timeout: Duration,
) -> Result<Reply, ClientError> {
    let call = Call {
        method: Method::POST,
        url: url.clone(),
        body: Some(Body::Form(form)),
        timeout,
    };
    api::execute(http, &call, None).await
}
