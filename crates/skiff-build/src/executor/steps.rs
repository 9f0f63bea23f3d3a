//! The instructions that make layers: COPY, ADD, RUN, and WORKDIR (when
//! its directory is missing). Each is found in the cache by its key first.

use super::image::LayerRef;
use super::run_step::{self, RunSpec};
use super::stage::{args_text, command_argv, Builder, Current};
use super::{BuildError, Event};
use crate::containerfile::{Command, CopyInstr, CopySource, Expander, Step};
use crate::imagefs::{self, ImageFs, NodeKind};
use crate::layer::{
    self, CopyOptions, EntryKind, EntryMeta, LayerDigests, LayerWriter, LowerFs, LowerKind,
};

/// The image so far, as COPY sees it below the new layer.
struct Lower<'a>(&'a ImageFs);

impl LowerFs for Lower<'_> {
    fn kind(&self, path: &str) -> Option<LowerKind> {
        self.0.get(path).map(|n| match &n.kind {
            NodeKind::Dir => LowerKind::Dir,
            NodeKind::File | NodeKind::Hardlink(_) => LowerKind::File,
            NodeKind::Symlink(t) => LowerKind::Symlink(t.clone()),
            _ => LowerKind::Other,
        })
    }
}

type Blob<'a> = &'a mut skiff_oci::store::BlobWriter;

/// What a layer step does on a cache miss: the layer it made, if any.
type MakeLayer<'m, 'h, 'a> =
    dyn FnMut(&mut Builder<'h, 'a>, &mut Current) -> Result<Option<LayerDigests>, BuildError> + 'm;

