//! `skiff image …`

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;
use skiff_oci::archive::{self, ArchiveFormat};
use skiff_oci::pull::PullOptions;
use skiff_oci::push::PushOptions;
use skiff_oci::reference::Reference;
use skiff_oci::Platform;

use super::{runtime, Context};
use crate::output::{human_ago, human_size, table};
use crate::{progress, resolve};

#[derive(Subcommand)]
pub enum ImageCommand {
    /// Download an image from a registry into the local store.
    ///
    /// Layers download concurrently and are verified against their digests
    /// before they become visible; an interrupted pull resumes where it stopped.
    /// Names without a registry are looked up in registries.conf's
    /// unqualified-search-registries (default docker.io).
    Pull(PullArgs),
    /// Upload an image to a registry.
    ///
    /// Blobs the registry already has are not sent again; blobs from another
    /// repository of the same registry are mounted instead of uploaded.
    Push(PushArgs),
    /// List images in the store.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Show an image's manifest and config as JSON.
    Inspect(InspectArgs),
    /// Give an image another name.
    Tag(TagArgs),
    /// Remove image names; blobs no other image uses are deleted.
    #[command(alias = "remove", alias = "rmi")]
    Rm(RmArgs),
    /// Delete unnamed images and every blob no image references.
    Prune,
    /// Write images to a tar archive (docker-archive or oci-archive).
    Save(SaveArgs),
    /// Read images from a tar archive (either format, from a file or stdin).
    Load(LoadArgs),
    /// Write an image's filesystem as ext4 (no mkfs, no mount, no root needed).
    ///
    /// Without -o, builds (once) and prints the store's cached base filesystem
    /// for the image, the one containers boot from.
    Mkfs(super::mkfs::ImageMkfsArgs),
    /// Tell whether every binary of an image can start: architecture,
    /// interpreter, libraries, libc family, glibc symbol versions.
    Check(super::check::CheckArgs),
}

#[derive(Args)]
pub struct PullArgs {
    /// Image reference, e.g. 127.0.0.1:5000/test/busybox:latest or name@sha256:…
    pub reference: String,
    /// Platform to pick from a multi-platform image (os/arch[/variant]); default: this host's.
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// Print only the manifest digest; no progress bars.
    #[arg(short, long)]
    pub quiet: bool,
    /// Blobs to download at once.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub concurrency: usize,
}

#[derive(Args)]
pub struct PushArgs {
    /// Image in the store.
    pub source: String,
    /// Where to push (default: the source name).
    pub destination: Option<String>,
    /// Upload blobs larger than this in chunks of this many bytes (PATCH); default: one request per blob.
    #[arg(long, value_name = "BYTES")]
    pub chunk_size: Option<u64>,
    /// No progress bars.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Clone, Copy, ValueEnum, Default)]
pub enum ListFormat {
    #[default]
    Table,
    Json,
}

#[derive(Args)]
pub struct LsArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: ListFormat,
    /// Print image IDs only.
    #[arg(short, long)]
    pub quiet: bool,
    /// Show full digests.
    #[arg(long)]
    pub no_trunc: bool,
}

#[derive(Args)]
pub struct InspectArgs {
    pub reference: String,
}

#[derive(Args)]
pub struct TagArgs {
    pub source: String,
    pub target: String,
}

#[derive(Args)]
pub struct RmArgs {
    #[arg(required = true)]
    pub references: Vec<String>,
}

#[derive(Args)]
pub struct SaveArgs {
    #[arg(required = true)]
    pub references: Vec<String>,
    /// Output file (default: standard output, if it is not a terminal).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// docker-archive (for docker load) or oci-archive.
    #[arg(long, default_value = "docker-archive")]
    pub format: ArchiveFormat,
}

