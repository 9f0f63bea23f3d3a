//! Registry credentials in the containers `auth.json` format, also read from
//! docker's `~/.docker/config.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::registries::ConfigError;

#[derive(Clone, PartialEq, Eq, Default)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// An OAuth2 refresh token (docker's `identitytoken`), exchanged at the
    /// token server instead of sending the password.
    pub identity_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}:***)", self.username)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct AuthFile {
    #[serde(default)]
    pub auths: BTreeMap<String, AuthEntry>,
    /// Everything else (credHelpers, …) is kept as is when we rewrite the file.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Default, Serialize, Deserialize, Clone)]
pub struct AuthEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identitytoken: Option<String>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// Where `login` writes: `$REGISTRY_AUTH_FILE`, else
/// `$XDG_RUNTIME_DIR/containers/auth.json`, else podman's default for the user.
pub fn default_write_path() -> PathBuf {
    if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE") {
        return PathBuf::from(p);
    }
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR") {
        return PathBuf::from(dir).join("containers/auth.json");
    }
    let uid = rustix::process::geteuid().as_raw();
    if uid == 0 {
        PathBuf::from("/run/containers/0/auth.json")
    } else {
        home().join(".config/containers/auth.json")
    }
}

fn home() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from)
}

/// Files read for credentials, in priority order.
pub fn read_paths() -> Vec<PathBuf> {
    if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE") {
        return vec![PathBuf::from(p)];
    }
    let mut v = vec![
        default_write_path(),
        home().join(".config/containers/auth.json"),
    ];
    let docker =
        std::env::var_os("DOCKER_CONFIG").map_or_else(|| home().join(".docker"), PathBuf::from);
    v.push(docker.join("config.json"));
    v.dedup();
    v
}

impl AuthFile {
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        match std::fs::read(path) {
            Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Ok(Self::default()),
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| ConfigError::Json {
                path: path.into(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(ConfigError::Read {
                path: path.into(),
                source,
            }),
        }
    }

    /// Writes atomically with mode 0600 (it holds secrets).
    pub fn write(&self, path: &Path) -> Result<(), ConfigError> {
        let err = |source| ConfigError::Write {
            path: path.into(),
            source,
        };
        let json = serde_json::to_vec_pretty(self).map_err(|e| err(e.into()))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        skiff_util::atomic::write(path, &json, 0o600).map_err(err)
    }

    /// Credentials for `registry` (a `host[:port]` as written in references).
    pub fn lookup(&self, registry: &str) -> Option<Credentials> {
        let keys = candidate_keys(registry);
        self.auths
            .iter()
            .find(|(k, _)| keys.iter().any(|c| normalize_key(k) == *c))
            .and_then(|(_, e)| {
                let basic = e.auth.as_deref().and_then(decode_auth);
                match e.identitytoken.as_deref().filter(|t| !t.is_empty()) {
                    Some(t) => Some(Credentials {
                        identity_token: Some(t.to_owned()),
                        password: String::new(),
                        ..basic.unwrap_or_default()
                    }),
                    None => basic,
                }
            })
    }

    pub fn set(&mut self, registry: &str, creds: &Credentials) {
        let raw = format!("{}:{}", creds.username, creds.password);
        let entry = self.auths.entry(registry.to_owned()).or_default();
        entry.auth = Some(base64::engine::general_purpose::STANDARD.encode(raw));
        entry.identitytoken = None;
    }

    /// Removes every key that denotes `registry`; reports whether one existed.
    pub fn remove(&mut self, registry: &str) -> bool {
        let keys = candidate_keys(registry);
        let before = self.auths.len();
        self.auths
            .retain(|k, _| !keys.iter().any(|c| normalize_key(k) == *c));
        before != self.auths.len()
    }
}

/// Finds credentials for `registry` in the first auth file that has them.
pub fn lookup(registry: &str) -> Result<Option<Credentials>, ConfigError> {
    for path in read_paths() {
        if let Some(c) = AuthFile::read(&path)?.lookup(registry) {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

fn candidate_keys(registry: &str) -> Vec<String> {
    let mut v = vec![registry.to_owned()];
    if registry == "docker.io" {
        v.extend([
            "index.docker.io".to_owned(),
            "registry-1.docker.io".to_owned(),
        ]);
    }
    v
}

/// `https://index.docker.io/v1/` → `index.docker.io`: docker writes URLs as keys.
fn normalize_key(k: &str) -> String {
    let k = k
        .strip_prefix("https://")
        .or_else(|| k.strip_prefix("http://"))
        .unwrap_or(k);
    k.split('/').next().unwrap_or(k).to_owned()
}

fn decode_auth(b64: &str) -> Option<Credentials> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some(Credentials {
        identity_token: None,
        username: u.to_owned(),
        password: p.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_and_containers_keys() {
        let f: AuthFile = serde_json::from_str(
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dTpw"},"127.0.0.1:5000":{"auth":"YTpiOmM="}},"credHelpers":{}}"#,
        )
        .unwrap();
        assert_eq!(f.lookup("docker.io").unwrap().username, "u");
        let c = f.lookup("127.0.0.1:5000").unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("a", "b:c"));
        assert!(f.lookup("other:1").is_none());
        let t: AuthFile = serde_json::from_str(
            r#"{"auths":{"reg.example":{"auth":"dTo=","identitytoken":"refresh-me"}}}"#,
        )
        .unwrap();
        let c = t.lookup("reg.example").unwrap();
        assert_eq!(
            (c.username.as_str(), c.identity_token.as_deref()),
            ("u", Some("refresh-me"))
        );
        assert!(serde_json::to_string(&f).unwrap().contains("credHelpers"));
    }

    #[test]
    fn set_and_remove_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/auth.json");
        let mut f = AuthFile::default();
        f.set(
            "h:1",
            &Credentials {
                identity_token: None,
                username: "x".into(),
                password: "y".into(),
            },
        );
        f.write(&path).unwrap();
        let mut g = AuthFile::read(&path).unwrap();
        assert_eq!(g.lookup("h:1").unwrap().password, "y");
        assert!(g.remove("h:1"));
        assert!(!g.remove("h:1"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
