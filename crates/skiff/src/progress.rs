//! Progress bars for blob transfers (one per blob, like docker pull).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use skiff_oci::{Digest, Progress};

pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<Digest, ProgressBar>>,
    verb: &'static str,
}

/// Bars on a terminal; nothing when quiet or when stderr is not a terminal
/// (scripts get the summary lines only).
pub fn for_transfers(quiet: bool, verb: &'static str) -> Arc<dyn Progress> {
    if quiet || !std::io::stderr().is_terminal() {
        return Arc::new(skiff_oci::NoProgress);
    }
    Arc::new(Bars {
        multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10)),
        bars: Mutex::default(),
        verb,
    })
}

impl Bars {
    fn bar(&self, d: &Digest, size: u64) -> ProgressBar {
        let mut bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        bars.entry(d.clone())
            .or_insert_with(|| {
                let b = self.multi.add(ProgressBar::new(size));
                b.set_style(
                    ProgressStyle::with_template("{prefix} {msg:<11} [{bar:30}] {bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                );
                b.set_prefix(d.short().to_owned());
                b
            })
            .clone()
    }
}

impl Progress for Bars {
    fn start(&self, d: &Digest, size: u64, done: u64) {
        let b = self.bar(d, size);
        b.set_length(size);
        b.set_position(done);
        b.set_message(self.verb);
    }
    fn advance(&self, d: &Digest, done: u64) {
        if let Some(b) = self.bars.lock().unwrap_or_else(|p| p.into_inner()).get(d) {
            b.set_position(done);
        }
    }
    fn finish(&self, d: &Digest, skipped: bool) {
        let b = self.bar(d, 0);
        b.set_style(
            ProgressStyle::with_template("{prefix} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b.finish_with_message(if skipped { "Already exists" } else { "Done" });
    }
    fn message(&self, msg: &str) {
        let _ = self.multi.println(msg);
    }
}

/// A byte-count bar for one long job; hidden when quiet or not on a terminal.
pub fn bytes_bar(quiet: bool, total: u64, msg: &'static str) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(10));
    b.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec} {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    b.set_message(msg);
    b
}

/// A spinner for work of unknown length (on a terminal only).
pub fn spinner(msg: &'static str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(10));
    b.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    b.set_message(msg);
    b.enable_steady_tick(std::time::Duration::from_millis(100));
    b
}
