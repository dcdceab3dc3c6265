//! One module per `forge` subcommand.

pub mod build;
pub mod history;
pub mod images;
pub mod import;
pub mod inspect;
pub mod kill;
pub mod load;
pub mod login;
pub mod logout;
pub mod logs;
pub mod parse;
pub mod prune;
pub mod ps;
pub mod pull;
pub mod push;
pub mod rm;
pub mod rmi;
pub mod run;
pub mod save;
pub mod stop;
pub mod store;
pub mod tag;

/// Turns the errors of a command that went on after failures into its
/// result: the last error is returned for `exit` to report, the earlier
/// ones are printed here so that each is reported once.
pub(crate) fn combine_errors(mut errors: Vec<anyhow::Error>) -> anyhow::Result<()> {
    let Some(last) = errors.pop() else {
        return Ok(());
    };
    #[allow(clippy::print_stderr)]
    for error in &errors {
        eprintln!("error: {error:#}");
    }
    Err(last)
}
