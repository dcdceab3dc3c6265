//! A real distribution registry (`docker-registry` from Debian) on a free
//! loopback port, with optional HTTP Basic authentication, TLS with a
//! self-signed certificate made by `openssl`, and extra configuration.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::require_tool as require;

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
    /// Extra top-level YAML lines for the registry configuration, such as
    /// an `auth: token:` section.
    pub extra_config: String,
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
    /// The certificate file when TLS is on.
    pub certificate_path: Option<PathBuf>,
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
        let mut extra = options.extra_config.clone();
        let mut tls = String::new();
        let mut certificate = None;
        let mut certificate_path = None;

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
            certificate_path = Some(cert.clone());
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
                    certificate_path,
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
