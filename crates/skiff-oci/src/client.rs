//! The registry client: the OCI distribution API over reqwest, with
//! anonymous, Basic and Bearer-token auth, retries with backoff, resumable
//! blob downloads and chunked or monolithic uploads.
//!
//! Why not `oci-client`: its `pull()` buffers whole layers, ranged reads are
//! not verified, a 202 answer to a mount is an error, and mirrors, resume
//! across processes and per-host CAs would all need wrapping; the protocol
//! surface we need is small enough to own.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE,
    LOCATION, RANGE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use reqwest::{Method, RequestBuilder, Response, StatusCode};

use crate::auth::Credentials;
use crate::digest::Digest;
use crate::manifest;
use crate::registries::{ConfigError, Endpoint, RegistriesConf};
use crate::store::{Partial, StoreError, MAX_MANIFEST_SIZE};

const USER_AGENT: &str = concat!("skiff/", env!("CARGO_PKG_VERSION"));
/// Attempts per request for transient failures (connection reset, 5xx, 429).
const ATTEMPTS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot reach {host}: {message}")]
    Connect { host: String, message: String },
    #[error("{host}: authentication required (run `skiff login {host}`)")]
    Unauthorized { host: String },
    #[error("{host}: access denied{}", .detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Denied {
        host: String,
        detail: Option<String>,
    },
    #[error("{host}: login failed: {detail}")]
    LoginFailed { host: String, detail: String },
    #[error("{what} not found in {host}")]
    NotFound { host: String, what: String },
    #[error("{host} answered {status} for {what}{}", .message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Status {
        host: String,
        status: u16,
        what: String,
        message: Option<String>,
    },
    #[error("{host}: {what} is larger than {limit} bytes")]
    TooLarge {
        host: String,
        what: String,
        limit: u64,
    },
    #[error("{host}: {what} is {actual} bytes, the manifest says {expected}")]
    SizeMismatch {
        host: String,
        what: String,
        expected: u64,
        actual: u64,
    },
    #[error("{what}: the registry sent content with digest {actual}, expected {expected}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: Digest,
    },
    #[error("{host}: bad authentication challenge: {detail}")]
    BadChallenge { host: String, detail: String },
    #[error("{host}: {message}")]
    Protocol { host: String, message: String },
    #[error("{host}: reading {what} failed: {message}")]
    Body {
        host: String,
        what: String,
        message: String,
    },
    #[error("bad TLS configuration for {host}: {message}")]
    Tls { host: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl RegistryError {
    /// Worth another endpoint (mirror, search registry): the image may be elsewhere.
    pub fn is_not_found_or_auth(&self) -> bool {
        matches!(
            self,
            Self::NotFound { .. } | Self::Unauthorized { .. } | Self::Denied { .. }
        )
    }
}

type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// Where credentials come from; the CLI passes the auth.json lookup.
pub type CredentialSource =
    Box<dyn Fn(&str) -> Result<Option<Credentials>, ConfigError> + Send + Sync>;

#[derive(Default)]
struct HostState {
    /// `http` once an insecure host proved not to speak TLS.
    plain_http: bool,
    /// The host asked for Basic auth.
    basic: bool,
    /// Bearer tokens by scope string, with expiry.
    tokens: HashMap<String, (String, Instant)>,
    creds: Option<Option<Credentials>>,
}

pub struct RegistryClient {
    conf: RegistriesConf,
    creds: CredentialSource,
    certs_dir: PathBuf,
    clients: Mutex<HashMap<(String, bool), reqwest::Client>>,
    hosts: Mutex<HashMap<String, HostState>>,
    /// Retries back off from this delay (tests shorten it).
    backoff: Duration,
}

/// How an upload began: the registry mounted the blob from another
/// repository, or it is waiting for bytes at `location`.
pub enum UploadStart {
    Mounted,
    Location(String),
}

/// A stored blob to upload.
pub struct BlobFile<'a> {
    pub digest: &'a Digest,
    pub path: &'a std::path::Path,
    pub size: u64,
}

/// The actions a request needs, for the token scope.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Pull,
    Push,
}

