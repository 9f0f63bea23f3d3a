//! skiff-build: Containerfiles into images, and `image check`.
//!
//! The data flow of a build: [`containerfile`] parses the file into stages;
//! [`context`] resolves COPY sources in the build context; [`layer`] writes
//! each step's change as a compressed, reproducible layer; [`executor`] runs
//! the stages (RUN in a skiff micro-VM), caches steps and assembles the image
//! in the store. [`imagefs`] reads an image's final file tree from its layers,
//! which [`check`] uses to say whether every binary in it can start.

/// `image check`: will each ELF file of an image run, and why not.
pub mod check;
/// Containerfile/Dockerfile syntax: directives, instructions, heredocs, variables.
pub mod containerfile;
/// The build context: ignore files, COPY sources, content hashes.
pub mod context;
/// Running stages: steps, cache, RUN in a VM, the image in the store.
pub mod executor;
/// An image's file tree from its layers (whiteouts applied).
pub mod imagefs;
/// Layers: reproducible tar, compression, digests; what COPY and ADD write.
pub mod layer;
