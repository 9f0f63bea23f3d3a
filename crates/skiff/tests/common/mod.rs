//! Integration-test harness for the `skiff image ...` commands.
//!
//! * [`Registry`]: a real CNCF distribution server (`/usr/bin/docker-registry`) on
//!   127.0.0.1, optionally with htpasswd (Basic) auth; killed on drop.
//! * [`fixtures`]: OCI image layouts built once per test binary with `umoci` from
//!   `busybox-static`, and helpers that push them with `skopeo` (an independent
//!   implementation) — including a hand-written multi-platform image index.
//! * [`Proxy`]: an HTTP/1.1 forwarding proxy in front of a registry that records every
//!   request and injects faults (dropped connections, corrupt bodies, bearer-token auth,
//!   HTML answers, slow bodies).
//! * [`Skiff`]: runs the real `skiff` binary with an isolated store root, auth file,
//!   registries.conf and HOME, with a timeout.
//! * Store checks: [`assert_store_consistent`] and friends.
//!
//! Nothing here skips silently: a missing tool makes the test fail with a clear message.

#![allow(dead_code)]

pub mod vm;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

pub const SKIFF: &str = env!("CARGO_BIN_EXE_skiff");
pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
pub const USER: &str = "testuser";
pub const PASS: &str = "s3cret-pass";
/// The identity (refresh) token the Bearer proxy's token server accepts.
pub const REFRESH_TOKEN: &str = "skiff-test-refresh-token";
/// How long a single `skiff` command may run before the harness kills it.
pub const SKIFF_TIMEOUT: Duration = Duration::from_secs(120);

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

// ---------------------------------------------------------------------------------------
// Small utilities
// ---------------------------------------------------------------------------------------

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

pub fn sha256_file(path: &Path) -> String {
    let mut f = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}

pub fn base64_encode(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

pub fn basic_auth_value(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64_encode(format!("{user}:{pass}").as_bytes())
    )
}

/// Polls `f` every 20 ms until it returns true; panics after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Runs an external tool and panics with its output if it fails.
pub fn run_tool(cmd: &mut Command) -> String {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e} (is the tool installed?)"));
    if !out.status.success() {
        panic!(
            "{shown} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn tempdir() -> TempDir {
    tempfile::Builder::new()
        .prefix("skiff-it-")
        .tempdir()
        .expect("create tempdir")
}

pub fn host_platform() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "linux/amd64",
        "aarch64" => "linux/arm64",
        other => panic!("tests only know amd64 and arm64 hosts, not {other}"),
    }
}

// ---------------------------------------------------------------------------------------
// Minimal HTTP/1.1 plumbing (shared by the raw client and the proxy)
// ---------------------------------------------------------------------------------------

pub type Headers = Vec<(String, String)>;

pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn read_line(r: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = r.read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    while buf.last() == Some(&b'\n') || buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

/// Reads a request or status line plus headers. `None` on a clean EOF before anything.
fn read_head(r: &mut impl BufRead) -> io::Result<Option<(String, Headers)>> {
    let first = match read_line(r)? {
        None => return Ok(None),
        Some(l) => l,
    };
    let mut headers = Vec::new();
    loop {
        let line = read_line(r)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "EOF in HTTP head"))?;
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Ok(Some((first, headers)))
}

/// Reads a message body: chunked, by Content-Length, or (if `until_eof`) to EOF.
fn read_body(r: &mut impl BufRead, headers: &Headers, until_eof: bool) -> io::Result<Vec<u8>> {
    let chunked = header(headers, "transfer-encoding")
        .map(|v| v.to_ascii_lowercase().contains("chunked"))
        .unwrap_or(false);
    if chunked {
        let mut body = Vec::new();
        loop {
            let line = read_line(r)?
                .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "EOF in chunk"))?;
            let size_str = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_str, 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            if size == 0 {
                // trailers
                while let Some(l) = read_line(r)? {
                    if l.is_empty() {
                        break;
                    }
                }
                return Ok(body);
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..])?;
            read_line(r)?; // CRLF after the chunk
        }
    }
    if let Some(len) = header(headers, "content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad content-length"))?;
        let mut body = vec![0u8; len];
        r.read_exact(&mut body)?;
        return Ok(body);
    }
    let mut body = Vec::new();
    if until_eof {
        r.read_to_end(&mut body)?;
    }
    Ok(body)
}

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Headers,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A one-shot HTTP/1.1 request (`Connection: close`) to `addr` ("127.0.0.1:PORT").
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<HttpResponse> {
    let sock: std::net::SocketAddr = addr
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{addr}: {e}")))?;
    let mut s = TcpStream::connect_timeout(&sock, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    s.flush()?;
    let mut r = BufReader::new(s);
    let (status_line, headers) = read_head(&mut r)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "no response"))?;
    let status = parse_status(&status_line)?;
    let body = if method == "HEAD" || status == 204 || status == 304 || status < 200 {
        Vec::new()
    } else {
        read_body(&mut r, &headers, true)?
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn parse_status(line: &str) -> io::Result<u16> {
    line.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line {line:?}"),
            )
        })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("pick a free port")
}

// ---------------------------------------------------------------------------------------
// Registry
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Default)]
pub struct RegistryOpts {
    /// Enable htpasswd (Basic) auth with these credentials.
    pub auth: Option<(String, String)>,
    /// Serve HTTPS (only) with this certificate.
    pub tls: Option<RegistryTls>,
}

/// The registry's TLS files (see [`TestCerts`]).
#[derive(Debug, Clone)]
pub struct RegistryTls {
    /// Server certificate chain (PEM).
    pub cert: PathBuf,
    /// Server private key (PEM).
    pub key: PathBuf,
    /// The CA that signed `cert`: the harness's own skopeo calls verify the server
    /// against it (so a broken test certificate fails here, not in skiff).
    pub ca: PathBuf,
}

impl RegistryOpts {
    pub fn with_auth() -> Self {
        RegistryOpts {
            auth: Some((USER.to_string(), PASS.to_string())),
            ..Default::default()
        }
    }

    /// HTTPS with the server certificate of `certs`.
    pub fn with_tls(certs: &TestCerts) -> Self {
        RegistryOpts {
            tls: Some(certs.registry_tls()),
            ..Default::default()
        }
    }
}

/// A throwaway CA and a server certificate it signed for `127.0.0.1` and `localhost`
/// (subjectAltName IP:127.0.0.1, DNS:localhost), made with the `openssl` CLI.
pub struct TestCerts {
    dir: TempDir,
}

impl TestCerts {
    pub fn generate() -> TestCerts {
        let dir = tempdir();
        let d = dir.path();
        let p = |name: &str| d.join(name).display().to_string();
        // P-256 keys: quick to make, accepted by Go (the registry, skopeo) and rustls.
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        run_tool(
            Command::new("openssl")
                .args(["req", "-x509"])
                .args(ec)
                .args(["-keyout", &p("ca.key"), "-out", &p("ca.crt")])
                .args(["-days", "2", "-subj", "/CN=skiff integration-test CA"])
                .args(["-addext", "basicConstraints=critical,CA:TRUE"])
                .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]),
        );
        run_tool(
            Command::new("openssl")
                .arg("req")
                .args(ec)
                .args(["-keyout", &p("server.key"), "-out", &p("server.csr")])
                .args(["-subj", "/CN=127.0.0.1"]),
        );
        fs::write(
            d.join("server.ext"),
            "basicConstraints = critical,CA:FALSE
             keyUsage = critical,digitalSignature,keyEncipherment
             extendedKeyUsage = serverAuth
             subjectAltName = IP:127.0.0.1,DNS:localhost
             subjectKeyIdentifier = hash
             authorityKeyIdentifier = keyid,issuer
",
        )
        .unwrap();
        run_tool(
            Command::new("openssl")
                .args(["x509", "-req", "-in", &p("server.csr")])
                .args(["-CA", &p("ca.crt"), "-CAkey", &p("ca.key")])
                .args(["-CAcreateserial", "-CAserial", &p("ca.srl")])
                .args(["-days", "2", "-extfile", &p("server.ext")])
                .args(["-out", &p("server.crt")]),
        );
        TestCerts { dir }
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    pub fn server_cert(&self) -> PathBuf {
        self.dir.path().join("server.crt")
    }

    pub fn server_key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }

    pub fn registry_tls(&self) -> RegistryTls {
        RegistryTls {
            cert: self.server_cert(),
            key: self.server_key(),
            ca: self.ca_cert(),
        }
    }

    /// Makes a containers-certs.d(5) style tree under `parent`: `parent/<host>/ca.crt`
    /// holding this CA; returns `parent`.
    pub fn write_certs_d(&self, parent: &Path, host: &str) -> PathBuf {
        let d = parent.join(host);
        fs::create_dir_all(&d).unwrap();
        fs::copy(self.ca_cert(), d.join("ca.crt")).unwrap();
        parent.to_path_buf()
    }
}

