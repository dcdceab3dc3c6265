//! The client against a scripted fake registry: retries, resumed
//! downloads, corrupt blobs and the bearer token flow.

mod common;

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{FakeServer, Reply, StaticCredentials};
use forge_registry::client::{BlobSink, OCI_MANIFEST, sha256_digest};
use forge_registry::{Client, ClientConfig, ClientError, Credential, Reference};

fn fast_config() -> ClientConfig {
    ClientConfig {
        max_retries: 3,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        ..ClientConfig::default()
    }
}

fn client(credential: Option<Credential>) -> Client {
    Client::new(fast_config(), Box::new(StaticCredentials(credential)))
        .unwrap_or_else(|e| panic!("client: {e}"))
}

fn reference(host: &str, name: &str) -> Reference {
    format!("{host}/{name}")
        .parse()
        .unwrap_or_else(|e| panic!("bad test reference: {e}"))
}

fn blob_bytes() -> Vec<u8> {
    (0..10_000u32).map(|i| (i * 7 % 256) as u8).collect()
}

/// A sink that counts calls to `discard`.
#[derive(Default)]
struct RecordingSink {
    bytes: Vec<u8>,
    discards: usize,
}

impl Write for RecordingSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl BlobSink for RecordingSink {
    fn discard(&mut self) -> io::Result<()> {
        self.bytes.clear();
        self.discards += 1;
        Ok(())
    }
}

#[test]
fn pull_resumes_after_dropped_connection() {
    let bytes = blob_bytes();
    let served = bytes.clone();
    let server = FakeServer::start(move |request, _| {
        if request.path == "/v2/" {
            return Reply::new(200, "{}");
        }
        match request.header("range") {
            None => {
                let mut reply = Reply::new(200, served.clone());
                reply.cut_after = Some(4000);
                reply
            }
            Some(range) => {
                let start: usize = range
                    .trim_start_matches("bytes=")
                    .trim_end_matches('-')
                    .parse()
                    .unwrap_or(0);
                let total = served.len();
                Reply::new(206, served[start..].to_vec()).header(
                    "Content-Range",
                    &format!("bytes {start}-{}/{total}", total - 1),
                )
            }
        }
    });
    let digest = sha256_digest(&bytes);
    let target = reference(&server.host, "app");
    let mut sink = RecordingSink::default();
    let written = client(None)
        .pull_blob(&target, &digest, Some(bytes.len() as u64), &mut sink)
        .unwrap_or_else(|e| panic!("pull: {e}"));

    assert_eq!(written, bytes.len() as u64);
    assert_eq!(sink.bytes, bytes);
    assert_eq!(sink.discards, 0);
    let ranges: Vec<String> = server
        .seen()
        .iter()
        .filter_map(|r| r.header("range").map(str::to_owned))
        .collect();
    assert_eq!(ranges, vec!["bytes=4000-".to_owned()]);
}

#[test]
fn pull_skips_resent_prefix_without_range_support() {
    let bytes = blob_bytes();
    let served = bytes.clone();
    let blob_requests = Arc::new(AtomicUsize::new(0));
    let counter = blob_requests.clone();
    let server = FakeServer::start(move |request, _| {
        if request.path == "/v2/" {
            return Reply::new(200, "{}");
        }
        let mut reply = Reply::new(200, served.clone());
        if counter.fetch_add(1, Ordering::SeqCst) == 0 {
            reply.cut_after = Some(1234);
        }
        reply
    });
    let digest = sha256_digest(&bytes);
    let mut sink = Vec::new();
    client(None)
        .pull_blob(&reference(&server.host, "app"), &digest, None, &mut sink)
        .unwrap_or_else(|e| panic!("pull: {e}"));
    assert_eq!(sink, bytes);
    assert_eq!(blob_requests.load(Ordering::SeqCst), 2);
}

