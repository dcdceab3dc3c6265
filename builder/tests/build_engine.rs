//! Builds Dockerfiles with the library API into stores in temporary
//! folders, and checks the saved images, the step cache and the errors.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;

use forge_builder::context::Context;
use forge_builder::progress::{ProgressEvent, RecordingProgress};
use forge_builder::{BuildError, BuildOptions, BuildOutput, Builder};
use forge_cache::store::Store;
use serde_json::Value;

/// A store and a context folder in one temporary folder.
struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    context: std::path::PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("temporary folder");
        let store = Store::open(&dir.path().join("store")).expect("store opens");
        let context = dir.path().join("context");
        fs::create_dir(&context).expect("context folder");
        Fixture {
            _dir: dir,
            store,
            context,
        }
    }

    fn write(&self, path: &str, content: &str) {
        let path = self.context.join(path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("parent folder");
        }
        fs::write(path, content).expect("context file");
    }

    fn build_with(
        &self,
        dockerfile: &str,
        options: BuildOptions,
    ) -> (Result<BuildOutput, BuildError>, Vec<ProgressEvent>) {
        let parsed = forge_parser::instructions::parse(dockerfile).expect("Dockerfile parses");
        let context = Context::open(&self.context, None).expect("context opens");
        let progress = RecordingProgress::default();
        let builder = Builder {
            store: &self.store,
            context: Some(&context),
            executor: None,
            progress: &progress,
        };
        let options = BuildOptions {
            dockerfile_name: "Dockerfile".into(),
            ..options
        };
        let result = builder.build(&parsed, &options);
        (result, progress.events())
    }

    fn build(&self, dockerfile: &str) -> BuildOutput {
        let (result, _) = self.build_with(dockerfile, BuildOptions::default());
        match result {
            Ok(output) => output,
            Err(error) => panic!("build failed: {error}"),
        }
    }

    fn json(&self, digest: &str) -> Value {
        let digest = forge_cache::store::parse_digest(digest).expect("digest");
        self.store.get_json(&digest).expect("blob is JSON")
    }

    fn config(&self, output: &BuildOutput) -> Value {
        self.json(&output.image_id)
    }

    fn manifest(&self, output: &BuildOutput) -> Value {
        self.json(output.manifest.digest().as_ref())
    }
}

/// Counts cache hits and misses in the events, in step order.
fn cache_results(events: &[ProgressEvent]) -> Vec<(usize, bool)> {
    events
        .iter()
        .filter_map(|event| match event {
            ProgressEvent::CacheHit { step } => Some((step.number, true)),
            ProgressEvent::CacheMiss { step, .. } => Some((step.number, false)),
            _ => None,
        })
        .collect()
}

