//! skiff-oci: image references, registry configuration and credentials, the
//! registry client, the content store and image archives.
//!
//! Nothing here knows about the CLI: errors are typed, progress goes through
//! the [`Progress`] trait.

pub mod archive;
pub mod auth;
pub mod client;
pub mod digest;
pub mod manifest;
pub mod platform;
pub mod progress;
pub mod pull;
pub mod push;
pub mod reference;
pub mod registries;
pub mod store;

pub use digest::Digest;
pub use platform::Platform;
pub use progress::{NoProgress, Progress};
pub use reference::Reference;
pub use store::Store;
