//! A client for the OCI distribution protocol.
//!
//! The client is blocking. The rest of forge reads and writes the store with
//! ordinary `std::io` (`Read`/`Write`) on worker threads, so a blocking
//! client lets blob data flow straight between the store and the network
//! without an async runtime in every caller. Callers that push several blobs
//! at once run one call per thread, because [`Client`] is `Sync` and shares
//! its connection pool and token cache between threads. Async callers call
//! it from a blocking task (`tokio::task::spawn_blocking`), since
//! `reqwest`'s blocking client panics when used on an async runtime thread.
//!
//! The client is a thin layer over `reqwest` (blocking, native TLS with the
//! system's trusted roots). The `oci-client` crate (0.18) was evaluated first
//! and not used, because it lacks parts this client needs: it has no retries
//! or backoff, no `Range` resumption of a broken blob download, no size
//! check while streaming and no way to tell the caller's sink to discard
//! partial data; its mount request asks only for push access to the target,
//! not for pull access to the source repository; it has its own reference
//! type; and it reads credentials only from the caller, not from the Docker
//! configuration or credential helpers.
//!
//! Transport rules: HTTPS with certificate verification everywhere. For
//! `localhost`, loopback addresses and hosts in
//! [`ClientConfig::insecure_registries`], the client tries HTTPS first and
//! falls back to plain HTTP when the HTTPS connection fails. For hosts in
//! `insecure_registries` it also accepts any TLS certificate.
//!
//! Authentication: the first request to a registry pings `/v2/`. A 200
//! means no authentication; a 401 carries a `WWW-Authenticate` challenge.
//! Basic challenges get the user name and password on every request.
//! Bearer challenges get a token from the token service for the scopes
//! the operation needs (`repository:NAME:pull`, `repository:NAME:pull,push`,
//! plus `repository:SOURCE:pull` for a mount); tokens are cached per
//! registry and scope set until they expire. A 401 on a later request
//! refreshes the challenge and token once.
//!
//! Retries: connection errors, timeouts, HTTP 429 and HTTP 5xx are retried
//! with exponential backoff up to [`ClientConfig::max_retries`] times; a
//! `Retry-After` header in seconds is honoured up to
//! [`ClientConfig::max_backoff`].

mod auth;
mod blob;
mod error;
mod tls;

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use oci_spec::image::{Digest, ImageIndex};
use reqwest::Method;
use reqwest::StatusCode;
use reqwest::Url;
use reqwest::blocking::{RequestBuilder, Response};
use reqwest::header::{self, HeaderValue};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use sha2::Digest as _;

pub use blob::{BlobPush, BlobSink};
pub use error::ClientError;

use crate::credentials::{Credential, CredentialProvider};
use crate::reference::Reference;
use auth::{Challenge, Token, TokenResponse};

/// Media type of an OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of an OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Media type of a Docker schema-2 image manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Media type of a Docker schema-2 manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The largest manifest the client reads, as the OCI distribution
/// specification requires registries to accept at least this much.
pub const MANIFEST_MAX_BYTES: u64 = 4 * 1024 * 1024;

/// The client identifies itself to registries as `forge/VERSION`.
const USER_AGENT: &str = concat!("forge/", env!("CARGO_PKG_VERSION"));

/// Settings of a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Hosts (`HOST[:PORT]` as in references) that may use plain HTTP and
    /// unverified TLS.
    pub insecure_registries: Vec<String>,
    /// Extra trusted root certificates, PEM encoded.
    pub root_certificates_pem: Vec<Vec<u8>>,
    /// How often a failed request is retried.
    pub max_retries: u32,
    /// The delay before the first retry; it doubles for each further retry.
    pub initial_backoff: Duration,
    /// The upper bound of a retry delay.
    pub max_backoff: Duration,
    /// Blobs up to this size are uploaded in one PUT; larger ones in chunks.
    pub monolithic_max_bytes: u64,
    /// The size of each PATCH of a chunked upload.
    pub chunk_bytes: usize,
    /// The time allowed to open a connection.
    pub connect_timeout: Duration,
    /// The time allowed for sending a request (with its body) until the
    /// response headers arrive, and for each read of a response body.
    pub io_timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            insecure_registries: Vec::new(),
            root_certificates_pem: Vec::new(),
            max_retries: 4,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(8),
            monolithic_max_bytes: 8 * 1024 * 1024,
            chunk_bytes: 8 * 1024 * 1024,
            connect_timeout: Duration::from_secs(30),
            io_timeout: Duration::from_secs(300),
        }
    }
}

