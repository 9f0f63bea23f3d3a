//! `registries.conf` (containers-registries.conf(5), version 2): which
//! registries are insecure or blocked, their mirrors, and where unqualified
//! names are searched.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::reference::{Reference, DEFAULT_REGISTRY};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Toml {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("{path}: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(rename_all = "kebab-case")]
pub struct RegistriesConf {
    #[serde(default)]
    pub unqualified_search_registries: Vec<String>,
    #[serde(default)]
    pub registry: Vec<RegistryEntry>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(rename_all = "kebab-case")]
pub struct RegistryEntry {
    /// Which references this entry applies to: `host`, `host/ns`, or `*.domain`.
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub location: String,
    /// Unset: secure, except loopback hosts (as in docker).
    #[serde(default)]
    pub insecure: Option<bool>,
    #[serde(default)]
    pub blocked: bool,
    #[serde(default)]
    pub mirror: Vec<MirrorEntry>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(rename_all = "kebab-case")]
pub struct MirrorEntry {
    pub location: String,
    #[serde(default)]
    pub insecure: Option<bool>,
}

/// One place to try a pull from: the registry itself or one of its mirrors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]` of the registry API.
    pub host: String,
    /// Repository path at that host.
    pub repository: String,
    pub insecure: bool,
    pub mirror: bool,
}

impl RegistriesConf {
    /// Reads `path`, or the first of `$CONTAINERS_REGISTRIES_CONF`,
    /// `~/.config/containers/registries.conf` (non-root), `/etc/containers/registries.conf`.
    /// A missing file is an empty configuration.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let path = match path {
            Some(p) => Some(p.to_path_buf()),
            None => default_path(),
        };
        let Some(path) = path else {
            return Ok(Self::default());
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&text).map_err(|source| ConfigError::Toml { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(ConfigError::Read { path, source }),
        }
    }

    pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// Registries to try, in order, for a name the user wrote without one.
    pub fn search_registries(&self) -> Vec<String> {
        if self.unqualified_search_registries.is_empty() {
            vec![DEFAULT_REGISTRY.to_owned()]
        } else {
            self.unqualified_search_registries.clone()
        }
    }

    /// The entry with the longest prefix matching `reference`.
    fn entry_for(&self, reference: &Reference) -> Option<(&RegistryEntry, usize)> {
        let name = reference.name();
        self.registry
            .iter()
            .filter_map(|e| {
                let prefix = e
                    .prefix
                    .as_deref()
                    .filter(|p| !p.is_empty())
                    .unwrap_or(&e.location);
                prefix_match(prefix, &name, reference.registry()).map(|len| (e, len))
            })
            .max_by_key(|(_, len)| *len)
    }

    pub fn is_blocked(&self, reference: &Reference) -> bool {
        self.entry_for(reference).is_some_and(|(e, _)| e.blocked)
    }

    /// Whether `host` may be spoken to over plain HTTP or unverified TLS: as
    /// registries.conf says for it, else only loopback hosts (as in docker).
    pub fn is_insecure_host(&self, host: &str) -> bool {
        let loc_host = |loc: &str| loc.split('/').next() == Some(host);
        let explicit = self.registry.iter().find_map(|e| {
            if loc_host(&e.location) && e.insecure.is_some() {
                return e.insecure;
            }
            e.mirror
                .iter()
                .find(|m| loc_host(&m.location))
                .and_then(|m| m.insecure)
        });
        explicit.unwrap_or_else(|| is_loopback(host))
    }

    /// The endpoints to pull `reference` from: mirrors first, then the
    /// registry itself (possibly relocated by `location`).
    pub fn pull_endpoints(&self, reference: &Reference) -> Vec<Endpoint> {
        let direct_host = crate::reference::api_host(reference.registry()).to_owned();
        let Some((entry, prefix_len)) = self.entry_for(reference) else {
            return vec![Endpoint {
                insecure: self.is_insecure_host(&direct_host),
                host: direct_host,
                repository: reference.repository().to_owned(),
                mirror: false,
            }];
        };
        let name = reference.name();
        // Text after the matched prefix, which carries over to every location.
        let suffix = if entry.prefix.as_deref().is_some_and(|p| p.starts_with("*.")) {
            format!("/{}", reference.repository())
        } else {
            name[prefix_len.min(name.len())..].to_owned()
        };
        let split = |loc: &str| -> (String, String) {
            let full = format!("{loc}{suffix}");
            match full.split_once('/') {
                Some((h, r)) => (crate::reference::api_host(h).to_owned(), r.to_owned()),
                None => (crate::reference::api_host(&full).to_owned(), String::new()),
            }
        };
        let mut out: Vec<Endpoint> = entry
            .mirror
            .iter()
            .map(|m| {
                let (host, repository) = split(&m.location);
                Endpoint {
                    insecure: m.insecure.unwrap_or_else(|| self.is_insecure_host(&host)),
                    host,
                    repository,
                    mirror: true,
                }
            })
            .collect();
        let (host, repository) = if entry.location.is_empty()
            || entry.prefix.as_deref().is_some_and(|p| p.starts_with("*."))
        {
            (direct_host, reference.repository().to_owned())
        } else {
            split(&entry.location)
        };
        out.push(Endpoint {
            insecure: entry
                .insecure
                .unwrap_or_else(|| self.is_insecure_host(&host)),
            host,
            repository,
            mirror: false,
        });
        out
    }
}