impl RegistryClient {
    pub fn new(conf: RegistriesConf, creds: CredentialSource) -> Self {
        let certs_dir = std::env::var_os("SKIFF_CERTS_DIR")
            .map_or_else(|| PathBuf::from("/etc/containers/certs.d"), PathBuf::from);
        let backoff = std::env::var("SKIFF_RETRY_BACKOFF_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(Duration::from_millis(500), Duration::from_millis);
        Self {
            conf,
            creds,
            certs_dir,
            clients: Mutex::default(),
            hosts: Mutex::default(),
            backoff,
        }
    }

    pub fn registries(&self) -> &RegistriesConf {
        &self.conf
    }

    /// An HTTP client for `host`: system roots plus certs.d CAs; unverified
    /// TLS when the host is insecure.
    fn http(&self, host: &str, insecure: bool) -> Result<reqwest::Client> {
        let key = (host.to_owned(), insecure);
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let tls = |message: String| RegistryError::Tls {
            host: host.to_owned(),
            message,
        };
        let mut b = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(8)
            .danger_accept_invalid_certs(insecure)
            // Verification is off for insecure hosts, so loading the system
            // roots (hundreds of files) would only slow every command down.
            .tls_built_in_root_certs(!insecure);
        let dir = self.certs_dir.join(host);
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "crt") {
                    let pem =
                        std::fs::read(&p).map_err(|e| tls(format!("{}: {e}", p.display())))?;
                    let cert = reqwest::Certificate::from_pem(&pem)
                        .map_err(|e| tls(format!("{}: {e}", p.display())))?;
                    b = b.add_root_certificate(cert);
                }
            }
        }
        let c = b.build().map_err(|e| tls(e.to_string()))?;
        clients.insert(key, c.clone());
        Ok(c)
    }

    fn with_host<T>(&self, host: &str, f: impl FnOnce(&mut HostState) -> T) -> T {
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        f(hosts.entry(host.to_owned()).or_default())
    }

    fn credentials(&self, host: &str, registry: &str) -> Result<Option<Credentials>> {
        if let Some(c) = self.with_host(host, |s| s.creds.clone()) {
            return Ok(c);
        }
        // Credentials belong to the host that is asked: a mirror or a
        // relocated registry must not receive the original registry's.
        let key = if host == crate::reference::api_host(registry) {
            registry
        } else {
            host
        };
        let c = (self.creds)(key)?;
        self.with_host(host, |s| s.creds = Some(c.clone()));
        Ok(c)
    }

    /// Overrides the credentials for `host` (login verifies given ones).
    pub fn set_credentials(&self, host: &str, creds: Option<Credentials>) {
        self.with_host(host, |s| {
            s.creds = Some(creds);
            s.tokens.clear();
        });
    }

    fn base_url(&self, ep: &Endpoint) -> String {
        let plain = ep.insecure && self.with_host(&ep.host, |s| s.plain_http);
        format!("{}://{}", if plain { "http" } else { "https" }, ep.host)
    }

    /// Sends a request built by `build` (called again for each attempt) with
    /// auth, scheme fallback and retries of transient failures.
    async fn send(
        &self,
        ep: &Endpoint,
        registry: &str,
        scopes: &[String],
        what: &str,
        build: &(dyn Fn(&reqwest::Client, &str) -> RequestBuilder + Sync),
    ) -> Result<Response> {
        let http = self.http(&ep.host, ep.insecure)?;
        let mut attempt = 0;
        let mut authed_once = false;
        loop {
            attempt += 1;
            let base = self.base_url(ep);
            let mut req = build(&http, &base);
            if let Some(h) = self.auth_header(ep, registry, scopes)? {
                req = req.header(AUTHORIZATION, h);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    // An insecure host that does not speak TLS: switch to HTTP once.
                    if ep.insecure
                        && base.starts_with("https")
                        && (e.is_connect() || e.is_request())
                    {
                        self.with_host(&ep.host, |s| s.plain_http = true);
                        tracing::debug!(host = %ep.host, "TLS failed ({e}); trying plain HTTP");
                        attempt -= 1;
                        continue;
                    }
                    if attempt < ATTEMPTS && is_transient(&e) {
                        tracing::debug!(host = %ep.host, "{what}: {e}; retrying");
                        tokio::time::sleep(self.backoff * 2u32.pow(attempt - 1)).await;
                        continue;
                    }
                    return Err(RegistryError::Connect {
                        host: ep.host.clone(),
                        message: skiff_util::error::chain(&e),
                    });
                }
            };
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED
                && authed_once
                && self.credentials(&ep.host, registry)?.is_some()
            {
                return Err(RegistryError::LoginFailed {
                    host: ep.host.clone(),
                    detail: "the registry rejected the credentials (check `skiff login`)".into(),
                });
            }
            if status == StatusCode::UNAUTHORIZED && !authed_once {
                authed_once = true;
                if self
                    .handle_challenge(ep, registry, scopes, resp.headers())
                    .await?
                {
                    attempt -= 1;
                    continue;
                }
                return Err(RegistryError::Unauthorized {
                    host: ep.host.clone(),
                });
            }
            if (status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS)
                && attempt < ATTEMPTS
            {
                let wait =
                    retry_after(resp.headers()).unwrap_or(self.backoff * 2u32.pow(attempt - 1));
                tracing::debug!(host = %ep.host, "{what}: {status}; retrying in {wait:?}");
                tokio::time::sleep(wait.min(Duration::from_secs(60))).await;
                continue;
            }
            return Ok(resp);
        }
    }

    fn auth_header(
        &self,
        ep: &Endpoint,
        registry: &str,
        scopes: &[String],
    ) -> Result<Option<HeaderValue>> {
        let key = scopes.join(" ");
        let (token, basic) = self.with_host(&ep.host, |s| {
            let t = s
                .tokens
                .get(&key)
                .filter(|(_, exp)| *exp > Instant::now())
                .map(|(t, _)| t.clone());
            (t, s.basic)
        });
        if let Some(t) = token {
            return Ok(HeaderValue::from_str(&format!("Bearer {t}")).ok());
        }
        if basic {
            if let Some(c) = self.credentials(&ep.host, registry)? {
                return Ok(Some(basic_header(&c)));
            }
        }
        Ok(None)
    }

    /// Answers a 401: learns Basic, or fetches a Bearer token for the scopes.
    /// Returns whether a retry can succeed.
    async fn handle_challenge(
        &self,
        ep: &Endpoint,
        registry: &str,
        scopes: &[String],
        headers: &HeaderMap,
    ) -> Result<bool> {
        let Some(ch) = headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(Challenge::parse)
        else {
            return Ok(false);
        };
        match ch {
            Challenge::Basic => {
                let have = self.credentials(&ep.host, registry)?.is_some();
                self.with_host(&ep.host, |s| s.basic = true);
                Ok(have)
            }
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                let mut wanted: Vec<String> = scopes.to_vec();
                if wanted.is_empty() {
                    wanted.extend(scope);
                }
                let token = self
                    .fetch_token(ep, registry, &realm, service.as_deref(), &wanted)
                    .await?;
                self.with_host(&ep.host, |s| {
                    s.tokens.insert(scopes.join(" "), token);
                });
                Ok(true)
            }
        }
    }

    async fn fetch_token(
        &self,
        ep: &Endpoint,
        registry: &str,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<(String, Instant)> {
        let realm_url = reqwest::Url::parse(realm).map_err(|e| RegistryError::BadChallenge {
            host: ep.host.clone(),
            detail: format!("realm {realm:?}: {e}"),
        })?;
        let realm_host = realm_url.host_str().unwrap_or_default().to_owned();
        let insecure = self.conf.is_insecure_host(&realm_host)
            || self.conf.is_insecure_host(&format!(
                "{realm_host}:{}",
                realm_url.port_or_known_default().unwrap_or(443)
            ));
        let http = self.http(&realm_host, insecure || realm_url.scheme() == "http")?;
        let mut q: Vec<(&str, &str)> = vec![];
        if let Some(s) = service {
            q.push(("service", s));
        }
        for s in scopes {
            q.push(("scope", s));
        }
        let creds = self.credentials(&ep.host, registry)?;
        let req = match creds.as_ref().and_then(|c| c.identity_token.as_deref()) {
            // OAuth2 refresh-token grant (docker's identity tokens): a form POST.
            Some(refresh) => {
                q.extend([
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh),
                    ("client_id", "skiff"),
                ]);
                let mut form = reqwest::Url::parse("http://form.invalid/").map_err(|e| {
                    RegistryError::Protocol {
                        host: ep.host.clone(),
                        message: e.to_string(),
                    }
                })?;
                form.query_pairs_mut().extend_pairs(&q);
                let body = form.query().unwrap_or_default().to_owned();
                http.post(realm_url)
                    .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(body)
            }
            None => {
                let req = http.get(realm_url).query(&q);
                match &creds {
                    Some(c) => req.header(AUTHORIZATION, basic_header(c)),
                    None => req,
                }
            }
        };
        let resp = req.send().await.map_err(|e| RegistryError::Connect {
            host: realm_host.clone(),
            message: skiff_util::error::chain(&e),
        })?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(if creds.is_some() {
                RegistryError::LoginFailed {
                    host: ep.host.clone(),
                    detail: "the token server refused the credentials".into(),
                }
            } else {
                RegistryError::Unauthorized {
                    host: ep.host.clone(),
                }
            });
        }
        if !status.is_success() {
            return Err(RegistryError::Status {
                host: realm_host,
                status: status.as_u16(),
                what: "a token".into(),
                message: None,
            });
        }
        let body = read_limited(resp, 1 << 20, &ep.host, "token response").await?;
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let t: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| RegistryError::Protocol {
                host: ep.host.clone(),
                message: format!("bad token response: {e}"),
            })?;
        let token = t
            .token
            .or(t.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| RegistryError::Protocol {
                host: ep.host.clone(),
                message: "token response has no token".into(),
            })?;
        // Refresh a little early; the spec's default lifetime is 60 s.
        let life = t.expires_in.unwrap_or(60).clamp(10, 86_400);
        Ok((token, Instant::now() + Duration::from_secs(life - 5)))
    }

    /// `GET /v2/`: checks that the endpoint is a registry and the credentials work.
    pub async fn ping(&self, ep: &Endpoint, registry: &str) -> Result<()> {
        let resp = self
            .send(ep, registry, &[], "/v2/", &|c, b| c.get(format!("{b}/v2/")))
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(()),
            StatusCode::UNAUTHORIZED => Err(RegistryError::LoginFailed {
                host: ep.host.clone(),
                detail: "bad username or password".into(),
            }),
            s => Err(status_error(&ep.host, "/v2/", s, resp).await),
        }
    }

    /// Fetches a manifest or index by tag or digest; verifies its digest.
    pub async fn fetch_manifest(
        &self,
        ep: &Endpoint,
        registry: &str,
        reference: &str,
    ) -> Result<(Vec<u8>, Option<String>, Digest)> {
        let scopes = [scope(&ep.repository, Access::Pull)];
        let url = format!("/v2/{}/manifests/{}", ep.repository, reference);
        let what = format!("manifest {}:{}", ep.repository, reference);
        let resp = self
            .send(ep, registry, &scopes, &what, &|c, b| {
                c.get(format!("{b}{url}")).header(ACCEPT, manifest::ACCEPT)
            })
            .await?;
        let status = resp.status();
        if !status.is_success() {
            return Err(status_error(&ep.host, &what, status, resp).await);
        }
        let ct = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = read_limited(resp, MAX_MANIFEST_SIZE, &ep.host, &what).await?;
        let actual = Digest::of(&body);
        let expected = if reference.contains(':') {
            Some(reference.to_owned())
        } else {
            header_digest
        };
        if let Some(exp) = expected {
            if exp != actual.to_string() {
                // A registry answering HTML has no digest to speak of; say what it is.
                manifest::Manifest::parse(&body, ct.as_deref())?;
                return Err(RegistryError::DigestMismatch {
                    what,
                    expected: exp,
                    actual,
                });
            }
        }
        Ok((body, ct, actual))
    }

    /// Whether the registry has the blob (`HEAD`).
    pub async fn blob_exists(
        &self,
        ep: &Endpoint,
        registry: &str,
        digest: &Digest,
    ) -> Result<bool> {
        let scopes = [scope(&ep.repository, Access::Push)];
        let url = format!("/v2/{}/blobs/{digest}", ep.repository);
        let what = format!("blob {digest}");
        let resp = self
            .send(ep, registry, &scopes, &what, &|c, b| {
                c.head(format!("{b}{url}"))
            })
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            s => Err(status_error(&ep.host, &what, s, resp).await),
        }
    }

    /// Downloads a blob into `partial`, resuming from what it already holds
    /// and after broken connections; commits it when digest and size match.
    pub async fn fetch_blob(
        &self,
        ep: &Endpoint,
        registry: &str,
        digest: &Digest,
        size: u64,
        mut partial: Partial,
        on_bytes: &(dyn Fn(u64) + Sync),
    ) -> Result<()> {
        let scopes = [scope(&ep.repository, Access::Pull)];
        let url = format!("/v2/{}/blobs/{digest}", ep.repository);
        let what = format!("blob {digest}");
        let mut failures = 0;
        // Starting over (a refused or misplaced range) is not progress: bounded too.
        let mut restarts = 0;
        // Bytes left by an earlier, interrupted pull are trusted only until the
        // digest check: if it fails, they may be the bad part, so fetch it all again once.
        let mut resumed = !partial.is_empty();
        // What the server says of the whole blob's length settles it when it is not the
        // manifest's: no retry can make them agree. (What was fetched stays for a
        // manifest that has the size right.)
        let size_mismatch = |actual: u64| RegistryError::SizeMismatch {
            host: ep.host.clone(),
            what: what.clone(),
            expected: size,
            actual,
        };
        loop {
            if partial.len() == size && !partial.matches() && resumed {
                tracing::debug!(host = %ep.host, "{what}: resumed download failed verification; fetching it whole");
                resumed = false;
                partial.reset()?;
                on_bytes(0);
            }
            if partial.len() > size {
                partial.reset()?;
            }
            let from = partial.len();
            if from == size && size > 0 {
                break;
            }
            let resp = self
                .send(ep, registry, &scopes, &what, &|c, b| {
                    let r = c.get(format!("{b}{url}"));
                    if from > 0 {
                        r.header(RANGE, format!("bytes={from}-"))
                    } else {
                        r
                    }
                })
                .await?;
            let status = resp.status();
            let content_range = resp
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            if let Some(total) = content_range.as_deref().and_then(content_range_total) {
                if total != size {
                    return Err(size_mismatch(total));
                }
            }
            match status {
                StatusCode::PARTIAL_CONTENT if from > 0 => {
                    if content_range.as_deref().and_then(content_range_start) != Some(from) {
                        restart(&mut partial, &mut restarts, &ep.host, &what)?;
                        continue;
                    }
                }
                StatusCode::OK => {
                    if from > 0 {
                        // The server ignored Range: take the whole body.
                        partial.reset()?;
                        on_bytes(0);
                    }
                }
                StatusCode::RANGE_NOT_SATISFIABLE => {
                    restart(&mut partial, &mut restarts, &ep.host, &what)?;
                    continue;
                }
                _ => return Err(status_error(&ep.host, &what, status, resp).await),
            }
            if let Some(len) = resp
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
            {
                if status == StatusCode::OK && len != size {
                    return Err(size_mismatch(len));
                }
                if partial.len() + len > size {
                    return Err(RegistryError::TooLarge {
                        host: ep.host.clone(),
                        what,
                        limit: size,
                    });
                }
            }
            let before = partial.len();
            let streamed = stream_into(resp, &mut partial, size, on_bytes).await;
            if partial.len() > before {
                // Progress was made: a flaky link gets its retries back.
                failures = 0;
            }
            match streamed {
                Ok(()) if resumed && !partial.matches() && partial.len() == size => continue,
                Ok(()) if partial.len() < size => {
                    // The body ended early but cleanly: resume like a dropped connection.
                    failures += 1;
                    if failures >= ATTEMPTS {
                        return Err(RegistryError::Body {
                            host: ep.host.clone(),
                            what,
                            message: format!("the registry sent {} of {size} bytes", partial.len()),
                        });
                    }
                    tokio::time::sleep(self.backoff * 2u32.pow(failures - 1)).await;
                }
                Ok(()) => break,
                Err(StreamError::Store(e)) => return Err(e.into()),
                Err(StreamError::TooLarge) => {
                    partial.discard();
                    return Err(RegistryError::TooLarge {
                        host: ep.host.clone(),
                        what,
                        limit: size,
                    });
                }
                Err(StreamError::Http(e)) => {
                    failures += 1;
                    if failures >= ATTEMPTS {
                        return Err(RegistryError::Body {
                            host: ep.host.clone(),
                            what,
                            message: skiff_util::error::chain(&e),
                        });
                    }
                    tracing::debug!(host = %ep.host, "{what}: {e} after {} bytes; resuming", partial.len());
                    tokio::time::sleep(self.backoff * 2u32.pow(failures - 1)).await;
                }
            }
        }
        partial.commit(Some(size)).map_err(|e| match e {
            StoreError::DigestMismatch { expected, actual } => RegistryError::DigestMismatch {
                what: format!("blob {expected}"),
                expected: expected.to_string(),
                actual,
            },
            other => other.into(),
        })
    }

    /// Starts an upload, first trying to mount the blob from `mount_from`.
    pub async fn start_upload(
        &self,
        ep: &Endpoint,
        registry: &str,
        digest: &Digest,
        mount_from: Option<&str>,
    ) -> Result<UploadStart> {
        let mut scopes = vec![scope(&ep.repository, Access::Push)];
        if let Some(from) = mount_from {
            scopes.push(scope(from, Access::Pull));
        }
        let base_path = format!("/v2/{}/blobs/uploads/", ep.repository);
        let query = match mount_from {
            Some(from) => format!("?mount={digest}&from={from}"),
            None => String::new(),
        };
        let what = format!("upload of {digest}");
        let resp = self
            .send(ep, registry, &scopes, &what, &|c, b| {
                c.post(format!("{b}{base_path}{query}"))
                    .header(CONTENT_LENGTH, "0")
            })
            .await?;
        match resp.status() {
            StatusCode::CREATED if mount_from.is_some() => Ok(UploadStart::Mounted),
            // 202 to a mount request just means "upload it yourself".
            StatusCode::ACCEPTED => {
                let loc = location(&resp, &ep.host)?;
                Ok(UploadStart::Location(loc))
            }
            s => Err(status_error(&ep.host, &what, s, resp).await),
        }
    }

    /// Uploads `data` (read again for each attempt by `open`) to `location`:
    /// one PUT, or PATCH chunks of `chunk_size` then a closing PUT.
    pub async fn upload_blob(
        &self,
        ep: &Endpoint,
        registry: &str,
        location: String,
        blob: BlobFile<'_>,
        chunk_size: Option<u64>,
        on_bytes: &(dyn Fn(u64) + Sync),
    ) -> Result<()> {
        let BlobFile { digest, path, size } = blob;
        let scopes = [scope(&ep.repository, Access::Push)];
        let what = format!("upload of {digest}");
        let mut location = location;
        let chunked = chunk_size.filter(|c| *c > 0 && size > *c);
        if let Some(chunk) = chunked {
            use tokio::io::AsyncReadExt;
            let mut f = tokio::fs::File::open(path)
                .await
                .map_err(|e| StoreError::Io {
                    path: path.into(),
                    source: e,
                })?;
            let mut offset = 0u64;
            while offset < size {
                let n = chunk.min(size - offset);
                let mut buf = vec![0u8; n as usize];
                f.read_exact(&mut buf).await.map_err(|e| StoreError::Io {
                    path: path.into(),
                    source: e,
                })?;
                let body = bytes_body(buf);
                let loc = absolute(&self.base_url(ep), &location);
                let range = format!("{}-{}", offset, offset + n - 1);
                let resp = self
                    .send(ep, registry, &scopes, &what, &|c, _| {
                        c.request(Method::PATCH, &loc)
                            .header(CONTENT_TYPE, "application/octet-stream")
                            .header(CONTENT_RANGE, &range)
                            .header(CONTENT_LENGTH, n)
                            .body(body.clone())
                    })
                    .await?;
                if resp.status() != StatusCode::ACCEPTED && resp.status() != StatusCode::NO_CONTENT
                {
                    return Err(status_error(&ep.host, &what, resp.status(), resp).await);
                }
                location = location_or(&resp, &location);
                offset += n;
                on_bytes(offset);
            }
            let loc = with_digest(&absolute(&self.base_url(ep), &location), digest);
            let resp = self
                .send(ep, registry, &scopes, &what, &|c, _| {
                    c.put(&loc).header(CONTENT_LENGTH, "0")
                })
                .await?;
            if resp.status() != StatusCode::CREATED {
                return Err(status_error(&ep.host, &what, resp.status(), resp).await);
            }
            return Ok(());
        }
        let loc = with_digest(&absolute(&self.base_url(ep), &location), digest);
        // Monolithic: the body streams from the file, reopened for each attempt.
        file_body(path).map_err(|e| StoreError::Io {
            path: path.into(),
            source: e,
        })?;
        let resp = self
            .send(ep, registry, &scopes, &what, &|c, _| {
                let req = c
                    .put(&loc)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, size);
                match file_body(path) {
                    Ok(body) => req.body(body),
                    // Vanished since the check above: the length mismatch fails the request.
                    Err(_) => req.body(Vec::new()),
                }
            })
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(status_error(&ep.host, &what, resp.status(), resp).await);
        }
        on_bytes(size);
        Ok(())
    }

    /// `PUT` a manifest under `reference` (a tag or its digest).
    pub async fn put_manifest(
        &self,
        ep: &Endpoint,
        registry: &str,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<()> {
        let scopes = [scope(&ep.repository, Access::Push)];
        let url = format!("/v2/{}/manifests/{reference}", ep.repository);
        let what = format!("manifest {}:{reference}", ep.repository);
        let body = bytes_body(bytes.to_vec());
        let resp = self
            .send(ep, registry, &scopes, &what, &|c, b| {
                c.put(format!("{b}{url}"))
                    .header(CONTENT_TYPE, media_type)
                    .body(body.clone())
            })
            .await?;
        if resp.status() != StatusCode::CREATED && !resp.status().is_success() {
            return Err(status_error(&ep.host, &what, resp.status(), resp).await);
        }
        Ok(())
    }

    /// The endpoint to push to (no mirrors): the registry itself.
    pub fn push_endpoint(&self, reference: &crate::Reference) -> Endpoint {
        let host = reference.api_host().to_owned();
        Endpoint {
            insecure: self.conf.is_insecure_host(&host)
                || self.conf.is_insecure_host(reference.registry()),
            host,
            repository: reference.repository().to_owned(),
            mirror: false,
        }
    }
}

