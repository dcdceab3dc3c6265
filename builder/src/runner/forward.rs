//! User-space port forwarding: the supervisor listens on host ports and,
//! for each TCP connection or UDP client, opens a socket inside the
//! container's network namespace to `127.0.0.1:CONTAINER_PORT` and copies
//! bytes both ways. No firewall rules are involved.
//!
//! Host sockets are bound on the calling thread, in the host's namespace.
//! Each forwarding thread then moves itself into the container's network
//! namespace with `setns`; sockets it creates live there, while the host
//! socket it inherited stays in the host's namespace.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::RunnerError;
use super::state::PortMapping;

/// How often the listening threads check whether to stop.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How long a UDP client's socket in the container stays without traffic.
const UDP_IDLE: Duration = Duration::from_secs(60);

/// A bound host socket for one mapping.
pub(crate) enum HostSocket {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

/// Binds the host side of every mapping and fills in the ports that were
/// chosen at random (host port 0).
///
/// # Errors
///
/// [`RunnerError::Port`] naming the mapping whose address is taken.
pub(crate) fn bind(ports: &mut [PortMapping]) -> Result<Vec<HostSocket>, RunnerError> {
    let mut sockets = Vec::with_capacity(ports.len());
    for mapping in ports.iter_mut() {
        let address = format!("{}:{}", mapping.host_ip, mapping.host_port);
        let port_error = |source: io::Error| RunnerError::Port {
            mapping: mapping.display(),
            source,
        };
        let (socket, local) = if mapping.protocol == "udp" {
            let socket = UdpSocket::bind(&address).map_err(port_error)?;
            let local = socket.local_addr().map_err(port_error)?;
            (HostSocket::Udp(socket), local)
        } else {
            let socket = TcpListener::bind(&address).map_err(port_error)?;
            let local = socket.local_addr().map_err(port_error)?;
            (HostSocket::Tcp(socket), local)
        };
        mapping.host_port = local.port();
        sockets.push(socket);
    }
    Ok(sockets)
}

/// Running forwarding threads; dropping them stops the listeners. Open
/// connections keep copying until either side closes.
pub(crate) struct Forwarders {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Drop for Forwarders {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Starts one thread per host socket that forwards to the matching port in
/// the network namespace `netns` (an open `/proc/PID/ns/net`).
pub(crate) fn start(
    sockets: Vec<HostSocket>,
    ports: &[PortMapping],
    netns: Arc<OwnedFd>,
) -> Forwarders {
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for (socket, mapping) in sockets.into_iter().zip(ports) {
        let stop = Arc::clone(&stop);
        let netns = Arc::clone(&netns);
        let port = mapping.container_port;
        let thread = std::thread::spawn(move || {
            if let Err(error) = rustix::thread::move_into_link_name_space(
                netns.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            ) {
                tracing::warn!(%error, port, "cannot enter the container's network namespace");
                return;
            }
            match socket {
                HostSocket::Tcp(listener) => serve_tcp(&listener, port, &stop),
                HostSocket::Udp(socket) => serve_udp(&socket, port, &stop),
            }
        });
        threads.push(thread);
    }
    Forwarders { stop, threads }
}

fn serve_tcp(listener: &TcpListener, port: u16, stop: &AtomicBool) {
    if let Err(error) = listener.set_nonblocking(true) {
        tracing::warn!(%error, port, "cannot poll the published port");
        return;
    }
    while !stop.load(Ordering::SeqCst) {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(POLL_INTERVAL);
                continue;
            }
            Err(error) => {
                tracing::debug!(%error, port, "accept failed");
                std::thread::sleep(POLL_INTERVAL);
                continue;
            }
        };
        // This thread is in the container's namespace, so the connection
        // goes to the container's loopback interface.
        let inner = match TcpStream::connect(("127.0.0.1", port)) {
            Ok(inner) => inner,
            Err(error) => {
                tracing::debug!(%error, port, "nothing accepts on the container port");
                continue;
            }
        };
        if client.set_nonblocking(false).is_err() {
            continue;
        }
        spawn_pipe(client, inner);
    }
}

/// Copies both ways between two connected streams on two threads.
fn spawn_pipe(client: TcpStream, inner: TcpStream) {
    let (Ok(client_copy), Ok(inner_copy)) = (client.try_clone(), inner.try_clone()) else {
        return;
    };
    std::thread::spawn(move || copy_half(client, inner));
    std::thread::spawn(move || copy_half(inner_copy, client_copy));
}

/// Copies `from` into `to` until end of file, then closes the write side
/// of `to`, so the peer receives end of file too.
fn copy_half(mut from: TcpStream, mut to: TcpStream) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buffer) {
            Ok(0) => break,
            Ok(count) => {
                if to.write_all(&buffer[..count]).is_err() {
                    break;
                }
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

fn serve_udp(socket: &UdpSocket, port: u16, stop: &AtomicBool) {
    if let Err(error) = socket.set_read_timeout(Some(POLL_INTERVAL)) {
        tracing::warn!(%error, port, "cannot poll the published port");
        return;
    }
    let mut clients: HashMap<SocketAddr, UdpSocket> = HashMap::new();
    let mut buffer = vec![0u8; 65536];
    while !stop.load(Ordering::SeqCst) {
        let (count, client) = match socket.recv_from(&mut buffer) {
            Ok(received) => received,
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(error) => {
                tracing::debug!(%error, port, "receive failed");
                continue;
            }
        };
        let inner = match clients.entry(client) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                let Some(inner) = udp_client(socket, client, port) else {
                    continue;
                };
                entry.insert(inner)
            }
        };
        if inner.send(&buffer[..count]).is_err() {
            clients.remove(&client);
        }
    }
}

