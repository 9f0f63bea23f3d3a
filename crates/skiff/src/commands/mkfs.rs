//! `skiff mkfs` and `skiff image mkfs`: layers straight into an ext4 image.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use skiff_ext4::writer::{self, Options};
use skiff_oci::store::{ImageRecord, Store};

use super::Context;
use crate::output::human_size;
use crate::resolve;

#[derive(Args)]
pub struct MkfsArgs {
    /// Output image file (created or replaced).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Image size (e.g. 4G, 512M); default: content + metadata + headroom.
    #[arg(long, value_parser = parse_size)]
    pub size: Option<u64>,
    /// Free space to leave for writes when --size is not given (default: the content size, at least 1G).
    #[arg(long, value_parser = parse_size)]
    pub headroom: Option<u64>,
    /// Layer tarballs (tar, tar.gz or tar.zst), applied in order.
    #[arg(required = true)]
    pub layers: Vec<PathBuf>,
    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args)]
pub struct ImageMkfsArgs {
    /// Image in the store.
    pub reference: String,
    /// Output image file (created or replaced); default: the store's cached
    /// base filesystem for the image (rootfs/<manifest>.ext4), built once.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Image size (e.g. 4G, 512M); default: content + metadata + headroom.
    #[arg(long, value_parser = parse_size)]
    pub size: Option<u64>,
    /// Free space to leave for writes when --size is not given.
    #[arg(long, value_parser = parse_size)]
    pub headroom: Option<u64>,
    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `4G`, `512M`, `100k`, `1T` or plain bytes (binary units, as mkfs).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => {
            let unit = s[i..].to_ascii_lowercase();
            let m = match unit.trim_end_matches("ib").trim_end_matches('b') {
                "" => 1,
                "k" => 1u64 << 10,
                "m" => 1 << 20,
                "g" => 1 << 30,
                "t" => 1u64 << 40,
                _ => return Err(format!("unknown size unit in {s:?} (use k, M, G or T)")),
            };
            (&s[..i], m)
        }
        None => (s, 1),
    };
    let n: f64 = num.trim().parse().map_err(|_| format!("bad size {s:?}"))?;
    if !(n.is_finite() && n > 0.0) {
        return Err(format!("bad size {s:?}"));
    }
    Ok((n * mult as f64) as u64)
}

pub fn mkfs(a: MkfsArgs) -> anyhow::Result<()> {
    let mut readers = Vec::with_capacity(a.layers.len());
    let mut total = 0;
    for p in &a.layers {
        let f = File::open(p).with_context(|| format!("opening layer {}", p.display()))?;
        total += f.metadata()?.len();
        readers.push(BufReader::with_capacity(1 << 20, f));
    }
    let opts = Options {
        size: a.size,
        headroom: a.headroom,
        ..Default::default()
    };
    let stats = write_image(readers, total, &a.output, &opts, a.quiet)
        .with_context(|| format!("writing {}", a.output.display()))?;
    report(&a.output, &stats, a.quiet);
    Ok(())
}

pub fn image_mkfs(ctx: &Context, a: ImageMkfsArgs) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let found = resolve::find(&store.read_index()?, &ctx.registries()?, &a.reference)?;
    let opts = Options {
        size: a.size,
        headroom: a.headroom,
        ..Default::default()
    };
    let Some(output) = a.output else {
        let (path, built) = cached_rootfs(&store, &found.record, &opts, a.quiet)
            .with_context(|| format!("building the base filesystem of {}", a.reference))?;
        if !a.quiet && !built {
            eprintln!("Using cached {}", path.display());
        }
        println!("{}", path.display());
        return Ok(());
    };
    let (readers, total) = layer_readers(&store, &found.record)?;
    let stats = write_image(readers, total, &output, &opts, a.quiet)
        .with_context(|| format!("writing {} from {}", output.display(), a.reference))?;
    report(&output, &stats, a.quiet);
    Ok(())
}

/// The store's base filesystem for an image (built once, then cached).
/// Returns (path, whether this call built it).
pub fn cached_rootfs(
    store: &Store,
    rec: &ImageRecord,
    opts: &Options,
    quiet: bool,
) -> anyhow::Result<(PathBuf, bool)> {
    let mut bar: Option<indicatif::ProgressBar> = None;
    let r = skiff_runtime::rootfs::cached(store, rec, opts, &mut |done, total| {
        bar.get_or_insert_with(|| crate::progress::bytes_bar(quiet, total, "Writing ext4"))
            .set_position(done);
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let (path, stats) = r?;
    if let Some(s) = &stats {
        report(&path, s, quiet);
    }
    Ok((path, stats.is_some()))
}

fn report(out: &Path, s: &writer::Stats, quiet: bool) {
    if !quiet {
        eprintln!(
            "Wrote {}: {} entries, {} of content, {} filesystem ({} free)",
            out.display(),
            s.entries,
            human_size(s.content_bytes),
            human_size(s.image_bytes),
            human_size(s.free_blocks * 4096),
        );
    }
}

/// Opens an image's layer blobs in order.
pub fn layer_readers(
    store: &Store,
    rec: &ImageRecord,
) -> anyhow::Result<(Vec<BufReader<File>>, u64)> {
    Ok(skiff_runtime::rootfs::layer_readers(store, rec)?)
}

/// Writes to a temp file beside `out` and renames (see skiff_runtime::rootfs).
pub fn write_image(
    readers: Vec<BufReader<File>>,
    total: u64,
    out: &Path,
    opts: &Options,
    quiet: bool,
) -> anyhow::Result<writer::Stats> {
    let bar = crate::progress::bytes_bar(quiet, total, "Writing ext4");
    let r = skiff_runtime::rootfs::write_image(readers, total, out, opts, &mut |n, _| {
        bar.set_position(n)
    });
    bar.finish_and_clear();
    Ok(r?)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4G"), Ok(4 << 30));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("4X").is_err());
        assert!(parse_size("-1G").is_err());
        assert!(parse_size("").is_err());
    }
}