/// A request body streaming `path` in 1 MiB reads (reqwest's own file body
/// reads 4 KiB at a time).
fn file_body(path: &std::path::Path) -> std::io::Result<reqwest::Body> {
    use tokio::io::AsyncReadExt;
    let f = tokio::fs::File::from_std(std::fs::File::open(path)?);
    let stream = futures_util::stream::unfold(Some(f), |f| async move {
        let mut f = f?;
        let mut buf = vec![0u8; 1 << 20];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), Some(f)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    Ok(reqwest::Body::wrap_stream(stream))
}

fn bytes_body(v: Vec<u8>) -> bytes::Bytes {
    bytes::Bytes::from(v)
}

enum StreamError {
    Http(reqwest::Error),
    Store(StoreError),
    TooLarge,
}

async fn stream_into(
    mut resp: Response,
    partial: &mut Partial,
    size: u64,
    on_bytes: &(dyn Fn(u64) + Sync),
) -> Result<(), StreamError> {
    loop {
        match resp.chunk().await {
            Ok(Some(bytes)) => {
                if partial.len() + bytes.len() as u64 > size {
                    return Err(StreamError::TooLarge);
                }
                partial.append(&bytes).map_err(StreamError::Store)?;
                on_bytes(partial.len());
            }
            Ok(None) => return Ok(()),
            Err(e) => return Err(StreamError::Http(e)),
        }
    }
}

pub fn scope(repository: &str, access: Access) -> String {
    match access {
        Access::Pull => format!("repository:{repository}:pull"),
        Access::Push => format!("repository:{repository}:pull,push"),
    }
}

fn basic_header(c: &Credentials) -> HeaderValue {
    let raw = format!("{}:{}", c.username, c.password);
    let mut v = HeaderValue::from_str(&format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""));
    v.set_sensitive(true);
    v
}

