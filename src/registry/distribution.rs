//! The OCI distribution API as binauthz reads it: `GET` requests under `/v2/<repository>/`,
//! token or basic authentication, and every response read to a bound.
//!
//! Each read names its bound before the request: a `Content-Length` over it is refused before
//! the body is read, and a body that grows past it is dropped at the bound. Token and error
//! responses are bounded too. Content is checked against its digest by the caller
//! ([`super::RegistryClient`]), so a registry can delay or withhold signatures but neither
//! swap content nor make a replica hold more than the bounds.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue, WWW_AUTHENTICATE};
use reqwest::{StatusCode, Url};

use super::{REQUEST_TIMEOUT, RegistryError};

/// Largest token response read.
const MAX_TOKEN_RESPONSE: u64 = 64 * 1024;
/// Largest error body read (for its message and error code).
const MAX_ERROR_BODY: u64 = 4 * 1024;
/// Most repositories whose tokens are kept; the cache starts over beyond.
const MAX_TOKENS: usize = 1024;
/// Lifetime of a token whose response names none (the distribution token specification's
/// default).
const DEFAULT_TOKEN_SECONDS: u64 = 60;
/// Longest a token is kept, whatever its response says.
const MAX_TOKEN_SECONDS: u64 = 3600;

/// One read under `/v2/<repository>/`.
pub(super) struct Read<'a> {
    /// After the repository: `manifests/<reference>`, `blobs/<digest>`, ...
    pub path: String,
    pub query: &'a [(&'a str, &'a str)],
    /// Media types accepted (none: any).
    pub accept: &'a [&'a str],
    /// Most bytes read.
    pub max: u64,
    /// What is read, for the error when it is over `max`.
    pub what: &'a str,
}

/// A registry's `/v2/` API, with its credentials and the tokens it issued.
pub(super) struct Distribution {
    http: reqwest::Client,
    /// `https`, or `http` for loopback and insecure registries.
    scheme: &'static str,
    /// Where requests go: `registry`, except for Docker Hub (see [`api_host`]).
    host: String,
    registry: String,
    /// `Authorization` value for basic authentication, when there are credentials (marked
    /// sensitive, like tokens, so that no log or debug output shows it).
    basic: Option<HeaderValue>,
    /// Whether the registry asked for basic authentication (sent from then on).
    wants_basic: AtomicBool,
    /// Bearer tokens by repository, with when to stop using them.
    tokens: Mutex<HashMap<String, (HeaderValue, Instant)>>,
}

