//! Layers of stages that the output image does not contain are kept only
//! unpacked: their step cache entries are pending, and a later build that
//! outputs such a stage writes the blobs from the unpacked folders without
//! running the steps again. Runs the real binary as root over a busybox
//! base made with `forge import`.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{Fixture, make_busybox_rootfs, stderr, succeeded};

/// A builder stage with a RUN that writes random bytes (so a step that
/// runs again gives other content) and a COPY, and a final stage that
/// copies one file out of it.
const DOCKERFILE: &str = "FROM busybox AS builder\n\
    RUN head -c 300000 /dev/urandom > /random && echo built > /note\n\
    COPY hello.txt /hello.txt\n\
    FROM scratch\n\
    COPY --from=builder /random /random\n";

/// Makes the fixture with the Dockerfile and imports `busybox`; `None`
/// when the test is not root or busybox is missing and the test skips.
fn setup(test: &str) -> Option<Fixture> {
    if !forge_testkit::require_root(test) || !forge_testkit::require_tool("busybox") {
        return None;
    }
    let fixture = Fixture::new();
    fs::write(fixture.path("context/Dockerfile"), DOCKERFILE).expect("Dockerfile");
    let rootfs = fixture.path("busybox.tar");
    make_busybox_rootfs(&rootfs);
    succeeded(&fixture.forge(
        "store",
        &["import", rootfs.to_str().expect("UTF-8 path"), "busybox"],
    ));
    Some(fixture)
}

/// Builds the context with `--output type=local` into `dest` and
/// returns the progress output.
fn build(fixture: &Fixture, extra: &[&str], dest: &Path) -> String {
    let context = fixture.path("context");
    let output = format!("type=local,dest={}", dest.display());
    let mut args = vec!["build", "--progress", "plain", "--output", &output];
    args.extend_from_slice(extra);
    args.push(context.to_str().expect("UTF-8 path"));
    let result = fixture.forge("store", &args);
    succeeded(&result);
    stderr(&result)
}

/// Returns the step cache entries whose layer is kept only unpacked, with
/// the diff id of each.
fn pending_entries(store: &Path) -> Vec<(PathBuf, String)> {
    let mut pending = Vec::new();
    for item in fs::read_dir(store.join("forge/steps")).expect("step cache folder") {
        let path = item.expect("step cache entry").path();
        let file: serde_json::Value =
            serde_json::from_slice(&fs::read(&path).expect("read entry")).expect("entry JSON");
        let entry = &file["entry"];
        if !entry["pending"].is_null() {
            assert!(
                entry["layer"].is_null(),
                "{path:?} has a blob and is pending"
            );
            let diff_id = entry["diff_id"].as_str().expect("pending diff id");
            pending.push((path, diff_id.to_string()));
        }
    }
    pending.sort();
    pending
}

