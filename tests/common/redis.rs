//! Throwaway `redis-server` processes for tests that need a Redis of their own: one they may stop
//! and restart (outages), one with ACL users or TLS, or a Redis Cluster of several masters.
//! Self-contained (std only), so the library's store tests include this file too.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One or more `redis-server` processes on loopback ports chosen by the OS, killed on drop.
pub struct LocalRedis {
    nodes: Vec<Node>,
    tls: bool,
}

struct Node {
    port: u16,
    dir: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

/// A port the OS just handed out (and took back).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("scimbridge-redis-{name}-{}-{}", std::process::id(), free_port()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temp dir");
    dir
}

impl Node {
    fn new(name: &str, args: Vec<String>) -> Self {
        Self { port: free_port(), dir: fresh_dir(name), args, child: None }
    }

    fn start(&mut self, tls: bool) {
        let port = self.port.to_string();
        // With TLS the plain port is closed and the TLS port takes the node's port.
        let ports: [&str; 4] = if tls { ["--port", "0", "--tls-port", &port] } else { ["--port", &port, "", ""] };
        let child = Command::new("redis-server")
            .args(ports.iter().filter(|a| !a.is_empty()))
            .args(["--bind", "127.0.0.1", "--appendonly", "yes", "--save", ""])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.args)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (installed by .ci/run)");
        self.child = Some(child);
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(10), "redis-server did not start on {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl LocalRedis {
    /// A plain server.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// A plain server with extra `redis-server` arguments (e.g. ACL users).
    pub fn start_with(extra: &[&str]) -> Self {
        let mut node = Node::new("plain", extra.iter().map(|s| s.to_string()).collect());
        node.start(false);
        Self { nodes: vec![node], tls: false }
    }

    /// A server that speaks only TLS, with this certificate and key (PEM), trusting `ca` (PEM)
    /// for client certificates, which it requires when `require_client_cert`.
    pub fn tls(cert: &str, key: &str, ca: &str, require_client_cert: bool, extra: &[&str]) -> Self {
        let mut node = Node::new("tls", Vec::new());
        let write = |name: &str, pem: &str| {
            let path = node.dir.join(name);
            std::fs::write(&path, pem).expect("write a PEM file");
            path.to_string_lossy().into_owned()
        };
        let (cert, key, ca) = (write("server.crt", cert), write("server.key", key), write("ca.crt", ca));
        let auth = if require_client_cert { "yes" } else { "no" };
        node.args = ["--tls-cert-file", &cert, "--tls-key-file", &key, "--tls-ca-cert-file", &ca]
            .into_iter()
            .chain(["--tls-auth-clients", auth])
            .chain(extra.iter().copied())
            .map(str::to_owned)
            .collect();
        node.start(true);
        Self { nodes: vec![node], tls: true }
    }

    /// A Redis Cluster of `masters` masters (no replicas), all 16384 slots assigned, ready.
    pub fn cluster(masters: usize) -> Self {
        let mut nodes: Vec<Node> = (0..masters)
            .map(|i| {
                let bus = free_port().to_string();
                let args = ["--cluster-enabled", "yes", "--cluster-node-timeout", "2000", "--cluster-port", &bus]
                    .into_iter()
                    .map(str::to_owned)
                    .collect();
                Node::new(&format!("cluster{i}"), args)
            })
            .collect();
        for n in &mut nodes {
            n.start(false);
        }
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli (installed with redis-server)");
        assert!(out.status.success(), "cluster create: {}", String::from_utf8_lossy(&out.stdout));
        let cluster = Self { nodes, tls: false };
        // Every node must agree that the cluster is whole before clients learn its slots.
        let start = Instant::now();
        while !cluster.nodes.iter().all(|n| cluster.info(n.port).contains("cluster_state:ok")) {
            assert!(start.elapsed() < Duration::from_secs(20), "the cluster did not become ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        cluster
    }

    fn info(&self, port: u16) -> String {
        let out = Command::new("redis-cli").args(["-p", &port.to_string(), "cluster", "info"]).output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
    }

    /// The node ports.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// The store URL of this server or cluster (without credentials).
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let scheme = match (self.nodes.len() > 1, self.tls) {
            (false, false) => "redis",
            (false, true) => "rediss",
            (true, false) => "redis-cluster",
            (true, true) => "rediss-cluster",
        };
        format!("{scheme}://{}", hosts.join(","))
    }

    /// Stops every node (kill: an outage, not a shutdown).
    pub fn stop(&mut self) {
        for n in &mut self.nodes {
            n.stop();
        }
    }

    /// Starts every node again: same ports, same data.
    pub fn restart(&mut self) {
        let tls = self.tls;
        for n in &mut self.nodes {
            n.start(tls);
        }
    }
}

impl Drop for LocalRedis {
    fn drop(&mut self) {
        self.stop();
        for n in &self.nodes {
            let _ = std::fs::remove_dir_all(&n.dir);
        }
    }
}