/// Length of the match of `prefix` against `name` (`registry/repo`), if it matches
/// on a path-component boundary; `*.example.com` matches hosts under that domain.
fn prefix_match(prefix: &str, name: &str, registry: &str) -> Option<usize> {
    if let Some(domain) = prefix.strip_prefix("*.") {
        let host = registry.split(':').next().unwrap_or(registry);
        return host
            .ends_with(&format!(".{domain}"))
            .then_some(registry.len());
    }
    if name == prefix {
        return Some(prefix.len());
    }
    (name.starts_with(prefix) && name.as_bytes().get(prefix.len()) == Some(&b'/'))
        .then_some(prefix.len())
}

fn is_loopback(host: &str) -> bool {
    let h = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    h == "localhost" || h == "::1" || h.starts_with("127.")
}

fn default_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CONTAINERS_REGISTRIES_CONF") {
        return Some(PathBuf::from(p));
    }
    if !rustix::process::geteuid().is_root() {
        if let Some(home) = std::env::var_os("HOME") {
            let p = PathBuf::from(home).join(".config/containers/registries.conf");
            if p.exists() {
                return Some(p);
            }
        }
    }
    Some(PathBuf::from("/etc/containers/registries.conf"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONF: &str = r#"
unqualified-search-registries = ["quay.io", "docker.io"]

[[registry]]
location = "example.com"
insecure = true
[[registry.mirror]]
location = "mirror.local:5000/cache"

[[registry]]
location = "evil.example"
blocked = true

[[registry]]
prefix = "example.com/special"
location = "other.example/relocated"
"#;

    #[test]
    fn mirrors_blocking_and_insecure() {
        let c = RegistriesConf::parse(CONF).unwrap();
        assert_eq!(c.search_registries(), ["quay.io", "docker.io"]);
        let r: Reference = "example.com/team/app:1".parse().unwrap();
        let eps = c.pull_endpoints(&r);
        assert_eq!(eps.len(), 2);
        assert_eq!(
            (
                eps[0].host.as_str(),
                eps[0].repository.as_str(),
                eps[0].mirror
            ),
            ("mirror.local:5000", "cache/team/app", true)
        );
        assert_eq!(
            (
                eps[1].host.as_str(),
                eps[1].repository.as_str(),
                eps[1].insecure
            ),
            ("example.com", "team/app", true)
        );
        assert!(c.is_blocked(&"evil.example/x".parse().unwrap()));
        assert!(!c.is_blocked(&"example.com/x".parse().unwrap()));
        let r: Reference = "example.com/special/x:1".parse().unwrap();
        let eps = c.pull_endpoints(&r);
        assert_eq!(
            (eps[0].host.as_str(), eps[0].repository.as_str()),
            ("other.example", "relocated/x")
        );
        assert!(c.is_insecure_host("127.0.0.1:5000"));
        assert!(c.is_insecure_host("localhost"));
        assert!(!c.is_insecure_host("quay.io"));
        let strict = RegistriesConf::parse(
            "[[registry]]\nlocation = \"127.0.0.1:5000\"\ninsecure = false\n",
        )
        .unwrap();
        assert!(!strict.is_insecure_host("127.0.0.1:5000"));
        assert!(strict.is_insecure_host("127.0.0.1:5001"));
    }

    #[test]
    fn prefix_must_end_on_component() {
        assert_eq!(
            prefix_match("example.com/a", "example.com/ab", "example.com"),
            None
        );
        assert_eq!(
            prefix_match("example.com/a", "example.com/a/b", "example.com"),
            Some(13)
        );
    }
}