/// Returns the digests of the blobs in the store.
fn blobs(store: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(store.join("blobs/sha256"))
        .expect("blobs folder")
        .map(|item| {
            item.expect("blob")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// Checks that `forge store check` passes and finds no problem.
fn assert_store_clean(fixture: &Fixture) {
    let (clean, checked) = check_store(fixture);
    assert!(clean, "{checked}");
    assert!(checked.contains(": 0 problems"), "{checked}");
}

/// Runs `forge store check`; returns whether it passed, and its output.
fn check_store(fixture: &Fixture) -> (bool, String) {
    let output = fixture.forge("store", &["store", "check"]);
    (
        output.status.success(),
        common::stdout(&output) + &stderr(&output),
    )
}

#[test]
fn output_stage_writes_pending_blobs() {
    let Some(fixture) = setup("output_stage_writes_pending_blobs") else {
        return;
    };
    let store = fixture.path("store");
    let blobs_before = blobs(&store);

    let final_dir = fixture.path("final");
    let log = build(&fixture, &["-t", "app"], &final_dir);
    assert!(!log.contains("Using cache"), "{log}");
    let pending = pending_entries(&store);
    assert_eq!(pending.len(), 2, "the builder's RUN and COPY: {pending:?}");
    for (_, diff_id) in &pending {
        let hex = diff_id.strip_prefix("sha256:").expect("sha256 diff id");
        assert!(
            store.join("forge/unpacked").join(hex).is_dir(),
            "{diff_id} is unpacked"
        );
    }
    // The final image has one layer, its config and its manifest.
    let new_blobs = blobs(&store).len() - blobs_before.len();
    assert_eq!(new_blobs, 3, "only the final stage's layer gets a blob");
    assert_store_clean(&fixture);

    // Outputting the builder stage reuses every step and writes the two
    // pending blobs, so the random bytes are the ones the final image got.
    let builder_dir = fixture.path("builder");
    let log = build(
        &fixture,
        &["--target", "builder", "-t", "builder"],
        &builder_dir,
    );
    assert_eq!(log.matches("Using cache").count(), 2, "{log}");
    assert!(!log.contains("Cache miss"), "{log}");
    let random = fs::read(final_dir.join("random")).expect("final /random");
    assert_eq!(random.len(), 300_000);
    assert_eq!(
        fs::read(builder_dir.join("random")).expect("builder /random"),
        random
    );
    assert_eq!(
        fs::read_to_string(builder_dir.join("hello.txt")).expect("builder /hello.txt"),
        "hello from forge\n"
    );
    assert!(
        pending_entries(&store).is_empty(),
        "the entries now name their blobs"
    );
    assert_store_clean(&fixture);

    // The blobs are real layers: the image of the stage saves and loads
    // into a fresh store, whose unpacked layers come from those blobs.
    let archive = fixture.path("builder.tar");
    succeeded(&fixture.forge(
        "store",
        &[
            "save",
            "-o",
            archive.to_str().expect("UTF-8 path"),
            "builder",
        ],
    ));
    succeeded(&fixture.forge(
        "other",
        &["load", "-i", archive.to_str().expect("UTF-8 path")],
    ));
    let loaded = fixture.path("loaded");
    let context = fixture.path("context");
    fs::write(
        context.join("Dockerfile.loaded"),
        "FROM builder\nRUN cmp /random /random && cat /note > /seen\n",
    )
    .expect("Dockerfile.loaded");
    let output = format!("type=local,dest={}", loaded.display());
    succeeded(
        &fixture.forge(
            "other",
            &[
                "build",
                "--progress",
                "plain",
                "-f",
                context
                    .join("Dockerfile.loaded")
                    .to_str()
                    .expect("UTF-8 path"),
                "--output",
                &output,
                context.to_str().expect("UTF-8 path"),
            ],
        ),
    );
    assert_eq!(
        fs::read(loaded.join("random")).expect("loaded /random"),
        random
    );
    assert_eq!(
        fs::read_to_string(loaded.join("seen")).expect("loaded /seen"),
        "built\n"
    );
}

#[test]
fn lost_unpacked_layer_reruns_step() {
    let Some(fixture) = setup("lost_unpacked_layer_reruns_step") else {
        return;
    };
    let store = fixture.path("store");
    let first = fixture.path("first");
    build(&fixture, &["-t", "app"], &first);
    let pending = pending_entries(&store);
    assert_eq!(pending.len(), 2, "{pending:?}");

    // Remove the unpacked folders of both pending layers, as a damaged
    // store would lose them: check reports the entries, and a build runs
    // the steps again instead of failing.
    for (_, diff_id) in &pending {
        let hex = diff_id.strip_prefix("sha256:").expect("sha256 diff id");
        fs::remove_dir_all(store.join("forge/unpacked").join(hex)).expect("remove unpacked");
    }
    let (clean, checked) = check_store(&fixture);
    assert!(!clean, "{checked}");
    assert!(checked.contains("is missing"), "{checked}");

    let second = fixture.path("second");
    let log = build(&fixture, &["-t", "app"], &second);
    assert!(
        log.contains("RUN head -c 300000") && !log.contains("Using cache"),
        "the builder's steps run again: {log}"
    );
    let first_random = fs::read(first.join("random")).expect("first /random");
    let second_random = fs::read(second.join("random")).expect("second /random");
    assert_ne!(first_random, second_random, "the RUN ran again");
    assert_store_clean(&fixture);

    // `store check --repair` and `prune` drop an entry whose folder is
    // gone, and keep the others.
    let pending = pending_entries(&store);
    assert_eq!(pending.len(), 2, "{pending:?}");
    let (entry, diff_id) = &pending[0];
    let hex = diff_id.strip_prefix("sha256:").expect("sha256 diff id");
    fs::remove_dir_all(store.join("forge/unpacked").join(hex)).expect("remove unpacked");
    succeeded(&fixture.forge("store", &["prune"]));
    assert!(
        !entry.exists(),
        "prune removed the entry that lost its layer"
    );
    assert_eq!(pending_entries(&store).len(), 1);
    assert_store_clean(&fixture);
}

#[test]
fn damaged_pending_folder_is_replaced() {
    let Some(fixture) = setup("damaged_pending_folder_is_replaced") else {
        return;
    };
    let store = fixture.path("store");
    build(&fixture, &["-t", "app"], &fixture.path("first"));
    let pending = pending_entries(&store);
    assert_eq!(pending.len(), 2, "{pending:?}");

    // A file added to both pending folders changes their diff ids, so the
    // builds that need their blobs run the steps again and later steps do
    // not see the file.
    for (_, diff_id) in &pending {
        let hex = diff_id.strip_prefix("sha256:").expect("sha256 diff id");
        fs::write(store.join("forge/unpacked").join(hex).join("tampered"), "x").expect("tamper");
    }
    let log = build(
        &fixture,
        &["--target", "builder", "-t", "builder"],
        &fixture.path("builder"),
    );
    assert!(log.contains("the cached layer cannot be used"), "{log}");
    assert!(!fixture.path("builder/tampered").exists());

    let context = fixture.path("context");
    fs::write(
        context.join("Dockerfile.check"),
        "FROM builder\nRUN test ! -e /tampered && test -s /random\n",
    )
    .expect("Dockerfile.check");
    succeeded(
        &fixture.forge(
            "store",
            &[
                "build",
                "--progress",
                "plain",
                "-f",
                context
                    .join("Dockerfile.check")
                    .to_str()
                    .expect("UTF-8 path"),
                context.to_str().expect("UTF-8 path"),
            ],
        ),
    );
    assert_store_clean(&fixture);
}
