//! `.dockerignore` reading and matching.