#[derive(Args)]
pub struct LoadArgs {
    /// Archive to read (default: standard input). May be gzip- or zstd-compressed.
    #[arg(short, long)]
    pub input: Option<PathBuf>,
    /// Print only the loaded names.
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(ctx: &Context, cmd: ImageCommand) -> anyhow::Result<()> {
    match cmd {
        ImageCommand::Pull(a) => pull(ctx, a),
        ImageCommand::Push(a) => push(ctx, a),
        ImageCommand::Ls(a) => ls(ctx, a),
        ImageCommand::Inspect(a) => {
            let what = format!("inspecting {}", a.reference);
            inspect(ctx, a).context(what)
        }
        ImageCommand::Tag(a) => {
            let what = format!("tagging {} as {}", a.source, a.target);
            tag(ctx, a).context(what)
        }
        ImageCommand::Rm(a) => {
            let what = format!("removing {}", a.references.join(" "));
            rm(ctx, a).context(what)
        }
        ImageCommand::Prune => prune(ctx).context("pruning the store"),
        ImageCommand::Save(a) => {
            let what = format!("saving {}", a.references.join(" "));
            save(ctx, a).context(what)
        }
        ImageCommand::Load(a) => load(ctx, a),
        ImageCommand::Mkfs(a) => super::mkfs::image_mkfs(ctx, a),
        ImageCommand::Check(a) => super::check::run(ctx, a).map(|_| ()),
    }
}

fn pull(ctx: &Context, a: PullArgs) -> anyhow::Result<()> {
    let rec = pull_record(
        ctx,
        &a.reference,
        a.platform.as_deref(),
        a.concurrency,
        a.quiet,
    )?;
    println!("{}", rec.digest);
    Ok(())
}

/// Pulls `reference` into the store (progress on stderr) and returns its record.
pub fn pull_record(
    ctx: &Context,
    reference: &str,
    platform: Option<&str>,
    concurrency: usize,
    quiet: bool,
) -> anyhow::Result<skiff_oci::store::ImageRecord> {
    let parsed = Reference::parse_full(reference)?;
    let platform = platform.map(Platform::parse).transpose()?;
    let store = ctx.store()?;
    let client = ctx.client()?;
    let bars = progress::for_transfers(quiet, "Downloading");
    let opts = PullOptions {
        platform,
        concurrency,
    };
    let started = std::time::Instant::now();
    let pulled = runtime()?
        .block_on(skiff_oci::pull::pull(&client, &store, &parsed, &opts, bars))
        .with_context(|| format!("pulling {}", parsed.reference))?;
    if !quiet {
        let name = pulled
            .record
            .name
            .clone()
            .unwrap_or_else(|| pulled.reference.to_string());
        eprintln!(
            "Pulled {name} ({} blob{} downloaded, {}, {:.1}s)",
            pulled.downloaded,
            if pulled.downloaded == 1 { "" } else { "s" },
            human_size(pulled.record.size),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(pulled.record)
}

fn push(ctx: &Context, a: PushArgs) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let conf = ctx.registries()?;
    let found = resolve::find(&store.read_index()?, &conf, &a.source)?;
    let dest: Reference = match (&a.destination, &found.name) {
        (Some(d), _) => d.parse()?,
        (None, Some(n)) => n.clone(),
        (None, None) => bail!(
            "{}: give a destination name to push an image that has none",
            a.source
        ),
    };
    let client = ctx.client()?;
    let bars = progress::for_transfers(a.quiet, "Uploading");
    let opts = PushOptions {
        chunk_size: a.chunk_size,
        concurrency: 4,
    };
    let pushed = runtime()?
        .block_on(skiff_oci::push::push(
            &client,
            &store,
            &found.record,
            &dest,
            &opts,
            bars,
        ))
        .with_context(|| format!("pushing {dest}"))?;
    if !a.quiet {
        eprintln!(
            "Pushed {dest} ({} uploaded, {} mounted, {} already present)",
            pushed.uploaded, pushed.mounted, pushed.existing
        );
    }
    println!("{}", found.record.digest);
    Ok(())
}

#[derive(Serialize)]
struct ImageRow {
    name: Option<String>,
    repository: String,
    tag: String,
    digest: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    index_digest: Option<String>,
    id: String,
    size: u64,
    created: Option<String>,
}

fn ls(ctx: &Context, a: LsArgs) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let idx = store.read_index()?;
    let rows: Vec<ImageRow> = idx
        .images
        .iter()
        .map(|r| {
            let (repository, tag) =
                match r.name.as_deref().and_then(|n| n.parse::<Reference>().ok()) {
                    Some(n) => (n.name(), n.tag().unwrap_or("<none>").to_owned()),
                    // Pulled by digest only: show where it came from, as podman does.
                    None => (
                        r.source.clone().unwrap_or_else(|| "<none>".to_owned()),
                        "<none>".to_owned(),
                    ),
                };
            ImageRow {
                name: r.name.clone(),
                repository,
                tag,
                digest: r.digest.to_string(),
                index_digest: r.index_digest.as_ref().map(|d| d.to_string()),
                id: r.config.to_string(),
                size: r.size,
                created: r.created.clone(),
            }
        })
        .collect();
    let mut out = std::io::stdout().lock();
    if a.quiet {
        let mut seen = std::collections::HashSet::new();
        for r in &rows {
            let id = if a.no_trunc {
                r.id.clone()
            } else {
                r.id.trim_start_matches("sha256:")[..12].to_owned()
            };
            if seen.insert(id.clone()) {
                writeln!(out, "{id}")?;
            }
        }
        return Ok(());
    }
    match a.format {
        ListFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &rows)?;
            writeln!(out)?;
        }
        ListFormat::Table => {
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    // The digest the registry gives the tag (the index's, for a
                    // multi-platform image), so `name@digest` finds it again.
                    let repo_digest = r.index_digest.as_ref().unwrap_or(&r.digest);
                    let d = if a.no_trunc {
                        repo_digest.clone()
                    } else {
                        repo_digest[..19].to_owned()
                    };
                    vec![
                        r.repository.clone(),
                        r.tag.clone(),
                        d,
                        human_size(r.size),
                        human_ago(r.created.as_deref()),
                    ]
                })
                .collect();
            write!(
                out,
                "{}",
                table(&["REPOSITORY", "TAG", "DIGEST", "SIZE", "CREATED"], &cells)
            )?;
        }
    }
    Ok(())
}

