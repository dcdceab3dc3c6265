//! Test fixtures: a real distribution registry on a loopback port, a
//! scripted fake HTTP server, and a small image built in memory.

// Each test binary uses a different part of this module, and tests report
// skipped checks on stderr.
#![allow(dead_code, clippy::print_stderr)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use forge_registry::client::sha256_digest;
use oci_spec::image::Digest;

/// Checks whether an external tool is on PATH.
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Returns false (skip) when `tool` is missing outside CI; fails in CI.
pub fn require(tool: &str) -> bool {
    if have(tool) {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("`{tool}` is required in CI but is not installed");
    }
    eprintln!("skipping: `{tool}` is not installed");
    false
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

/// Options of a test registry.
#[derive(Default)]
pub struct RegistryOptions {
    /// Require HTTP Basic authentication with this user and password.
    pub basic_auth: Option<(String, String)>,
    /// Serve HTTPS with a self-signed certificate for 127.0.0.1.
    pub tls: bool,
}

/// A `docker-registry` process; dropping it kills and reaps the process.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// The registry's stderr log.
    pub log: PathBuf,
    /// The self-signed certificate (PEM) when TLS is on.
    pub certificate: Option<Vec<u8>>,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    /// Starts a registry, or returns `None` (skip) when `docker-registry` is
    /// missing outside CI.
    pub fn start(options: RegistryOptions) -> Option<Registry> {
        if !require("docker-registry") {
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let mut extra = String::new();
        let mut tls = String::new();
        let mut certificate = None;

        if let Some((user, password)) = &options.basic_auth {
            assert!(require("htpasswd"), "htpasswd (apache2-utils) is needed");
            let output = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("run htpasswd");
            assert!(output.status.success(), "htpasswd failed");
            let path = dir.path().join("htpasswd");
            std::fs::write(&path, &output.stdout).expect("write htpasswd");
            extra.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: forge-test\n    path: {}\n",
                path.display()
            ));
        }
        if options.tls {
            assert!(require("openssl"), "openssl is needed");
            let cert = dir.path().join("cert.pem");
            let key = dir.path().join("key.pem");
            let status = Command::new("openssl")
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                ])
                .args(["-subj", "/CN=127.0.0.1"])
                .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&cert)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("run openssl");
            assert!(status.success(), "openssl failed to make a certificate");
            certificate = Some(std::fs::read(&cert).expect("read certificate"));
            tls = format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            );
        }

        // The port is free when picked but may be taken before the registry
        // binds it, so try a few.
        for _ in 0..3 {
            let port = free_port();
            let host = format!("127.0.0.1:{port}");
            let config = dir.path().join("config.yml");
            let yaml = format!(
                "version: 0.1\nlog:\n  level: info\n  formatter: text\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n{extra}http:\n  addr: {host}\n{tls}",
                dir.path().join("data").display()
            );
            std::fs::write(&config, yaml).expect("write registry config");
            let log = dir.path().join(format!("registry-{port}.log"));
            let stderr = std::fs::File::create(&log).expect("create log");
            let mut child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .expect("start docker-registry");

            let deadline = Instant::now() + Duration::from_secs(15);
            let mut up = false;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if TcpStream::connect(&host).is_ok() {
                    up = true;
                    break;
                }
                thread::sleep(Duration::from_millis(50));
            }
            if up {
                return Some(Registry {
                    child,
                    host,
                    log,
                    certificate,
                    _dir: dir,
                });
            }
            let _ = child.kill();
            let _ = child.wait();
            eprintln!(
                "registry on {host} did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        panic!("docker-registry did not start on any of three ports");
    }

    /// Counts completed requests in the log with this method whose URI
    /// contains `uri_part`.
    pub fn count_requests(&self, method: &str, uri_part: &str) -> usize {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        log.lines()
            .filter(|line| line.contains("response completed"))
            .filter(|line| line.contains(&format!("http.request.method={method} ")))
            .filter(|line| {
                line.split("http.request.uri=")
                    .nth(1)
                    .is_some_and(|uri| uri.split(' ').next().unwrap_or("").contains(uri_part))
            })
            .count()
    }
}

