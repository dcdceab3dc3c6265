//! `forge import`: turn a root file system tar into a one-layer image, like
//! `docker import`.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use forge_cache::archive::{
    ConfigChange, ImportOptions, Platform, RootlessOwners, import_rootfs_with_owners,
};
use forge_parser::instructions::{CommandLine, Expandable, InstructionKind, KeyValue};

use crate::Globals;
use crate::names::normalise;

/// The instructions `--change` accepts, as `docker import` does.
const ALLOWED_CHANGES: &str =
    "CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME and WORKDIR";

/// Arguments of `forge import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The root file system tar, plain, gzip or zstd; `-` reads standard
    /// input.
    #[arg(value_name = "FILE|-")]
    file: PathBuf,

    /// The name of the new image, `NAME[:TAG]`; the tag defaults to
    /// `latest`. Without a name the image is listed as `<none>` and found by
    /// its id until it is tagged or `forge prune` removes it.
    #[arg(value_name = "NAME[:TAG]")]
    name: Option<String>,

    /// A Dockerfile instruction to apply to the image config, such as
    /// `CMD ["sh"]` or `ENV PATH=/bin`; may be repeated. One of CMD,
    /// ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME,
    /// WORKDIR.
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    changes: Vec<String>,

    /// The comment of the image's history entry.
    #[arg(short = 'm', long = "message", value_name = "TEXT")]
    message: Option<String>,

    /// The platform the image declares, `OS/ARCH[/VARIANT]`.
    #[arg(long, value_name = "PLATFORM", default_value = "linux/amd64", value_parser = parse_platform)]
    platform: Platform,
}

/// Runs `forge import` and prints the new image id.
pub fn run(globals: &Globals, args: &ImportArgs) -> anyhow::Result<()> {
    let name = args.name.as_deref().map(normalise).transpose()?;
    let changes = args
        .changes
        .iter()
        .map(|text| parse_change(text))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let options = ImportOptions {
        name,
        changes,
        comment: args.message.clone(),
        platform: args.platform.clone(),
        ..ImportOptions::default()
    };

    let store = globals.open_store()?;
    let reader: Box<dyn Read + Send> = if args.file.as_os_str() == "-" {
        Box::new(io::stdin())
    } else {
        let file = File::open(&args.file).with_context(|| {
            format!(
                "failed to open `{}`; give the path of a root file system tar, or - for standard input",
                args.file.display()
            )
        })?;
        Box::new(file)
    };
    // Without root, the owners the tar records are set from inside the
    // user namespace that RUN steps use, when subordinate ids exist.
    let set_owners = |dir: &std::path::Path, owners: &[forge_cache::layer::RecordedOwner]| {
        forge_builder::sandbox::set_layer_owners(dir, owners)
            .map_err(|error| Box::new(error) as Box<dyn std::error::Error + Send + Sync>)
    };
    let owners = forge_builder::sandbox::rootless_id_map().map(|id_map| RootlessOwners {
        set_owners: &set_owners,
        id_map,
    });
    let imported = import_rootfs_with_owners(&store, reader, &options, owners)?;

    let mut out = io::stdout().lock();
    writeln!(out, "{}", imported.image_id)?;
    Ok(out.flush()?)
}

fn parse_platform(text: &str) -> Result<Platform, String> {
    let mut parts = text.split('/');
    let (Some(os), Some(architecture)) = (parts.next(), parts.next()) else {
        return Err(format!(
            "invalid platform `{text}`: expected OS/ARCH[/VARIANT], such as linux/amd64"
        ));
    };
    let variant = parts.next().map(str::to_string);
    if os.is_empty() || architecture.is_empty() || parts.next().is_some() {
        return Err(format!(
            "invalid platform `{text}`: expected OS/ARCH[/VARIANT], such as linux/amd64"
        ));
    }
    Ok(Platform {
        os: os.to_string(),
        architecture: architecture.to_string(),
        variant,
    })
}

/// Parses one `--change` value as a Dockerfile instruction and turns it
/// into the config change it makes.
///
/// # Errors
/// When the text is not one instruction, is an instruction that `--change`
/// does not allow, or uses a variable in a value that must be typed.
fn parse_change(text: &str) -> anyhow::Result<ConfigChange> {
    let dockerfile = forge_parser::instructions::parse(&format!("FROM scratch\n{text}\n"))
        .map_err(|error| anyhow::anyhow!("{error}"))
        .with_context(|| format!("invalid --change `{text}`"))?;
    if dockerfile.stages.len() != 1 {
        anyhow::bail!(
            "invalid --change `{text}`: FROM is not allowed; use one of {ALLOWED_CHANGES}"
        );
    }
    let instructions: Vec<_> = dockerfile
        .stages
        .iter()
        .flat_map(|stage| &stage.instructions)
        .collect();
    let [instruction] = instructions.as_slice() else {
        anyhow::bail!(
            "invalid --change `{text}`: give exactly one instruction, such as 'CMD [\"sh\"]'"
        );
    };
    to_change(&instruction.kind).with_context(|| format!("invalid --change `{text}`"))
}

