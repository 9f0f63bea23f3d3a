//! Finding a stored image from what the user typed: a full or short name, a
//! digest reference, or an ID prefix (as docker and podman accept).

use anyhow::{bail, Context as _};
use skiff_oci::reference::Reference;
use skiff_oci::registries::RegistriesConf;
use skiff_oci::store::{ImageIndex, ImageRecord};
use skiff_oci::Digest;

/// The record and the name it was found under (None for an ID or digest).
pub struct Found {
    pub record: ImageRecord,
    pub name: Option<Reference>,
}

pub fn find(index: &ImageIndex, conf: &RegistriesConf, input: &str) -> anyhow::Result<Found> {
    // ID or digest prefix: 4+ hex digits, optionally "sha256:".
    let hex = input.strip_prefix("sha256:").unwrap_or(input);
    if hex.len() >= 4
        && hex.len() <= 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        let hits: Vec<&ImageRecord> = index
            .images
            .iter()
            .filter(|r| r.config.hex().starts_with(hex) || r.digest.hex().starts_with(hex))
            .collect();
        let distinct: std::collections::HashSet<&Digest> = hits.iter().map(|r| &r.digest).collect();
        match distinct.len() {
            1 => {
                return Ok(Found {
                    record: hits[0].clone(),
                    name: None,
                })
            }
            0 => {}
            _ => bail!(
                "{input}: ambiguous ID prefix (matches {} images)",
                distinct.len()
            ),
        }
    }
    let parsed = Reference::parse_full(input)?;
    let r = &parsed.reference;
    if let Some(d) = r.digest() {
        let hit = index
            .images
            .iter()
            .filter(|x| &x.digest == d || x.index_digest.as_ref() == Some(d))
            .min_by_key(|x| {
                x.name
                    .as_deref()
                    .map_or(2, |n| if n.starts_with(&r.name()) { 0 } else { 1 })
            });
        return match hit {
            Some(h) => Ok(Found {
                record: h.clone(),
                name: None,
            }),
            None => bail!("image {input} not found in the store"),
        };
    }
    let mut candidates = vec![r.clone()];
    if !parsed.qualified {
        candidates.extend(
            conf.search_registries()
                .iter()
                .map(|reg| r.with_registry(reg)),
        );
    }
    for c in &candidates {
        if let Some(rec) = index.find(&c.to_string()) {
            return Ok(Found {
                record: rec.clone(),
                name: Some(c.clone()),
            });
        }
    }
    if !parsed.qualified {
        // Short name: any registry, as long as only one image answers to it.
        let written = input.split('@').next().unwrap_or(input);
        let suffix =
            if r.tag().is_some() && written.rsplit('/').next().is_some_and(|l| l.contains(':')) {
                format!("/{written}")
            } else {
                format!("/{written}:{}", r.tag().unwrap_or("latest"))
            };
        let hits: Vec<&ImageRecord> = index
            .images
            .iter()
            .filter(|x| x.name.as_deref().is_some_and(|n| n.ends_with(&suffix)))
            .collect();
        match hits.len() {
            1 => {
                let name = hits[0]
                    .name
                    .as_deref()
                    .map(str::parse::<Reference>)
                    .transpose()
                    .context("stored name")?;
                return Ok(Found {
                    record: hits[0].clone(),
                    name,
                });
            }
            0 => {}
            n => bail!(
                "{input}: short name matches {n} images ({}); use the full name",
                hits.iter()
                    .filter_map(|h| h.name.as_deref())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    bail!("image {input} not found in the store (pull it first: skiff image pull {input})")
}
