//! `skiff build`: a Containerfile into an image in the store.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};
use skiff_build::executor::{self, BuildOptions, Event, Host};
use skiff_build::layer::Compression;
use skiff_oci::reference::Reference;
use skiff_oci::Platform;

use super::{monitor_command, runtime, Context};
use crate::output::human_size;

#[derive(Clone, Copy, ValueEnum, Default)]
pub enum CompressionArg {
    #[default]
    Gzip,
    Zstd,
    Uncompressed,
}

#[derive(Args)]
#[command(after_help = "Examples:
  skiff build -t hello:static .                       # ./Containerfile or ./Dockerfile
  skiff build -t app -f build/Dockerfile --build-arg V=2 --target runtime .
  SOURCE_DATE_EPOCH=0 skiff build -t app .             # the same bytes every time
  skiff build --no-cache --compression zstd -t app .

RUN steps run in a skiff micro-VM on the stage's image; the build context is
not visible to them (COPY what they need). Layer steps (RUN, COPY, ADD,
WORKDIR) are cached by their inputs: an unchanged rebuild makes no VM.")]
pub struct BuildArgs {
    /// The build context: the directory COPY and ADD read from.
    #[arg(default_value = ".")]
    pub context: PathBuf,
    /// The Containerfile (default: CONTEXT/Containerfile, else CONTEXT/Dockerfile; - reads stdin).
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Name the image (repeatable), e.g. -t app:1.0 -t app:latest.
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    pub tags: Vec<String>,
    /// Set a build argument (KEY=VALUE, or KEY to take it from the environment).
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,
    /// Build this stage (`FROM … AS name`) instead of the last.
    #[arg(long)]
    pub target: Option<String>,
    /// Run every step again: ignore the layer cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Platform of the image (os/arch[/variant]); RUN needs it to be this host's.
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// Layer compression.
    #[arg(long, value_enum, default_value_t)]
    pub compression: CompressionArg,
    /// Compression level: gzip 1–9 (default 1, the fastest; docker writes
    /// 6, about a quarter smaller and 2.5× slower), zstd 1–19 (default 3).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(1..=19))]
    pub compression_level: Option<i32>,
    /// A label for the image (KEY=VALUE).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Network of RUN steps: a network's name, bridge, passt or none.
    #[arg(long, alias = "net", value_name = "NETWORK", env = "SKIFF_NETWORK")]
    pub network: Option<String>,
    /// Virtual CPUs of each RUN step's VM.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub cpus: u32,
    /// Memory of each RUN step's VM (e.g. 512M, 2G).
    #[arg(short, long, default_value = "512M", value_parser = super::mkfs::parse_size)]
    pub memory: u64,
    /// Print only the image ID.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(clap::Subcommand)]
pub enum BuilderCommand {
    /// Forget every cached build step (their layers go with the next
    /// `skiff image prune` unless an image uses them).
    Prune,
}

pub fn builder(ctx: &Context, c: BuilderCommand) -> anyhow::Result<()> {
    match c {
        BuilderCommand::Prune => {
            let store = ctx.store()?;
            let n = executor::Cache::new(&store)
                .prune()
                .context("removing the build cache")?;
            println!(
                "Removed {n} cached build step{}",
                if n == 1 { "" } else { "s" }
            );
            Ok(())
        }
    }
}

pub fn build(ctx: &Context, a: BuildArgs, debug: bool) -> anyhow::Result<std::process::ExitCode> {
    let tags = a
        .tags
        .iter()
        .map(|t| t.parse::<Reference>().with_context(|| format!("-t {t}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (path, text) = containerfile(&a.context, a.file.as_deref())?;
    let epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) if !s.is_empty() => Some(
            s.parse::<u64>()
                .with_context(|| format!("SOURCE_DATE_EPOCH={s}: not a number of seconds"))?,
        ),
        _ => None,
    };
    let mut build_args = BTreeMap::new();
    for b in &a.build_args {
        match b.split_once('=') {
            Some((k, v)) => {
                build_args.insert(k.to_owned(), v.to_owned());
            }
            None => {
                if let Ok(v) = std::env::var(b) {
                    build_args.insert(b.clone(), v);
                }
            }
        }
    }
    let options = BuildOptions {
        context: a.context.clone(),
        containerfile: path,
        containerfile_text: text,
        build_args,
        target: a.target.clone(),
        no_cache: a.no_cache,
        platform: a.platform.as_deref().map(Platform::parse).transpose()?,
        compression: match a.compression {
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Zstd => Compression::Zstd,
            CompressionArg::Uncompressed => Compression::Uncompressed,
        },
        compression_level: a.compression_level,
        epoch,
        labels: super::labels(&a.labels),
        network: a.network.clone(),
        cpus: a.cpus,
        memory_mib: u32::try_from(a.memory >> 20).unwrap_or(u32::MAX),
    };
    let store = ctx.store()?;
    let paths = ctx.paths();
    let monitor = monitor_command(ctx, debug);
    let rt = runtime()?;
    let quiet = a.quiet;
    let resolve =
        |name: &str, platform: &Platform| -> Result<skiff_oci::store::ImageRecord, String> {
            find_or_pull(ctx, name, platform, quiet).map_err(|e| crate::output::one_line(&e))
        };
    let mut out = std::io::stderr();
    let mut at_line_start = true;
    let mut events = |e: Event<'_>| {
        if quiet {
            return;
        }
        let _ = match e {
            Event::Stage { .. } => Ok(()),
            Event::Step {
                number,
                total,
                text,
            } => {
                if !at_line_start {
                    let _ = writeln!(out);
                    at_line_start = true;
                }
                writeln!(out, "STEP {number}/{total}: {text}")
            }
            Event::CacheHit { key } => writeln!(out, "--> Using cache {key}"),
            Event::Output(data) => {
                at_line_start = data.last() == Some(&b'\n');
                out.write_all(data)
            }
            Event::Layer { digest, size } => writeln!(
                out,
                "--> layer {} ({})",
                digest
                    .strip_prefix("sha256:")
                    .unwrap_or(digest)
                    .get(..12)
                    .unwrap_or(digest),
                human_size(size)
            ),
            Event::Warning(w) => writeln!(out, "WARNING: {w}"),
        };
    };
    // Registered before any work: Ctrl-C, SIGTERM or SIGHUP ends the build
    // at the next step, and a RUN step's VM at once.
    let (stop_tx, interrupt) = tokio::sync::watch::channel(false);
    {
        let _enter = rt.enter();
        use tokio::signal::unix::{signal, SignalKind};
        for kind in [
            SignalKind::interrupt(),
            SignalKind::terminate(),
            SignalKind::hangup(),
        ] {
            let Ok(mut sig) = signal(kind) else { continue };
            let tx = stop_tx.clone();
            rt.spawn(async move {
                while sig.recv().await.is_some() {
                    let _ = tx.send(true);
                }
            });
        }
    }
    let mut host = Host {
        store: &store,
        paths: &paths,
        monitor: &monitor,
        runtime: &rt,
        resolve: &resolve,
        events: &mut events,
        options: &options,
        interrupt,
    };
    let built = match executor::build(&mut host) {
        Err(executor::BuildError::Interrupted) => {
            eprintln!("Error: interrupted");
            return Ok(std::process::ExitCode::from(130));
        }
        r => r?,
    };
    let mut records = Vec::new();
    for t in &tags {
        records.push(skiff_oci::store::ImageRecord {
            name: Some(t.to_string()),
            ..built.record.clone()
        });
    }
    if records.is_empty() {
        records.push(built.record.clone());
    }
    store.record_images(records)?;
    let id = built.record.config.hex().to_owned();
    if quiet {
        println!("sha256:{id}");
        return Ok(std::process::ExitCode::SUCCESS);
    }
    for t in &tags {
        eprintln!("COMMIT {t}");
    }
    eprintln!(
        "--> {} ({} of {} layer steps from the cache)",
        &id[..12],
        built.cached,
        built.layer_steps
    );
    if std::io::stdout().is_terminal() {
        println!("Successfully built {}", &id[..12]);
    } else {
        println!("sha256:{id}");
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// The Containerfile's path and text: `-f`, else Containerfile, else
/// Dockerfile in the context; `-f -` is stdin.
fn containerfile(context: &Path, file: Option<&Path>) -> anyhow::Result<(PathBuf, String)> {
    if !context.is_dir() {
        bail!("build context {} is not a directory", context.display());
    }
    let path = match file {
        Some(p) if p == Path::new("-") => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading the Containerfile from stdin")?;
            return Ok((context.join("Containerfile"), text));
        }
        Some(p) => p.to_path_buf(),
        None => ["Containerfile", "Dockerfile"]
            .iter()
            .map(|n| context.join(n))
            .find(|p| p.is_file())
            .with_context(|| {
                format!(
                    "no Containerfile or Dockerfile in {}: name one with -f",
                    context.display()
                )
            })?,
    };
    let meta = std::fs::metadata(&path).with_context(|| format!("reading {}", path.display()))?;
    // The parser refuses more than this too; checked first so that a huge
    // file is not read into memory.
    if meta.len() > skiff_build::containerfile::MAX_INPUT_BYTES as u64 {
        bail!(
            "{}: {} is over the {} a Containerfile may have",
            path.display(),
            human_size(meta.len()),
            human_size(skiff_build::containerfile::MAX_INPUT_BYTES as u64)
        );
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok((path, text))
}

/// FROM and COPY --from: a stored image of the platform, else a pull.
fn find_or_pull(
    ctx: &Context,
    name: &str,
    platform: &Platform,
    quiet: bool,
) -> anyhow::Result<skiff_oci::store::ImageRecord> {
    let store = ctx.store()?;
    if let Ok(found) = crate::resolve::find(&store.read_index()?, &ctx.registries()?, name) {
        let config = store.read_small_blob(&found.record.config)?;
        let v: serde_json::Value = serde_json::from_slice(&config).unwrap_or_default();
        let arch = v
            .get("architecture")
            .and_then(|a| a.as_str())
            .unwrap_or("amd64");
        if arch == platform.architecture {
            return Ok(found.record);
        }
    }
    super::image::pull_record(ctx, name, Some(&platform.to_string()), 4, quiet)
}
