//! Plans stages from a parsed Dockerfile, computes each step's cache key,
//! runs RUN steps in the sandbox, copies files for COPY and ADD, and
//! assembles the image config and history.

pub mod sandbox;
