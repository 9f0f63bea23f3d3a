//! Image references: `[registry[:port]/]repository[:tag][@digest]`, normalized
//! the way docker and podman do (`busybox` → `docker.io/library/busybox:latest`).

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;

/// The registry that unqualified names resolve to when nothing else is configured.
pub const DEFAULT_REGISTRY: &str = "docker.io";
const DEFAULT_TAG: &str = "latest";
const MAX_NAME_LEN: usize = 255;

/// A fully qualified image reference. `tag` and `digest` may both be present
/// (`name:tag@sha256:…`), in which case the digest wins when pulling.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid reference {0:?}: empty")]
    Empty(String),
    #[error("invalid reference {input:?}: {why}")]
    Invalid { input: String, why: String },
}

fn invalid(input: &str, why: impl Into<String>) -> ReferenceError {
    ReferenceError::Invalid {
        input: input.to_owned(),
        why: why.into(),
    }
}

/// How a reference was written, before normalization: an unqualified name
/// (`alpine`) may be looked up in several registries.
#[derive(Clone, Debug)]
pub struct ParsedReference {
    pub reference: Reference,
    pub qualified: bool,
}

impl Reference {
    /// Builds a reference from parts that the caller has already validated
    /// (e.g. from the store's own index).
    pub fn new(
        registry: &str,
        repository: &str,
        tag: Option<&str>,
        digest: Option<Digest>,
    ) -> Self {
        Self {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            tag: tag.map(str::to_owned),
            digest,
        }
    }

    /// Parses and normalizes, remembering whether a registry was named.
    pub fn parse_full(input: &str) -> Result<ParsedReference, ReferenceError> {
        parse(input)
    }

    /// The same name in another registry (for unqualified-search-registries).
    pub fn with_registry(&self, registry: &str) -> Self {
        let mut r = self.clone();
        if r.registry == DEFAULT_REGISTRY && registry != DEFAULT_REGISTRY {
            // `library/` is docker.io's convention only.
            if let Some(rest) = r.repository.strip_prefix("library/") {
                r.repository = rest.to_owned();
            }
        } else if registry == DEFAULT_REGISTRY && !r.repository.contains('/') {
            r.repository = format!("library/{}", r.repository);
        }
        r.registry = registry.to_owned();
        r
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }
    pub fn repository(&self) -> &str {
        &self.repository
    }
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What to ask the registry for: the digest if there is one, else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.to_owned(),
        }
    }

    /// `registry/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same reference with the tag replaced and no digest.
    pub fn with_tag(&self, tag: &str) -> Self {
        Self {
            tag: Some(tag.to_owned()),
            digest: None,
            ..self.clone()
        }
    }

    /// The same reference pinned to `digest`, without a tag.
    pub fn with_digest(&self, digest: Digest) -> Self {
        Self {
            tag: None,
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// The host to talk to: Docker Hub's API lives on another name than its
    /// references use.
    pub fn api_host(&self) -> &str {
        api_host(&self.registry)
    }
}

/// Maps a registry name to the host serving its API.
pub fn api_host(registry: &str) -> &str {
    if registry == DEFAULT_REGISTRY || registry == "index.docker.io" {
        "registry-1.docker.io"
    } else {
        registry
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s).map(|p| p.reference)
    }
}

fn parse(input: &str) -> Result<ParsedReference, ReferenceError> {
    if input.is_empty() {
        return Err(ReferenceError::Empty(input.to_owned()));
    }
    if input.len() > 4096 || input.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(input, "contains whitespace or is too long"));
    }
    let (rest, digest) = match input.split_once('@') {
        Some((r, d)) => (
            r,
            Some(
                d.parse::<Digest>()
                    .map_err(|e| invalid(input, e.to_string()))?,
            ),
        ),
        None => (input, None),
    };
    // A tag is after the last ':' that follows the last '/', so a port in the
    // host is not mistaken for one.
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(t) = tag {
        validate_tag(input, t)?;
    }
    if name.is_empty() {
        return Err(invalid(input, "missing repository name"));
    }
    let (registry, repository, qualified) = match name.split_once('/') {
        Some((first, path)) if is_registry(first) => (first.to_owned(), path.to_owned(), true),
        _ => (DEFAULT_REGISTRY.to_owned(), name.to_owned(), false),
    };
    validate_registry(input, &registry)?;
    let registry = if registry == "index.docker.io" {
        DEFAULT_REGISTRY.to_owned()
    } else {
        registry
    };
    let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
        format!("library/{repository}")
    } else {
        repository
    };
    validate_repository(input, &repository)?;
    if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
        return Err(invalid(
            input,
            format!("name longer than {MAX_NAME_LEN} characters"),
        ));
    }
    let tag = match (tag, &digest) {
        (Some(t), _) => Some(t.to_owned()),
        (None, Some(_)) => None,
        (None, None) => Some(DEFAULT_TAG.to_owned()),
    };
    Ok(ParsedReference {
        reference: Reference {
            registry,
            repository,
            tag,
            digest,
        },
        qualified,
    })
}