/// A running `docker-registry serve` (CNCF distribution 2.8) on 127.0.0.1.
pub struct Registry {
    pub port: u16,
    pub auth: Option<(String, String)>,
    /// Set when the registry serves HTTPS only.
    pub tls: Option<RegistryTls>,
    child: Child,
    dir: TempDir,
}

impl Registry {
    pub fn start(opts: RegistryOpts) -> Registry {
        assert!(
            Path::new(REGISTRY_BIN).exists(),
            "{REGISTRY_BIN} is missing: install Debian's docker-registry package (the integration \
             tests need a real registry server)"
        );
        let mut last_err = String::new();
        for _ in 0..5 {
            match Self::try_start(&opts) {
                Ok(r) => return r,
                Err(e) => last_err = e,
            }
        }
        panic!("could not start docker-registry: {last_err}");
    }

    fn try_start(opts: &RegistryOpts) -> Result<Registry, String> {
        let dir = tempdir();
        let port = free_port();
        let data = dir.path().join("data");
        fs::create_dir_all(&data).map_err(|e| e.to_string())?;
        let mut auth_section = String::new();
        if let Some((user, pass)) = &opts.auth {
            let out = run_tool(Command::new("htpasswd").args(["-Bbn", user, pass]));
            let htpasswd = dir.path().join("htpasswd");
            fs::write(&htpasswd, out.trim_end().to_string() + "\n").map_err(|e| e.to_string())?;
            auth_section = format!(
                "auth:\n  htpasswd:\n    realm: skiff-test-realm\n    path: {}\n",
                htpasswd.display()
            );
        }
        let tls_section = match &opts.tls {
            Some(t) => format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                t.cert.display(),
                t.key.display()
            ),
            None => String::new(),
        };
        let config = format!(
            "version: 0.1\n\
             log:\n  level: info\n  formatter: text\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\n  \
             maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: skiff-integration-test-secret\n\
             {tls_section}\
             {auth_section}",
            data = data.display(),
        );
        let config_path = dir.path().join("config.yml");
        fs::write(&config_path, config).map_err(|e| e.to_string())?;
        let log_path = dir.path().join("registry.log");
        let log = fs::File::create(&log_path).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(REGISTRY_BIN);
        cmd.arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        // distribution reads REGISTRY_* environment variables as config overrides.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("REGISTRY_") {
                cmd.env_remove(k);
            }
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("spawn {REGISTRY_BIN}: {e}"))?;
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log = fs::read_to_string(&log_path).unwrap_or_default();
                return Err(format!("docker-registry exited with {status}:\n{log}"));
            }
            // Our own process must have bound the port (another one could answer on a
            // port that was free a moment ago), and then answer GET /v2/.
            let bound = fs::read_to_string(&log_path)
                .map(|l| l.contains(&format!("listening on {addr}")))
                .unwrap_or(false);
            if bound {
                if let Ok(resp) = http_request(&addr, "GET", "/v2/", &[], b"") {
                    if resp.status == 200 || resp.status == 401 {
                        break;
                    }
                    // An HTTPS-only server answers plain HTTP like this (Go's net/http);
                    // skopeo's verified push of the fixtures then checks TLS for real.
                    if opts.tls.is_some()
                        && resp.status == 400
                        && resp.text().contains("HTTP request to an HTTPS server")
                    {
                        break;
                    }
                }
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                let log = fs::read_to_string(&log_path).unwrap_or_default();
                return Err(format!(
                    "docker-registry did not answer GET /v2/ within 30 s:\n{log}"
                ));
            }
            thread::sleep(Duration::from_millis(25));
        }
        Ok(Registry {
            port,
            auth: opts.auth.clone(),
            tls: opts.tls.clone(),
            child,
            dir,
        })
    }

    /// "127.0.0.1:PORT"
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    pub fn creds_arg(&self) -> Option<String> {
        self.auth.as_ref().map(|(u, p)| format!("{u}:{p}"))
    }

    /// A raw request to the registry, with Basic auth when the registry requires it.
    /// Plain HTTP only (not for a registry started with TLS).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpResponse {
        assert!(
            self.tls.is_none(),
            "Registry::request speaks plain HTTP; this registry serves HTTPS only"
        );
        let auth = self.auth.as_ref().map(|(u, p)| basic_auth_value(u, p));
        let mut hs: Vec<(&str, &str)> = headers.to_vec();
        if let Some(a) = &auth {
            hs.push(("Authorization", a));
        }
        http_request(&self.host(), method, path, &hs, body)
            .unwrap_or_else(|e| panic!("{method} {path} on registry {}: {e}", self.host()))
    }

    /// Pushes a fixture image (a tag of the shared OCI layout) with skopeo to
    /// `<host>/<repo>:<tag>`; returns the full reference.
    pub fn push_fixture(&self, fixture_tag: &str, repo: &str, tag: &str) -> String {
        let f = fixtures();
        let dest = format!("{}/{repo}:{tag}", self.host());
        let mut cmd = Command::new("skopeo");
        cmd.args(["--insecure-policy", "copy", "--quiet", "--preserve-digests"]);
        match &self.tls {
            // Verified TLS against the test CA: proves the certificate is good for
            // 127.0.0.1 to an independent client.
            Some(t) => {
                let cert_dir = self.dir.path().join("skopeo-certs");
                fs::create_dir_all(&cert_dir).unwrap();
                fs::copy(&t.ca, cert_dir.join("ca.crt")).unwrap();
                cmd.arg("--dest-tls-verify=true")
                    .arg("--dest-cert-dir")
                    .arg(&cert_dir);
            }
            None => {
                cmd.arg("--dest-tls-verify=false");
            }
        }
        if let Some(c) = self.creds_arg() {
            cmd.arg("--dest-creds").arg(c);
        }
        cmd.arg(format!("oci:{}:{fixture_tag}", f.layout.display()))
            .arg(format!("docker://{dest}"));
        run_tool(&mut cmd);
        dest
    }

    /// Pushes the amd64 (`latest`) and arm64/v8 (`arm64`) fixtures to `repo` and PUTs an
    /// OCI image index pointing at both as `<repo>:latest`.
    pub fn push_multiarch(&self, repo: &str) -> MultiArch {
        let f = fixtures();
        self.push_fixture("latest", repo, "amd64");
        self.push_fixture("arm64", repo, "arm64");
        let amd = f.image("latest");
        let arm = f.image("arm64");
        let index = json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": amd.digest,
                    "size": amd.manifest_bytes.len(),
                    "platform": {"architecture": "amd64", "os": "linux"}
                },
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": arm.digest,
                    "size": arm.manifest_bytes.len(),
                    "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}
                }
            ]
        });
        let body = serde_json::to_vec_pretty(&index).unwrap();
        let digest = format!("sha256:{}", sha256_hex(&body));
        let resp = self.request(
            "PUT",
            &format!("/v2/{repo}/manifests/latest"),
            &[("Content-Type", OCI_INDEX)],
            &body,
        );
        assert_eq!(
            resp.status,
            201,
            "PUT index: {} {}",
            resp.status,
            resp.text()
        );
        assert_eq!(resp.header("Docker-Content-Digest"), Some(digest.as_str()));
        MultiArch {
            reference: format!("{}/{repo}:latest", self.host()),
            index_digest: digest,
            amd64_digest: amd.digest.clone(),
            arm64_digest: arm.digest.clone(),
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone)]
pub struct MultiArch {
    pub reference: String,
    pub index_digest: String,
    pub amd64_digest: String,
    pub arm64_digest: String,
}

// ---------------------------------------------------------------------------------------
// skopeo helpers (the independent implementation)
// ---------------------------------------------------------------------------------------

/// `skopeo inspect [--raw|--config] <transport:ref>`; `docker://` refs use plain HTTP.
pub fn skopeo_inspect(transport_ref: &str, extra: &[&str], creds: Option<&str>) -> String {
    let mut cmd = Command::new("skopeo");
    cmd.args(["--insecure-policy", "inspect", "--retry-times", "0"]);
    if transport_ref.starts_with("docker://") {
        cmd.arg("--tls-verify=false");
        match creds {
            Some(c) => {
                cmd.arg("--creds").arg(c);
            }
            None => {
                cmd.arg("--no-creds");
            }
        }
    }
    cmd.args(extra).arg(transport_ref);
    run_tool(&mut cmd)
}

/// The manifest digest skopeo reports for a `docker://` reference.
pub fn skopeo_digest(reference: &str, creds: Option<&str>) -> String {
    let v: Value = serde_json::from_str(&skopeo_inspect(
        &format!("docker://{reference}"),
        &[],
        creds,
    ))
    .expect("skopeo inspect JSON");
    v["Digest"]
        .as_str()
        .expect("Digest in skopeo inspect")
        .to_string()
}