/// Creates the container-side socket of a UDP client and a thread that
/// sends the replies back to the client through the host socket.
fn udp_client(host: &UdpSocket, client: SocketAddr, port: u16) -> Option<UdpSocket> {
    let inner = UdpSocket::bind(("127.0.0.1", 0)).ok()?;
    inner.connect(("127.0.0.1", port)).ok()?;
    inner.set_read_timeout(Some(UDP_IDLE)).ok()?;
    let replies = inner.try_clone().ok()?;
    let host = host.try_clone().ok()?;
    std::thread::spawn(move || {
        let mut buffer = vec![0u8; 65536];
        while let Ok(count) = replies.recv(&mut buffer) {
            if host.send_to(&buffer[..count], client).is_err() {
                break;
            }
        }
    });
    Some(inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Opens the test process's own network namespace. Entering it needs
    /// CAP_SYS_ADMIN, so this returns `None` without root.
    fn own_netns() -> Option<Arc<OwnedFd>> {
        if !rustix::process::geteuid().is_root() {
            return None;
        }
        let file = std::fs::File::open("/proc/self/ns/net").ok()?;
        Some(Arc::new(file.into()))
    }

    fn mapping(protocol: &str, container_port: u16) -> PortMapping {
        PortMapping {
            host_ip: "127.0.0.1".to_string(),
            host_port: 0,
            container_port,
            protocol: protocol.to_string(),
        }
    }

    #[test]
    fn tcp_bytes_flow_both_ways() {
        let Some(netns) = own_netns() else { return };
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = server.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut stream, _) = server.accept().unwrap();
            let mut request = [0u8; 4];
            stream.read_exact(&mut request).unwrap();
            stream
                .write_all(&request.map(|b| b.to_ascii_uppercase()))
                .unwrap();
        });
        let mut ports = vec![mapping("tcp", port)];
        let sockets = bind(&mut ports).unwrap();
        assert_ne!(ports[0].host_port, 0);
        let _forwarders = start(sockets, &ports, netns);

        let mut client = TcpStream::connect(("127.0.0.1", ports[0].host_port)).unwrap();
        client.write_all(b"ping").unwrap();
        let mut reply = String::new();
        client.read_to_string(&mut reply).unwrap();
        assert_eq!(reply, "PING");
    }

    #[test]
    fn udp_replies_reach_the_client() {
        let Some(netns) = own_netns() else { return };
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = server.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 64];
            let (count, from) = server.recv_from(&mut buffer).unwrap();
            server.send_to(&buffer[..count], from).unwrap();
        });
        let mut ports = vec![mapping("udp", port)];
        let sockets = bind(&mut ports).unwrap();
        let _forwarders = start(sockets, &ports, netns);

        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        client
            .send_to(b"datagram", ("127.0.0.1", ports[0].host_port))
            .unwrap();
        let mut buffer = [0u8; 64];
        let (count, _) = client.recv_from(&mut buffer).unwrap();
        assert_eq!(&buffer[..count], b"datagram");
    }

    #[test]
    fn taken_port_is_reported() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut ports = vec![PortMapping {
            host_port: taken.local_addr().unwrap().port(),
            ..mapping("tcp", 80)
        }];
        let error = bind(&mut ports).err().unwrap().to_string();
        assert!(error.contains("->80/tcp"), "{error}");
    }
}
