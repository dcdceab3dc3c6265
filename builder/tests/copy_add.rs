//! ADD: local archives in every compression, and URLs from a local server.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use forge_builder::context::{Context, HashCache};
use forge_builder::copy::{AddOptions, CopyError, CopyPlan, CopyRequest, CopySource, CopyStats};
use forge_builder::rootfs::RootView;
use sha2::Digest;

struct Fixture {
    _temp: tempfile::TempDir,
    context: PathBuf,
    upper: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let temp = tempfile::tempdir().unwrap();
        let context = temp.path().join("context");
        let upper = temp.path().join("upper");
        std::fs::create_dir(&context).unwrap();
        std::fs::create_dir(&upper).unwrap();
        Fixture {
            _temp: temp,
            context,
            upper,
        }
    }

    fn add(
        &self,
        sources: &[&str],
        destination: &str,
        add: AddOptions,
    ) -> Result<CopyStats, CopyError> {
        let request = CopyRequest {
            sources: sources.iter().map(|source| source.to_string()).collect(),
            destination: destination.to_string(),
            workdir: "/".to_string(),
            add: Some(add),
            ..CopyRequest::default()
        };
        let context = Context::open(&self.context, None).unwrap();
        let image = RootView::empty();
        let plan = CopyPlan::new(
            CopySource::Context(&context),
            &request,
            &image,
            &HashCache::new(),
        )?;
        plan.apply(&self.upper, &image)
    }

    fn read(&self, path: &str) -> String {
        std::fs::read_to_string(self.upper.join(path))
            .unwrap_or_else(|error| panic!("{path}: {error}"))
    }
}

fn run(command: &mut Command) {
    let status = command.status().unwrap();
    assert!(status.success(), "{command:?} failed");
}

/// Makes `plain.tar` in `dir` with `top.txt` and `sub/inner.txt`.
fn make_tar(dir: &Path) -> PathBuf {
    let payload = dir.join("payload");
    std::fs::create_dir_all(payload.join("sub")).unwrap();
    std::fs::write(payload.join("top.txt"), "top").unwrap();
    std::fs::write(payload.join("sub/inner.txt"), "inner").unwrap();
    let tar = dir.join("plain.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(&payload)
        .arg("-cf")
        .arg(&tar)
        .arg("."));
    std::fs::remove_dir_all(payload).unwrap();
    tar
}

#[test]
fn add_unpacks_each_format() {
    let formats: &[(&str, &[&str])] = &[
        ("plain", &[]),
        ("gzip", &["gzip", "-c"]),
        ("bzip2", &["bzip2", "-c"]),
        ("xz", &["xz", "-c"]),
        ("zstd", &["zstd", "-q", "-c"]),
    ];
    for (name, compressor) in formats {
        let fixture = Fixture::new();
        let tar = make_tar(&fixture.context);
        // The name says nothing about the format: detection is by content.
        let archive = fixture.context.join("archive.bin");
        if compressor.is_empty() {
            std::fs::rename(&tar, &archive).unwrap();
        } else {
            let output = Command::new(compressor[0])
                .args(&compressor[1..])
                .arg(&tar)
                .output()
                .unwrap();
            assert!(output.status.success(), "{name}");
            std::fs::write(&archive, output.stdout).unwrap();
            std::fs::remove_file(&tar).unwrap();
        }

        let stats = fixture
            .add(&["archive.bin"], "/opt/", AddOptions::default())
            .unwrap_or_else(|error| panic!("{name}: {error}"));

        assert_eq!(fixture.read("opt/top.txt"), "top", "{name}");
        assert_eq!(fixture.read("opt/sub/inner.txt"), "inner", "{name}");
        assert!(!fixture.upper.join("opt/archive.bin").exists(), "{name}");
        assert!(stats.unpacked >= 2, "{name}: {stats:?}");
    }
}

#[test]
fn add_unpack_false_copies_archive() {
    let fixture = Fixture::new();
    make_tar(&fixture.context);
    let options = AddOptions {
        unpack: Some(false),
        ..AddOptions::default()
    };
    fixture.add(&["plain.tar"], "/opt/", options).unwrap();
    assert!(fixture.upper.join("opt/plain.tar").is_file());
    assert!(!fixture.upper.join("opt/top.txt").exists());
}

#[test]
fn add_archive_name_without_tar_content() {
    let fixture = Fixture::new();
    std::fs::write(fixture.context.join("fake.tar.gz"), "just text").unwrap();
    fixture
        .add(&["fake.tar.gz"], "/opt/", AddOptions::default())
        .unwrap();
    assert_eq!(fixture.read("opt/fake.tar.gz"), "just text");
}

/// Serves `body` for `requests` connections on 127.0.0.1, then stops.
fn serve(body: &'static [u8], requests: usize) -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        for _ in 0..requests {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|count| count > 2) {
                line.clear();
            }
            let mut stream = stream;
            let header = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(header.as_bytes()).unwrap();
            stream.write_all(body).unwrap();
        }
    });
    (format!("http://{address}"), handle)
}

#[test]
fn add_url_with_checksum() {
    const BODY: &[u8] = b"downloaded content\n";
    let (base, server) = serve(BODY, 2);
    let good = format!("sha256:{}", hex::encode(sha2::Sha256::digest(BODY)));
    let url = format!("{base}/files/tool.sh");

    let fixture = Fixture::new();
    let options = AddOptions {
        checksum: Some(good.clone()),
        ..AddOptions::default()
    };
    fixture.add(&[&url], "/usr/bin/", options).unwrap();
    assert_eq!(fixture.read("usr/bin/tool.sh"), "downloaded content\n");
    let metadata = std::fs::symlink_metadata(fixture.upper.join("usr/bin/tool.sh")).unwrap();
    assert_eq!(metadata.permissions().mode() & 0o7777, 0o600);
    assert_eq!(metadata.mtime(), 784_111_777);

    let bad = format!("sha256:{}", "0".repeat(64));
    let options = AddOptions {
        checksum: Some(bad.clone()),
        ..AddOptions::default()
    };
    let error = fixture.add(&[&url], "/x", options).unwrap_err();
    assert!(
        matches!(error, CopyError::ChecksumMismatch { .. }),
        "{error}"
    );
    let message = error.to_string();
    assert!(message.contains(&bad), "{message}");
    assert!(message.contains(&good), "{message}");
    server.join().unwrap();
}

#[test]
fn add_git_unreachable_names_url() {
    if !forge_testkit::require_tool("git") {
        return;
    }
    let fixture = Fixture::new();
    // Nothing listens on port 1 of the loopback address.
    let error = fixture
        .add(
            &["git://127.0.0.1:1/repo.git#main"],
            "/src",
            AddOptions::default(),
        )
        .unwrap_err();
    assert!(matches!(error, CopyError::Git { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains("git://127.0.0.1:1/repo.git"), "{message}");
    assert!(message.contains("`main`"), "{message}");
}