/// `skopeo copy SRC DST` (plain HTTP for docker:// on both sides).
pub fn skopeo_copy(src: &str, dst: &str, creds: Option<&str>) {
    let mut cmd = Command::new("skopeo");
    cmd.args(["--insecure-policy", "copy", "--quiet"]);
    cmd.arg("--src-tls-verify=false")
        .arg("--dest-tls-verify=false");
    if let Some(c) = creds {
        cmd.arg("--src-creds").arg(c);
    }
    cmd.arg(src).arg(dst);
    run_tool(&mut cmd);
}

// ---------------------------------------------------------------------------------------
// Image fixtures (umoci + busybox-static), built once per test binary
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct FixtureImage {
    pub tag: String,
    /// Manifest digest "sha256:..."
    pub digest: String,
    pub manifest_bytes: Vec<u8>,
    pub manifest: Value,
    pub config_digest: String,
    pub config: Value,
    /// (digest, size) of each layer, bottom first.
    pub layers: Vec<(String, u64)>,
}

impl FixtureImage {
    /// Every blob the image consists of: manifest, config, layers ("sha256:..." digests).
    pub fn all_blobs(&self) -> BTreeSet<String> {
        let mut s: BTreeSet<String> = self.layers.iter().map(|(d, _)| d.clone()).collect();
        s.insert(self.config_digest.clone());
        s.insert(self.digest.clone());
        s
    }
    /// Config + layers (what is fetched from `/blobs/`).
    pub fn fetched_blobs(&self) -> BTreeSet<String> {
        let mut s: BTreeSet<String> = self.layers.iter().map(|(d, _)| d.clone()).collect();
        s.insert(self.config_digest.clone());
        s
    }
    pub fn largest_layer(&self) -> (String, u64) {
        self.layers.iter().max_by_key(|(_, s)| *s).cloned().unwrap()
    }
    pub fn diff_ids(&self) -> Vec<String> {
        self.config["rootfs"]["diff_ids"]
            .as_array()
            .expect("diff_ids")
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    }
}

pub struct Fixtures {
    /// The OCI layout holding every fixture tag.
    pub layout: PathBuf,
    pub images: BTreeMap<String, FixtureImage>,
}

impl Fixtures {
    pub fn image(&self, tag: &str) -> &FixtureImage {
        self.images
            .get(tag)
            .unwrap_or_else(|| panic!("no fixture image {tag}"))
    }
}

/// The shared OCI layout, built on first use. Tags:
/// * `latest`: linux/amd64, 3 layers (busybox; /etc files; /data/small.txt)
/// * `extra`:  `latest` + one more layer (/opt/extra.txt): shares 3 layers with `latest`
/// * `arm64`:  `latest` + /etc/arch layer, config architecture arm64, variant v8
/// * `big`:    `latest` + an 8 MiB incompressible layer (/opt/noise.bin)
pub fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(build_fixtures)
}

fn build_fixtures() -> Fixtures {
    for tool in ["umoci", "skopeo", "busybox"] {
        let ok = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            ok,
            "`{tool}` is not installed; the integration tests need it"
        );
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
        .expect("busybox-static (/bin/busybox) is not installed");

    // One directory per test-binary process under cargo's target tmpdir; stale ones from
    // earlier runs (whose process is gone) are removed.
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("skiff-image-fixtures");
    fs::create_dir_all(&base).unwrap();
    if let Ok(rd) = fs::read_dir(&base) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("pid-") {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
    }
    let dir = base.join(format!("pid-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let layout = dir.join("layout");
    let src = dir.join("src");
    fs::create_dir_all(src.join("etc")).unwrap();
    fs::create_dir_all(src.join("data")).unwrap();
    fs::copy(busybox, src.join("busybox")).unwrap();
    fs::write(src.join("etc/hello.txt"), "hello from skiff tests\n").unwrap();
    fs::write(
        src.join("etc/os-release"),
        "NAME=skiff-test\nID=skiff-test\n",
    )
    .unwrap();
    fs::write(src.join("data/small.txt"), "small\n".repeat(100)).unwrap();
    fs::write(src.join("extra.txt"), "extra layer\n").unwrap();
    fs::write(src.join("arch"), "arm64\n").unwrap();
    fs::write(src.join("noise.bin"), pseudo_random_bytes(BIG_LAYER_BYTES)).unwrap();

    let img = |tag: &str| format!("{}:{tag}", layout.display());
    let umoci = |args: &[&str]| {
        run_tool(Command::new("umoci").args(args));
    };
    let p = |rel: &str| src.join(rel).display().to_string();
    umoci(&["init", "--layout", &layout.display().to_string()]);
    umoci(&["new", "--image", &img("latest")]);
    umoci(&[
        "insert",
        "--image",
        &img("latest"),
        &p("busybox"),
        "/bin/busybox",
    ]);
    umoci(&["insert", "--image", &img("latest"), &p("etc"), "/etc"]);
    umoci(&["insert", "--image", &img("latest"), &p("data"), "/data"]);
    umoci(&[
        "config",
        "--image",
        &img("latest"),
        "--os",
        "linux",
        "--architecture",
        "amd64",
        "--config.cmd",
        "/bin/busybox",
        "--config.cmd",
        "sh",
        "--config.env",
        "PATH=/bin",
        "--config.workingdir",
        "/",
    ]);
    umoci(&[
        "insert",
        "--image",
        &img("latest"),
        "--tag",
        "extra",
        &p("extra.txt"),
        "/opt/extra.txt",
    ]);
    umoci(&[
        "insert",
        "--image",
        &img("latest"),
        "--tag",
        "arm64",
        &p("arch"),
        "/etc/arch",
    ]);
    umoci(&[
        "config",
        "--image",
        &img("arm64"),
        "--architecture",
        "arm64",
    ]);
    // umoci 0.4 has no --variant: edit the config blob, then the manifest and index.
    edit_layout_config(&layout, "arm64", |c| {
        c["variant"] = json!("v8");
    });
    umoci(&[
        "insert",
        "--image",
        &img("latest"),
        "--tag",
        "big",
        &p("noise.bin"),
        "/opt/noise.bin",
    ]);

    let _ = fs::remove_dir_all(&src);

    let mut images = BTreeMap::new();
    for tag in ["latest", "extra", "arm64", "big"] {
        images.insert(tag.to_string(), read_layout_image(&layout, tag));
    }
    let latest = &images["latest"];
    assert_eq!(
        latest.layers.len(),
        3,
        "fixture `latest` should have 3 layers"
    );
    assert_eq!(images["extra"].layers.len(), 4);
    assert_eq!(images["extra"].layers[..3], latest.layers[..]);
    assert_eq!(images["arm64"].config["architecture"], "arm64");
    assert_eq!(images["arm64"].config["variant"], "v8");
    assert!(images["big"].largest_layer().1 as usize >= BIG_LAYER_BYTES);
    Fixtures { layout, images }
}

/// Size of the incompressible layer of the `big` fixture: several times any sane
/// write buffer, so a download killed half-way has left data on disk.
pub const BIG_LAYER_BYTES: usize = 8 << 20;

/// Deterministic incompressible bytes (xorshift64*).
pub fn pseudo_random_bytes(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(n);
    out
}

fn layout_blob_path(layout: &Path, digest: &str) -> PathBuf {
    let (alg, hex) = digest.split_once(':').expect("digest");
    layout.join("blobs").join(alg).join(hex)
}

fn write_layout_blob(layout: &Path, data: &[u8]) -> String {
    let digest = format!("sha256:{}", sha256_hex(data));
    fs::write(layout_blob_path(layout, &digest), data).unwrap();
    digest
}

fn layout_index_entry(index: &Value, tag: &str) -> usize {
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .position(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("tag {tag} not in OCI layout index"))
}

/// Rewrites the config of `tag` in an OCI layout with `edit`, updating manifest and index.
pub fn edit_layout_config(layout: &Path, tag: &str, edit: impl FnOnce(&mut Value)) {
    let index_path = layout.join("index.json");
    let mut index: Value = serde_json::from_slice(&fs::read(&index_path).unwrap()).unwrap();
    let i = layout_index_entry(&index, tag);
    let mdigest = index["manifests"][i]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let mut manifest: Value =
        serde_json::from_slice(&fs::read(layout_blob_path(layout, &mdigest)).unwrap()).unwrap();
    let cdigest = manifest["config"]["digest"].as_str().unwrap().to_string();
    let mut config: Value =
        serde_json::from_slice(&fs::read(layout_blob_path(layout, &cdigest)).unwrap()).unwrap();
    edit(&mut config);
    let cbytes = serde_json::to_vec(&config).unwrap();
    manifest["config"]["digest"] = json!(write_layout_blob(layout, &cbytes));
    manifest["config"]["size"] = json!(cbytes.len());
    let mbytes = serde_json::to_vec(&manifest).unwrap();
    index["manifests"][i]["digest"] = json!(write_layout_blob(layout, &mbytes));
    index["manifests"][i]["size"] = json!(mbytes.len());
    fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
}

fn read_layout_image(layout: &Path, tag: &str) -> FixtureImage {
    let index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let i = layout_index_entry(&index, tag);
    let digest = index["manifests"][i]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let manifest_bytes = fs::read(layout_blob_path(layout, &digest)).unwrap();
    assert_eq!(format!("sha256:{}", sha256_hex(&manifest_bytes)), digest);
    let manifest: Value = serde_json::from_slice(&manifest_bytes).unwrap();
    let config_digest = manifest["config"]["digest"].as_str().unwrap().to_string();
    let config: Value =
        serde_json::from_slice(&fs::read(layout_blob_path(layout, &config_digest)).unwrap())
            .unwrap();
    let layers = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["digest"].as_str().unwrap().to_string(),
                l["size"].as_u64().unwrap(),
            )
        })
        .collect();
    FixtureImage {
        tag: tag.to_string(),
        digest,
        manifest_bytes,
        manifest,
        config_digest,
        config,
        layers,
    }
}