fn inspect(ctx: &Context, a: InspectArgs) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let found = resolve::find(&store.read_index()?, &ctx.registries()?, &a.reference)?;
    let r = &found.record;
    let manifest: serde_json::Value =
        serde_json::from_slice(&store.read_small_blob(&r.digest)?).context("manifest")?;
    let config: serde_json::Value =
        serde_json::from_slice(&store.read_small_blob(&r.config)?).context("config")?;
    let v = serde_json::json!({
        "name": found.name.map(|n| n.to_string()).or(r.name.clone()),
        "digest": r.digest.to_string(),
        "index_digest": r.index_digest.as_ref().map(|d| d.to_string()),
        "id": r.config.to_string(),
        "size": r.size,
        "created": r.created,
        "manifest": manifest,
        "config": config,
    });
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &v)?;
    writeln!(out)?;
    Ok(())
}

fn tag(ctx: &Context, a: TagArgs) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let found = resolve::find(&store.read_index()?, &ctx.registries()?, &a.source)?;
    let target: Reference = a.target.parse()?;
    if target.digest().is_some() {
        bail!("{}: a tag cannot contain a digest", a.target);
    }
    let rec = skiff_oci::store::ImageRecord {
        name: Some(target.to_string()),
        ..found.record
    };
    // Re-check under the index lock: a concurrent `rm` may have just removed it.
    let still_there = store.update_index(|idx| {
        let present = idx.images.iter().any(|r| r.digest == rec.digest);
        if present {
            idx.upsert(rec);
        }
        Ok(present)
    })?;
    if !still_there {
        bail!("image {} was removed meanwhile", a.source);
    }
    Ok(())
}

fn rm(ctx: &Context, a: RmArgs) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let conf = ctx.registries()?;
    let idx = store.read_index()?;
    let mut names = vec![];
    for r in &a.references {
        let found = resolve::find(&idx, &conf, r)?;
        match found.name {
            Some(n) => names.push(n.to_string()),
            // By ID or digest: every name of that image, and the image itself.
            None => {
                names.extend(
                    idx.images
                        .iter()
                        .filter(|x| x.digest == found.record.digest)
                        .filter_map(|x| x.name.clone()),
                );
                names.push(found.record.digest.to_string());
            }
        }
    }
    let removed = store.remove_images(&names)?;
    for r in removed {
        match r.name {
            Some(n) => println!("Untagged: {n}"),
            None => println!("Deleted: {}", r.digest),
        }
    }
    Ok(())
}

fn prune(ctx: &Context) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let (n, bytes) = store.prune()?;
    println!(
        "Deleted {n} blob{}, reclaimed {}",
        if n == 1 { "" } else { "s" },
        human_size(bytes)
    );
    Ok(())
}

fn save(ctx: &Context, a: SaveArgs) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let conf = ctx.registries()?;
    let idx = store.read_index()?;
    let found: Vec<resolve::Found> = a
        .references
        .iter()
        .map(|r| resolve::find(&idx, &conf, r))
        .collect::<Result<_, _>>()?;
    let items: Vec<archive::SaveItem<'_>> = found
        .iter()
        .map(|f| archive::SaveItem {
            record: &f.record,
            name: f
                .name
                .clone()
                .or_else(|| f.record.name.as_deref().and_then(|n| n.parse().ok())),
        })
        .collect();
    match &a.output {
        Some(path) => {
            // Written beside the target and renamed: a failed save leaves no half file.
            let result = (|| -> anyhow::Result<()> {
                let mut f = skiff_util::atomic::AtomicFile::create(path, 0o644)
                    .with_context(|| format!("creating a file beside {}", path.display()))?;
                let mut w = std::io::BufWriter::with_capacity(1 << 20, f.file());
                archive::save(&store, &items, a.format, &mut w)?;
                w.flush()?;
                drop(w);
                f.commit()
                    .with_context(|| format!("writing {}", path.display()))?;
                Ok(())
            })();
            result.with_context(|| format!("saving to {}", path.display()))
        }
        None => {
            if std::io::stdout().is_terminal() {
                bail!("refusing to write an archive to a terminal: use -o FILE or redirect stdout");
            }
            let out = std::io::stdout().lock();
            let mut w = std::io::BufWriter::with_capacity(1 << 20, out);
            archive::save(&store, &items, a.format, &mut w)?;
            w.flush()?;
            Ok(())
        }
    }
}

fn load(ctx: &Context, a: LoadArgs) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let input: Box<dyn Read> = match &a.input {
        Some(p) => {
            Box::new(std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?)
        }
        None => {
            if std::io::stdin().is_terminal() {
                bail!("no archive on standard input: use -i FILE or pipe one in");
            }
            Box::new(std::io::stdin().lock())
        }
    };
    let what = a
        .input
        .as_ref()
        .map_or_else(|| "standard input".to_owned(), |p| p.display().to_string());
    let loaded = archive::load(&store, input).with_context(|| format!("loading {what}"))?;
    for r in &loaded.images {
        match &r.name {
            Some(n) => println!("Loaded image: {n}"),
            None => println!("Loaded image ID: {}", r.config),
        }
    }
    Ok(())
}
