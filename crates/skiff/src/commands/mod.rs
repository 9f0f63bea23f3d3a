//! Command implementations; each turns library errors into messages that say
//! what was being done.

pub mod image;
pub mod login;
pub mod mkfs;
pub mod run;
pub mod system;

use std::path::PathBuf;

use anyhow::Context as _;
use skiff_oci::client::RegistryClient;
use skiff_oci::registries::RegistriesConf;
use skiff_oci::Store;

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