// ---------------------------------------------------------------------------------------
// Running skiff
// ---------------------------------------------------------------------------------------

/// The result of one `skiff` run.
#[derive(Debug)]
pub struct Out {
    pub args: Vec<String>,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    fn describe(&self) -> String {
        format!(
            "skiff {:?} -> {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.args, self.status, self.stdout, self.stderr
        )
    }

    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        assert!(
            self.status.success(),
            "expected success:\n{}",
            self.describe()
        );
        self
    }

    /// The last non-empty line of stdout.
    pub fn last_line(&self) -> &str {
        self.stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.describe()))
    }

    /// Asserts the spec's error contract: non-zero exit (and not a Rust panic), exactly one
    /// non-empty stderr line, starting with `Error: ` and containing each of `needles`
    /// (case-insensitive).
    #[track_caller]
    pub fn assert_clean_error(&self, needles: &[&str]) -> &Self {
        assert!(
            !self.status.success(),
            "expected failure:\n{}",
            self.describe()
        );
        assert_ne!(
            self.status.code(),
            Some(101),
            "skiff panicked:\n{}",
            self.describe()
        );
        assert!(
            self.status.code().is_some(),
            "skiff died by a signal:\n{}",
            self.describe()
        );
        assert!(
            !self.stderr.contains("panicked"),
            "skiff panicked:\n{}",
            self.describe()
        );
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "expected a one-line error on stderr:\n{}",
            self.describe()
        );
        assert!(
            lines[0].starts_with("Error: "),
            "error line should start with `Error: `:\n{}",
            self.describe()
        );
        let lower = lines[0].to_lowercase();
        for n in needles {
            assert!(
                lower.contains(&n.to_lowercase()),
                "error line should mention {n:?}:\n{}",
                self.describe()
            );
        }
        self
    }

    /// Like [`Out::assert_clean_error`], plus: the error line mentions at least one of
    /// `any_of` (case-insensitive).
    #[track_caller]
    pub fn assert_clean_error_any(&self, needles: &[&str], any_of: &[&str]) -> &Self {
        self.assert_clean_error(needles);
        let lower = self.error_line().to_lowercase();
        assert!(
            any_of.iter().any(|n| lower.contains(&n.to_lowercase())),
            "error line should mention one of {any_of:?}:\n{}",
            self.describe()
        );
        self
    }

    /// The single `Error: ` line (after [`Out::assert_clean_error`]).
    pub fn error_line(&self) -> &str {
        self.stderr
            .lines()
            .find(|l| l.starts_with("Error: "))
            .unwrap_or("")
    }
}

/// An isolated skiff environment: store root, auth file, registries.conf, HOME, an
/// (empty) certs.d directory, plus any extra environment variables a test sets.
pub struct Skiff {
    root: TempDir,
    home: TempDir,
    /// Set (or, for `None`, removed) on every command after the harness's own
    /// variables, so they can override them.
    extra_env: Mutex<BTreeMap<String, Option<String>>>,
}

impl Default for Skiff {
    fn default() -> Self {
        Self::new()
    }
}

impl Skiff {
    pub fn new() -> Skiff {
        let root = tempdir();
        let home = tempdir();
        fs::write(home.path().join("registries.conf"), "").unwrap();
        Skiff {
            root,
            home,
            extra_env: Mutex::new(BTreeMap::new()),
        }
    }

    /// Sets `key=value` in the environment of every later command of this env.
    pub fn set_env(&self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> &Self {
        self.extra_env
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                key.to_string(),
                Some(value.as_ref().to_string_lossy().into_owned()),
            );
        self
    }

    /// Removes `key` from the environment of every later command of this env (one the
    /// harness sets, such as `REGISTRY_AUTH_FILE`, included).
    pub fn unset_env(&self, key: &str) -> &Self {
        self.extra_env
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string(), None);
        self
    }

    /// The env's HOME directory.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// [`Skiff::set_env`], builder style.
    pub fn with_env(self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.set_env(key, value);
        self
    }

    /// SKIFF_CERTS_DIR unless a test sets another: an empty directory (not created), so
    /// the host's /etc/containers/certs.d never affects a test.
    pub fn certs_dir(&self) -> PathBuf {
        self.home.path().join("certs.d")
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// REGISTRY_AUTH_FILE (does not exist until `skiff login` writes it).
    pub fn auth_file(&self) -> PathBuf {
        self.home.path().join("auth.json")
    }

    /// CONTAINERS_REGISTRIES_CONF (empty by default).
    pub fn registries_conf(&self) -> PathBuf {
        self.home.path().join("registries.conf")
    }

    pub fn write_registries_conf(&self, toml: &str) {
        fs::write(self.registries_conf(), toml).unwrap();
    }

    /// Writes auth.json with credentials for `host` (containers auth.json format).
    pub fn write_auth(&self, host: &str, user: &str, pass: &str) {
        let v =
            json!({"auths": {host: {"auth": base64_encode(format!("{user}:{pass}").as_bytes())}}});
        fs::write(self.auth_file(), serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.command_without_root(&[]);
        cmd.arg("--root").arg(self.root()).args(args);
        cmd
    }

    /// [`Skiff::command`] without `--root`: the store is where SKIFF_ROOT or the
    /// defaults put it.
    pub fn command_without_root(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(SKIFF);
        cmd.args(args)
            .env("REGISTRY_AUTH_FILE", self.auth_file())
            .env("CONTAINERS_REGISTRIES_CONF", self.registries_conf())
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.home.path().join(".config"))
            .env("XDG_RUNTIME_DIR", self.home.path().join("run"))
            .env_remove("SKIFF_ROOT")
            .env_remove("DOCKER_CONFIG")
            .env_remove("RUST_LOG")
            .env_remove("RUST_BACKTRACE")
            .env_remove("http_proxy")
            .env_remove("HTTP_PROXY")
            .env_remove("https_proxy")
            .env_remove("HTTPS_PROXY")
            .env_remove("all_proxy")
            .env_remove("ALL_PROXY")
            .env("NO_PROXY", "*")
            .env("RUST_BACKTRACE", "0")
            .env("SKIFF_CERTS_DIR", self.certs_dir())
            .env_remove("SKIFF_RETRY_BACKOFF_MS");
        for (k, v) in self
            .extra_env
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Out {
        self.run_with_stdin(args, None)
    }

    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> Out {
        let out = self.run(args);
        out.assert_success();
        out
    }

    pub fn run_with_stdin(&self, args: &[&str], stdin: Option<Vec<u8>>) -> Out {
        let mut cmd = self.command(args);
        run_with_timeout(&mut cmd, args, stdin, SKIFF_TIMEOUT)
    }

    /// Starts skiff in the background (stdout/stderr to files in the env's home dir).
    pub fn spawn(&self, args: &[&str]) -> Spawned {
        let n = SPAWNED.fetch_add(1, Ordering::SeqCst);
        let out = self.home.path().join(format!("spawn-{n}.out"));
        let err = self.home.path().join(format!("spawn-{n}.err"));
        let child = self
            .command(args)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out).unwrap())
            .stderr(fs::File::create(&err).unwrap())
            .spawn()
            .expect("spawn skiff");
        Spawned {
            child,
            out,
            err,
            args: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// `skiff image ls --format json`, parsed.
    pub fn images(&self) -> Vec<Value> {
        let out = self.ok(&["image", "ls", "--format", "json"]);
        let v = out.json();
        v.as_array()
            .unwrap_or_else(|| panic!("`image ls --format json` is not an array: {v}"))
            .clone()
    }

    pub fn image_named(&self, name: &str) -> Option<Value> {
        self.images().into_iter().find(|i| i["name"] == name)
    }

    pub fn inspect(&self, reference: &str) -> Value {
        self.ok(&["image", "inspect", reference]).json()
    }

    pub fn pull(&self, reference: &str) -> Out {
        self.run(&["image", "pull", reference])
    }

    /// Pulls and returns the digest printed on the last line.
    #[track_caller]
    pub fn pull_ok(&self, reference: &str) -> String {
        let out = self.ok(&["image", "pull", reference]);
        let d = out.last_line().to_string();
        assert!(
            is_digest(&d),
            "pull should print a digest last, got {d:?}:\n{}",
            out.describe()
        );
        d
    }

    pub fn blobs(&self) -> BTreeSet<String> {
        store_blobs(self.root())
    }

    #[track_caller]
    pub fn assert_consistent(&self) {
        assert_store_consistent(self.root());
    }
}

/// A test that fails half-way must not leave containers running: every monitor
/// of this env's store is killed (its VM dies with it).
impl Drop for Skiff {
    fn drop(&mut self) {
        let root = self.root().display().to_string();
        let Ok(rd) = fs::read_dir(self.root().join("containers")) else {
            return;
        };
        for e in rd.flatten() {
            let Ok(state) = fs::read(e.path().join("state.json")) else {
                continue;
            };
            let Some(pid) = serde_json::from_slice::<Value>(&state)
                .ok()
                .and_then(|v| v["monitor_pid"].as_i64())
            else {
                continue;
            };
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&root) {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
    }
}

static SPAWNED: AtomicUsize = AtomicUsize::new(0);

/// A skiff process started with [`Skiff::spawn`].
pub struct Spawned {
    pub child: Child,
    out: PathBuf,
    err: PathBuf,
    args: Vec<String>,
}

impl Spawned {
    /// Waits (bounded by `timeout`, then kills and panics) and collects the output.
    pub fn wait(mut self, timeout: Duration) -> Out {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait skiff") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "skiff {:?} did not finish within {timeout:?}; stderr:\n{}",
                    self.args,
                    fs::read_to_string(&self.err).unwrap_or_default()
                );
            }
            thread::sleep(Duration::from_millis(10));
        };
        Out {
            args: self.args.clone(),
            status,
            stdout: fs::read_to_string(&self.out).unwrap_or_default(),
            stderr: fs::read_to_string(&self.err).unwrap_or_default(),
        }
    }

    /// SIGKILL, then reap.
    pub fn kill(mut self) -> ExitStatus {
        let _ = self.child.kill();
        self.child.wait().expect("reap skiff")
    }

    pub fn stdout_path(&self) -> PathBuf {
        self.out.clone()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// `skiff --root ROOT ARGS...` in a fresh config env; (status, stdout, stderr).
pub fn skiff(root: &Path, args: &[&str]) -> (ExitStatus, String, String) {
    let home = tempdir();
    fs::write(home.path().join("registries.conf"), "").unwrap();
    let mut cmd = Command::new(SKIFF);
    cmd.arg("--root")
        .arg(root)
        .args(args)
        .env("REGISTRY_AUTH_FILE", home.path().join("auth.json"))
        .env(
            "CONTAINERS_REGISTRIES_CONF",
            home.path().join("registries.conf"),
        )
        .env("HOME", home.path())
        .env_remove("SKIFF_ROOT");
    let out = run_with_timeout(&mut cmd, args, None, SKIFF_TIMEOUT);
    (out.status, out.stdout, out.stderr)
}

pub fn run_with_timeout(
    cmd: &mut Command,
    args: &[&str],
    stdin: Option<Vec<u8>>,
    timeout: Duration,
) -> Out {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {SKIFF}: {e}"));
    let stdin_thread = stdin.map(|data| {
        let mut w = child.stdin.take().unwrap();
        thread::spawn(move || {
            let _ = w.write_all(&data);
        })
    });
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t_out = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let t_err = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait skiff") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = String::from_utf8_lossy(&t_err.join().unwrap()).into_owned();
            panic!("skiff {args:?} did not finish within {timeout:?}; stderr:\n{stderr}");
        }
        thread::sleep(Duration::from_millis(10));
    };
    if let Some(t) = stdin_thread {
        let _ = t.join();
    }
    Out {
        args: args.iter().map(|s| s.to_string()).collect(),
        status,
        stdout: String::from_utf8_lossy(&t_out.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&t_err.join().unwrap()).into_owned(),
    }
}

