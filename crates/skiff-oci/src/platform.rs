//! Platforms (`os/arch[/variant]`) and choosing one from an index.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid platform {0:?} (expected os/arch[/variant], e.g. linux/arm64)")]
pub struct PlatformError(String);

impl Platform {
    /// The platform this binary runs on, in OCI (GOARCH) names.
    pub fn host() -> Self {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            "riscv64" => "riscv64",
            "s390x" => "s390x",
            "arm" => "arm",
            other => other,
        };
        let variant = match architecture {
            "arm64" => Some("v8".to_owned()),
            "arm" => Some("v7".to_owned()),
            _ => None,
        };
        Self {
            os: "linux".into(),
            architecture: architecture.into(),
            variant,
        }
    }

    pub fn parse(s: &str) -> Result<Self, PlatformError> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(Self::normalized(os, arch, None)),
            [os, arch, v] if ok(os) && ok(arch) && ok(v) => Ok(Self::normalized(os, arch, Some(v))),
            _ => Err(PlatformError(s.to_owned())),
        }
    }

    fn normalized(os: &str, arch: &str, variant: Option<&str>) -> Self {
        let arch = match arch.to_ascii_lowercase().as_str() {
            "x86_64" | "x86-64" => "amd64".to_owned(),
            "aarch64" => "arm64".to_owned(),
            a => a.to_owned(),
        };
        Self {
            os: os.to_ascii_lowercase(),
            architecture: arch,
            variant: variant.map(|v| v.to_ascii_lowercase()),
        }
    }

    pub fn from_oci(p: &oci_spec::image::Platform) -> Self {
        Self::normalized(
            &p.os().to_string(),
            &p.architecture().to_string(),
            p.variant().as_deref(),
        )
    }

    /// Whether an index entry for `candidate` serves a request for `self`.
    /// A request without a variant accepts any; arm64's `v8` is its default
    /// and so matches an entry without one (as containerd does).
    pub fn matches(&self, candidate: &Platform) -> bool {
        if self.os != candidate.os || self.architecture != candidate.architecture {
            return false;
        }
        match (&self.variant, &candidate.variant) {
            (None, _) => true,
            (Some(a), Some(b)) => a == b,
            (Some(a), None) => self.architecture == "arm64" && a == "v8",
        }
    }

    /// Picks the best entry: an exact variant match first, then a compatible one.
    pub fn select<'a, T>(&self, entries: &'a [(Platform, T)]) -> Option<&'a T> {
        entries
            .iter()
            .find(|(p, _)| p == self)
            .or_else(|| entries.iter().find(|(p, _)| self.matches(p)))
            .or_else(|| {
                // The host default variant is only a preference.
                let loose = Platform {
                    variant: None,
                    ..self.clone()
                };
                (self == &Platform::host())
                    .then(|| entries.iter().find(|(p, _)| loose.matches(p)))
                    .flatten()
            })
            .map(|(_, t)| t)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_match() {
        let p = Platform::parse("linux/arm64").unwrap();
        let entries = vec![
            (Platform::parse("linux/amd64").unwrap(), 1),
            (Platform::parse("linux/arm/v7").unwrap(), 2),
            (Platform::parse("linux/arm64/v8").unwrap(), 3),
        ];
        assert_eq!(p.select(&entries), Some(&3));
        assert_eq!(
            Platform::parse("linux/arm/v7").unwrap().select(&entries),
            Some(&2)
        );
        assert_eq!(
            Platform::parse("linux/arm/v6").unwrap().select(&entries),
            None
        );
        assert_eq!(
            Platform::parse("linux/x86_64").unwrap().select(&entries),
            Some(&1)
        );
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("linux/amd64/v2/x").is_err());
        assert!(Platform::parse("linux/am d64").is_err());
    }
}
