//! RUN: the command in a skiff micro-VM on the stage's current image.
//!
//! The stage so far is written into the store as an (unnamed) image and run
//! as an ordinary `--rm` container whose root is an overlayfs in the guest:
//! the image read-only below, an empty disk above. When the command exits 0,
//! the monitor streams the upper directory back as an OCI layer tar (see
//! skiff-init's ReadChanges) into a file under the store's tmp/, which
//! becomes the step's layer here. The build context is not visible: only
//! what COPY put in the image is.

use std::collections::BTreeMap;
use std::path::Path;

use skiff_oci::store::ImageRecord;
use skiff_runtime::container::{
    self, AttachOptions, Container, Containers, CreateOptions, NetworkOptions, SessionEvent,
    StartOptions,
};
use skiff_runtime::image_config::Overrides;

use super::{BuildError, Event, Host};
use crate::layer::LayerDigests;

/// What to run, decided by the executor.
pub(super) struct RunSpec {
    pub argv: Vec<String>,
    /// Build args in scope, as `KEY=VALUE` (the image's Env comes with the image).
    pub env: Vec<String>,
    /// `file:line` and the instruction, for errors.
    pub what: String,
}

/// Runs the step; returns its layer (stored).
pub(super) fn run(
    host: &mut Host<'_>,
    image: &ImageRecord,
    spec: &RunSpec,
) -> Result<LayerDigests, BuildError> {
    let store = host.store;
    let tmp = store.tmp_dir();
    std::fs::create_dir_all(&tmp).map_err(|e| BuildError::io("creating", &tmp, e))?;
    // Named for this process: the store's sweep leaves it alone while the
    // build lives and removes it if the build was killed.
    let changes = skiff_util::atomic::temp_sibling(&tmp.join("build-changes"));
    // The changes file is this process's: removed however the step ends.
    let _cleanup = RemoveOnDrop(&changes);
    let containers = Containers::new(host.paths);
    let mut labels = BTreeMap::new();
    labels.insert("skiff.build.step".to_owned(), spec.what.clone());
    let o = CreateOptions {
        image: format!("build step {}", spec.what),
        overrides: Overrides {
            entrypoint: Some(String::new()),
            args: spec.argv.clone(),
            env: spec.env.clone(),
            workdir: None,
            user: None,
        },
        cpus: host.options.cpus,
        memory_mib: host.options.memory_mib,
        labels,
        auto_remove: true,
        network: NetworkOptions {
            network: host.options.network.clone(),
            ..Default::default()
        },
        changes_to: Some(changes.clone()),
        // An image's HEALTHCHECK is for its containers, not for its build.
        health: skiff_runtime::container::HealthOptions {
            disable: true,
            ..Default::default()
        },
        ..Default::default()
    };
    // The step's base filesystem serves this container only: it goes
    // however the step ends.
    let base = skiff_runtime::rootfs::cached_path(store, image);
    let _base = RemoveOnDrop(&base);
    let c = container::create(&containers, store, image, &o, &mut |_, _| {})
        .map_err(|e| BuildError::Run(format!("{}: {e}", spec.what)))?;
    let code = run_container(host, &containers, &c, spec)?;
    if code != 0 {
        return Err(BuildError::RunFailed {
            what: spec.what.clone(),
            code,
        });
    }
    let file = std::fs::File::open(&changes).map_err(|_| {
        BuildError::Run(format!(
            "{}: the step's changes were not saved (skiff --debug build shows why)",
            spec.what
        ))
    })?;
    super::steps::write_layer(store, host.options, |w| {
        w.append_tar(std::io::BufReader::with_capacity(1 << 20, file))
            .map(|_| ())
            .map_err(BuildError::Layer)
    })
}

/// Starts the container, streams its output as events, returns its exit
/// code. An interrupt (Ctrl-C) kills it and fails the build.
fn run_container(
    host: &mut Host<'_>,
    containers: &Containers,
    c: &Container,
    spec: &RunSpec,
) -> Result<i32, BuildError> {
    let fail = |e: container::ContainerError| BuildError::Run(format!("{}: {e}", spec.what));
    let mut started = match container::start(
        containers,
        c,
        StartOptions { attach: true },
        host.monitor,
        &mut |_| {},
    ) {
        Ok(s) => s,
        Err(e) => {
            // No monitor took it: nobody else removes it.
            let _ = host
                .runtime
                .block_on(container::remove(containers, c, true));
            return Err(fail(e));
        }
    };
    let rt = host.runtime;
    let events = &mut host.events;
    let mut interrupt = host.interrupt.clone();
    let result = rt.block_on(async {
        let mut session = container::attach(
            c,
            AttachOptions {
                stdin: false,
                owner: true,
                tty_size: None,
            },
        )
        .await?;
        let input = session.input();
        let mut interrupted = *interrupt.borrow();
        if interrupted {
            let _ = input.abort().await;
        }
        loop {
            tokio::select! {
                ev = session.next() => match ev? {
                    Some(SessionEvent::Output(_, data)) => events(Event::Output(&data)),
                    Some(SessionEvent::Exited { code, .. }) => {
                        return Ok(if interrupted { None } else { Some(code) })
                    }
                    Some(SessionEvent::Started(_)) => {}
                    None if interrupted => return Ok(None),
                    None => return Err(container::ContainerError::Invalid(
                        "the step's VM ended without an exit status".into(),
                    )),
                },
                r = interrupt.changed(), if !interrupted => {
                    if r.is_err() || *interrupt.borrow() {
                        interrupted = true;
                        let _ = input.abort().await;
                    }
                }
            }
        }
    });
    // Only now: while the starter's pipe is open, the monitor waits for
    // its owner's attach instead of giving the container up.
    started.attached();
    // The monitor removes the container (--rm) as it ends.
    started.wait_monitor();
    match result {
        Ok(Some(code)) => Ok(code),
        Ok(None) => Err(BuildError::Interrupted),
        Err(e) => Err(fail(e)),
    }
}

struct RemoveOnDrop<'a>(&'a Path);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0);
    }
}