pub fn is_digest(s: &str) -> bool {
    s.strip_prefix("sha256:")
        .map(|h| {
            h.len() == 64
                && h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
        .unwrap_or(false)
}

// ---------------------------------------------------------------------------------------
// Store checks
// ---------------------------------------------------------------------------------------

/// Digests ("sha256:<hex>") of every file in `ROOT/blobs/sha256/`.
pub fn store_blobs(root: &Path) -> BTreeSet<String> {
    let dir = root.join("blobs/sha256");
    let mut out = BTreeSet::new();
    if let Ok(rd) = fs::read_dir(&dir) {
        for e in rd.flatten() {
            out.insert(format!("sha256:{}", e.file_name().to_string_lossy()));
        }
    }
    out
}

/// Names of the files in `ROOT/tmp/`.
pub fn store_tmp_files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(root.join("tmp")) {
        for e in rd.flatten() {
            out.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    out.sort();
    out
}

fn is_partial_name(name: &str) -> bool {
    name.strip_prefix("sha256-")
        .and_then(|r| r.strip_suffix(".partial"))
        .map(|h| is_digest(&format!("sha256:{h}")))
        .unwrap_or(false)
}

/// The store invariants: every blob's content hashes to its name (and is a regular file),
/// `tmp/` holds only `sha256-<hex>.partial` files, `images/index.json` (if present) is
/// JSON, and every image `ls` would show (named or dangling) has its manifest, config
/// and layers stored, with the config its record names.
#[track_caller]
pub fn assert_store_consistent(root: &Path) {
    let dir = root.join("blobs/sha256");
    if let Ok(rd) = fs::read_dir(&dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let ft = e.file_type().unwrap();
            assert!(ft.is_file(), "blobs/sha256/{name} is not a regular file");
            assert!(
                is_digest(&format!("sha256:{name}")),
                "odd file name blobs/sha256/{name}"
            );
            let actual = sha256_file(&e.path());
            assert_eq!(
                actual, name,
                "blob blobs/sha256/{name} has content sha256:{actual}"
            );
        }
    }
    for name in store_tmp_files(root) {
        assert!(
            is_partial_name(&name),
            "leftover temp file tmp/{name} in the store"
        );
    }
    let index = root.join("images/index.json");
    if index.exists() {
        let bytes = fs::read(&index).unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "images/index.json is not valid JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        let images = v["images"]
            .as_array()
            .unwrap_or_else(|| panic!("images/index.json has no `images` array: {v}"));
        for rec in images {
            let digest = rec["digest"]
                .as_str()
                .unwrap_or_else(|| panic!("index entry without a digest: {rec}"));
            let config = assert_image_complete(root, digest);
            assert_eq!(
                rec["config"].as_str(),
                Some(config.as_str()),
                "index entry {rec} names another config than its manifest"
            );
        }
    }
}

/// Asserts that every partial download in `tmp/` whose digest is a fixture blob holds a
/// prefix of that blob: a store may keep partials for resuming, never corrupt bytes.
#[track_caller]
pub fn assert_partials_are_clean_prefixes(root: &Path) {
    let layout = &fixtures().layout;
    for name in store_tmp_files(root) {
        let Some(hex) = name
            .strip_prefix("sha256-")
            .and_then(|r| r.strip_suffix(".partial"))
        else {
            continue;
        };
        let real = layout.join("blobs/sha256").join(hex);
        if !real.exists() {
            continue;
        }
        let partial = fs::read(root.join("tmp").join(&name)).unwrap();
        let real = fs::read(real).unwrap();
        assert!(
            partial.len() <= real.len() && real[..partial.len()] == partial[..],
            "tmp/{name} ({} bytes) is not a prefix of the real blob: the store kept corrupt data",
            partial.len()
        );
    }
}

/// Bytes of the partial download of `digest` in `tmp/` (0 when there is none).
pub fn partial_len(root: &Path, digest: &str) -> u64 {
    let hex = digest.trim_start_matches("sha256:");
    fs::metadata(root.join("tmp").join(format!("sha256-{hex}.partial")))
        .map(|m| m.len())
        .unwrap_or(0)
}

/// Whether `tmp/` holds a partial download of `digest` that is NOT a prefix of the real
/// (fixture) blob.
pub fn partial_is_corrupt(root: &Path, digest: &str) -> bool {
    let hex = digest.trim_start_matches("sha256:");
    let p = root.join("tmp").join(format!("sha256-{hex}.partial"));
    let Ok(partial) = fs::read(p) else {
        return false;
    };
    let real = fs::read(fixtures().layout.join("blobs/sha256").join(hex)).unwrap();
    partial.len() > real.len() || real[..partial.len()] != partial[..]
}

/// Asserts that the manifest `digest` and everything it references are in the store;
/// returns the config digest.
#[track_caller]
pub fn assert_image_complete(root: &Path, digest: &str) -> String {
    let blobs = store_blobs(root);
    assert!(blobs.contains(digest), "manifest {digest} not in the store");
    let path = root
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    let m: Value = serde_json::from_slice(&fs::read(path).unwrap()).unwrap();
    let c = m["config"]["digest"]
        .as_str()
        .expect("manifest config digest");
    assert!(blobs.contains(c), "config {c} of {digest} not in the store");
    for l in m["layers"].as_array().expect("manifest layers") {
        let d = l["digest"].as_str().unwrap();
        assert!(blobs.contains(d), "layer {d} of {digest} not in the store");
    }
    c.to_string()
}

// ---------------------------------------------------------------------------------------
// Proxy
// ---------------------------------------------------------------------------------------

/// What the proxy does to the traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Forward everything unchanged.
    Normal,
    /// For the first `times` blob GET responses: send the head and half the body, then
    /// close the connection.
    DropMidBlob { times: usize },
    /// Flip one byte in the middle of every blob GET body.
    CorruptBlob,
    /// Require `Authorization: Bearer <token>` on /v2/; serve tokens on /token for
    /// Basic USER:PASS.
    Bearer,
    /// Answer every /v2/ request with 200 and an HTML page.
    Html,
    /// Send blob GET bodies at about this many bytes per second.
    Slow { bytes_per_sec: usize },
    /// `Slow`, and corrupt (as `CorruptBlob`) the blob bodies larger than
    /// `corrupt_above` bytes: a client killed mid-blob has received corrupt bytes.
    SlowCorrupt {
        bytes_per_sec: usize,
        corrupt_above: usize,
    },
    /// Answer the first `times` blob GETs with HTTP `code` (a distribution-style JSON
    /// error body) and, when set, `Retry-After: <seconds>`, without asking the registry;
    /// then forward normally. `times: usize::MAX` fails every blob GET.
    Status {
        code: u16,
        times: usize,
        retry_after: Option<u64>,
    },
    /// Answer GET and HEAD of `/v2/<repo>/manifests/<ref>` with this response instead
    /// of forwarding; everything else (blobs, `/v2/`) is forwarded.
    Canned(Canned),
}

/// A canned manifest answer for [`Mode::Canned`].
#[derive(Clone, PartialEq, Eq)]
pub struct Canned {
    pub status: u16,
    /// Sent as given (Content-Length and Connection are added by the proxy).
    pub headers: Vec<(String, String)>,
    pub body: Arc<Vec<u8>>,
}

impl Canned {
    /// 200 with `body`, `Content-Type: content_type` and the body's true
    /// `Docker-Content-Digest`.
    pub fn manifest(content_type: &str, body: Vec<u8>) -> Canned {
        let digest = format!("sha256:{}", sha256_hex(&body));
        Canned {
            status: 200,
            headers: vec![
                ("Content-Type".into(), content_type.into()),
                ("Docker-Content-Digest".into(), digest),
                (
                    "Docker-Distribution-Api-Version".into(),
                    "registry/2.0".into(),
                ),
            ],
            body: Arc::new(body),
        }
    }

    /// Sets header `name` (replacing any of that name).
    pub fn with_header(mut self, name: &str, value: &str) -> Canned {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.headers.push((name.into(), value.into()));
        self
    }

    /// "sha256:..." of the body.
    pub fn body_digest(&self) -> String {
        format!("sha256:{}", sha256_hex(&self.body))
    }
}

impl std::fmt::Debug for Canned {
    // Bodies can be megabytes: show their size, not their bytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Canned")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// One request the proxy saw.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub range: Option<String>,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    pub body_len: usize,
    /// Response status (0 while in flight or when the proxy produced no response).
    pub status: u16,
    /// Bytes of response body actually written to the client.
    pub body_sent: usize,
    /// When the proxy had read the request head.
    pub at: Instant,
}

impl Recorded {
    pub fn is_blob_get(&self) -> bool {
        self.method == "GET" && is_blob_path(&self.path)
    }
    pub fn is_upload(&self) -> bool {
        self.path.contains("/blobs/uploads") && !matches!(self.method.as_str(), "GET" | "HEAD")
    }
    /// The digest in a `/blobs/<digest>` path.
    pub fn blob_digest(&self) -> Option<&str> {
        if is_blob_path(&self.path) {
            self.path.rsplit('/').next()
        } else {
            None
        }
    }
}

fn is_blob_path(path: &str) -> bool {
    path.starts_with("/v2/") && path.contains("/blobs/sha256:")
}

#[derive(Default)]
struct ProxyState {
    mode: Option<Mode>,
    /// Every request ever seen (indices stay valid for in-flight connections).
    log: Vec<Recorded>,
    /// `reset` hides the records before this index.
    visible_from: usize,
    drops_done: usize,
    /// Blob GETs answered by [`Mode::Status`] since the mode was set.
    statuses_done: usize,
    /// token -> scopes granted ("repository:NAME:pull,push")
    tokens: HashMap<String, Vec<String>>,
    next_token: usize,
    /// I/O errors of connections (a client hanging up mid-body lands here).
    errors: Vec<String>,
}

/// An HTTP/1.1 forwarding proxy on 127.0.0.1 in front of a registry (one request per
/// connection: every answer carries `Connection: close`).
pub struct Proxy {
    pub port: u16,
    /// `ADDR:PORT` as clients write it (`[::1]:PORT` for IPv6).
    host: String,
    upstream: String,
    upstream_auth: Option<String>,
    state: Arc<Mutex<ProxyState>>,
    stop: Arc<AtomicBool>,
    accept_thread: Option<thread::JoinHandle<()>>,
}

struct Ctx {
    host: String,
    upstream: String,
    upstream_auth: Option<String>,
    state: Arc<Mutex<ProxyState>>,
}

impl Proxy {
    pub fn start(registry: &Registry, mode: Mode) -> Proxy {
        Proxy::start_on("127.0.0.1:0", registry, mode)
    }

    /// [`Proxy::start`] listening on `bind` (e.g. `[::1]:0`, `127.0.0.2:0`).
    pub fn start_on(bind: &str, registry: &Registry, mode: Mode) -> Proxy {
        let upstream_auth = registry.auth.as_ref().map(|(u, p)| basic_auth_value(u, p));
        let listener =
            TcpListener::bind(bind).unwrap_or_else(|e| panic!("bind proxy on {bind}: {e}"));
        let local = listener.local_addr().unwrap();
        let port = local.port();
        let host = local.to_string();
        let state = Arc::new(Mutex::new(ProxyState {
            mode: Some(mode),
            ..Default::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let ctx = Arc::new(Ctx {
            host: host.clone(),
            upstream: registry.host(),
            upstream_auth: upstream_auth.clone(),
            state: state.clone(),
        });
        let stop2 = stop.clone();
        let accept_thread = thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let ctx = ctx.clone();
                thread::spawn(move || {
                    if let Err(e) = handle_conn(&ctx, conn) {
                        lock(&ctx.state).errors.push(e.to_string());
                    }
                });
            }
        });
        Proxy {
            port,
            host,
            upstream: registry.host(),
            upstream_auth,
            state,
            stop,
            accept_thread: Some(accept_thread),
        }
    }

    /// "127.0.0.1:PORT" of the proxy (or the address it was started on): use it as the
    /// registry host in references.
    pub fn host(&self) -> String {
        self.host.clone()
    }

    pub fn set_mode(&self, mode: Mode) {
        let mut st = lock(&self.state);
        st.mode = Some(mode);
        st.drops_done = 0;
        st.statuses_done = 0;
    }

    /// Forgets the recorded requests (requests still in flight are forgotten too).
    pub fn reset(&self) {
        let mut st = lock(&self.state);
        st.visible_from = st.log.len();
    }

    pub fn requests(&self) -> Vec<Recorded> {
        let st = lock(&self.state);
        st.log[st.visible_from..].to_vec()
    }

    pub fn count(&self, f: impl Fn(&Recorded) -> bool) -> usize {
        self.requests().iter().filter(|r| f(r)).count()
    }

    /// Requests with this method whose path starts with `prefix`.
    pub fn count_method_path(&self, method: &str, prefix: &str) -> usize {
        self.count(|r| r.method == method && r.path.starts_with(prefix))
    }

    pub fn blob_gets(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.is_blob_get())
            .collect()
    }

    /// POST/PUT/PATCH/DELETE to `.../blobs/uploads/...`.
    pub fn uploads(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.is_upload())
            .collect()
    }

    pub fn token_requests(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == "/token")
            .collect()
    }

    /// Whether a blob GET with a `Range` header was seen.
    pub fn saw_range_request(&self) -> bool {
        self.count(|r| r.is_blob_get() && r.range.is_some()) > 0
    }

    pub fn drops_done(&self) -> usize {
        lock(&self.state).drops_done
    }

    /// Blob GETs that [`Mode::Status`] answered with its status since the mode was set.
    pub fn statuses_done(&self) -> usize {
        lock(&self.state).statuses_done
    }

    /// Total blob body bytes written to clients since the last reset.
    pub fn blob_bytes_sent(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.is_blob_get())
            .map(|r| r.body_sent)
            .sum()
    }

    /// A summary of the log, for assertion messages.
    pub fn dump(&self) -> String {
        let errors = lock(&self.state).errors.clone();
        let errors: String = errors
            .iter()
            .map(|e| format!("proxy connection error: {e}\n"))
            .collect();
        let requests: String = self
            .requests()
            .iter()
            .map(|r| {
                format!(
                    "{} {}{}{} -> {} ({} B){}\n",
                    r.method,
                    r.path,
                    if r.query.is_empty() { "" } else { "?" },
                    r.query,
                    r.status,
                    r.body_sent,
                    r.range
                        .as_ref()
                        .map(|x| format!(" [Range: {x}]"))
                        .unwrap_or_default()
                )
            })
            .collect();
        errors + &requests
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.host);
        if let Some(t) = self.accept_thread.take() {
            let _ = t.join();
        }
    }
}