impl Distribution {
    /// A client for `registry`, read over plain HTTP when `plain`, with `credentials`
    /// (user, password) when there are some.
    pub(super) fn new(
        registry: &str,
        plain: bool,
        credentials: Option<(&str, &str)>,
    ) -> Result<Self, RegistryError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("binauthz/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(5))
            .https_only(!plain)
            .build()
            .map_err(|e| RegistryError::Request {
                registry: registry.to_owned(),
                message: format!("cannot build an HTTP client: {e}"),
            })?;
        Ok(Self {
            http,
            scheme: if plain { "http" } else { "https" },
            host: api_host(registry).to_owned(),
            registry: registry.to_owned(),
            basic: credentials.and_then(|(user, password)| {
                sensitive(&format!(
                    "Basic {}",
                    STANDARD.encode(format!("{user}:{password}"))
                ))
            }),
            wants_basic: AtomicBool::new(false),
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// `GET /v2/<repository>/<path>?<query>`: the body (at most `read.max` bytes), or `None`
    /// when the registry has nothing there (404, or an OCI error code meaning unknown).
    pub(super) async fn get(
        &self,
        repository: &str,
        read: &Read<'_>,
    ) -> Result<Option<Vec<u8>>, RegistryError> {
        let Read {
            path,
            query,
            accept,
            max,
            what,
        } = read;
        let (query, accept, max, what) = (*query, *accept, *max, *what);
        let mut url = Url::parse(&format!(
            "{}://{}/v2/{repository}/{path}",
            self.scheme, self.host
        ))
        .map_err(|e| self.failed(format!("{repository}/{path} makes no URL: {e}")))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut challenged = false;
        loop {
            let mut request = self.http.get(url.clone());
            if !accept.is_empty() {
                request = request.header(ACCEPT, accept.join(", "));
            }
            if let Some(authorization) = self.authorization(repository) {
                request = request.header(AUTHORIZATION, authorization);
            }
            let response = request
                .send()
                .await
                .map_err(|e| self.failed(describe(&e)))?;
            let status = response.status();
            // A challenge is met only from the registry itself, never from a host it
            // redirected to (a blob store), which would otherwise be sent credentials.
            let from_registry = response.url().origin() == url.origin();
            if status == StatusCode::UNAUTHORIZED && !challenged && from_registry {
                challenged = true;
                let challenge = response
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                self.answer(repository, &challenge).await?;
                continue;
            }
            if status.is_success() {
                return read_bounded(response, max)
                    .await
                    .map(Some)
                    .map_err(|e| self.unread(e, max, what));
            }
            return self.refused(&url, response).await;
        }
    }

    /// The `Authorization` to send for `repository`: its live token, or basic credentials
    /// once the registry asked for them.
    fn authorization(&self, repository: &str) -> Option<HeaderValue> {
        let now = Instant::now();
        let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((token, until)) = tokens.get(repository)
            && *until > now
        {
            return Some(token.clone());
        }
        drop(tokens);
        if self.wants_basic.load(Ordering::Relaxed) {
            return self.basic.clone();
        }
        None
    }

    /// Meet a `WWW-Authenticate` challenge: fetch a token (Bearer), or send basic credentials
    /// from now on (Basic).
    async fn answer(&self, repository: &str, challenge: &str) -> Result<(), RegistryError> {
        let challenges = http_auth::parse_challenges(challenge).map_err(|e| {
            self.failed(format!(
                "authentication required, and its challenge {challenge:?} cannot be read: {e}"
            ))
        })?;
        let param = |c: &http_auth::ChallengeRef<'_>, name: &str| {
            c.params
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.to_unescaped())
        };
        if let Some(bearer) = challenges
            .iter()
            .find(|c| c.scheme.eq_ignore_ascii_case("bearer"))
        {
            let realm = param(bearer, "realm").ok_or_else(|| {
                self.failed(
                    "authentication required, and the Bearer challenge names no realm".into(),
                )
            })?;
            let service = param(bearer, "service");
            return self
                .fetch_token(repository, &realm, service.as_deref())
                .await;
        }
        if challenges
            .iter()
            .any(|c| c.scheme.eq_ignore_ascii_case("basic"))
        {
            if self.basic.is_none() {
                return Err(self.failed(format!(
                    "authentication required and there are no credentials for {}: add them to \
                     the Attestor's pull secret",
                    self.registry
                )));
            }
            self.wants_basic.store(true, Ordering::Relaxed);
            return Ok(());
        }
        Err(self.failed(format!(
            "authentication required with a scheme binauthz does not speak: {challenge:?}"
        )))
    }

    /// Ask the token service at `realm` for a pull token for `repository` and keep it.
    async fn fetch_token(
        &self,
        repository: &str,
        realm: &str,
        service: Option<&str>,
    ) -> Result<(), RegistryError> {
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let mut url = Url::parse(realm)
            .map_err(|e| self.failed(format!("the token realm {realm:?} is not a URL: {e}")))?;
        // Credentials go to the token service only as securely as to the registry itself.
        // (plain HTTP only for a plain-HTTP registry, and only to its own host).
        let registry_host = Url::parse(&format!("http://{}/", self.host))
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned));
        let plain_ok = url.scheme() == "http"
            && self.scheme == "http"
            && url.host_str().is_some()
            && url.host_str().map(str::to_owned) == registry_host;
        if url.scheme() != "https" && !plain_ok {
            return Err(self.failed(bounded(format!(
                "the token realm {realm:?} is not HTTPS (plain HTTP is allowed only to a \
                 loopback or --insecure-registry registry's own host); credentials are not \
                 sent there"
            ))));
        }
        {
            let mut pairs = url.query_pairs_mut();
            if let Some(service) = service {
                pairs.append_pair("service", service);
            }
            pairs.append_pair("scope", &format!("repository:{repository}:pull"));
        }
        let mut request = self.http.get(url.clone());
        if let Some(basic) = &self.basic {
            request = request.header(AUTHORIZATION, basic);
        }
        let started = Instant::now();
        let response = request
            .send()
            .await
            .map_err(|e| self.failed(describe(&e)))?;
        if !response.status().is_success() {
            let status = response.status();
            let body = read_bounded(response, MAX_ERROR_BODY)
                .await
                .unwrap_or_default();
            return Err(self.failed(format!(
                "the token service {realm} refused a pull token for {repository}: HTTP {status}: {}",
                bounded_text(&body)
            )));
        }
        let body = read_bounded(response, MAX_TOKEN_RESPONSE)
            .await
            .map_err(|e| {
                self.unread(
                    e,
                    MAX_TOKEN_RESPONSE,
                    &format!("the token response of {realm}"),
                )
            })?;
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
            self.failed(format!("the token response of {realm} is not a token: {e}"))
        })?;
        let token = parsed
            .token
            .or(parsed.access_token)
            .ok_or_else(|| self.failed(format!("the token response of {realm} holds no token")))?;
        let header = sensitive(&format!("Bearer {token}"))
            .ok_or_else(|| self.failed(format!("the token of {realm} is not a header value")))?;
        let seconds = parsed
            .expires_in
            .unwrap_or(DEFAULT_TOKEN_SECONDS)
            .min(MAX_TOKEN_SECONDS);
        // Stop using it a little early: it was issued before the response arrived.
        let until = started + Duration::from_secs(seconds).mul_f64(0.9);
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        if tokens.len() >= MAX_TOKENS {
            tokens.clear();
        }
        tokens.insert(repository.to_owned(), (header, until));
        Ok(())
    }

    /// A response that is neither success nor a challenge: `None` for "nothing there",
    /// otherwise the error with the registry's own words (bounded).
    async fn refused(
        &self,
        url: &Url,
        response: reqwest::Response,
    ) -> Result<Option<Vec<u8>>, RegistryError> {
        #[derive(serde::Deserialize)]
        struct Envelope {
            #[serde(default)]
            errors: Vec<OciError>,
        }
        #[derive(serde::Deserialize)]
        struct OciError {
            #[serde(default)]
            code: String,
            #[serde(default)]
            message: String,
        }
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let body = read_bounded(response, MAX_ERROR_BODY)
            .await
            .unwrap_or_default();
        let envelope = serde_json::from_slice::<Envelope>(&body).ok();
        let errors = envelope.map(|e| e.errors).unwrap_or_default();
        if status.is_client_error()
            && errors.iter().any(|e| {
                matches!(
                    e.code.as_str(),
                    "MANIFEST_UNKNOWN" | "NAME_UNKNOWN" | "BLOB_UNKNOWN" | "NOT_FOUND"
                )
            })
        {
            return Ok(None);
        }
        let said = if errors.is_empty() {
            bounded_text(&body)
        } else {
            errors
                .iter()
                .map(|e| format!("{}: {}", e.code, e.message))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let advice = if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            if self.basic.is_some() {
                " (the Attestor's pull secret does not grant pull access)"
            } else {
                " (no credentials for this registry: name a pull secret in the Attestor)"
            }
        } else {
            ""
        };
        Err(self.failed(bounded(format!(
            "GET {}: HTTP {status}{advice}: {said}",
            url.path()
        ))))
    }

    fn failed(&self, message: String) -> RegistryError {
        RegistryError::Request {
            registry: self.registry.clone(),
            message,
        }
    }

    /// The error for a body that was not read (`what`, bounded by `max`).
    fn unread(&self, error: ReadError, max: u64, what: &str) -> RegistryError {
        match error {
            ReadError::TooLarge => RegistryError::TooLarge {
                registry: self.registry.clone(),
                what: format!("{} is over {max} bytes", what),
            },
            ReadError::Transport(message) => self.failed(message),
        }
    }
}