fn is_transient(e: &reqwest::Error) -> bool {
    // A certificate the client rejects will be rejected again: fail at once.
    let tls_refusal = e.is_connect()
        && skiff_util::error::chain(e)
            .to_ascii_lowercase()
            .contains("certificate");
    !tls_refusal && (e.is_timeout() || e.is_connect() || e.is_body() || e.is_request())
}

/// `Retry-After`: delay seconds or an HTTP-date (RFC 9110).
fn retry_after(h: &HeaderMap) -> Option<Duration> {
    let v = h.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc2822).ok()?;
    let ms = (at - time::OffsetDateTime::now_utc())
        .whole_milliseconds()
        .max(0);
    Some(Duration::from_millis(ms as u64))
}

fn content_range_start(v: &str) -> Option<u64> {
    // "bytes 100-199/200"
    v.trim()
        .strip_prefix("bytes ")?
        .split('-')
        .next()?
        .parse()
        .ok()
}

/// The whole length in `Content-Range: bytes a-b/TOTAL` (or `bytes */TOTAL`), if given.
fn content_range_total(v: &str) -> Option<u64> {
    v.strip_prefix("bytes ")?
        .split_once('/')?
        .1
        .trim()
        .parse()
        .ok()
}

/// Empties a download to fetch it from the start; gives up after a few of these, since
/// each is a server answering ranges inconsistently.
fn restart(partial: &mut Partial, restarts: &mut u32, host: &str, what: &str) -> Result<()> {
    *restarts += 1;
    partial.reset()?;
    if *restarts > ATTEMPTS {
        return Err(RegistryError::Body {
            host: host.to_owned(),
            what: what.to_owned(),
            message: "the registry kept refusing to resume it".into(),
        });
    }
    Ok(())
}

