//! `skiff login` / `skiff logout`

use std::io::{BufRead, IsTerminal};

use anyhow::{bail, Context as _};
use clap::Args;
use skiff_oci::auth::{self, AuthFile, Credentials};
use skiff_oci::reference::api_host;

use super::{runtime, Context};

#[derive(Args)]
pub struct LoginArgs {
    /// Registry host, e.g. registry.example.com or 127.0.0.1:5000 (default: docker.io).
    pub registry: Option<String>,
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password (prefer --password-stdin: arguments are visible to other users).
    #[arg(short, long, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
    /// Auth file to write (default: $REGISTRY_AUTH_FILE or the containers auth.json).
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<std::path::PathBuf>,
}

#[derive(Args)]
pub struct LogoutArgs {
    pub registry: Option<String>,
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<std::path::PathBuf>,
}

fn registry_name(r: Option<String>) -> anyhow::Result<String> {
    let r = r.unwrap_or_else(|| "docker.io".to_owned());
    let r = r
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    if r.is_empty() || r.contains('/') || r.contains(char::is_whitespace) {
        bail!("{r:?} is not a registry host (expected host[:port])");
    }
    Ok(if r == "index.docker.io" {
        "docker.io".to_owned()
    } else {
        r
    })
}

pub fn login(ctx: &Context, a: LoginArgs) -> anyhow::Result<()> {
    let registry = registry_name(a.registry)?;
    let Some(username) = a.username else {
        bail!("give a user name with -u")
    };
    let password = match (a.password, a.password_stdin) {
        (Some(p), _) => p,
        (None, true) => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading the password from standard input")?;
            line.trim_end_matches(['\n', '\r']).to_owned()
        }
        (None, false) => {
            if !std::io::stdin().is_terminal() {
                bail!("give the password with --password-stdin");
            }
            bail!("interactive password prompts are not supported yet: use --password-stdin");
        }
    };
    if password.is_empty() {
        bail!("empty password");
    }
    let creds = Credentials {
        username,
        password,
        identity_token: None,
    };
    let client = ctx.client()?;
    let host = api_host(&registry).to_owned();
    let ep = skiff_oci::registries::Endpoint {
        insecure: client.registries().is_insecure_host(&host),
        host: host.clone(),
        repository: String::new(),
        mirror: false,
    };
    client.set_credentials(&host, Some(creds.clone()));
    runtime()?
        .block_on(client.ping(&ep, &registry))
        .with_context(|| format!("logging in to {registry}"))?;
    let path = a.authfile.unwrap_or_else(auth::default_write_path);
    let mut file = AuthFile::read(&path)?;
    file.set(&registry, &creds);
    file.write(&path)?;
    println!("Login Succeeded!");
    Ok(())
}

pub fn logout(_ctx: &Context, a: LogoutArgs) -> anyhow::Result<()> {
    let registry = registry_name(a.registry)?;
    let path = a.authfile.unwrap_or_else(auth::default_write_path);
    let mut file = AuthFile::read(&path)?;
    if !file.remove(&registry) {
        bail!(
            "not logged in to {registry} (no credentials in {})",
            path.display()
        );
    }
    file.write(&path)?;
    println!("Removed login credentials for {registry}");
    Ok(())
}