/// The host serving `registry`'s API: Docker Hub's references say `docker.io`, its API is at
/// `registry-1.docker.io` (as Docker, containerd and go-containerregistry resolve it).
fn api_host(registry: &str) -> &str {
    if registry == crate::image::DOCKER_HUB {
        "registry-1.docker.io"
    } else {
        registry
    }
}

/// An `Authorization` value, marked sensitive; `None` if it cannot be a header value.
fn sensitive(value: &str) -> Option<HeaderValue> {
    let mut header = HeaderValue::from_str(value).ok()?;
    header.set_sensitive(true);
    Some(header)
}

/// Why a body was not read.
enum ReadError {
    /// It declared or sent more than its bound.
    TooLarge,
    /// The connection failed.
    Transport(String),
}

/// A response body of at most `max` bytes; a larger one is dropped at the bound (its declared
/// length is refused before reading).
async fn read_bounded(mut response: reqwest::Response, max: u64) -> Result<Vec<u8>, ReadError> {
    if response.content_length().is_some_and(|length| length > max) {
        return Err(ReadError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| ReadError::Transport(describe(&e)))?
    {
        if body.len() as u64 + chunk.len() as u64 > max {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A transport error with its causes (reqwest's own text names only the outermost).
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    bounded(text)
}

/// Text from a registry, bounded for statuses and logs.
fn bounded_text(body: &[u8]) -> String {
    bounded(String::from_utf8_lossy(body).trim().to_owned())
}

/// At most 500 characters.
pub(super) fn bounded(text: String) -> String {
    match text.char_indices().nth(500) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_is_read_at_its_api_host() {
        assert_eq!(api_host("docker.io"), "registry-1.docker.io");
        assert_eq!(api_host("ghcr.io"), "ghcr.io");
        assert_eq!(api_host("127.0.0.1:5000"), "127.0.0.1:5000");
        let hub = Distribution::new("docker.io", false, None).unwrap();
        assert_eq!(hub.host, "registry-1.docker.io");
        assert_eq!(hub.registry, "docker.io");
    }
}
