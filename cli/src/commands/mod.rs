//! One module per `forge` subcommand.

pub mod parse;
