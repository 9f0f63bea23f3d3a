//! Containers: the cached base filesystem of an image, the per-container
//! writable overlay and state directory, the process spec merged from the image
//! config and the user's overrides, and running that process in a sandbox with
//! its stdio, signals, terminal size and exit code carried across.

pub mod container;
pub mod image_config;
pub mod logs;
pub mod overlay;
pub mod paths;
pub mod rootfs;
pub mod run;
pub mod vmbase;

pub use paths::Paths;