fn location(resp: &Response, host: &str) -> Result<String> {
    resp.headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| RegistryError::Protocol {
            host: host.to_owned(),
            message: "upload response has no Location header".into(),
        })
}

fn location_or(resp: &Response, old: &str) -> String {
    resp.headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| old.to_owned(), str::to_owned)
}

/// Upload locations may be relative to the registry.
fn absolute(base: &str, loc: &str) -> String {
    if loc.starts_with("http://") || loc.starts_with("https://") {
        loc.to_owned()
    } else if loc.starts_with('/') {
        format!("{base}{loc}")
    } else {
        format!("{base}/{loc}")
    }
}

fn with_digest(loc: &str, d: &Digest) -> String {
    let sep = if loc.contains('?') { '&' } else { '?' };
    format!("{loc}{sep}digest={d}")
}

async fn read_limited(mut resp: Response, limit: u64, host: &str, what: &str) -> Result<Vec<u8>> {
    if resp.content_length().is_some_and(|l| l > limit) {
        return Err(RegistryError::TooLarge {
            host: host.to_owned(),
            what: what.to_owned(),
            limit,
        });
    }
    let mut buf = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                if (buf.len() + c.len()) as u64 > limit {
                    return Err(RegistryError::TooLarge {
                        host: host.to_owned(),
                        what: what.to_owned(),
                        limit,
                    });
                }
                buf.extend_from_slice(&c);
            }
            Ok(None) => return Ok(buf),
            Err(e) => {
                return Err(RegistryError::Body {
                    host: host.to_owned(),
                    what: what.to_owned(),
                    message: skiff_util::error::chain(&e),
                })
            }
        }
    }
}