#[test]
fn corrupt_blob_is_discarded() {
    let bytes = blob_bytes();
    let mut corrupt = bytes.clone();
    corrupt[5000] ^= 0xff;
    let server = FakeServer::start(move |request, _| {
        if request.path == "/v2/" {
            return Reply::new(200, "{}");
        }
        Reply::new(200, corrupt.clone())
    });
    let digest = sha256_digest(&bytes);
    let mut sink = RecordingSink::default();
    let result = client(None).pull_blob(
        &reference(&server.host, "app"),
        &digest,
        Some(bytes.len() as u64),
        &mut sink,
    );
    match result {
        Err(ClientError::DigestMismatch { url, expected, .. }) => {
            assert_eq!(expected, digest.to_string());
            assert!(url.contains(&format!("/v2/app/blobs/{digest}")), "{url}");
        }
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    assert_eq!(sink.discards, 1);
    assert!(sink.bytes.is_empty());
}

#[test]
fn oversized_blob_is_rejected() {
    let bytes = blob_bytes();
    let served = bytes.clone();
    let server = FakeServer::start(move |request, _| {
        if request.path == "/v2/" {
            return Reply::new(200, "{}");
        }
        Reply::new(200, served.clone())
    });
    let mut sink = RecordingSink::default();
    let result = client(None).pull_blob(
        &reference(&server.host, "app"),
        &sha256_digest(&bytes),
        Some(100),
        &mut sink,
    );
    assert!(
        matches!(result, Err(ClientError::SizeMismatch { expected: 100, .. })),
        "{result:?}"
    );
    assert_eq!(sink.discards, 1);
}

#[test]
fn transient_statuses_are_retried() {
    let manifest = br#"{"schemaVersion":2}"#.to_vec();
    let served = manifest.clone();
    let server = FakeServer::start(move |request, index| {
        if request.path == "/v2/" {
            return Reply::new(200, "{}");
        }
        match index {
            1 => Reply::new(503, "busy"),
            2 => Reply::new(429, "slow down").header("Retry-After", "0"),
            _ => Reply::new(200, served.clone()).header("Content-Type", OCI_MANIFEST),
        }
    });
    let fetched = client(None)
        .get_manifest(&reference(&server.host, "app:v1"))
        .unwrap_or_else(|e| panic!("get manifest: {e}"));
    assert_eq!(fetched.bytes, manifest);
    assert_eq!(fetched.digest, sha256_digest(&manifest));
    let manifest_requests = server
        .seen()
        .iter()
        .filter(|r| r.path.contains("/manifests/"))
        .count();
    assert_eq!(manifest_requests, 3);
}

#[test]
fn retries_are_bounded() {
    let server = FakeServer::start(move |request, _| {
        if request.path == "/v2/" {
            return Reply::new(200, "{}");
        }
        Reply::new(
            502,
            r#"{"errors":[{"code":"UNAVAILABLE","message":"backend down"}]}"#,
        )
    });
    let error = client(None)
        .get_manifest(&reference(&server.host, "app:v1"))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("HTTP 502"), "{error}");
    assert!(error.contains("UNAVAILABLE: backend down"), "{error}");
    assert!(error.contains("/v2/app/manifests/v1"), "{error}");
    let attempts = server
        .seen()
        .iter()
        .filter(|r| r.path.contains("/manifests/"))
        .count();
    assert_eq!(attempts, 4, "one request and three retries");
}

