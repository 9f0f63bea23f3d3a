//! Running a Containerfile: stage by stage, step by step, each layer step
//! looked up in the cache first; the target stage's image into the store.

mod cache;
mod image;
mod run_step;
mod stage;
mod steps;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use skiff_oci::store::{ImageRecord, Store};
use skiff_oci::Platform;
use skiff_runtime::container::MonitorCommand;
use skiff_runtime::Paths;

pub use cache::Cache;
pub use image::LayerRef;

use crate::containerfile::{self, Containerfile};
use crate::context::Context;
use crate::layer::Compression;

/// What `skiff build` was asked.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The build context directory.
    pub context: PathBuf,
    /// The Containerfile's path (for ignore files and messages) and text.
    pub containerfile: PathBuf,
    pub containerfile_text: String,
    /// `--build-arg`, resolved (a bare `K` took the caller's environment).
    pub build_args: BTreeMap<String, String>,
    /// `--target`: the stage to build (default: the last).
    pub target: Option<String>,
    pub no_cache: bool,
    /// `--platform`: the images' platform (default: the host's).
    pub platform: Option<Platform>,
    pub compression: Compression,
    /// `--compression-level` (None: the layer writer's defaults).
    pub compression_level: Option<i32>,
    /// `SOURCE_DATE_EPOCH`: image and history times, and layer mtimes
    /// clamped to it, so that two builds give the same bytes.
    pub epoch: Option<u64>,
    /// `--label`: added to the final image.
    pub labels: BTreeMap<String, String>,
    /// `--network` for RUN steps (None: `skiff run`'s default).
    pub network: Option<String>,
    pub cpus: u32,
    pub memory_mib: u32,
}

/// What the build reports as it goes.
#[derive(Debug)]
pub enum Event<'a> {
    /// A stage starts: its index, its name, its base.
    Stage {
        index: usize,
        name: Option<&'a str>,
        base: &'a str,
    },
    /// A step starts (numbered across the whole file, as podman does).
    Step {
        number: usize,
        total: usize,
        text: &'a str,
    },
    /// The step's layer came from the cache.
    CacheHit {
        key: &'a str,
    },
    /// Output of a RUN step, as it comes.
    Output(&'a [u8]),
    /// A layer was made.
    Layer {
        digest: &'a str,
        size: u64,
    },
    Warning(&'a str),
}

/// What the executor needs from around it.
pub struct Host<'a> {
    pub store: &'a Store,
    pub paths: &'a Paths,
    /// How RUN steps start their container's monitor.
    pub monitor: &'a MonitorCommand,
    pub runtime: &'a tokio::runtime::Runtime,
    /// Finds an image for `FROM` or `COPY --from` by name (pulling it when
    /// the caller does that), for a platform; the message on failure.
    pub resolve: &'a dyn Fn(&str, &Platform) -> Result<ImageRecord, String>,
    pub events: &'a mut dyn FnMut(Event<'_>),
    pub options: &'a BuildOptions,
    /// Becomes true on Ctrl-C (or SIGTERM): the build stops at the next
    /// step, a RUN step's VM at once.
    pub interrupt: tokio::sync::watch::Receiver<bool>,
}

/// What a build made.
#[derive(Debug)]
pub struct Built {
    /// The target stage's image, stored, not yet named.
    pub record: ImageRecord,
    pub steps: usize,
    /// Layer steps served by the cache, of all layer steps.
    pub cached: usize,
    pub layer_steps: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Parse(#[from] containerfile::ParseError),
    #[error("{0}")]
    Context(#[from] crate::context::ContextError),
    #[error("{0}")]
    Layer(#[source] crate::layer::LayerError),
    #[error("{0}")]
    ImageFs(#[from] crate::imagefs::ImageFsError),
    #[error("{0}")]
    Store(#[source] skiff_oci::store::StoreError),
    #[error("base image: {0}")]
    BaseImage(String),
    /// A step that cannot be done, with file:line.
    #[error("{0}")]
    Step(String),
    #[error("{0}")]
    Run(String),
    #[error("{what}: the command exited with code {code}")]
    RunFailed { what: String, code: i32 },
    #[error("interrupted")]
    Interrupted,
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl BuildError {
    pub(crate) fn io(what: &'static str, path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Builds the target stage; the image is in the store when this returns
/// (named by the caller).
pub fn build(host: &mut Host<'_>) -> Result<Built, BuildError> {
    let o = host.options;
    let file_name = o
        .containerfile
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| "Containerfile".into());
    let file = containerfile::parse(&o.containerfile_text, &file_name)?;
    let context = Context::open(&o.context, &o.containerfile)?;
    let target = target_stage(&file, o.target.as_deref(), &file_name)?;
    stage::Builder::new(host, &file, &file_name, &context).run(target)
}

/// The index of the stage to build.
fn target_stage(
    file: &Containerfile,
    target: Option<&str>,
    file_name: &str,
) -> Result<usize, BuildError> {
    match target {
        None => Ok(file.stages.len().saturating_sub(1)),
        Some(t) => file.stage_named(t).map(|(i, _)| i).ok_or_else(|| {
            BuildError::Step(format!(
                "{file_name}: no stage named {t:?} (--target names a stage of `FROM … AS name`)"
            ))
        }),
    }
}

/// RFC 3339 time of the image and its history: `SOURCE_DATE_EPOCH` or now.
pub(crate) fn created(epoch: Option<u64>) -> String {
    match epoch {
        Some(e) => time_rfc3339(e),
        None => skiff_runtime::time::now_rfc3339(),
    }
}

fn time_rfc3339(secs: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    skiff_runtime::time::rfc3339(t)
}
