//! Runs `forge push` and `forge pull` against a real `docker-registry` that
//! requires bearer tokens from a token service started by the test, and
//! through a loopback proxy that drops connections and returns HTTP 500.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Fixture, assert_success, pushed_digest, stdout};
use forge_testkit::registry::{Registry, RegistryOptions};

/// Creates the fixture with a build context of 3 MiB of data that does not
/// compress.
fn data_fixture() -> Fixture {
    let fixture = Fixture::with_empty_context();
    let context = fixture.path("context");
    std::fs::write(context.join("data.bin"), pseudo_random(3 * 1024 * 1024)).expect("context file");
    std::fs::write(
        context.join("Dockerfile"),
        "FROM scratch\nCOPY data.bin /\n",
    )
    .expect("Dockerfile");
    fixture
}

/// Methods that only this file uses.
impl Fixture {
    fn build(&self, store: &str, tag: &str) -> Output {
        let context = self.path("context");
        let context = context.to_str().expect("UTF-8 path");
        self.forge(
            store,
            &[
                "build",
                "--progress",
                "plain",
                "--compression",
                "uncompressed",
                "-t",
                tag,
                context,
            ],
        )
    }
}

/// Bytes that do not compress, from a fixed linear congruential sequence.
fn pseudo_random(length: usize) -> Vec<u8> {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    (0..length)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 56) as u8
        })
        .collect()
}

fn pulled_digest(output: &Output) -> String {
    let text = stdout(output);
    text.lines()
        .find_map(|line| line.strip_prefix("Digest: "))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no digest line in pull output:\n{text}"))
}

/// Encodes `bytes` as unpadded base64url, as JWTs use.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let symbols = chunk.len() + 1;
        for i in 0..symbols {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// Encodes `bytes` as padded standard base64, as the `x5c` header uses.
fn base64_standard(bytes: &[u8]) -> String {
    let mut encoded = base64url(bytes).replace('-', "+").replace('_', "/");
    while encoded.len() % 4 != 0 {
        encoded.push('=');
    }
    encoded
}

/// Decodes `%XX` escapes and `+` of a query value.
fn url_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::new();
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' if index + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                index += 3;
            }
            b'+' => {
                out.push(b' ');
                index += 1;
            }
            other => {
                out.push(other);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A token service on a loopback port that grants every requested scope
/// with RS256 JWTs signed by `openssl` with a key made by the test.
struct TokenService {
    host: String,
    issued: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl TokenService {
    fn start(key: PathBuf, certificate_der: Vec<u8>) -> TokenService {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind token service");
        let host = listener.local_addr().expect("address").to_string();
        let issued = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, stopped) = (issued.clone(), stop.clone());
        let thread = thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                serve_token(stream, &key, &certificate_der, &count);
            }
        });
        TokenService {
            host,
            issued,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for TokenService {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.host);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve_token(stream: TcpStream, key: &Path, certificate_der: &[u8], issued: &AtomicUsize) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
            break;
        }
    }
    let target = request_line.split_whitespace().nth(1).unwrap_or("");
    let query = target.split_once('?').map_or("", |(_, query)| query);
    let mut access = Vec::new();
    for pair in query.split('&') {
        let Some(("scope", value)) = pair.split_once('=') else {
            continue;
        };
        let scope = url_decode(value);
        let parts: Vec<&str> = scope.split(':').collect();
        if let [kind, name, actions] = parts.as_slice() {
            let actions: Vec<&str> = actions.split(',').collect();
            access.push(serde_json::json!({"type": kind, "name": name, "actions": actions}));
        }
    }

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let header = serde_json::json!({
        "typ": "JWT",
        "alg": "RS256",
        "x5c": [base64_standard(certificate_der)],
    });
    let claims = serde_json::json!({
        "iss": "forge-test-issuer",
        "sub": "forge",
        "aud": "forge-test",
        "exp": now + 600,
        "nbf": now - 10,
        "iat": now,
        "jti": format!("token-{}", issued.fetch_add(1, Ordering::SeqCst)),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        base64url(header.to_string().as_bytes()),
        base64url(claims.to_string().as_bytes())
    );
    let mut openssl = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl runs");
    openssl
        .stdin
        .take()
        .expect("openssl stdin")
        .write_all(signing_input.as_bytes())
        .expect("write to openssl");
    let signed = openssl.wait_with_output().expect("openssl finishes");
    let token = format!("{signing_input}.{}", base64url(&signed.stdout));
    let body = serde_json::json!({"token": token, "expires_in": 600}).to_string();

    let mut stream = stream;
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes());
    let _ = stream.shutdown(Shutdown::Both);
}

