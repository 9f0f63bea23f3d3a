//! Command implementations; each turns library errors into messages that say
//! what was being done.

pub mod build;
pub mod check;
pub mod completion;
pub mod container;
pub mod create_args;
pub mod image;
pub mod login;
pub mod mkfs;
pub mod monitor;
pub mod network;
pub mod ps;
pub mod run;
pub mod session;
pub mod system;
pub mod template;
pub mod volume;

use std::path::PathBuf;

use anyhow::Context as _;
use skiff_oci::client::RegistryClient;
use skiff_oci::registries::RegistriesConf;
use skiff_oci::Store;

/// `--label KEY=VALUE` flags as a map (`KEY` alone: an empty value, as docker).
pub fn labels(flags: &[String]) -> std::collections::BTreeMap<String, String> {
    flags
        .iter()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

pub struct Context {
    root: PathBuf,
}

impl Context {
    pub fn new(root: Option<PathBuf>) -> anyhow::Result<Self> {
        let root = match root {
            Some(r) => r,
            None if rustix::process::geteuid().is_root() => PathBuf::from("/var/lib/skiff"),
            None => {
                let base = std::env::var_os("XDG_DATA_HOME")
                    .map(PathBuf::from)
                    .or_else(|| {
                        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share"))
                    })
                    .context("cannot choose a store directory: set --root or SKIFF_ROOT")?;
                base.join("skiff")
            }
        };
        Ok(Self { root })
    }

    pub fn root(&self) -> &std::path::Path {
        &self.root
    }

    pub fn paths(&self) -> skiff_runtime::Paths {
        skiff_runtime::Paths::new(&self.root)
    }

    pub fn store(&self) -> anyhow::Result<Store> {
        Store::open(&self.root)
            .with_context(|| format!("opening the store at {}", self.root.display()))
    }

    pub fn registries(&self) -> anyhow::Result<RegistriesConf> {
        Ok(RegistriesConf::load(None)?)
    }

    pub fn client(&self) -> anyhow::Result<RegistryClient> {
        Ok(RegistryClient::new(
            self.registries()?,
            Box::new(skiff_oci::auth::lookup),
        ))
    }
}

/// A runtime for the network commands; two workers suffice for I/O waits.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// How skiff starts a container's monitor: this binary again, hidden
/// subcommand `__monitor`, same store and debug setting.
pub fn monitor_command(ctx: &Context, debug: bool) -> skiff_runtime::container::MonitorCommand {
    let root = ctx.root.clone();
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("skiff"));
    skiff_runtime::container::MonitorCommand::new(move |dir, opts| {
        let mut c = std::process::Command::new(&exe);
        c.arg("--root").arg(&root);
        if debug {
            c.arg("--debug");
        }
        c.arg("__monitor").arg(dir);
        if opts.wait_for_owner {
            c.arg("--wait-for-owner");
        }
        c
    })
}

/// The exit code docker gives an error, when it is not 1: a command that
/// could not run (126) or was not found (127).
pub fn exit_code_of(e: &anyhow::Error) -> Option<u8> {
    use skiff_runtime::agent::AgentError;
    use skiff_runtime::container::ContainerError;
    e.chain()
        .find_map(|c| match c.downcast_ref::<ContainerError>() {
            Some(ContainerError::Agent(AgentError::Exec { code, .. })) => u8::try_from(*code).ok(),
            _ => None,
        })
}