/// A blob held in memory.
#[derive(Clone)]
pub struct Blob {
    pub bytes: Vec<u8>,
    pub digest: Digest,
    pub media_type: &'static str,
}

impl Blob {
    pub fn new(bytes: Vec<u8>, media_type: &'static str) -> Blob {
        let digest = sha256_digest(&bytes);
        Blob {
            bytes,
            digest,
            media_type,
        }
    }

    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
}

/// A one-layer image: an uncompressed tar layer, a config and a manifest.
pub struct TestImage {
    pub layer: Blob,
    pub config: Blob,
    pub manifest: Vec<u8>,
}

/// Builds an image whose layer holds one file with `content`.
pub fn make_image(content: &[u8]) -> TestImage {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_cksum();
    builder
        .append_data(&mut header, "hello.txt", content)
        .expect("append to tar");
    let layer = Blob::new(
        builder.into_inner().expect("finish tar"),
        "application/vnd.oci.image.layer.v1.tar",
    );
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [layer.digest.to_string()]},
    });
    let config = Blob::new(
        serde_json::to_vec(&config).expect("config JSON"),
        "application/vnd.oci.image.config.v1+json",
    );
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": forge_registry::client::OCI_MANIFEST,
        "config": {"mediaType": config.media_type, "digest": config.digest.to_string(), "size": config.size()},
        "layers": [{"mediaType": layer.media_type, "digest": layer.digest.to_string(), "size": layer.size()}],
    });
    TestImage {
        layer,
        config,
        manifest: serde_json::to_vec(&manifest).expect("manifest JSON"),
    }
}

/// A request seen by [`FakeServer`].
#[derive(Clone, Debug)]
pub struct SeenRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl SeenRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What [`FakeServer`] sends back.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Send only this many body bytes, then close the connection.
    pub cut_after: Option<usize>,
}

impl Reply {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.into(),
            cut_after: None,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

type Handler = dyn Fn(&SeenRequest, usize) -> Reply + Send + Sync;

/// A scripted HTTP/1.1 server on a loopback port: one request per
/// connection, answered by a handler that sees the request and its index.
pub struct FakeServer {
    pub host: String,
    pub requests: Arc<Mutex<Vec<SeenRequest>>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl FakeServer {
    pub fn start(
        handler: impl Fn(&SeenRequest, usize) -> Reply + Send + Sync + 'static,
    ) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake server");
        let host = listener.local_addr().expect("address").to_string();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let (seen, stopped) = (requests.clone(), stop.clone());
        let thread = thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                serve_one(stream, &*handler, &seen);
            }
        });
        FakeServer {
            host,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    pub fn seen(&self) -> Vec<SeenRequest> {
        self.requests.lock().expect("requests lock").clone()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.host);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve_one(stream: TcpStream, handler: &Handler, seen: &Mutex<Vec<SeenRequest>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let path = parts.next().unwrap_or("").to_owned();
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 {
            break;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    let length = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    let _ = reader.read_exact(&mut body);
    let request = SeenRequest {
        method,
        path,
        headers,
        body,
    };
    let index = {
        let mut seen = seen.lock().expect("requests lock");
        seen.push(request.clone());
        seen.len() - 1
    };
    let reply = handler(&request, index);

    let mut stream = stream;
    let mut head = format!(
        "HTTP/1.1 {} Fake\r\nConnection: close\r\nContent-Length: {}\r\n",
        reply.status,
        reply.body.len()
    );
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    if request.method != "HEAD" {
        let end = reply
            .cut_after
            .unwrap_or(reply.body.len())
            .min(reply.body.len());
        let _ = stream.write_all(&reply.body[..end]);
    }
    let _ = stream.flush();
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// A credential provider with fixed answers.
pub struct StaticCredentials(pub Option<forge_registry::Credential>);

impl forge_registry::CredentialProvider for StaticCredentials {
    fn credential(
        &self,
        _registry: &str,
    ) -> Result<Option<forge_registry::Credential>, forge_registry::CredentialError> {
        Ok(self.0.clone())
    }
}

/// Reads a file into memory for assertions.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