/// Turns a non-success answer into an error with the registry's own message.
async fn status_error(host: &str, what: &str, status: StatusCode, resp: Response) -> RegistryError {
    let is_html = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("text/html"));
    let body = read_limited(resp, 64 << 10, host, what)
        .await
        .unwrap_or_default();
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorItem>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorItem {
        code: Option<String>,
        message: Option<String>,
    }
    let parsed = serde_json::from_slice::<Errors>(&body).ok();
    let message =
        parsed
            .as_ref()
            .and_then(|e| e.errors.first())
            .map(|e| match (&e.code, &e.message) {
                (Some(c), Some(m)) => format!("{} ({c})", m),
                (Some(c), None) => c.clone(),
                (None, Some(m)) => m.clone(),
                (None, None) => String::new(),
            });
    let message = if message.is_none() && is_html {
        Some("the server answered with an HTML page (is this really a registry?)".to_owned())
    } else {
        message
    };
    match status {
        StatusCode::NOT_FOUND => RegistryError::NotFound {
            host: host.to_owned(),
            what: what.to_owned(),
        },
        StatusCode::UNAUTHORIZED => RegistryError::Unauthorized {
            host: host.to_owned(),
        },
        StatusCode::FORBIDDEN => RegistryError::Denied {
            host: host.to_owned(),
            detail: message,
        },
        _ => RegistryError::Status {
            host: host.to_owned(),
            status: status.as_u16(),
            what: what.to_owned(),
            message,
        },
    }
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, PartialEq)]
enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

