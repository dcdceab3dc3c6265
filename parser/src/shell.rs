//! Shell-word lexing and variable expansion with Dockerfile semantics.