/// Makes an RSA key and a self-signed certificate for the token issuer.
/// Returns the key path, the certificate path and the certificate in DER.
fn issuer_key(dir: &Path) -> (PathBuf, PathBuf, Vec<u8>) {
    let key = dir.join("issuer-key.pem");
    let certificate = dir.join("issuer-cert.pem");
    let status = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=forge-test-issuer"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&certificate)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl failed to make the issuer key");
    let der = Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(&certificate)
        .output()
        .expect("openssl runs");
    assert!(
        der.status.success(),
        "openssl failed to convert the certificate"
    );
    (key, certificate, der.stdout)
}

#[test]
fn bearer_token_push_and_pull() {
    if !forge_testkit::require_tool("docker-registry") || !forge_testkit::require_tool("openssl") {
        return;
    }
    let fixture = data_fixture();
    let (key, certificate, der) = issuer_key(fixture.dir.path());
    let service = TokenService::start(key, der);
    let extra_config = format!(
        "auth:\n  token:\n    realm: http://{}/token\n    service: forge-test\n    issuer: forge-test-issuer\n    rootcertbundle: {}\n",
        service.host,
        certificate.display()
    );
    let Some(registry) = Registry::start(RegistryOptions {
        extra_config,
        ..RegistryOptions::default()
    }) else {
        return;
    };

    let name = format!("{}/forge/token:v1", registry.host);
    assert_success(&fixture.build("store", &name), "forge build");
    let push = fixture.forge("store", &["push", &name]);
    assert_success(&push, "push with bearer tokens");
    assert!(
        service.issued.load(Ordering::SeqCst) >= 1,
        "the token service issued no token"
    );
    let digest = pushed_digest(&push);

    let pull = fixture.forge("fresh", &["pull", &name]);
    assert_success(&pull, "pull with bearer tokens");
    assert_eq!(pulled_digest(&pull), digest);

    // The registry itself rejects requests without a token, so the pulls
    // above went through the challenge.
    let mut raw = TcpStream::connect(&registry.host).expect("connect to the registry");
    raw.write_all(b"GET /v2/ HTTP/1.1\r\nHost: registry\r\nConnection: close\r\n\r\n")
        .expect("send a request");
    let mut answer = String::new();
    let _ = raw.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(answer.contains("Bearer realm="), "{answer}");
}

/// A TCP proxy on a loopback port in front of `upstream` that returns
/// HTTP 500 on every fifth connection and closes every seventh without an
/// answer, for the first `faulty` connections.
struct FaultyProxy {
    host: String,
    faults: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl FaultyProxy {
    fn start(upstream: String, faulty: usize) -> FaultyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let host = listener.local_addr().expect("address").to_string();
        let faults = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (fault_count, stopped) = (faults.clone(), stop.clone());
        let thread = thread::spawn(move || {
            for (index, stream) in listener.incoming().enumerate() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut client) = stream else { continue };
                if index < faulty && index % 5 == 2 {
                    fault_count.fetch_add(1, Ordering::SeqCst);
                    let mut buffer = [0u8; 4096];
                    let _ = client.set_read_timeout(Some(Duration::from_secs(2)));
                    let _ = client.read(&mut buffer);
                    let _ = client.write_all(
                        b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                if index < faulty && index % 7 == 3 {
                    fault_count.fetch_add(1, Ordering::SeqCst);
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                pipe(client, server);
            }
        });
        FaultyProxy {
            host,
            faults,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for FaultyProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.host);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Copies bytes both ways between two connections on two threads.
fn pipe(client: TcpStream, server: TcpStream) {
    let (Ok(mut client_read), Ok(mut server_read)) = (client.try_clone(), server.try_clone())
    else {
        return;
    };
    let mut client_write = client;
    let mut server_write = server;
    thread::spawn(move || {
        let _ = std::io::copy(&mut client_read, &mut server_write);
        let _ = server_write.shutdown(Shutdown::Write);
    });
    thread::spawn(move || {
        let _ = std::io::copy(&mut server_read, &mut client_write);
        let _ = client_write.shutdown(Shutdown::Write);
    });
}

#[test]
fn push_and_pull_through_faults() {
    if !forge_testkit::require_tool("docker-registry") {
        return;
    }
    let Some(registry) = Registry::start(RegistryOptions::default()) else {
        return;
    };
    let proxy = FaultyProxy::start(registry.host.clone(), 60);
    let fixture = data_fixture();
    let name = format!("{}/forge/faults:v1", proxy.host);
    assert_success(&fixture.build("store", &name), "forge build");

    let push = fixture.forge("store", &["push", &name]);
    assert_success(&push, "push through faults");
    let digest = pushed_digest(&push);

    let pull = fixture.forge("fresh", &["pull", &name]);
    assert_success(&pull, "pull through faults");
    assert_eq!(pulled_digest(&pull), digest);
    assert!(
        proxy.faults.load(Ordering::SeqCst) >= 1,
        "the proxy injected no fault"
    );

    let check = fixture.forge("fresh", &["store", "check"]);
    assert_success(&check, "forge store check after the faulty pull");
}