/// Locks the proxy state; a panicking connection thread must not take the proxy down.
fn lock(m: &Mutex<ProxyState>) -> std::sync::MutexGuard<'_, ProxyState> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// The distribution error code for an injected status.
fn error_code(status: u16) -> &'static str {
    match status {
        429 => "TOOMANYREQUESTS",
        503 => "UNAVAILABLE",
        _ => "UNKNOWN",
    }
}

fn write_simple(
    c: &mut TcpStream,
    status: u16,
    headers: &[(&str, String)],
    body: &[u8],
) -> io::Result<()> {
    write_response(c, status, headers, body, true)
}

/// Head with Content-Length of `body`; the body itself only when `send_body` (not for
/// HEAD).
fn write_response(
    c: &mut TcpStream,
    status: u16,
    headers: &[(&str, String)],
    body: &[u8],
    send_body: bool,
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    c.write_all(head.as_bytes())?;
    if send_body {
        c.write_all(body)?;
    }
    c.flush()
}

fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The repository name in a /v2/<name>/(manifests|blobs|tags)/... path.
pub fn repo_of_path(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/v2/")?;
    for marker in ["/manifests/", "/blobs/", "/tags/"] {
        if let Some(i) = rest.rfind(marker) {
            return Some(rest[..i].to_string());
        }
    }
    None
}