impl Challenge {
    fn parse(h: &str) -> Option<Self> {
        let h = h.trim();
        let (kind, rest) = h.split_once(' ').unwrap_or((h, ""));
        match kind.to_ascii_lowercase().as_str() {
            "basic" => Some(Self::Basic),
            "bearer" => {
                let params = parse_params(rest);
                let realm = params.get("realm")?.clone();
                Some(Self::Bearer {
                    realm,
                    service: params.get("service").cloned(),
                    scope: params.get("scope").cloned(),
                })
            }
            _ => None,
        }
    }
}

/// `key="value", key2=value2` with quoted strings that may hold commas.
fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String =
            std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ',')).collect();
        if key.is_empty() {
            break;
        }
        if chars.next() != Some('=') {
            continue;
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            val.push(n);
                        }
                    }
                    '"' => break,
                    c => val.push(c),
                }
            }
        } else {
            val = std::iter::from_fn(|| chars.next_if(|c| *c != ','))
                .collect::<String>()
                .trim()
                .to_owned();
        }
        out.insert(key.trim().to_ascii_lowercase(), val);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        assert_eq!(
            Challenge::parse("Basic realm=\"x\""),
            Some(Challenge::Basic)
        );
        let c = Challenge::parse(r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#).unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull,push".into())
            }
        );
        assert_eq!(Challenge::parse("Negotiate abc"), None);
        assert_eq!(Challenge::parse("Bearer service=x"), None);
    }

    #[test]
    fn urls() {
        assert_eq!(
            absolute("http://h:1", "/v2/x/blobs/uploads/u?a=b"),
            "http://h:1/v2/x/blobs/uploads/u?a=b"
        );
        assert_eq!(absolute("http://h:1", "https://other/u"), "https://other/u");
        let d = Digest::of(b"");
        assert!(with_digest("http://h/u?_state=s", &d).ends_with(
            "&digest=sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        ));
        assert_eq!(content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(content_range_start("junk"), None);
        assert_eq!(content_range_total("bytes 100-199/200"), Some(200));
        assert_eq!(content_range_total("bytes */1083953"), Some(1083953));
        assert_eq!(content_range_total("bytes 0-9/*"), None);
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        let later = time::OffsetDateTime::now_utc() + time::Duration::seconds(30);
        let text = later
            .format(&time::format_description::well_known::Rfc2822)
            .unwrap();
        h.insert(RETRY_AFTER, HeaderValue::from_str(&text).unwrap());
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(25) && d <= Duration::from_secs(30),
            "{d:?}"
        );
    }
}
