//! `skiff image check`: whether an image's programs can start here. All
//! the work is skiff_build::check's; this prints its report.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use skiff_build::check::{self, CheckOptions, Report, Verdict};

use super::Context;
use crate::output::table;
use crate::resolve;

/// How to print the report.
#[derive(Clone, Copy, ValueEnum, Default)]
pub enum CheckFormat {
    /// PATH KIND VERDICT REASON, the entrypoint first.
    #[default]
    Table,
    /// The whole report as one JSON object.
    Json,
}

/// Arguments of `skiff image check`.
#[derive(Args)]
#[command(
    after_help = "Every ELF program in the image is checked as the kernel and the dynamic loader \
would load it: architecture, interpreter, each needed library along the loader's search path \
(RPATH, LD_LIBRARY_PATH from the image's Env, RUNPATH, /etc/ld.so.conf, the default directories) \
and the symbol versions (GLIBC_2.34) they need. The entrypoint (Entrypoint + Cmd, looked up in the \
image's PATH) comes first; a #! script counts through its interpreter. Libraries are listed only \
when something is wrong with them (--all-libraries lists them all).

Exit status: 1 when the entrypoint cannot start; for an image without an entrypoint, 1 when any \
checked file fails; 0 otherwise.

Examples:
  skiff image check debian:bookworm
  skiff image check --entrypoint-only myapp:latest
  skiff image check --format json myapp:latest | jq '.files[] | select(.verdict == \"fails\")'"
)]
pub struct CheckArgs {
    /// Image in the store (name, ID or digest).
    pub image: String,
    /// Check only the entrypoint (and what it loads), not every program.
    #[arg(long)]
    pub entrypoint_only: bool,
    /// List libraries that are fine too.
    #[arg(long)]
    pub all_libraries: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: CheckFormat,
}

/// Runs `skiff image check`.
pub fn run(ctx: &Context, a: CheckArgs) -> anyhow::Result<ExitCode> {
    let store = ctx.store()?;
    let found = resolve::find(&store.read_index()?, &ctx.registries()?, &a.image)?;
    let opts = CheckOptions {
        entrypoint_only: a.entrypoint_only,
        all_libraries: a.all_libraries,
    };
    let report = check::check_image(&store, &found.record, &opts)
        .with_context(|| format!("checking {}", a.image))?;
    let mut out = std::io::stdout().lock();
    match a.format {
        CheckFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        }
        CheckFormat::Table => print_table(&mut out, &report)?,
    }
    let failed = match report.entrypoint_ok {
        Some(ok) => !ok,
        None => report.any_fails(),
    };
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn print_table(out: &mut impl std::io::Write, r: &Report) -> anyhow::Result<()> {
    let libc = if r.libc.is_empty() {
        "none".to_owned()
    } else {
        r.libc.join(", ")
    };
    writeln!(
        out,
        "platform {}, host {}, libc {libc}",
        r.platform, r.host_arch
    )?;
    if r.entrypoint.is_none() {
        writeln!(out, "no entrypoint (the image has no Entrypoint or Cmd)")?;
    }
    let rows: Vec<Vec<String>> = r
        .files
        .iter()
        .map(|f| {
            let path = if f.entrypoint {
                format!("{} (entrypoint)", f.path)
            } else {
                f.path.clone()
            };
            let verdict = match f.verdict {
                Verdict::Runs => "runs",
                Verdict::Fails => "fails",
            };
            vec![
                path,
                f.kind.as_str().to_owned(),
                verdict.to_owned(),
                f.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    write!(
        out,
        "{}",
        table(&["PATH", "KIND", "VERDICT", "REASON"], &rows)
    )?;
    Ok(())
}