/// The first path component names a registry when it looks like a host:
/// it has a dot or a port, or is `localhost` (docker's rule).
fn is_registry(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first == "localhost" || first.starts_with('[')
}

fn validate_registry(input: &str, reg: &str) -> Result<(), ReferenceError> {
    let (host, port) = if let Some(rest) = reg.strip_prefix('[') {
        // IPv6 literal: [::1]:5000
        let (h, p) = rest
            .split_once(']')
            .ok_or_else(|| invalid(input, "unterminated IPv6 address"))?;
        if h.is_empty() || !h.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return Err(invalid(input, "bad IPv6 address"));
        }
        (None, p.strip_prefix(':'))
    } else {
        match reg.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(reg), None),
        }
    };
    if let Some(h) = host {
        let ok = !h.is_empty()
            && h.split('.').all(|label| {
                !label.is_empty()
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        if !ok {
            return Err(invalid(input, format!("bad registry host {h:?}")));
        }
    }
    if let Some(p) = port {
        if p.parse::<u16>().map_or(true, |n| n == 0) {
            return Err(invalid(input, format!("bad registry port {p:?}")));
        }
    }
    Ok(())
}

/// Repository path components: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn validate_repository(input: &str, repo: &str) -> Result<(), ReferenceError> {
    for comp in repo.split('/') {
        let b = comp.as_bytes();
        let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        let ok = !b.is_empty() && alnum(b[0]) && alnum(b[b.len() - 1]) && {
            let mut i = 0;
            let mut good = true;
            while i < b.len() {
                if alnum(b[i]) {
                    i += 1;
                    continue;
                }
                let start = i;
                while i < b.len() && !alnum(b[i]) {
                    i += 1;
                }
                let sep = &comp[start..i];
                if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-')) {
                    good = false;
                    break;
                }
            }
            good
        };
        if !ok {
            let why = if comp.bytes().any(|c| c.is_ascii_uppercase()) {
                "repository names must be lowercase".to_owned()
            } else {
                format!("bad repository path component {comp:?}")
            };
            return Err(invalid(input, why));
        }
    }
    Ok(())
}

/// Tags: `[\w][\w.-]{0,127}`.
fn validate_tag(input: &str, tag: &str) -> Result<(), ReferenceError> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut chars = tag.chars();
    let ok = tag.len() <= 128
        && chars.next().is_some_and(word)
        && chars.all(|c| word(c) || c == '.' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(invalid(input, format!("bad tag {tag:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        s.parse::<Reference>().unwrap().to_string()
    }

    #[test]
    fn docker_style_normalization() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("user/app:1.0"), "docker.io/user/app:1.0");
        assert_eq!(
            norm("index.docker.io/library/alpine"),
            "docker.io/library/alpine:latest"
        );
        assert_eq!(norm("localhost/app"), "localhost/app:latest");
        assert_eq!(
            norm("127.0.0.1:5000/test/busybox"),
            "127.0.0.1:5000/test/busybox:latest"
        );
        assert_eq!(norm("quay.io/a/b/c:v1-rc.2"), "quay.io/a/b/c:v1-rc.2");
        assert_eq!(norm("[::1]:5000/x"), "[::1]:5000/x:latest");
    }

    #[test]
    fn digests_and_tags() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r: Reference = format!("host:5000/repo@{d}").parse().unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.manifest_reference(), d);
        let r: Reference = format!("host:5000/repo:v1@{d}").parse().unwrap();
        assert_eq!(r.tag(), Some("v1"));
        assert_eq!(r.manifest_reference(), d);
        assert_eq!(r.api_host(), "host:5000");
        assert_eq!(
            "alpine".parse::<Reference>().unwrap().api_host(),
            "registry-1.docker.io"
        );
    }

    #[test]
    fn qualified_or_not() {
        assert!(!Reference::parse_full("alpine").unwrap().qualified);
        assert!(!Reference::parse_full("a/b").unwrap().qualified);
        assert!(Reference::parse_full("quay.io/a/b").unwrap().qualified);
        let r = Reference::parse_full("alpine")
            .unwrap()
            .reference
            .with_registry("quay.io");
        assert_eq!(r.to_string(), "quay.io/alpine:latest");
    }

    #[test]
    fn malformed_references_are_errors() {
        for bad in [
            "",
            "UPPER",
            "a b",
            "repo:",
            "repo:-bad",
            "host:0/x",
            "host:99999/x",
            "a//b",
            "-a",
            "a-",
            "a@sha256:123",
            "a@md5:abc",
            "/abs",
            "a/",
            "repo:tag:tag",
        ] {
            assert!(
                bad.parse::<Reference>().is_err(),
                "{bad:?} should be refused"
            );
        }
        let long = format!("host/{}", "a".repeat(300));
        assert!(long.parse::<Reference>().is_err());
    }
}
