//! Throwaway NATS servers for the queue suites: the machine's `nats-server` binary with
//! JetStream on random loopback ports and temporary storage, alone or as a 3-node cluster.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let candidates = std::env::var_os("NATS_SERVER")
        .map(PathBuf::from)
        .into_iter()
        .chain(std::env::split_paths(&path).map(|dir| dir.join("nats-server")))
        .chain(["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"].map(PathBuf::from));
    candidates
        .into_iter()
        .find(|path| path.is_file())
        .expect("nats-server is missing: `apt-get install nats-server` (.ci/run does)")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One server of a test: stopped when dropped, restartable on its own ports and storage.
#[derive(Debug)]
pub struct NatsNode {
    args: Vec<String>,
    pub port: u16,
    child: Option<Child>,
    _storage: tempfile::TempDir,
}

impl NatsNode {
    fn spawn(name: &str, port: u16, cluster: Option<(u16, &[u16])>) -> Self {
        let storage = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = ["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-n", name, "-sd"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        args.push(storage.path().display().to_string());
        if let Some((cluster_port, routes)) = cluster {
            let routes: Vec<String> = routes.iter().map(|port| format!("nats://127.0.0.1:{port}")).collect();
            args.extend([
                "--cluster_name".to_owned(),
                "aurore".to_owned(),
                "--cluster".to_owned(),
                format!("nats://127.0.0.1:{cluster_port}"),
                "--routes".to_owned(),
                routes.join(","),
            ]);
        }
        let mut node = Self { args, port, child: None, _storage: storage };
        node.restart();
        node
    }

    /// A single server.
    pub fn start() -> Self {
        Self::spawn("aurore-test", free_port(), None)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts it again (or the first time) and waits until it takes connections.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the node is running");
        let echo = std::env::var_os("TEST_LOG").is_some();
        let child = Command::new(binary())
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(if echo { Stdio::inherit() } else { Stdio::null() })
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen on {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: whatever it had not written is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Three JetStream servers routed to each other on loopback.
#[derive(Debug)]
pub struct NatsCluster {
    pub nodes: Vec<NatsNode>,
}

impl NatsCluster {
    pub fn start() -> Self {
        let client_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let cluster_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let nodes = (0..3)
            .map(|index| {
                let routes: Vec<u16> = cluster_ports
                    .iter()
                    .enumerate()
                    .filter(|(other, _)| *other != index)
                    .map(|(_, port)| *port)
                    .collect();
                NatsNode::spawn(&format!("aurore-{index}"), client_ports[index], Some((cluster_ports[index], &routes)))
            })
            .collect();
        Self { nodes }
    }

    /// Every node's address, as clients take them: any one that answers will do.
    pub fn url(&self) -> String {
        self.nodes.iter().map(NatsNode::url).collect::<Vec<_>>().join(",")
    }
}