fn to_change(kind: &InstructionKind) -> anyhow::Result<ConfigChange> {
    let change = match kind {
        InstructionKind::Cmd(command) => ConfigChange::Cmd(exec_form(command)),
        InstructionKind::Entrypoint(command) => ConfigChange::Entrypoint(exec_form(command)),
        InstructionKind::Env(pairs) => ConfigChange::Env(key_values(pairs)),
        InstructionKind::Label(pairs) => ConfigChange::Label(key_values(pairs)),
        InstructionKind::Expose(ports) => ConfigChange::Expose(
            ports
                .iter()
                .map(|port| match port {
                    Expandable::Literal(range) if range.start == range.end => {
                        Ok(format!("{}/{}", range.start, range.protocol.as_str()))
                    }
                    Expandable::Literal(range) => Ok(format!(
                        "{}-{}/{}",
                        range.start,
                        range.end,
                        range.protocol.as_str()
                    )),
                    Expandable::Unexpanded(text) => Err(no_variables(text)),
                })
                .collect::<anyhow::Result<_>>()?,
        ),
        InstructionKind::Onbuild(trigger) => ConfigChange::OnBuild(trigger.original.clone()),
        InstructionKind::Stopsignal(signal) => ConfigChange::StopSignal(signal.clone()),
        InstructionKind::User(user) => ConfigChange::User(match &user.group {
            Some(group) => format!("{}:{group}", user.user),
            None => user.user.clone(),
        }),
        InstructionKind::Volume(paths) => ConfigChange::Volume(paths.clone()),
        InstructionKind::Workdir(dir) => ConfigChange::Workdir(dir.clone()),
        other => anyhow::bail!(
            "{} is not allowed in --change; use one of {ALLOWED_CHANGES}",
            other.keyword()
        ),
    };
    Ok(change)
}

/// Returns the exec form of a command: a shell-form command runs through
/// `/bin/sh -c`, as Docker stores it.
fn exec_form(command: &CommandLine) -> Vec<String> {
    match command {
        CommandLine::Exec(args) => args.clone(),
        CommandLine::Shell(text) => vec!["/bin/sh".into(), "-c".into(), text.clone()],
    }
}

/// Returns the pairs with quotes removed.
// NOTE: `$VAR` in a value is kept as written; Docker expands it from the
// image's environment, which an imported image starts without.
fn key_values(pairs: &[KeyValue]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|pair| (pair.key.clone(), pair.value.value.clone()))
        .collect()
}

fn no_variables(text: &str) -> anyhow::Error {
    anyhow::anyhow!("`{text}` contains a variable, which --change does not expand; write the value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_cmd_exec_form() {
        let change = parse_change(r#"CMD ["sh", "-c", "echo hi"]"#).unwrap();
        assert_eq!(
            change,
            ConfigChange::Cmd(vec!["sh".into(), "-c".into(), "echo hi".into()])
        );
    }

    #[test]
    fn change_entrypoint_shell_form() {
        let change = parse_change("ENTRYPOINT exec top -b").unwrap();
        assert_eq!(
            change,
            ConfigChange::Entrypoint(vec!["/bin/sh".into(), "-c".into(), "exec top -b".into()])
        );
    }

    #[test]
    fn change_env_and_label_pairs() {
        assert_eq!(
            parse_change(r#"ENV A=1 B="two words""#).unwrap(),
            ConfigChange::Env(vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words".into())
            ])
        );
        assert_eq!(
            parse_change("LABEL org.example.team=build").unwrap(),
            ConfigChange::Label(vec![("org.example.team".into(), "build".into())])
        );
    }

    #[test]
    fn change_expose_ports() {
        assert_eq!(
            parse_change("EXPOSE 80 53/udp 8000-8002").unwrap(),
            ConfigChange::Expose(vec![
                "80/tcp".into(),
                "53/udp".into(),
                "8000-8002/tcp".into()
            ])
        );
    }

    #[test]
    fn change_user_workdir_volume_signal_onbuild() {
        assert_eq!(
            parse_change("USER app:staff").unwrap(),
            ConfigChange::User("app:staff".into())
        );
        assert_eq!(
            parse_change("WORKDIR /srv").unwrap(),
            ConfigChange::Workdir("/srv".into())
        );
        assert_eq!(
            parse_change(r#"VOLUME ["/data"]"#).unwrap(),
            ConfigChange::Volume(vec!["/data".into()])
        );
        assert_eq!(
            parse_change("STOPSIGNAL SIGINT").unwrap(),
            ConfigChange::StopSignal("SIGINT".into())
        );
        assert_eq!(
            parse_change("ONBUILD RUN make").unwrap(),
            ConfigChange::OnBuild("RUN make".into())
        );
    }

    #[test]
    fn change_rejects_run() {
        let error = format!("{:#}", parse_change("RUN make").unwrap_err());
        assert!(error.contains("RUN is not allowed"), "{error}");
        assert!(error.contains("CMD, ENTRYPOINT"), "{error}");
    }

    #[test]
    fn change_rejects_two_instructions() {
        let error = format!("{:#}", parse_change("CMD a\nCMD b").unwrap_err());
        assert!(error.contains("exactly one"), "{error}");
    }

    #[test]
    fn change_rejects_from() {
        let error = format!("{:#}", parse_change("FROM busybox").unwrap_err());
        assert!(error.contains("FROM is not allowed"), "{error}");
    }

    #[test]
    fn change_rejects_invalid_syntax() {
        let error = format!("{:#}", parse_change("EXPOSE http").unwrap_err());
        assert!(error.contains("invalid --change `EXPOSE http`"), "{error}");
    }

    #[test]
    fn platform_parses_variant() {
        let platform = parse_platform("linux/arm64/v8").unwrap();
        assert_eq!(platform.os, "linux");
        assert_eq!(platform.architecture, "arm64");
        assert_eq!(platform.variant.as_deref(), Some("v8"));
        assert!(parse_platform("linux").is_err());
        assert!(parse_platform("linux/amd64/v1/x").is_err());
    }
}
