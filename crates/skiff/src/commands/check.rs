//! TEMPORARY placeholder (the lead's, to compile the CLI); helper-13 replaces this file.
#[derive(clap::Args)]
pub struct CheckArgs {
    image: String,
}
pub fn run(_ctx: &super::Context, a: CheckArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("not yet: {}", a.image)
}
