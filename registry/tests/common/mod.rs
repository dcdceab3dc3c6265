//! Test fixtures: a scripted fake HTTP server and a small image built in
//! memory. The real registry comes from `forge_testkit::registry`.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use forge_registry::client::sha256_digest;
use oci_spec::image::Digest;

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