fn miss_reasons(events: &[ProgressEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|event| match event {
            ProgressEvent::CacheMiss {
                reason: Some(reason),
                ..
            } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

fn schemas() -> Option<forge_testkit::oci_schema::OciSchemas> {
    let dir = forge_testkit::conformance_dir()?;
    Some(
        forge_testkit::oci_schema::OciSchemas::load(&dir.join("oci-schema")).expect("schemas load"),
    )
}

#[test]
fn config_instructions_reach_image_config() {
    let fixture = Fixture::new();
    let output = fixture.build(
        r#"FROM scratch
ENV A=1 B="two words"
ENV C=$A-${B}
LABEL org.example.a=$A "quoted key"=v
EXPOSE 80 53/udp 8000-8001
USER app:staff
WORKDIR /app
WORKDIR sub
VOLUME /data /cache
ENTRYPOINT ["/bin/app"]
CMD ["--help"]
SHELL ["/bin/bash", "-c"]
STOPSIGNAL SIGINT
HEALTHCHECK --interval=30s --timeout=5s --start-period=1m --retries=3 CMD curl -f http://localhost/
MAINTAINER someone@example.com
ONBUILD RUN echo triggered
"#,
    );
    let config = fixture.config(&output);
    let inner = &config["config"];
    assert_eq!(
        inner["Env"],
        serde_json::json!(["A=1", "B=two words", "C=1-two words"])
    );
    assert_eq!(inner["Labels"]["org.example.a"], "1");
    assert_eq!(inner["Labels"]["quoted key"], "v");
    for port in ["80/tcp", "53/udp", "8000/tcp", "8001/tcp"] {
        assert!(
            inner["ExposedPorts"].get(port).is_some(),
            "missing port {port}"
        );
    }
    assert_eq!(inner["User"], "app:staff");
    assert_eq!(inner["WorkingDir"], "/app/sub");
    assert!(inner["Volumes"].get("/data").is_some());
    assert!(inner["Volumes"].get("/cache").is_some());
    assert_eq!(inner["Entrypoint"], serde_json::json!(["/bin/app"]));
    assert_eq!(inner["Cmd"], serde_json::json!(["--help"]));
    assert_eq!(inner["Shell"], serde_json::json!(["/bin/bash", "-c"]));
    assert_eq!(inner["StopSignal"], "SIGINT");
    assert_eq!(
        inner["Healthcheck"]["Test"],
        serde_json::json!(["CMD-SHELL", "curl -f http://localhost/"])
    );
    assert_eq!(inner["Healthcheck"]["Interval"], 30_000_000_000u64);
    assert_eq!(inner["Healthcheck"]["Timeout"], 5_000_000_000u64);
    assert_eq!(inner["Healthcheck"]["StartPeriod"], 60_000_000_000u64);
    assert_eq!(inner["Healthcheck"]["Retries"], 3);
    assert_eq!(inner["OnBuild"], serde_json::json!(["RUN echo triggered"]));
    assert_eq!(config["author"], "someone@example.com");
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["os"], "linux");

    // Two WORKDIRs create directories; every other step is config only.
    let history = config["history"].as_array().expect("history");
    assert_eq!(history.len(), 15);
    let layered: Vec<&str> = history
        .iter()
        .filter(|entry| entry.get("empty_layer").is_none())
        .filter_map(|entry| entry["created_by"].as_str())
        .collect();
    assert_eq!(layered, vec!["WORKDIR /app", "WORKDIR sub"]);
    assert_eq!(
        config["rootfs"]["diff_ids"].as_array().map(Vec::len),
        Some(2)
    );
    let manifest = fixture.manifest(&output);
    assert_eq!(manifest["layers"].as_array().map(Vec::len), Some(2));

    if let Some(schemas) = schemas() {
        let config_bytes = serde_json::to_vec(&config).expect("encode");
        assert_eq!(
            schemas.validate(forge_testkit::oci_schema::CONFIG, &config_bytes),
            Ok(())
        );
        let manifest_bytes = serde_json::to_vec(&manifest).expect("encode");
        assert_eq!(
            schemas.validate(forge_testkit::oci_schema::MANIFEST, &manifest_bytes),
            Ok(())
        );
    }
}

#[test]
fn entrypoint_clears_inherited_cmd() {
    let fixture = Fixture::new();
    let (base, _) = fixture.build_with(
        "FROM scratch\nCMD [\"sh\"]\n",
        BuildOptions {
            tags: vec!["base-with-cmd".into()],
            ..BuildOptions::default()
        },
    );
    assert!(base.is_ok());
    let output = fixture.build("FROM base-with-cmd\nENTRYPOINT [\"/app\"]\n");
    let config = fixture.config(&output);
    assert!(config["config"].get("Cmd").is_none(), "{config}");
    assert_eq!(config["config"]["Entrypoint"], serde_json::json!(["/app"]));
}

#[test]
fn copy_from_scratch_writes_layer() {
    let fixture = Fixture::new();
    fixture.write("app/main.txt", "hello\n");
    let output = fixture.build("FROM scratch\nCOPY app /app\n");
    let config = fixture.config(&output);
    let history = config["history"].as_array().expect("history");
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["created_by"], "COPY app /app # buildkit");
    let manifest = fixture.manifest(&output);
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1);
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
}

