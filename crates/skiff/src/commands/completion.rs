//! `skiff completion SHELL` and the hidden man page generator.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, CommandFactory};
use clap_complete::Shell;

#[derive(Args)]
#[command(after_help = "Examples:
  skiff completion bash > /etc/bash_completion.d/skiff
  skiff completion zsh > \"${fpath[1]}/_skiff\"
  skiff completion fish > ~/.config/fish/completions/skiff.fish")]
pub struct CompletionArgs {
    /// The shell to complete for.
    pub shell: Shell,
}

/// Prints the completion script for `a.shell` on stdout.
pub fn completion(a: CompletionArgs) -> anyhow::Result<()> {
    let mut cmd = crate::Cli::command();
    // Into memory first: the generator panics on a closed pipe (`| head`).
    let mut out = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "skiff", &mut out);
    std::io::Write::write_all(&mut std::io::stdout(), &out).context("writing the completions")
}

#[derive(Args)]
pub struct ManArgs {
    /// Directory for the pages: skiff.1 and skiff-<command>[-<sub>].1.
    pub dir: PathBuf,
}

/// Writes a man page for skiff and each of its commands (for releases).
pub fn man(a: ManArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&a.dir).with_context(|| format!("creating {}", a.dir.display()))?;
    let cmd = crate::Cli::command();
    write_pages(&cmd, "skiff", &a.dir)
}

fn write_pages(cmd: &clap::Command, name: &str, dir: &std::path::Path) -> anyhow::Result<()> {
    let mut out = Vec::new();
    // Named as the page is (`skiff-run`), not as clap knows it (`run`).
    clap_mangen::Man::new(cmd.clone().name(name.to_owned()))
        .render(&mut out)
        .with_context(|| format!("rendering the man page of {name}"))?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, out).with_context(|| format!("writing {}", path.display()))?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, &format!("{name}-{}", sub.get_name()), dir)?;
    }
    Ok(())
}