/// A target platform for picking a manifest out of an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// The operating system, such as `linux`.
    pub os: String,
    /// The CPU architecture, such as `amd64`.
    pub architecture: String,
    /// The CPU variant, such as `v8`, if one is required.
    pub variant: Option<String>,
}

impl Default for Platform {
    /// `linux/amd64`.
    fn default() -> Self {
        Platform {
            os: "linux".to_owned(),
            architecture: "amd64".to_owned(),
            variant: None,
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// A malformed `OS/ARCH[/VARIANT]` string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid platform `{0}`: expected OS/ARCH or OS/ARCH/VARIANT, such as `linux/arm64/v8`")]
pub struct PlatformError(String);

impl FromStr for Platform {
    type Err = PlatformError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        let valid = |p: &&str| !p.is_empty();
        match parts.as_slice() {
            [os, arch] if [os, arch].iter().all(|p| valid(p)) => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            }),
            [os, arch, variant] if [os, arch, variant].iter().all(|p| valid(p)) => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: Some(variant.to_string()),
            }),
            _ => Err(PlatformError(s.to_owned())),
        }
    }
}

impl Platform {
    /// Checks whether an index entry's platform fits this one. A missing variant on
    /// either side matches, and `arm64` treats `v8` as no variant.
    fn matches(&self, os: &str, architecture: &str, variant: Option<&str>) -> bool {
        if self.os != os || self.architecture != architecture {
            return false;
        }
        let normalise = |v: Option<&str>| match (architecture, v) {
            ("arm64", Some("v8")) => None,
            (_, v) => v.map(str::to_owned),
        };
        match (normalise(self.variant.as_deref()), normalise(variant)) {
            (Some(wanted), Some(found)) => wanted == found,
            (Some(_), None) => false,
            (None, _) => true,
        }
    }
}

/// A manifest as the registry stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The exact bytes; the digest is computed over these.
    pub bytes: Vec<u8>,
    /// The media type from `Content-Type`, or from the `mediaType` field
    /// when the header is missing or generic.
    pub media_type: String,
    /// The digest of `bytes`.
    pub digest: Digest,
}

impl Manifest {
    /// Checks whether the media type is an OCI index or a Docker manifest
    /// list.
    pub fn is_index(&self) -> bool {
        self.media_type == OCI_INDEX || self.media_type == DOCKER_MANIFEST_LIST
    }
}

/// An image manifest picked for a platform, with the index it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedManifest {
    /// The image manifest.
    pub manifest: Manifest,
    /// The index the manifest was picked from, when the reference named one.
    pub index: Option<Manifest>,
}

/// How to reach one registry host, learned from its `/v2/` ping.
#[derive(Debug, Clone)]
struct Endpoint {
    base: Url,
    challenge: Challenge,
}

/// A client for one or more registries.
pub struct Client {
    config: ClientConfig,
    /// Extra root certificates from the configuration, parsed once.
    certificates: Vec<CertificateDer<'static>>,
    /// Built on first use: loading the system's root certificates takes
    /// tens of milliseconds, which a build that never reaches a registry
    /// should not pay.
    http: OnceLock<reqwest::blocking::Client>,
    /// Accepts any certificate; used only for `insecure_registries`.
    http_insecure: OnceLock<reqwest::blocking::Client>,
    credentials: Box<dyn CredentialProvider>,
    endpoints: Mutex<HashMap<String, Endpoint>>,
    /// Held while a host is pinged, so that blobs sent in parallel wait
    /// for one ping instead of each sending their own.
    pinging: Mutex<()>,
    /// Bearer tokens by (API host, space-joined scopes).
    tokens: Mutex<HashMap<(String, String), Token>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Scopes for pulling from `repository`.
fn pull_scope(repository: &str) -> Vec<String> {
    vec![format!("repository:{repository}:pull")]
}

/// Scopes for pushing to `repository`.
fn push_scope(repository: &str) -> Vec<String> {
    vec![format!("repository:{repository}:pull,push")]
}

/// Checks whether `host` is a loopback host (`localhost`,
/// `127.0.0.0/8`, `::1`), with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split_once(']').map_or(rest, |(address, _)| address)
    } else {
        host.split_once(':').map_or(host, |(name, _)| name)
    };
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `HOST[:PORT]` of a URL, with IPv6 addresses in brackets.
fn url_host(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => String::new(),
    }
}

/// Reads at most `limit` bytes of a response body, failing past it.
fn read_limited(response: Response, limit: u64, url: &str) -> Result<Vec<u8>, ClientError> {
    let mut bytes = Vec::new();
    let read = response
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| ClientError::BodyRead {
            url: url.to_owned(),
            attempts: 1,
            source,
        })?;
    if read as u64 > limit {
        return Err(ClientError::InvalidResponse {
            url: url.to_owned(),
            reason: format!("the body is larger than {limit} bytes"),
        });
    }
    Ok(bytes)
}