#[test]
fn tags_use_familiar_names() {
    let fixture = Fixture::new();
    let (result, _) = fixture.build_with(
        "FROM scratch\nENV A=1\n",
        BuildOptions {
            tags: vec!["docker.io/library/app".into(), "name/app:v1".into()],
            ..BuildOptions::default()
        },
    );
    let output = result.expect("build succeeds");
    assert_eq!(
        output.names,
        vec!["app:latest".to_string(), "name/app:v1".to_string()]
    );
    let resolved = fixture.store.resolve("app:latest").expect("name resolves");
    assert_eq!(resolved.digest(), output.manifest.digest());
}

#[test]
fn multi_stage_target_and_copy_from() {
    let fixture = Fixture::new();
    fixture.write("a.txt", "a\n");
    let dockerfile = "FROM scratch AS build\nCOPY a.txt /out/a.txt\n\
                      FROM scratch AS unused\nCOPY does-not-exist /x\n\
                      FROM scratch AS final\nCOPY --from=build /out /dist\nENV STAGE=final\n\
                      FROM scratch AS other\nENV STAGE=other\n";
    let (result, events) = fixture.build_with(
        dockerfile,
        BuildOptions {
            target: Some("final".into()),
            ..BuildOptions::default()
        },
    );
    let output = result.expect("the unused stage is skipped");
    let config = fixture.config(&output);
    assert_eq!(config["config"]["Env"], serde_json::json!(["STAGE=final"]));
    assert_eq!(
        config["rootfs"]["diff_ids"].as_array().map(Vec::len),
        Some(1)
    );
    let started: Vec<String> = events
        .iter()
        .filter_map(|event| match event {
            ProgressEvent::StepStarted { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect();
    assert!(
        !started.iter().any(|text| text.contains("does-not-exist")),
        "{started:?}"
    );
    assert!(
        !started.iter().any(|text| text.contains("STAGE=other")),
        "{started:?}"
    );
}

#[test]
fn copy_from_stage_index() {
    let fixture = Fixture::new();
    fixture.write("a.txt", "a\n");
    let output = fixture
        .build("FROM scratch\nCOPY a.txt /a.txt\nFROM scratch\nCOPY --from=0 /a.txt /b.txt\n");
    let config = fixture.config(&output);
    assert_eq!(
        config["history"][0]["created_by"],
        "COPY --from=0 /a.txt /b.txt # buildkit"
    );
}

#[test]
fn onbuild_triggers_run_in_child() {
    let fixture = Fixture::new();
    let (base, _) = fixture.build_with(
        "FROM scratch\nENV BASE=1\nONBUILD ENV TRIGGERED=yes\n",
        BuildOptions {
            tags: vec!["onbuild-base".into()],
            ..BuildOptions::default()
        },
    );
    assert!(base.is_ok());
    let output = fixture.build("FROM onbuild-base\nENV CHILD=1\n");
    let config = fixture.config(&output);
    assert_eq!(
        config["config"]["Env"],
        serde_json::json!(["BASE=1", "TRIGGERED=yes", "CHILD=1"])
    );
    assert!(config["config"].get("OnBuild").is_none(), "{config}");
}

#[test]
fn global_args_need_redeclaration() {
    let fixture = Fixture::new();
    let output =
        fixture.build("ARG V=global\nFROM scratch\nENV BEFORE=${V:-unset}\nARG V\nENV AFTER=$V\n");
    let config = fixture.config(&output);
    assert_eq!(
        config["config"]["Env"],
        serde_json::json!(["BEFORE=unset", "AFTER=global"])
    );
}

#[test]
fn proxy_args_stay_out_of_history() {
    let fixture = Fixture::new();
    let (result, _) = fixture.build_with(
        "FROM scratch\nENV P=$HTTP_PROXY\n",
        BuildOptions {
            build_args: BTreeMap::from([(
                "HTTP_PROXY".to_string(),
                "http://proxy:3128".to_string(),
            )]),
            ..BuildOptions::default()
        },
    );
    let output = result.expect("build succeeds");
    let config = fixture.config(&output);
    assert_eq!(
        config["config"]["Env"],
        serde_json::json!(["P=http://proxy:3128"])
    );
    let history = serde_json::to_string(&config["history"]).expect("encode");
    assert!(!history.contains("proxy:3128"), "{history}");
}

#[test]
fn labels_from_options_reach_config() {
    let fixture = Fixture::new();
    let (result, _) = fixture.build_with(
        "FROM scratch\nLABEL a=1\n",
        BuildOptions {
            labels: BTreeMap::from([("b".to_string(), "2".to_string())]),
            ..BuildOptions::default()
        },
    );
    let config = fixture.config(&result.expect("build succeeds"));
    assert_eq!(config["config"]["Labels"]["a"], "1");
    assert_eq!(config["config"]["Labels"]["b"], "2");
}

#[test]
fn mtime_only_change_is_hit() {
    let fixture = Fixture::new();
    fixture.write("f.txt", "same\n");
    let dockerfile = "FROM scratch\nCOPY f.txt /f.txt\n";
    let first = fixture.build(dockerfile);
    let file = fixture.context.join("f.txt");
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    fs::File::options()
        .write(true)
        .open(&file)
        .and_then(|handle| handle.set_modified(later))
        .expect("mtime changes");
    let (second, events) = fixture.build_with(dockerfile, BuildOptions::default());
    assert_eq!(cache_results(&events), vec![(2, true)]);
    assert_eq!(second.expect("second build").image_id, first.image_id);
}

#[test]
fn same_size_and_mtime_new_bytes_is_miss() {
    let fixture = Fixture::new();
    fixture.write("f.txt", "aaaa\n");
    let file = fixture.context.join("f.txt");
    let mtime = fs::metadata(&file)
        .and_then(|meta| meta.modified())
        .expect("mtime");
    let dockerfile = "FROM scratch\nCOPY f.txt /f.txt\n";
    fixture.build(dockerfile);
    fixture.write("f.txt", "bbbb\n");
    fs::File::options()
        .write(true)
        .open(&file)
        .and_then(|handle| handle.set_modified(mtime))
        .expect("mtime restored");
    let (_, events) = fixture.build_with(dockerfile, BuildOptions::default());
    assert_eq!(cache_results(&events), vec![(2, false)]);
    let reasons = miss_reasons(&events);
    assert!(
        reasons.iter().any(|reason| reason.contains("f.txt")),
        "{reasons:?}"
    );
}

#[test]
fn mode_change_is_miss() {
    let fixture = Fixture::new();
    fixture.write("run.sh", "echo\n");
    let dockerfile = "FROM scratch\nCOPY run.sh /run.sh\n";
    fixture.build(dockerfile);
    fs::set_permissions(
        fixture.context.join("run.sh"),
        fs::Permissions::from_mode(0o755),
    )
    .expect("chmod");
    let (_, events) = fixture.build_with(dockerfile, BuildOptions::default());
    assert_eq!(cache_results(&events), vec![(2, false)]);
}

#[test]
fn build_arg_busts_only_steps_that_read_it() {
    let fixture = Fixture::new();
    fixture.write("f.txt", "f\n");
    let dockerfile = "FROM scratch\nARG V=1\nCOPY f.txt /f.txt\nENV A=1\nENV V=$V\nENV B=2\n";
    let args = |value: &str| BuildOptions {
        build_args: BTreeMap::from([("V".to_string(), value.to_string())]),
        ..BuildOptions::default()
    };
    let (first, _) = fixture.build_with(dockerfile, args("1"));
    assert!(first.is_ok());
    let (second, events) = fixture.build_with(dockerfile, args("2"));
    assert!(second.is_ok());
    assert_eq!(
        cache_results(&events),
        vec![(2, true), (3, true), (4, true), (5, false), (6, false)]
    );
    let reasons = miss_reasons(&events);
    assert!(
        reasons
            .first()
            .is_some_and(|reason| reason.contains("build argument `V`")),
        "{reasons:?}"
    );
}

#[test]
fn change_in_one_stage_keeps_independent_stage() {
    let fixture = Fixture::new();
    fixture.write("a.txt", "a\n");
    fixture.write("b.txt", "b\n");
    let dockerfile = "FROM scratch AS a\nCOPY a.txt /a\nFROM scratch AS b\nCOPY b.txt /b\n\
                      FROM scratch\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n";
    fixture.build(dockerfile);
    fixture.write("b.txt", "changed\n");
    let (result, events) = fixture.build_with(dockerfile, BuildOptions::default());
    assert!(result.is_ok());
    let results = cache_results(&events);
    // Step 2 copies a.txt (stage a), step 4 b.txt (stage b), then the
    // final stage copies from a (hit) and from b (miss).
    assert!(results.contains(&(2, true)), "{results:?}");
    assert!(results.contains(&(4, false)), "{results:?}");
    assert!(results.contains(&(6, true)), "{results:?}");
    assert!(results.contains(&(7, false)), "{results:?}");
}

#[test]
fn no_cache_executes_every_step() {
    let fixture = Fixture::new();
    let dockerfile = "FROM scratch\nENV A=1\n";
    fixture.build(dockerfile);
    let (_, events) = fixture.build_with(
        dockerfile,
        BuildOptions {
            no_cache: true,
            ..BuildOptions::default()
        },
    );
    assert_eq!(cache_results(&events), vec![(2, false)]);
}

#[test]
fn source_date_epoch_reproduces_manifest() {
    let build = || {
        let fixture = Fixture::new();
        fixture.write("app/a.txt", "content\n");
        fixture.write("app/b.txt", "other\n");
        let (result, _) = fixture.build_with(
            "FROM scratch\nCOPY app /app\nWORKDIR /srv\nENV A=1\n",
            BuildOptions {
                source_date_epoch: Some(1_700_000_000),
                ..BuildOptions::default()
            },
        );
        let output = result.expect("build succeeds");
        let created = fixture.config(&output)["created"].clone();
        (output.manifest.digest().to_string(), created)
    };
    let (first, created) = build();
    let (second, _) = build();
    assert_eq!(first, second);
    assert_eq!(created, "2023-11-14T22:13:20Z");
}

fn build_error(fixture: &Fixture, dockerfile: &str) -> String {
    let (result, _) = fixture.build_with(dockerfile, BuildOptions::default());
    match result {
        Ok(_) => panic!("the build of {dockerfile:?} succeeded"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn missing_source_names_path() {
    let fixture = Fixture::new();
    let message = build_error(&fixture, "FROM scratch\nCOPY nothing-here.txt /\n");
    assert!(message.contains("nothing-here.txt"), "{message}");
    assert!(message.contains(":2:"), "{message}");
}

#[test]
fn source_outside_context_names_path() {
    let fixture = Fixture::new();
    let message = build_error(&fixture, "FROM scratch\nCOPY ../outside.txt /\n");
    assert!(message.contains("outside.txt"), "{message}");
}

#[test]
fn unknown_from_stage_names_value() {
    let fixture = Fixture::new();
    let message = build_error(
        &fixture,
        "FROM scratch AS one\nFROM scratch\nCOPY --from=nosuch /a /a\n",
    );
    assert!(message.contains("nosuch"), "{message}");
    assert!(message.contains("one"), "{message}");
}

#[test]
fn unknown_chown_user_names_value() {
    let fixture = Fixture::new();
    fixture.write("f.txt", "f\n");
    let message = build_error(&fixture, "FROM scratch\nCOPY --chown=ghost f.txt /f.txt\n");
    assert!(message.contains("ghost"), "{message}");
}

#[test]
fn run_without_executor_names_line() {
    let fixture = Fixture::new();
    let message = build_error(&fixture, "FROM scratch\nENV A=1\nRUN echo hi\n");
    assert!(message.contains(":3:"), "{message}");
    assert!(message.contains("RUN is not supported yet"), "{message}");
}

#[test]
fn missing_base_image_suggests_pull() {
    let fixture = Fixture::new();
    let message = build_error(&fixture, "FROM nosuchimage:1\n");
    assert!(message.contains("nosuchimage:1"), "{message}");
    assert!(message.contains("forge pull"), "{message}");
}

#[test]
fn unknown_target_is_error() {
    let fixture = Fixture::new();
    let (result, _) = fixture.build_with(
        "FROM scratch AS a\n",
        BuildOptions {
            target: Some("b".into()),
            ..BuildOptions::default()
        },
    );
    let message = result
        .err()
        .map(|error| error.to_string())
        .unwrap_or_default();
    assert!(message.contains("`b`"), "{message}");
}

#[test]
fn unused_build_arg_warns() {
    let fixture = Fixture::new();
    let (_, events) = fixture.build_with(
        "FROM scratch\n",
        BuildOptions {
            build_args: BTreeMap::from([("UNUSED".to_string(), "1".to_string())]),
            ..BuildOptions::default()
        },
    );
    let warned = events.iter().any(
        |event| matches!(event, ProgressEvent::Warning { message } if message.contains("UNUSED")),
    );
    assert!(warned, "{events:?}");
}

#[test]
fn workdir_layer_only_when_missing() {
    let fixture = Fixture::new();
    fixture.write("app/x", "x\n");
    let output = fixture.build("FROM scratch\nCOPY app /app\nWORKDIR /app\nWORKDIR /new\n");
    let config = fixture.config(&output);
    let history = config["history"].as_array().expect("history");
    assert_eq!(history[1]["empty_layer"], true, "{history:?}");
    assert!(history[2].get("empty_layer").is_none(), "{history:?}");
    assert_eq!(
        config["rootfs"]["diff_ids"].as_array().map(Vec::len),
        Some(2)
    );
}

/// An executor that records each spec, writes `ran.txt` into the upper
/// folder and exits with `exit_code`.
struct FakeExecutor {
    exit_code: i32,
    specs: std::sync::Mutex<Vec<forge_builder::sandbox::RunSpec>>,
}

impl forge_builder::executor::StepExecutor for FakeExecutor {
    fn run(
        &self,
        spec: &forge_builder::sandbox::RunSpec,
        output: &mut dyn forge_builder::sandbox::OutputSink,
    ) -> Result<forge_builder::sandbox::RunOutcome, forge_builder::sandbox::SandboxError> {
        if let Ok(mut specs) = self.specs.lock() {
            specs.push(spec.clone());
        }
        fs::write(spec.upper.join("ran.txt"), "ran\n").expect("upper is writable");
        output.stdout(b"first line\nsecond ");
        output.stdout(b"line\n");
        output.stderr(b"to stderr");
        Ok(forge_builder::sandbox::RunOutcome {
            exit_code: Some(self.exit_code),
            signal: None,
            tail: vec!["to stderr".into()],
        })
    }
}

fn build_with_executor(
    fixture: &Fixture,
    dockerfile: &str,
    executor: &FakeExecutor,
) -> (Result<BuildOutput, BuildError>, Vec<ProgressEvent>) {
    let parsed = forge_parser::instructions::parse(dockerfile).expect("Dockerfile parses");
    let context = Context::open(&fixture.context, None).expect("context opens");
    let progress = RecordingProgress::default();
    let builder = Builder {
        store: &fixture.store,
        context: Some(&context),
        executor: Some(executor),
        progress: &progress,
    };
    let options = BuildOptions {
        dockerfile_name: "Dockerfile".into(),
        ..BuildOptions::default()
    };
    (builder.build(&parsed, &options), progress.events())
}

#[test]
fn run_step_uses_executor() {
    let fixture = Fixture::new();
    let executor = FakeExecutor {
        exit_code: 0,
        specs: std::sync::Mutex::new(Vec::new()),
    };
    let dockerfile = "FROM scratch\nARG V=1\nENV E=2\nWORKDIR /w\nUSER 1000\nRUN echo $V\n";
    let (result, events) = build_with_executor(&fixture, dockerfile, &executor);
    let output = result.expect("build succeeds");

    let specs = executor.specs.lock().expect("specs").clone();
    assert_eq!(specs.len(), 1);
    let spec = &specs[0];
    assert_eq!(spec.argv, vec!["/bin/sh", "-c", "echo $V"]);
    assert!(
        spec.env.contains(&("V".to_string(), "1".to_string())),
        "{:?}",
        spec.env
    );
    assert!(
        spec.env.contains(&("E".to_string(), "2".to_string())),
        "{:?}",
        spec.env
    );
    assert_eq!(spec.workdir, "/w");
    assert_eq!(spec.user, "1000");
    assert_eq!(spec.lowers.len(), 1, "the WORKDIR layer is the only lower");

    let config = fixture.config(&output);
    let history = config["history"].as_array().expect("history");
    let last = history.last().expect("RUN entry");
    assert_eq!(
        last["created_by"],
        "RUN |1 V=1 /bin/sh -c echo $V # buildkit"
    );
    assert!(last.get("empty_layer").is_none());
    assert_eq!(
        config["rootfs"]["diff_ids"].as_array().map(Vec::len),
        Some(2)
    );

    let lines: Vec<String> = events
        .iter()
        .filter_map(|event| match event {
            ProgressEvent::Output { line, .. } => Some(line.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(lines, vec!["first line", "second line", "to stderr"]);

    // The same build again takes RUN from the cache.
    let (again, events) = build_with_executor(&fixture, dockerfile, &executor);
    assert!(again.is_ok());
    assert_eq!(executor.specs.lock().expect("specs").len(), 1);
    assert!(
        cache_results(&events).iter().all(|(_, hit)| *hit),
        "{events:?}"
    );
}

#[test]
fn failed_run_names_exit_code() {
    let fixture = Fixture::new();
    let executor = FakeExecutor {
        exit_code: 3,
        specs: std::sync::Mutex::new(Vec::new()),
    };
    let (result, _) = build_with_executor(&fixture, "FROM scratch\nRUN false\n", &executor);
    let message = result
        .err()
        .map(|error| error.to_string())
        .unwrap_or_default();
    assert!(message.contains(":2:"), "{message}");
    assert!(message.contains("exit code 3"), "{message}");
    assert!(message.contains("to stderr"), "{message}");
}

#[test]
fn build_arg_busts_run_that_sees_it() {
    let fixture = Fixture::new();
    let executor = FakeExecutor {
        exit_code: 0,
        specs: std::sync::Mutex::new(Vec::new()),
    };
    let dockerfile = "FROM scratch\nRUN echo before\nARG V\nRUN echo after\n";
    let parsed = forge_parser::instructions::parse(dockerfile).expect("parses");
    let context = Context::open(&fixture.context, None).expect("context opens");
    for (value, expected) in [("1", 2), ("2", 3)] {
        let progress = RecordingProgress::default();
        let builder = Builder {
            store: &fixture.store,
            context: Some(&context),
            executor: Some(&executor),
            progress: &progress,
        };
        let options = BuildOptions {
            dockerfile_name: "Dockerfile".into(),
            build_args: BTreeMap::from([("V".to_string(), value.to_string())]),
            ..BuildOptions::default()
        };
        assert!(builder.build(&parsed, &options).is_ok());
        // The first build runs both RUNs; the second only the one after
        // `ARG V`.
        assert_eq!(executor.specs.lock().expect("specs").len(), expected);
    }
}

#[test]
fn no_cache_filter_limits_to_stage() {
    let fixture = Fixture::new();
    let dockerfile = "FROM scratch AS first\nENV A=1\nFROM first AS second\nENV B=1\n";
    fixture.build(dockerfile);
    let (result, events) = fixture.build_with(
        dockerfile,
        BuildOptions {
            no_cache_filter: vec!["second".into()],
            ..BuildOptions::default()
        },
    );
    assert!(result.is_ok());
    assert_eq!(cache_results(&events), vec![(2, true), (4, false)]);
}

#[test]
fn miss_reason_ignores_other_contexts() {
    let fixture = Fixture::new();
    fixture.write("f.txt", "one\n");
    let dockerfile = "FROM scratch\nCOPY f.txt /f.txt\n";
    fixture.build(dockerfile);

    // Another project whose Dockerfile has the same relative name builds
    // into the same store: its first build has nothing to compare with.
    let other = fixture.context.with_file_name("other");
    fs::create_dir(&other).expect("second context folder");
    fs::write(other.join("f.txt"), "two\n").expect("context file");
    let parsed = forge_parser::instructions::parse(dockerfile).expect("Dockerfile parses");
    let context = Context::open(&other, None).expect("context opens");
    let progress = RecordingProgress::default();
    let builder = Builder {
        store: &fixture.store,
        context: Some(&context),
        executor: None,
        progress: &progress,
    };
    let options = BuildOptions {
        dockerfile_name: "Dockerfile".into(),
        ..BuildOptions::default()
    };
    builder
        .build(&parsed, &options)
        .expect("build in the second context");
    let events = progress.events();
    assert_eq!(cache_results(&events), vec![(2, false)]);
    assert_eq!(miss_reasons(&events), Vec::<String>::new());

    // The first project still compares with its own latest build.
    fixture.write("f.txt", "three\n");
    let (result, events) = fixture.build_with(dockerfile, BuildOptions::default());
    assert!(result.is_ok());
    let reasons = miss_reasons(&events);
    assert!(
        reasons.iter().any(|reason| reason.contains("f.txt")),
        "{reasons:?}"
    );
}

#[test]
fn cached_rebuild_rewrites_no_index() {
    let fixture = Fixture::new();
    fixture.write("f.txt", "f\n");
    let dockerfile = "FROM scratch\nCOPY f.txt /f.txt\nENV A=1\n";
    let options = || BuildOptions {
        tags: vec!["app".into()],
        ..BuildOptions::default()
    };
    let (first, _) = fixture.build_with(dockerfile, options());
    assert!(first.is_ok());
    let index = fixture.store.root().join("index.json");
    let modified = |path: &std::path::Path| {
        fs::metadata(path)
            .and_then(|metadata| metadata.modified())
            .expect("mtime")
    };
    let index_before = modified(&index);
    let blobs = fs::read_dir(fixture.store.root().join("blobs/sha256"))
        .expect("blob folder")
        .count();
    std::thread::sleep(std::time::Duration::from_millis(20));

    let (second, events) = fixture.build_with(dockerfile, options());
    assert!(second.is_ok());
    assert_eq!(cache_results(&events), vec![(2, true), (3, true)]);
    assert_eq!(modified(&index), index_before, "index.json was rewritten");
    let blobs_after = fs::read_dir(fixture.store.root().join("blobs/sha256"))
        .expect("blob folder")
        .count();
    assert_eq!(blobs_after, blobs);
}
