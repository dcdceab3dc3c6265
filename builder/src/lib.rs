//! Plans stages from a parsed Dockerfile, computes each step's cache key,
//! runs RUN steps in the sandbox, copies files for COPY and ADD, and
//! assembles the image config and history.
//!
//! [`Builder::build`] is the entry point: it plans the stages
//! ([`plan`]), runs each needed stage's steps with the step cache
//! ([`build`], [`cachekey`]), and writes and names the image ([`image`]).
//! Progress goes to a [`progress::Progress`] implementation; RUN steps go
//! through an [`executor::StepExecutor`].

pub mod build;
pub mod cachekey;
pub mod config;
pub mod context;
pub mod copy;
pub mod error;
pub mod executor;
pub mod image;
pub mod plan;
pub mod progress;
pub mod rootfs;
pub mod runner;
pub mod sandbox;
pub mod secrets;
pub mod transfer;

pub use build::{BuildOptions, BuildOutput, Builder};
pub use error::BuildError;