/// A layer written straight into the store by `fill`, compressed as the
/// build was asked.
pub(super) fn write_layer(
    store: &skiff_oci::Store,
    o: &super::BuildOptions,
    fill: impl FnOnce(&mut LayerWriter<Blob<'_>>) -> Result<(), BuildError>,
) -> Result<LayerDigests, BuildError> {
    let mut blob = store.blob_writer().map_err(BuildError::Store)?;
    let mut w = LayerWriter::with_level(&mut blob, o.compression, o.compression_level, o.epoch)
        .map_err(BuildError::Layer)?;
    fill(&mut w)?;
    let (_, d) = w.finish().map_err(BuildError::Layer)?;
    blob.commit(Some(&d.digest), Some(d.size))
        .map_err(BuildError::Store)?;
    Ok(d)
}

impl<'h, 'a> Builder<'h, 'a> {
    /// A layer step: the cache's layer for `key_parts`, or `make`'s.
    fn layer_step(
        &mut self,
        cur: &mut Current,
        key_parts: &[&str],
        created_by: &str,
        make: &mut MakeLayer<'_, 'h, 'a>,
    ) -> Result<(), BuildError> {
        // The layer's bytes depend on how it is compressed: a build with
        // other settings does not take this one's layers.
        let o = self.host.options;
        let codec = format!("{:?}/{:?}", o.compression, o.compression_level);
        let mut parts = vec![codec.as_str()];
        parts.extend_from_slice(key_parts);
        let key = cur.key.then(&parts);
        self.layer_steps += 1;
        let created = self.created.clone();
        if !self.host.options.no_cache {
            if let Some(hit) = self.cache.get(&key) {
                self.cached += 1;
                self.event(Event::CacheHit { key: key.short() });
                self.saw_time(hit.created.as_deref().unwrap_or(&created));
                cur.image.push(&created, created_by, hit.layer);
                cur.key = key;
                return Ok(());
            }
        }
        let made = make(self, cur)?;
        let layer = made.as_ref().map(LayerRef::from);
        if let Some(l) = &layer {
            let digest = l.digest.to_string();
            self.event(Event::Layer {
                digest: &digest,
                size: l.size,
            });
        }
        let now = skiff_runtime::time::now_rfc3339();
        self.saw_time(&now);
        self.cache.put(&key, layer.as_ref(), &now);
        cur.image.push(&created, created_by, layer);
        cur.key = key;
        Ok(())
    }

    /// The image so far as a file tree (with /etc/passwd and /etc/group
    /// for owner names).
    fn lower(&self, cur: &Current) -> Result<ImageFs, BuildError> {
        if cur.image.layers.is_empty() {
            return Ok(ImageFs::from_layer_readers(Vec::new(), &|_, _| false)?);
        }
        let rec = cur.image.write(self.host.store, &self.created)?;
        Ok(ImageFs::load(
            self.host.store,
            &rec.digest,
            &imagefs::user_files,
        )?)
    }

    /// WORKDIR: the directory is made (a layer) only when the image lacks it.
    pub(super) fn workdir(
        &mut self,
        cur: &mut Current,
        dir: &str,
        text: &str,
    ) -> Result<(), BuildError> {
        let dir = dir.to_owned();
        self.layer_step(cur, &["WORKDIR", &dir], text, &mut |b, cur| {
            let fs = b.lower(cur)?;
            let resolved = fs.resolve(&dir, true).unwrap_or_else(|| dir.clone());
            if fs
                .get(&resolved)
                .is_some_and(|n| matches!(n.kind, NodeKind::Dir))
            {
                return Ok(None);
            }
            let mut missing = Vec::new();
            let mut path = String::new();
            for part in resolved.split('/').filter(|p| !p.is_empty()) {
                path.push('/');
                path.push_str(part);
                if fs.get(&path).is_none() {
                    missing.push(path.clone());
                }
            }
            let mtime = b.host.options.epoch.unwrap_or_else(now_secs);
            write_layer(b.host.store, b.host.options, |w| {
                for p in &missing {
                    let e = EntryMeta {
                        path: p.clone(),
                        kind: EntryKind::Dir,
                        mode: 0o755,
                        uid: 0,
                        gid: 0,
                        mtime,
                    };
                    w.append(&e, None).map_err(BuildError::Layer)?;
                }
                Ok(())
            })
            .map(Some)
        })
    }

    pub(super) fn copy(
        &mut self,
        index: usize,
        cur: &mut Current,
        step: &Step,
        c: &CopyInstr,
        add: bool,
    ) -> Result<(), BuildError> {
        let line = step.line;
        let at = self.at(line);
        let word = |b: &Self, cur: &Current, raw: &str| b.expander_word(cur, raw, line);
        let mut dest = word(self, cur, &c.dest)?;
        if !dest.starts_with('/') {
            let wd = cur.image.working_dir();
            dest = format!("{}/{dest}", wd.trim_end_matches('/'));
        }
        let chown = c.chown.as_deref().map(|s| word(self, cur, s)).transpose()?;
        let chmod = match c.chmod.as_deref().map(|s| word(self, cur, s)).transpose()? {
            Some(m) => Some(
                u32::from_str_radix(&m, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| {
                        BuildError::Step(format!(
                            "{at}: --chmod={m} is not an octal mode such as 755"
                        ))
                    })?,
            ),
            None => None,
        };
        let mut paths = Vec::new();
        let mut heredocs = Vec::new();
        for s in &c.sources {
            match s {
                CopySource::Path(p) => paths.push(word(self, cur, p)?),
                CopySource::Heredoc(h) => {
                    let body = if h.expand {
                        let lookup = |k: &str| cur.lookup(k);
                        Expander {
                            escape: self.file.escape,
                            lookup: &lookup,
                        }
                        .heredoc(&h.body)
                        .map_err(|e| BuildError::Step(format!("{at}: {e}")))?
                    } else {
                        h.body.clone()
                    };
                    heredocs.push((h.name.clone(), body.into_bytes()));
                }
            }
        }
        let verb = if add { "ADD" } else { "COPY" };
        let chown_text = chown.clone().unwrap_or_default();
        let chmod_text = chmod.map(|m| format!("{m:o}")).unwrap_or_default();
        let heredoc_text: String = heredocs
            .iter()
            .map(|(n, b)| format!("{n}\0{}\0", String::from_utf8_lossy(b)))
            .collect();
        let text = step.text.clone();

        // The source: the context, or an earlier stage or image.
        enum From {
            Context(Vec<crate::context::Selected>),
            Image {
                manifest: skiff_oci::Digest,
                key: String,
            },
        }
        let from = match c.from.as_deref() {
            None => From::Context(if paths.is_empty() {
                Vec::new()
            } else {
                self.context
                    .select(&paths)
                    .map_err(|e| BuildError::Step(format!("{at}: {e}")))?
            }),
            Some(raw) => {
                let name = word(self, cur, raw)?;
                if add {
                    return Err(BuildError::Step(format!(
                        "{at}: ADD has no --from; use COPY --from"
                    )));
                }
                match self.stage_ref(&name, index) {
                    Some(j) => {
                        let r = self.done[j].clone().ok_or_else(|| {
                            BuildError::Step(format!("{at}: stage {name} was not built"))
                        })?;
                        let rec = r.image.write(self.host.store, &self.created)?;
                        From::Image {
                            manifest: rec.digest,
                            key: r.key.0,
                        }
                    }
                    None => {
                        let rec = (self.host.resolve)(&name, &cur.platform).map_err(|e| {
                            BuildError::Step(format!("{at}: COPY --from={name}: {e}"))
                        })?;
                        From::Image {
                            key: rec.digest.to_string(),
                            manifest: rec.digest,
                        }
                    }
                }
            }
        };
        let source_key = match &from {
            From::Context(sel) => self
                .context
                .content_hash(sel)
                .map_err(|e| BuildError::Step(format!("{at}: {e}")))?,
            From::Image { key, .. } => format!("{key}\0{}", paths.join("\0")),
        };
        let mtime = self.host.options.epoch.unwrap_or_else(now_secs);
        let parts = [
            verb,
            &dest,
            &chown_text,
            &chmod_text,
            &source_key,
            &heredoc_text,
        ];
        self.layer_step(cur, &parts, &text, &mut |b, cur| {
            let fs = b.lower(cur)?;
            let owner = match &chown {
                Some(spec) => Some(
                    imagefs::lookup_chown(&fs, spec)
                        .map_err(|e| BuildError::Step(format!("{at}: --chown={spec}: {e}")))?,
                ),
                None => None,
            };
            let o = CopyOptions {
                chown: owner,
                chmod,
            };
            let lower = Lower(&fs);
            let step_err = |e: layer::LayerError| BuildError::Step(format!("{at}: {e}"));
            // COPY --from: the stage's files onto the host first.
            let staged = match &from {
                From::Image { manifest, .. } => {
                    // Named for this process (see run_step): swept if the build dies.
                    let tmp = tempfile::Builder::new()
                        .prefix(&format!(".build-from.tmp-{}-", std::process::id()))
                        .tempdir_in(b.host.store.tmp_dir())
                        .map_err(|e| {
                            BuildError::io("creating a directory in", &b.host.store.tmp_dir(), e)
                        })?;
                    let mut rels = Vec::new();
                    // Where each staged source came from in the image, to
                    // take owners from the image, not from the host copy
                    // (which has them only when the build runs as root).
                    let mut origins = Vec::new();
                    // The source's tree, read once for every path and owner.
                    let source_fs = ImageFs::load(b.host.store, manifest, &|_, _| false)?;
                    for (i, p) in paths.iter().enumerate() {
                        let dir = tmp.path().join(i.to_string());
                        std::fs::create_dir(&dir)
                            .map_err(|e| BuildError::io("creating", &dir, e))?;
                        let src = if p.starts_with('/') {
                            p.clone()
                        } else {
                            format!("/{p}")
                        };
                        let got =
                            imagefs::extract_with(&source_fs, b.host.store, manifest, &src, &dir)
                                .map_err(|e| BuildError::Step(format!("{at}: COPY --from: {e}")))?;
                        rels.push(match got.kind {
                            imagefs::ExtractedKind::Dir => std::path::PathBuf::from(i.to_string()),
                            imagefs::ExtractedKind::File => {
                                let name = src.rsplit('/').next().unwrap_or_default();
                                std::path::PathBuf::from(i.to_string()).join(name)
                            }
                        });
                        origins.push((src, got.kind));
                    }
                    Some((tmp, rels, origins, source_fs))
                }
                From::Context(_) => None,
            };
            let ctx = b.context;
            write_layer(b.host.store, b.host.options, |w| {
                match (&from, &staged) {
                    (From::Context(sel), _) if !sel.is_empty() => {
                        if add {
                            layer::add_local(w, ctx, sel, &dest, &o, &lower).map_err(step_err)?;
                        } else {
                            layer::copy_from_context(w, ctx, sel, &dest, &o, &lower)
                                .map_err(step_err)?;
                        }
                    }
                    (_, Some((tmp, rels, origins, source_fs))) => {
                        let owner = |rel: &std::path::Path, _: &std::fs::Metadata| {
                            image_owner(source_fs, origins, rel)
                        };
                        layer::copy_from_dir_owned(w, tmp.path(), rels, &dest, &o, &lower, &owner)
                            .map_err(step_err)?;
                    }
                    _ => {}
                }
                if !heredocs.is_empty() {
                    layer::copy_bytes(w, &heredocs, &dest, &o, &lower, mtime).map_err(step_err)?;
                }
                Ok(())
            })
            .map(Some)
        })
    }

    pub(super) fn run_step(
        &mut self,
        cur: &mut Current,
        step: &Step,
        c: &Command,
    ) -> Result<(), BuildError> {
        let at = self.at(step.line);
        let host = skiff_oci::Platform::host();
        if cur.platform.architecture != host.architecture {
            return Err(BuildError::Step(format!(
                "{at}: RUN for {} needs a {} machine; skiff runs {} VMs here (COPY-only stages build for any platform)",
                cur.platform, cur.platform.architecture, host.architecture
            )));
        }
        let argv = command_argv(c, &cur.shell);
        let image_env: Vec<String> = cur
            .image
            .env()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        // Build args reach RUN as environment, below the image's own ENV.
        let env: Vec<String> = cur
            .args
            .iter()
            .filter(|(k, _)| !cur.image.env().iter().any(|(e, _)| e == *k))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        // docker's predefined proxy args reach every RUN without an ARG line,
        // and stay out of its cache key.
        let mut run_env = env.clone();
        for (k, v) in &self.host.options.build_args {
            if super::stage::predefined(k) && k != "SOURCE_DATE_EPOCH" && !cur.args.contains_key(k)
            {
                run_env.push(format!("{k}={v}"));
            }
        }
        let user = cur.image.string("User").unwrap_or_default().to_owned();
        let wd = cur.image.working_dir();
        let created_by = format!("RUN {}", argv.join(" "));
        let parts = [
            "RUN",
            &argv.join("\0"),
            &env.join("\0"),
            &image_env.join("\0"),
            &user,
            &wd,
            &args_text(&cur.args),
        ];
        let what = format!("{at}: {}", step.text);
        self.layer_step(cur, &parts, &created_by, &mut |b, cur| {
            let rec = cur.image.write(b.host.store, &b.created)?;
            let spec = RunSpec {
                argv: argv.clone(),
                env: run_env.clone(),
                what: what.clone(),
            };
            run_step::run(b.host, &rec, &spec).map(Some)
        })
    }
}

/// The owner in the source image of a file staged for COPY --from at
/// `rel` (`<source index>/<path below it>`); 0:0 if it cannot be told.
fn image_owner(
    fs: &ImageFs,
    origins: &[(String, imagefs::ExtractedKind)],
    rel: &std::path::Path,
) -> (u32, u32) {
    let mut parts = rel.components();
    let Some((src, kind)) = parts
        .next()
        .and_then(|c| c.as_os_str().to_str()?.parse::<usize>().ok())
        .and_then(|i| origins.get(i))
    else {
        return (0, 0);
    };
    let base = fs.resolve(src, true).unwrap_or_else(|| src.clone());
    let below = parts.as_path().to_string_lossy();
    let path = match kind {
        imagefs::ExtractedKind::File => base,
        imagefs::ExtractedKind::Dir if below.is_empty() => base,
        imagefs::ExtractedKind::Dir => format!("{}/{below}", base.trim_end_matches('/')),
    };
    fs.get(&path).map_or((0, 0), |n| (n.uid, n.gid))
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