/// Extracts `errors[].code` and `errors[].message` from a registry error
/// body, or the start of a non-JSON body.
fn error_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(default)]
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }

    if let Ok(parsed) = serde_json::from_slice::<Body>(body)
        && !parsed.errors.is_empty()
    {
        let texts: Vec<String> = parsed
            .errors
            .iter()
            .map(|e| match (e.code.is_empty(), e.message.is_empty()) {
                (false, false) => format!("{}: {}", e.code, e.message),
                (false, true) => e.code.clone(),
                _ => e.message.clone(),
            })
            .collect();
        return texts.join("; ");
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Computes the digest of `bytes` with the algorithm of `like`.
pub(crate) fn digest_like(like: &Digest, bytes: &[u8]) -> Result<Digest, ClientError> {
    let text = match like.algorithm().as_ref() {
        "sha256" => format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes))),
        "sha512" => format!("sha512:{}", hex::encode(sha2::Sha512::digest(bytes))),
        _ => {
            return Err(ClientError::UnsupportedDigest {
                digest: like.to_string(),
            });
        }
    };
    Digest::from_str(&text).map_err(|_| ClientError::UnsupportedDigest { digest: text })
}

/// Installs the TLS crypto provider that reqwest's rustls backend takes
/// from the process. Call it before building any other reqwest client;
/// calling it again does nothing.
pub fn install_tls_provider() {
    // An error means a provider is installed already, which serves as well.
    let _ = tls::crypto_provider().install_default();
}

/// Computes the sha256 digest of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> Digest {
    let text = format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)));
    // 64 lower-case hex digits after `sha256:` always form a valid digest.
    Digest::from_str(&text).unwrap_or_else(|_| unreachable!("sha256 digest `{text}` is valid"))
}

impl Client {
    /// Builds a client that looks up credentials with `credentials`.
    ///
    /// # Errors
    ///
    /// Returns [`ClientError::Setup`] when a root certificate is not valid
    /// PEM. A TLS backend that fails to initialise is reported by the first
    /// request instead.
    pub fn new(
        config: ClientConfig,
        credentials: Box<dyn CredentialProvider>,
    ) -> Result<Client, ClientError> {
        install_tls_provider();
        let mut certificates = Vec::new();
        for pem in &config.root_certificates_pem {
            let certificate =
                CertificateDer::from_pem_slice(pem).map_err(|e| ClientError::Setup {
                    reason: format!("invalid root certificate: {e}"),
                })?;
            certificates.push(certificate);
        }
        Ok(Client {
            certificates,
            http: OnceLock::new(),
            http_insecure: OnceLock::new(),
            config,
            credentials,
            endpoints: Mutex::new(HashMap::new()),
            pinging: Mutex::new(()),
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// Builds an HTTP client; `accept_invalid` turns off certificate checks.
    fn build_http(&self, accept_invalid: bool) -> Result<reqwest::blocking::Client, ClientError> {
        // Redirects (registries send blob downloads to storage hosts) may
        // not downgrade to plain HTTP except towards hosts allowed it.
        let insecure = self.config.insecure_registries.clone();
        let redirect_policy = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 10 {
                return attempt.error("more than 10 redirects");
            }
            let url = attempt.url().clone();
            if url.scheme() == "https" {
                return attempt.follow();
            }
            let host = url_host(&url);
            if url.scheme() == "http" && (is_loopback_host(&host) || insecure.contains(&host)) {
                return attempt.follow();
            }
            attempt.error(format!(
                "refusing to follow a redirect to `{url}`, which is not HTTPS"
            ))
        });
        let mut builder = reqwest::blocking::Client::builder()
            .user_agent(USER_AGENT)
            .redirect(redirect_policy)
            .connect_timeout(self.config.connect_timeout)
            .timeout(self.config.io_timeout);
        builder = if accept_invalid {
            builder.tls_danger_accept_invalid_certs(true)
        } else {
            let tls =
                tls::client_config(self.certificates.clone()).map_err(|e| ClientError::Setup {
                    reason: format!("cannot set up TLS: {e}"),
                })?;
            builder.tls_backend_preconfigured(tls)
        };
        builder.build().map_err(|e| ClientError::Setup {
            reason: e.to_string(),
        })
    }

    /// Returns the client's settings.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    fn is_insecure(&self, host: &str) -> bool {
        self.config.insecure_registries.iter().any(|h| h == host)
    }