#[test]
fn manifest_digest_is_verified() {
    let server = FakeServer::start(move |request, _| {
        if request.path == "/v2/" {
            return Reply::new(200, "{}");
        }
        Reply::new(200, r#"{"schemaVersion":2}"#).header("Content-Type", OCI_MANIFEST)
    });
    let claimed = sha256_digest(b"some other manifest");
    let target = reference(&server.host, "app").with_digest(claimed.clone());
    match client(None).get_manifest(&target) {
        Err(ClientError::DigestMismatch { expected, .. }) => {
            assert_eq!(expected, claimed.to_string());
        }
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
}

/// Starts a fake registry that sends clients to its own token service.
fn token_server(password: &'static str) -> FakeServer {
    FakeServer::start(move |request, _| {
        if request.path.starts_with("/token") {
            let expected = format!("Basic {}", base64_encode(&format!("alice:{password}")));
            if request.header("authorization") != Some(expected.as_str()) {
                return Reply::new(401, r#"{"details":"incorrect username or password"}"#);
            }
            return Reply::new(200, r#"{"token":"tok-123","expires_in":300}"#);
        }
        if request.header("authorization") != Some("Bearer tok-123") {
            let challenge = format!(
                r#"Bearer realm="http://{}/token",service="fake-registry""#,
                request.header("host").unwrap_or_default()
            );
            return Reply::new(
                401,
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
            )
            .header("WWW-Authenticate", &challenge);
        }
        if request.path.contains("/blobs/uploads/") {
            return Reply::new(201, "").header("Location", "/v2/dst/blobs/x");
        }
        Reply::new(200, r#"{"schemaVersion":2}"#).header("Content-Type", OCI_MANIFEST)
    })
}

fn base64_encode(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[test]
fn bearer_tokens_are_fetched_and_cached() {
    let server = token_server("pw-1");
    let client = client(Some(Credential::UserPassword {
        username: "alice".into(),
        password: "pw-1".into(),
    }));
    let target = reference(&server.host, "team/app:v1");
    client
        .get_manifest(&target)
        .unwrap_or_else(|e| panic!("first get: {e}"));
    client
        .get_manifest(&target)
        .unwrap_or_else(|e| panic!("second get: {e}"));

    let seen = server.seen();
    let token_requests: Vec<&str> = seen
        .iter()
        .filter(|r| r.path.starts_with("/token"))
        .map(|r| r.path.as_str())
        .collect();
    assert_eq!(token_requests.len(), 1, "{token_requests:?}");
    assert!(token_requests[0].contains("service=fake-registry"));
    assert!(token_requests[0].contains("scope=repository%3Ateam%2Fapp%3Apull"));

    // A mount requests push on the target and pull on the source.
    let source = reference(&server.host, "team/base:v1");
    let mounted = client
        .mount_blob(&target, &source, &sha256_digest(b"layer"))
        .unwrap_or_else(|e| panic!("mount: {e}"));
    assert!(mounted);
    let seen = server.seen();
    let mount_token = seen
        .iter()
        .filter(|r| r.path.starts_with("/token"))
        .map(|r| r.path.clone())
        .next_back()
        .unwrap_or_default();
    assert!(
        mount_token.contains("scope=repository%3Ateam%2Fapp%3Apull%2Cpush"),
        "{mount_token}"
    );
    assert!(
        mount_token.contains("scope=repository%3Ateam%2Fbase%3Apull"),
        "{mount_token}"
    );
}

#[test]
fn rejected_token_request_hides_password() {
    let server = token_server("right-password");
    let client = client(Some(Credential::UserPassword {
        username: "alice".into(),
        password: "hunter2-secret".into(),
    }));
    let error = client
        .get_manifest(&reference(&server.host, "team/app:v1"))
        .err();
    let shown = error.as_ref().map(|e| e.to_string()).unwrap_or_default();
    let debug = format!("{error:?} {client:?}");
    assert!(
        matches!(error, Some(ClientError::Unauthorized { status: 401, .. })),
        "{shown}"
    );
    assert!(shown.contains(&server.host), "{shown}");
    assert!(shown.contains("repository:team/app:pull"), "{shown}");
    assert!(!shown.contains("hunter2-secret"), "{shown}");
    assert!(!debug.contains("hunter2-secret"), "{debug}");
}

#[test]
fn plain_http_token_realm_is_refused_for_remote_hosts() {
    // The registry is on loopback, but its realm points at a host that may
    // not use plain HTTP, so credentials are not sent there.
    let server = FakeServer::start(move |_, _| {
        Reply::new(401, "").header(
            "WWW-Authenticate",
            r#"Bearer realm="http://auth.example.com/token",service="x""#,
        )
    });
    let client = client(Some(Credential::UserPassword {
        username: "alice".into(),
        password: "pw".into(),
    }));
    let error = client.get_manifest(&reference(&server.host, "app")).err();
    assert!(
        matches!(error, Some(ClientError::InsecureRealm { .. })),
        "{error:?}"
    );
}

#[test]
fn upload_location_may_not_downgrade_to_plain_http() {
    let server = FakeServer::start(move |request, _| {
        if request.path == "/v2/" {
            return Reply::new(200, "{}");
        }
        if request.method == "HEAD" {
            return Reply::new(404, "");
        }
        Reply::new(202, "").header("Location", "http://upload.example/v2/app/blobs/uploads/1")
    });
    let bytes = b"layer".to_vec();
    let result = client(None).push_blob(
        &reference(&server.host, "app"),
        &sha256_digest(&bytes),
        bytes.len() as u64,
        &mut bytes.as_slice(),
    );
    let message = result.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("http://upload.example/"), "{message}");
    assert!(message.contains("not HTTPS"), "{message}");
}