fn scope_allows(granted: &[String], repo: &str, action: &str) -> bool {
    granted.iter().any(|s| {
        let mut parts = s.splitn(3, ':');
        let (Some(kind), Some(name), Some(actions)) = (parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        kind == "repository" && name == repo && actions.split(',').any(|a| a == action || a == "*")
    })
}

fn handle_conn(ctx: &Ctx, client: TcpStream) -> io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut writer = client.try_clone()?;
    let mut r = BufReader::new(client);
    // A TLS ClientHello (clients that try https first): answer like Go's plain-HTTP
    // server does instead of waiting for a request line that never comes.
    if r.fill_buf()?.first() == Some(&0x16) {
        let _ = writer.write_all(
            b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n",
        );
        let _ = writer.shutdown(Shutdown::Both);
        return Ok(());
    }
    let Some((request_line, req_headers)) = read_head(&mut r)? else {
        return Ok(());
    };
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("/").to_string();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target.clone(), String::new()),
    };
    if header(&req_headers, "expect")
        .map(|v| v.eq_ignore_ascii_case("100-continue"))
        .unwrap_or(false)
    {
        writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let body = read_body(&mut r, &req_headers, false)?;

    let (idx, mode) = {
        let mut st = lock(&ctx.state);
        st.log.push(Recorded {
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
            range: header(&req_headers, "range").map(str::to_string),
            authorization: header(&req_headers, "authorization").map(str::to_string),
            content_type: header(&req_headers, "content-type").map(str::to_string),
            body_len: body.len(),
            status: 0,
            body_sent: 0,
            at: Instant::now(),
        });
        (st.log.len() - 1, st.mode.clone().unwrap_or(Mode::Normal))
    };
    let set_status = |status: u16| {
        lock(&ctx.state).log[idx].status = status;
    };
    let add_sent = |n: usize| {
        lock(&ctx.state).log[idx].body_sent += n;
    };

    // --- modes that answer by themselves ---
    if let Mode::Status {
        code,
        times,
        retry_after,
    } = mode
    {
        let fail_now = method == "GET" && is_blob_path(&path) && {
            let mut st = lock(&ctx.state);
            if st.statuses_done < times {
                st.statuses_done += 1;
                true
            } else {
                false
            }
        };
        if fail_now {
            set_status(code);
            let mut headers = vec![
                ("Content-Type", "application/json".to_string()),
                (
                    "Docker-Distribution-Api-Version",
                    "registry/2.0".to_string(),
                ),
            ];
            if let Some(secs) = retry_after {
                headers.push(("Retry-After", secs.to_string()));
            }
            let body = json!({"errors": [{
                "code": error_code(code),
                // No status number in here: a test that looks for it in skiff's
                // error must find the status, not this text.
                "message": "fault injected by the test proxy",
                "detail": null
            }]});
            return write_simple(
                &mut writer,
                code,
                &headers,
                &serde_json::to_vec(&body).unwrap(),
            );
        }
    }
    if let Mode::Canned(canned) = &mode {
        if matches!(method.as_str(), "GET" | "HEAD")
            && path.starts_with("/v2/")
            && path.contains("/manifests/")
        {
            set_status(canned.status);
            let headers: Vec<(&str, String)> = canned
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.clone()))
                .collect();
            let send_body = method == "GET";
            write_response(
                &mut writer,
                canned.status,
                &headers,
                &canned.body,
                send_body,
            )?;
            if send_body {
                add_sent(canned.body.len());
            }
            let _ = writer.shutdown(Shutdown::Write);
            return Ok(());
        }
    }
    if mode == Mode::Html && path.starts_with("/v2") {
        set_status(200);
        let html = b"<!DOCTYPE html><html><head><title>Welcome</title></head><body><h1>It works!</h1></body></html>\n";
        return write_simple(
            &mut writer,
            200,
            &[("Content-Type", "text/html; charset=utf-8".into())],
            html,
        );
    }
    if mode == Mode::Bearer {
        if path == "/token" {
            // GET with Basic credentials, or an OAuth2 refresh-token grant
            // (docker's identity tokens) as a form POST.
            let form = parse_query(&String::from_utf8_lossy(&body));
            let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
            let refresh_ok = method == "POST"
                && field("grant_type") == Some("refresh_token")
                && field("refresh_token") == Some(REFRESH_TOKEN);
            let query = if method == "POST" {
                String::from_utf8_lossy(&body).into_owned()
            } else {
                query.clone()
            };
            let expected = basic_auth_value(USER, PASS);
            let ok = refresh_ok
                || header(&req_headers, "authorization")
                    .map(|a| a == expected)
                    .unwrap_or(false);
            if !ok {
                set_status(401);
                return write_simple(
                    &mut writer,
                    401,
                    &[
                        ("Content-Type", "application/json".into()),
                        ("WWW-Authenticate", "Basic realm=\"token\"".into()),
                    ],
                    br#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#,
                );
            }
            let scopes: Vec<String> = parse_query(&query)
                .into_iter()
                .filter(|(k, _)| k == "scope")
                .flat_map(|(_, v)| v.split(' ').map(str::to_string).collect::<Vec<_>>())
                .collect();
            let token = {
                let mut st = lock(&ctx.state);
                st.next_token += 1;
                let t = format!("skiff-test-token-{}", st.next_token);
                st.tokens.insert(t.clone(), scopes);
                t
            };
            set_status(200);
            let body = json!({"token": token, "access_token": token, "expires_in": 300});
            return write_simple(
                &mut writer,
                200,
                &[("Content-Type", "application/json".into())],
                &serde_json::to_vec(&body).unwrap(),
            );
        }
        if path.starts_with("/v2") {
            let repo = repo_of_path(&path);
            let action = if matches!(method.as_str(), "GET" | "HEAD") {
                "pull"
            } else {
                "push"
            };
            let token = header(&req_headers, "authorization")
                .and_then(|a| {
                    a.strip_prefix("Bearer ")
                        .or_else(|| a.strip_prefix("bearer "))
                })
                .map(|t| t.trim().to_string());
            let allowed = {
                let st = lock(&ctx.state);
                match (&token, &repo) {
                    (Some(t), Some(repo)) => st
                        .tokens
                        .get(t)
                        .map(|g| scope_allows(g, repo, action))
                        .unwrap_or(false),
                    (Some(t), None) => st.tokens.contains_key(t),
                    (None, _) => false,
                }
            };
            if !allowed {
                let mut challenge = format!(
                    "Bearer realm=\"http://{}/token\",service=\"test-registry\"",
                    ctx.host
                );
                if let Some(repo) = &repo {
                    let actions = if action == "pull" {
                        "pull"
                    } else {
                        "pull,push"
                    };
                    challenge.push_str(&format!(",scope=\"repository:{repo}:{actions}\""));
                }
                set_status(401);
                return write_simple(
                    &mut writer,
                    401,
                    &[
                        ("Content-Type", "application/json".into()),
                        ("Docker-Distribution-Api-Version", "registry/2.0".into()),
                        ("WWW-Authenticate", challenge),
                    ],
                    br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
                );
            }
        }
    }

    // --- forward to the registry ---
    let mut up = match TcpStream::connect(&ctx.upstream) {
        Ok(s) => s,
        Err(e) => {
            set_status(502);
            return write_simple(&mut writer, 502, &[], format!("upstream: {e}").as_bytes());
        }
    };
    up.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {}\r\n", ctx.upstream);
    for (k, v) in &req_headers {
        let lk = k.to_ascii_lowercase();
        if matches!(
            lk.as_str(),
            "host"
                | "connection"
                | "keep-alive"
                | "transfer-encoding"
                | "content-length"
                | "expect"
                | "proxy-connection"
                | "te"
                | "upgrade"
        ) {
            continue;
        }
        if lk == "authorization" && mode == Mode::Bearer {
            // Bearer tokens are the proxy's own; the registry behind it never sees them.
            continue;
        }
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if mode == Mode::Bearer {
        if let Some(a) = &ctx.upstream_auth {
            head.push_str(&format!("Authorization: {a}\r\n"));
        }
    }
    if !body.is_empty() || matches!(method.as_str(), "POST" | "PUT" | "PATCH") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    up.write_all(head.as_bytes())?;
    up.write_all(&body)?;
    up.flush()?;
    let mut ur = BufReader::new(up);
    let (status_line, resp_headers) = read_head(&mut ur)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "upstream closed"))?;
    let status = parse_status(&status_line)?;
    let no_body = method == "HEAD" || status == 204 || status == 304 || status < 200;
    let mut resp_body = if no_body {
        Vec::new()
    } else if status == 416 {
        // distribution announces the blob's length on a 416 but sends no body: take what
        // comes (the proxy sends its own Content-Length).
        let mut b = Vec::new();
        ur.read_to_end(&mut b)?;
        b
    } else {
        read_body(&mut ur, &resp_headers, true)?
    };
    set_status(status);

    let up_prefixes = [
        format!("http://{}", ctx.upstream),
        format!("//{}", ctx.upstream),
    ];
    let mut out = format!("{status_line}\r\n");
    for (k, v) in &resp_headers {
        let lk = k.to_ascii_lowercase();
        if matches!(
            lk.as_str(),
            "connection" | "keep-alive" | "transfer-encoding"
        ) {
            continue;
        }
        if lk == "content-length" && !no_body {
            continue;
        }
        let mut v = v.clone();
        if lk == "location" {
            for p in &up_prefixes {
                if v.starts_with(p.as_str()) {
                    let proxy_prefix = p.replace(&ctx.upstream, &ctx.host);
                    v = format!("{proxy_prefix}{}", &v[p.len()..]);
                }
            }
        }
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if !no_body {
        out.push_str(&format!("Content-Length: {}\r\n", resp_body.len()));
    }
    out.push_str("Connection: close\r\n\r\n");

    let blob_get = method == "GET" && is_blob_path(&path) && (status == 200 || status == 206);
    if blob_get && !resp_body.is_empty() {
        match mode {
            Mode::CorruptBlob => {
                let mid = resp_body.len() / 2;
                resp_body[mid] ^= 0xff;
            }
            Mode::SlowCorrupt { corrupt_above, .. } if resp_body.len() > corrupt_above => {
                let mid = resp_body.len() / 2;
                resp_body[mid] ^= 0xff;
            }
            Mode::DropMidBlob { times } => {
                let drop_now = {
                    let mut st = lock(&ctx.state);
                    if st.drops_done < times && resp_body.len() >= 2 {
                        st.drops_done += 1;
                        true
                    } else {
                        false
                    }
                };
                if drop_now {
                    let half = resp_body.len() / 2;
                    writer.write_all(out.as_bytes())?;
                    writer.write_all(&resp_body[..half])?;
                    writer.flush()?;
                    add_sent(half);
                    let _ = writer.shutdown(Shutdown::Both);
                    return Ok(());
                }
            }
            _ => {}
        }
        if let Mode::Slow { bytes_per_sec } | Mode::SlowCorrupt { bytes_per_sec, .. } = mode {
            {
                writer.write_all(out.as_bytes())?;
                let chunk = (bytes_per_sec / 20).max(1);
                let start = Instant::now();
                let mut sent = 0usize;
                for piece in resp_body.chunks(chunk) {
                    writer.write_all(piece)?;
                    writer.flush()?;
                    sent += piece.len();
                    add_sent(piece.len());
                    let due = Duration::from_secs_f64(sent as f64 / bytes_per_sec as f64);
                    if let Some(wait) = due.checked_sub(start.elapsed()) {
                        thread::sleep(wait);
                    }
                }
                let _ = writer.shutdown(Shutdown::Write);
                return Ok(());
            }
        }
    }
    writer.write_all(out.as_bytes())?;
    writer.write_all(&resp_body)?;
    writer.flush()?;
    add_sent(resp_body.len());
    let _ = writer.shutdown(Shutdown::Write);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Tar archives (to look inside and to corrupt saved images)
// ---------------------------------------------------------------------------------------

/// One entry of a tar archive: name, offset of its data, size.
#[derive(Debug, Clone)]
pub struct TarEntry {
    pub name: String,
    pub typeflag: u8,
    pub offset: usize,
    pub size: usize,
}

fn tar_octal(field: &[u8]) -> usize {
    let s: String = field
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| b as char)
        .collect::<String>();
    usize::from_str_radix(s.trim(), 8).unwrap_or(0)
}