    fn plain_http_allowed(&self, host: &str) -> bool {
        is_loopback_host(host) || self.is_insecure(host)
    }

    fn http_for(&self, host: &str) -> Result<&reqwest::blocking::Client, ClientError> {
        let (cell, accept_invalid) = if self.is_insecure(host) {
            (&self.http_insecure, true)
        } else {
            (&self.http, false)
        };
        if let Some(client) = cell.get() {
            return Ok(client);
        }
        let client = self.build_http(accept_invalid)?;
        // Another thread may have built one meanwhile; either will do.
        Ok(cell.get_or_init(|| client))
    }

    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exponential = self
            .config
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
        retry_after
            .unwrap_or(exponential)
            .min(self.config.max_backoff)
    }

    /// Sends a request built by `make`, retrying transient failures.
    /// Returns the last response whatever its status once retries are spent.
    fn execute(
        &self,
        method: &Method,
        url: &Url,
        make: &dyn Fn() -> RequestBuilder,
    ) -> Result<Response, ClientError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match make().send() {
                Ok(response) => {
                    let status = response.status();
                    let transient = status == StatusCode::TOO_MANY_REQUESTS
                        || (status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED);
                    if !transient || attempt > self.config.max_retries {
                        return Ok(response);
                    }
                    let retry_after = response
                        .headers()
                        .get(header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let delay = self.backoff(attempt, retry_after);
                    tracing::warn!(%method, %url, status = status.as_u16(), attempt, ?delay, "retrying after a transient HTTP status");
                    std::thread::sleep(delay);
                }
                Err(error) => {
                    let transient = error.is_connect()
                        || error.is_timeout()
                        || error.is_request()
                        || error.is_body();
                    if !transient || attempt > self.config.max_retries {
                        return Err(ClientError::Transport {
                            method: method.to_string(),
                            url: url.to_string(),
                            attempts: attempt,
                            source: error,
                        });
                    }
                    let delay = self.backoff(attempt, None);
                    tracing::warn!(%method, %url, %error, attempt, ?delay, "retrying after a connection error");
                    std::thread::sleep(delay);
                }
            }
        }
    }

    /// Returns how to reach `host`, pinging `/v2/` on first use.
    fn endpoint(&self, host: &str) -> Result<Endpoint, ClientError> {
        if let Some(endpoint) = self.lock_endpoints().get(host) {
            return Ok(endpoint.clone());
        }
        let _pinging = self.pinging.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(endpoint) = self.lock_endpoints().get(host) {
            return Ok(endpoint.clone());
        }
        let endpoint = self.ping(host)?;
        self.lock_endpoints()
            .insert(host.to_owned(), endpoint.clone());
        Ok(endpoint)
    }

    fn lock_endpoints(&self) -> std::sync::MutexGuard<'_, HashMap<String, Endpoint>> {
        // A panic while holding the lock cannot leave the map half-updated,
        // so a poisoned lock is still usable.
        self.endpoints.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_tokens(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Token>> {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ping(&self, host: &str) -> Result<Endpoint, ClientError> {
        let https = self.parse_url(&format!("https://{host}/v2/"))?;
        let http = self.http_for(host)?;
        let response = if self.plain_http_allowed(host) {
            // One HTTPS attempt, then plain HTTP with the usual retries.
            match http.get(https.clone()).send() {
                Ok(response) => response,
                Err(https_error) => {
                    tracing::debug!(%host, error = %https_error, "HTTPS ping failed, trying plain HTTP");
                    let plain = self.parse_url(&format!("http://{host}/v2/"))?;
                    self.execute(&Method::GET, &plain, &|| http.get(plain.clone()))?
                }
            }
        } else {
            self.execute(&Method::GET, &https, &|| http.get(https.clone()))?
        };

        let url = response.url().clone();
        let mut base = url.clone();
        base.set_path("/");
        base.set_query(None);
        let status = response.status();
        if status.is_success() {
            return Ok(Endpoint {
                base,
                challenge: Challenge::None,
            });
        }
        if status == StatusCode::UNAUTHORIZED {
            let challenge = response
                .headers()
                .get(header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .and_then(auth::parse_challenge)
                .ok_or_else(|| ClientError::InvalidResponse {
                    url: url.to_string(),
                    reason: "HTTP 401 without a Basic or Bearer WWW-Authenticate challenge"
                        .to_owned(),
                })?;
            return Ok(Endpoint { base, challenge });
        }
        Err(self.status_error(&Method::GET, response))
    }

    fn parse_url(&self, text: &str) -> Result<Url, ClientError> {
        Url::parse(text).map_err(|e| ClientError::InvalidResponse {
            url: text.to_owned(),
            reason: format!("not a valid URL: {e}"),
        })
    }

    /// Turns an unexpected response into an error with the registry's
    /// message.
    fn status_error(&self, method: &Method, response: Response) -> ClientError {
        let url = response.url().to_string();
        let status = response.status().as_u16();
        let body = read_limited(response, 64 * 1024, &url).unwrap_or_default();
        ClientError::Status {
            method: method.to_string(),
            url,
            status,
            message: error_message(&body),
        }
    }

    /// Like [`Client::status_error`], but 401 and 403 become
    /// [`ClientError::Unauthorized`] naming the registry and scopes.
    fn request_error(
        &self,
        method: &Method,
        registry: &str,
        scopes: &[String],
        response: Response,
    ) -> ClientError {
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let url = response.url().to_string();
            let body = read_limited(response, 64 * 1024, &url).unwrap_or_default();
            return ClientError::Unauthorized {
                registry: registry.to_owned(),
                scope: scopes.join(" "),
                status: status.as_u16(),
                message: error_message(&body),
            };
        }
        self.status_error(method, response)
    }

    /// Returns the `Authorization` header for `scopes` on `reference`'s
    /// registry, fetching a token when needed.
    fn authorization(
        &self,
        reference: &Reference,
        endpoint: &Endpoint,
        scopes: &[String],
    ) -> Result<Option<HeaderValue>, ClientError> {
        let secret_header = |text: String| {
            HeaderValue::from_str(&text)
                .map(|mut value| {
                    value.set_sensitive(true);
                    value
                })
                .map_err(|_| ClientError::InvalidResponse {
                    url: reference.registry().to_owned(),
                    reason: "the credential or token contains characters not allowed in a header"
                        .to_owned(),
                })
        };
        match &endpoint.challenge {
            Challenge::None => Ok(None),
            Challenge::Basic => match self.credentials.credential(reference.registry())? {
                Some(Credential::UserPassword { username, password }) => {
                    let encoded = base64_encode(&format!("{username}:{password}"));
                    secret_header(format!("Basic {encoded}")).map(Some)
                }
                _ => Ok(None),
            },
            Challenge::Bearer { realm, service } => {
                let key = (reference.api_host().to_owned(), scopes.join(" "));
                if let Some(token) = self.lock_tokens().get(&key)
                    && token.is_fresh()
                {
                    return secret_header(format!("Bearer {}", token.value)).map(Some);
                }
                let token = self.fetch_token(reference, realm, service.as_deref(), scopes)?;
                let header = secret_header(format!("Bearer {}", token.value))?;
                self.lock_tokens().insert(key, token);
                Ok(Some(header))
            }
        }
    }

    fn fetch_token(
        &self,
        reference: &Reference,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<Token, ClientError> {
        let registry = reference.registry();
        let mut url = self.parse_url(realm)?;
        let realm_host = url_host(&url);
        if url.scheme() != "https" && !self.plain_http_allowed(&realm_host) {
            return Err(ClientError::InsecureRealm {
                registry: registry.to_owned(),
                realm: realm.to_owned(),
            });
        }
        let http = self.http_for(&realm_host)?;
        let credential = self.credentials.credential(registry)?;

        let response = match &credential {
            Some(Credential::IdentityToken { token, .. }) => {
                // OAuth2 refresh-token grant, sent as a form body so that
                // the token never appears in a URL.
                let mut form =
                    Url::parse("http://form.invalid/").map_err(|e| ClientError::Setup {
                        reason: e.to_string(),
                    })?;
                {
                    let mut pairs = form.query_pairs_mut();
                    pairs.append_pair("grant_type", "refresh_token");
                    pairs.append_pair("refresh_token", token);
                    pairs.append_pair("client_id", "forge");
                    pairs.append_pair("scope", &scopes.join(" "));
                    if let Some(service) = service {
                        pairs.append_pair("service", service);
                    }
                }
                let body = form.query().unwrap_or_default().to_owned();
                self.execute(&Method::POST, &url, &|| {
                    http.post(url.clone())
                        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                        .body(body.clone())
                })?
            }
            _ => {
                {
                    let mut pairs = url.query_pairs_mut();
                    if let Some(service) = service {
                        pairs.append_pair("service", service);
                    }
                    for scope in scopes {
                        pairs.append_pair("scope", scope);
                    }
                }
                self.execute(&Method::GET, &url, &|| {
                    let request = http.get(url.clone());
                    match &credential {
                        Some(Credential::UserPassword { username, password }) => {
                            request.basic_auth(username, Some(password))
                        }
                        _ => request,
                    }
                })?
            }
        };

        let status = response.status();
        let text_url = response.url().to_string();
        if !status.is_success() {
            let body = read_limited(response, 64 * 1024, &text_url).unwrap_or_default();
            return Err(ClientError::Unauthorized {
                registry: registry.to_owned(),
                scope: scopes.join(" "),
                status: status.as_u16(),
                message: error_message(&body),
            });
        }
        let body = read_limited(response, 1024 * 1024, &text_url)?;
        let parsed: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| ClientError::InvalidResponse {
                url: text_url.clone(),
                reason: format!("the token response is not the expected JSON: {e}"),
            })?;
        let value = parsed
            .token
            .filter(|t| !t.is_empty())
            .or(parsed.access_token.filter(|t| !t.is_empty()))
            .ok_or_else(|| ClientError::InvalidResponse {
                url: text_url,
                reason: "the token response has neither `token` nor `access_token`".to_owned(),
            })?;
        tracing::debug!(%registry, scope = %scopes.join(" "), "obtained a registry token");
        Ok(Token::new(value, parsed.expires_in))
    }

    /// Sends an authenticated request to `target` (a path under the registry
    /// root, or an absolute upload location) with retries. On a 401 the
    /// client refreshes the challenge and token once.
    fn send(
        &self,
        reference: &Reference,
        scopes: &[String],
        method: Method,
        target: &str,
        decorate: &dyn Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, ClientError> {
        let host = reference.api_host();
        let mut endpoint = self.endpoint(host)?;
        let url = endpoint
            .base
            .join(target)
            .map_err(|e| ClientError::InvalidResponse {
                url: format!("{}{target}", endpoint.base),
                reason: format!("not a valid URL: {e}"),
            })?;
        let http = self.http_for(host)?;

        // Upload locations may point elsewhere. Credentials go only to the
        // registry's own origin, and plain HTTP only to hosts allowed it.
        let same_origin = url.origin() == endpoint.base.origin();
        if !same_origin && url.scheme() != "https" && !self.plain_http_allowed(&url_host(&url)) {
            return Err(ClientError::InvalidResponse {
                url: url.to_string(),
                reason: format!(
                    "registry {} sent a location that is not HTTPS",
                    reference.registry()
                ),
            });
        }

        let mut refreshed = false;
        loop {
            let authorization = if same_origin {
                self.authorization(reference, &endpoint, scopes)?
            } else {
                None
            };
            let response = self.execute(&method, &url, &|| {
                let mut request = http.request(method.clone(), url.clone());
                if let Some(value) = &authorization {
                    request = request.header(header::AUTHORIZATION, value.clone());
                }
                decorate(request)
            })?;
            if response.status() != StatusCode::UNAUTHORIZED || refreshed {
                return Ok(response);
            }

            // The token expired early or the repository needs another
            // challenge: take the new challenge and try once more.
            refreshed = true;
            let challenge = response
                .headers()
                .get(header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .and_then(auth::parse_challenge);
            let Some(challenge) = challenge else {
                return Ok(response);
            };
            if challenge == Challenge::Basic
                && endpoint.challenge == Challenge::Basic
                && authorization.is_some()
            {
                // The same credentials would be sent again.
                return Ok(response);
            }
            tracing::debug!(registry = %reference.registry(), %url, "HTTP 401, refreshing credentials");
            endpoint.challenge = challenge;
            self.lock_endpoints()
                .insert(host.to_owned(), endpoint.clone());
            self.lock_tokens()
                .remove(&(host.to_owned(), scopes.join(" ")));
        }
    }

    /// Checks that the registry is reachable and the credentials (if any)
    /// are accepted for pulling from `reference`'s repository.
    ///
    /// # Errors
    ///
    /// Returns an error when the registry is unreachable or rejects the
    /// credentials.
    pub fn check_access(&self, reference: &Reference) -> Result<(), ClientError> {
        let scopes = pull_scope(reference.repository());
        let response = self.send(reference, &scopes, Method::GET, "/v2/", &|r| r)?;
        if response.status().is_success() {
            return Ok(());
        }
        Err(self.request_error(&Method::GET, reference.registry(), &scopes, response))
    }

    /// Fetches the manifest or index that `reference` names, accepting OCI
    /// and Docker schema-2 manifests and indexes. With a digest in the
    /// reference the bytes are verified against it; otherwise against the
    /// registry's `Docker-Content-Digest` header when present.
    ///
    /// # Errors
    ///
    /// Returns an error for a missing manifest, failed authentication, a
    /// digest mismatch or a body over [`MANIFEST_MAX_BYTES`].
    pub fn get_manifest(&self, reference: &Reference) -> Result<Manifest, ClientError> {
        let scopes = pull_scope(reference.repository());
        let path = format!(
            "/v2/{}/manifests/{}",
            reference.repository(),
            reference.manifest_reference()
        );
        let accept = [
            OCI_MANIFEST,
            OCI_INDEX,
            DOCKER_MANIFEST,
            DOCKER_MANIFEST_LIST,
        ]
        .join(", ");
        let response = self.send(reference, &scopes, Method::GET, &path, &|r| {
            r.header(header::ACCEPT, accept.clone())
        })?;
        if response.status() != StatusCode::OK {
            return Err(self.request_error(&Method::GET, reference.registry(), &scopes, response));
        }

        let url = response.url().to_string();
        let header_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned());
        let header_digest = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Digest::from_str(v.trim()).ok());
        let bytes = read_limited(response, MANIFEST_MAX_BYTES, &url)?;

        let expected = reference.digest().or(header_digest.as_ref());
        let digest = match expected {
            Some(expected) => {
                let actual = digest_like(expected, &bytes)?;
                if &actual != expected {
                    return Err(ClientError::DigestMismatch {
                        url,
                        expected: expected.to_string(),
                        actual: actual.to_string(),
                    });
                }
                actual
            }
            None => sha256_digest(&bytes),
        };
        let media_type = match header_type {
            Some(t) if !t.is_empty() && t != "application/json" && t != "text/plain" => t,
            _ => media_type_field(&bytes).ok_or_else(|| ClientError::InvalidResponse {
                url: url.clone(),
                reason: "the manifest has no media type in `Content-Type` or `mediaType`"
                    .to_owned(),
            })?,
        };
        Ok(Manifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// Fetches the image manifest for `platform`: the manifest `reference`
    /// names, or, when it names an index, the index entry for `platform`.
    ///
    /// # Errors
    ///
    /// Returns the errors of [`Client::get_manifest`], and
    /// [`ClientError::NoPlatform`] when the index has no entry for
    /// `platform`.
    pub fn get_image_manifest(
        &self,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<ResolvedManifest, ClientError> {
        let first = self.get_manifest(reference)?;
        if !first.is_index() {
            return Ok(ResolvedManifest {
                manifest: first,
                index: None,
            });
        }
        let digest = select_platform(&first, reference, platform)?;
        let manifest = self.get_manifest(&reference.with_digest(digest))?;
        Ok(ResolvedManifest {
            manifest,
            index: Some(first),
        })
    }

    /// Uploads a manifest under `reference`'s tag, or under its digest when
    /// it has no tag. Returns the manifest's digest.
    ///
    /// # Errors
    ///
    /// Returns [`ClientError::DigestMismatch`] when the reference's digest
    /// does not match `bytes`, and the registry's error when it rejects the
    /// manifest (for example for a missing blob).
    pub fn push_manifest(
        &self,
        reference: &Reference,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<Digest, ClientError> {
        let digest = match reference.digest() {
            Some(expected) => {
                let actual = digest_like(expected, bytes)?;
                if &actual != expected {
                    return Err(ClientError::DigestMismatch {
                        url: reference.to_string(),
                        expected: expected.to_string(),
                        actual: actual.to_string(),
                    });
                }
                actual
            }
            None => sha256_digest(bytes),
        };
        let target = match reference.tag() {
            Some(tag) => tag.to_owned(),
            None => digest.to_string(),
        };
        let scopes = push_scope(reference.repository());
        let path = format!("/v2/{}/manifests/{target}", reference.repository());
        let body = bytes.to_vec();
        let media_type = media_type.to_owned();
        let response = self.send(reference, &scopes, Method::PUT, &path, &|r| {
            r.header(header::CONTENT_TYPE, media_type.clone())
                .body(body.clone())
        })?;
        if response.status() != StatusCode::CREATED && response.status() != StatusCode::OK {
            return Err(self.request_error(&Method::PUT, reference.registry(), &scopes, response));
        }
        tracing::debug!(reference = %reference, %digest, "pushed manifest");
        Ok(digest)
    }
}

fn base64_encode(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Reads the `mediaType` field of a manifest.
fn media_type_field(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    serde_json::from_slice::<Probe>(bytes)
        .ok()
        .and_then(|p| p.media_type)
}

/// Picks the digest of the `platform` entry of an index.
fn select_platform(
    index: &Manifest,
    reference: &Reference,
    platform: &Platform,
) -> Result<Digest, ClientError> {
    let parsed: ImageIndex =
        serde_json::from_slice(&index.bytes).map_err(|e| ClientError::InvalidResponse {
            url: reference.to_string(),
            reason: format!("the index is not valid JSON for an image index: {e}"),
        })?;
    let mut available = Vec::new();
    for entry in parsed.manifests() {
        let Some(entry_platform) = entry.platform() else {
            continue;
        };
        let os = entry_platform.os().to_string();
        let architecture = entry_platform.architecture().to_string();
        let variant = entry_platform.variant().as_deref();
        if platform.matches(&os, &architecture, variant) {
            return Ok(entry.digest().clone());
        }
        available.push(match variant {
            Some(variant) => format!("{os}/{architecture}/{variant}"),
            None => format!("{os}/{architecture}"),
        });
    }
    Err(ClientError::NoPlatform {
        reference: reference.to_string(),
        platform: platform.to_string(),
        available: if available.is_empty() {
            "no platforms".to_owned()
        } else {
            available.join(", ")
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_recognised() {
        for host in [
            "localhost",
            "localhost:5000",
            "127.0.0.1",
            "127.1.2.3:80",
            "[::1]:5000",
            "[::1]",
        ] {
            assert!(is_loopback_host(host), "{host} should be loopback");
        }
        for host in [
            "example.com",
            "10.0.0.1:5000",
            "registry-1.docker.io",
            "[2001:db8::1]:5000",
        ] {
            assert!(!is_loopback_host(host), "{host} should not be loopback");
        }
    }

    #[test]
    fn client_is_shareable_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Client>();
    }

    #[test]
    fn url_host_keeps_port_and_brackets() {
        let parse = |s: &str| Url::parse(s).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            url_host(&parse("https://h.example:5000/v2/")),
            "h.example:5000"
        );
        assert_eq!(url_host(&parse("http://[::1]:80/x")), "[::1]");
        assert_eq!(url_host(&parse("http://[::1]:8080/x")), "[::1]:8080");
    }

    #[test]
    fn platform_parses_and_prints() {
        let platform: Platform = "linux/arm64/v8".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(platform.to_string(), "linux/arm64/v8");
        assert!("linux".parse::<Platform>().is_err());
        assert!("linux//v7".parse::<Platform>().is_err());
        assert_eq!(Platform::default().to_string(), "linux/amd64");
    }

    #[test]
    fn platform_matching_rules() {
        let amd64 = Platform::default();
        assert!(amd64.matches("linux", "amd64", None));
        assert!(!amd64.matches("linux", "arm64", None));
        assert!(!amd64.matches("windows", "amd64", None));
        let arm64: Platform = "linux/arm64/v8".parse().unwrap_or_else(|e| panic!("{e}"));
        assert!(arm64.matches("linux", "arm64", None));
        let armv7: Platform = "linux/arm/v7".parse().unwrap_or_else(|e| panic!("{e}"));
        assert!(!armv7.matches("linux", "arm", Some("v6")));
        assert!(armv7.matches("linux", "arm", Some("v7")));
    }

    #[test]
    fn error_message_reads_registry_errors() {
        let body =
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#;
        assert_eq!(error_message(body), "MANIFEST_UNKNOWN: manifest unknown");
        assert_eq!(error_message(b"plain text\n"), "plain text");
        let long = "x".repeat(500);
        assert_eq!(error_message(long.as_bytes()).len(), 203);
    }

    #[test]
    fn select_platform_picks_entry() {
        let amd = format!("sha256:{}", "a".repeat(64));
        let arm = format!("sha256:{}", "b".repeat(64));
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
            {{"mediaType":"{OCI_MANIFEST}","digest":"{arm}","size":1,"platform":{{"os":"linux","architecture":"arm64"}}}},
            {{"mediaType":"{OCI_MANIFEST}","digest":"{amd}","size":1,"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#
        );
        let manifest = Manifest {
            bytes: index.into_bytes(),
            media_type: OCI_INDEX.to_owned(),
            digest: sha256_digest(b""),
        };
        let reference: Reference = "localhost/app".parse().unwrap_or_else(|e| panic!("{e}"));
        let picked = select_platform(&manifest, &reference, &Platform::default());
        assert_eq!(picked.map(|d| d.to_string()).ok(), Some(amd));
        let s390x: Platform = "linux/s390x".parse().unwrap_or_else(|e| panic!("{e}"));
        let missing = select_platform(&manifest, &reference, &s390x);
        let message = missing.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            message.contains("linux/amd64, linux/arm64")
                || message.contains("linux/arm64, linux/amd64"),
            "{message}"
        );
    }
}