fn tar_str(field: &[u8]) -> String {
    String::from_utf8_lossy(field.split(|&b| b == 0).next().unwrap_or(&[])).into_owned()
}

/// Lists the entries of an (uncompressed) tar archive; understands ustar prefixes, GNU
/// long names and pax `path` records.
pub fn tar_entries(data: &[u8]) -> Vec<TarEntry> {
    let mut out = Vec::new();
    let mut pos = 0;
    let mut long_name: Option<String> = None;
    while pos + 512 <= data.len() {
        let h = &data[pos..pos + 512];
        if h.iter().all(|&b| b == 0) {
            break;
        }
        let size = tar_octal(&h[124..136]);
        let typeflag = h[156];
        let body = pos + 512;
        let end = (body + size).min(data.len());
        let mut name = tar_str(&h[0..100]);
        if &h[257..262] == b"ustar" {
            let prefix = tar_str(&h[345..500]);
            if !prefix.is_empty() {
                name = format!("{prefix}/{name}");
            }
        }
        match typeflag {
            b'L' => long_name = Some(tar_str(&data[body..end])),
            b'x' => {
                let text = String::from_utf8_lossy(&data[body..end]).into_owned();
                for rec in text.lines() {
                    if let Some((_, kv)) = rec.split_once(' ') {
                        if let Some(p) = kv.strip_prefix("path=") {
                            long_name = Some(p.to_string());
                        }
                    }
                }
            }
            _ => {
                let name = long_name.take().unwrap_or(name);
                out.push(TarEntry {
                    name,
                    typeflag,
                    offset: body,
                    size,
                });
            }
        }
        pos = body + size.div_ceil(512) * 512;
    }
    out
}

/// Reads one file out of a tar archive.
pub fn tar_file(data: &[u8], name: &str) -> Option<Vec<u8>> {
    let want = name.trim_start_matches("./");
    tar_entries(data)
        .into_iter()
        .find(|e| {
            e.name.trim_start_matches("./") == want && (e.typeflag == b'0' || e.typeflag == 0)
        })
        .map(|e| data[e.offset..e.offset + e.size].to_vec())
}

/// Flips one byte in the middle of the largest regular file in a tar archive (a layer
/// blob, in an image archive); returns that entry's name.
pub fn corrupt_largest_tar_entry(path: &Path) -> String {
    let mut data = fs::read(path).unwrap();
    let e = tar_entries(&data)
        .into_iter()
        .filter(|e| e.typeflag == b'0' || e.typeflag == 0)
        .max_by_key(|e| e.size)
        .expect("tar has regular files");
    assert!(
        e.size > 1000,
        "largest entry {} is too small to be a layer",
        e.name
    );
    data[e.offset + e.size / 2] ^= 0x01;
    fs::write(path, data).unwrap();
    e.name
}
