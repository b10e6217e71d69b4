//! Reads from a streaming replica (`database.read_url`): a primary and its hot standby,
//! both throwaway clusters made by this harness from the machine's PostgreSQL binaries
//! (`initdb`, `pg_basebackup -R`), on random ports.

use crate::support::{TestApp, TestDatabase, event, poll, window};
use reqwest::StatusCode;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The newest PostgreSQL server binaries on the machine.
fn server_bin() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries under /usr/lib/postgresql (apt-get install postgresql)")
        .filter_map(|entry| entry.ok().map(|entry| entry.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    dirs.sort_by_key(|dir| dir.to_string_lossy().split('/').nth(4).and_then(|v| v.parse::<u32>().ok()));
    dirs.pop().expect("an initdb")
}

/// PostgreSQL refuses to run as root: as root, clusters belong to the `postgres` user.
fn owner() -> Option<(u32, u32)> {
    let id = |flag: &str, user: Option<&str>| {
        let output = Command::new("id").arg(flag).args(user).output().expect("id");
        String::from_utf8_lossy(&output.stdout).trim().parse::<u32>().expect("a numeric id")
    };
    (id("-u", None) == 0).then(|| (id("-u", Some("postgres")), id("-g", Some("postgres"))))
}

fn run(program: &Path, args: &[&str]) {
    let mut command = match owner() {
        Some(_) => {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        }
        None => Command::new(program),
    };
    let output = command.args(args).output().unwrap_or_else(|error| panic!("{}: {error}", program.display()));
    assert!(output.status.success(), "{} {args:?}: {}", program.display(), String::from_utf8_lossy(&output.stderr));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One running cluster in a temporary directory; stopped (immediately) when dropped.
struct Cluster {
    dir: tempfile::TempDir,
    port: u16,
}

impl Cluster {
    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    fn directory() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("cluster directory");
        if let Some((uid, gid)) = owner() {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown the cluster directory");
        }
        dir
    }

    /// A primary that accepts replication connections from 127.0.0.1 without a password.
    fn primary() -> Self {
        let bin = server_bin();
        let cluster = Self { dir: Self::directory(), port: free_port() };
        let data = cluster.data();
        let data = data.to_str().unwrap();
        run(&bin.join("initdb"), &["-D", data, "-U", "postgres", "--auth=trust", "--no-instructions", "-E", "UTF8"]);
        cluster.start();
        cluster
    }

    /// A hot standby of `primary`, streaming from it.
    fn replica_of(primary: &Cluster) -> Self {
        let bin = server_bin();
        let cluster = Self { dir: Self::directory(), port: free_port() };
        let data = cluster.data();
        let port = primary.port.to_string();
        let args =
            ["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-D", data.to_str().unwrap(), "-R", "-X", "stream"];
        run(&bin.join("pg_basebackup"), &args);
        cluster.start();
        cluster
    }

    fn start(&self) {
        let data = self.data();
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={}",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log");
        let args = ["-D", data.to_str().unwrap(), "-l", log.to_str().unwrap(), "-o", &options, "-w", "start"];
        run(&server_bin().join("pg_ctl"), &args);
    }

    fn stop(&self) {
        run(&server_bin().join("pg_ctl"), &["-D", self.data().to_str().unwrap(), "-m", "immediate", "-w", "stop"]);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data();
        if data.join("postmaster.pid").exists() {
            let _ = std::panic::catch_unwind(|| self.stop());
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_come_from_the_replica_and_go_on_while_the_primary_is_down() {
    let primary = Cluster::primary();
    let replica = Cluster::replica_of(&primary);
    // The database is created on the primary and reaches the replica by replication.
    let database = TestDatabase::create_on(&primary.url("postgres")).await;
    let read_url = Value::String(replica.url(&database.name));
    let app = TestApp::start(database, |settings| {
        settings.database.read_url = Some(serde_json::from_value(read_url).expect("url"));
    })
    .await;
    app.wait_until_ready().await;

    let batch: Vec<Value> = (0..5).map(|i| event("replicated", &format!("r{i}"))).collect();
    assert_eq!(app.post_json(&Value::Array(batch)).await.status(), StatusCode::ACCEPTED);
    let (from, to) = window();
    let total = || async {
        let response = app.get_events(&[("service", "replicated"), ("from", &from), ("to", &to)]).await;
        (response.status(), response.json::<Value>().await.unwrap()["total"].clone())
    };
    let seen = poll(Duration::from_secs(20), total, |(_, total)| *total == 5).await;
    assert_eq!(seen, (StatusCode::OK, serde_json::json!(5)), "the replica replays what the primary stored");

    let health = || async {
        app.client.get(format!("{}/health/database", app.address)).send().await.unwrap().json::<Value>().await.unwrap()
    };
    let report = health().await;
    assert_eq!(report["replica"]["status"], "healthy", "{report}");
    assert!(report["replica"]["replayLagSeconds"].as_f64().is_some_and(|lag| lag >= 0.0), "{report}");

    // With the primary gone, what people read still answers, from the replica.
    primary.stop();
    // The replica answers, but says it no longer streams: its readers may see an old past.
    let report = poll(Duration::from_secs(20), health, |report| report["replica"]["status"] == "warning").await;
    assert_eq!(report["status"], "unhealthy", "the primary is gone: {report}");
    assert!(report["replica"]["error"].as_str().is_some_and(|error| error.contains("not streaming")), "{report}");
    assert_eq!(total().await, (StatusCode::OK, serde_json::json!(5)));
    let services = app.client.get(format!("{}/services", app.address)).send().await.unwrap();
    assert_eq!(services.status(), StatusCode::OK);
    let histogram = app
        .client
        .get(format!("{}/events/histogram", app.address))
        .query(&[("service", "replicated"), ("from", from.as_str()), ("to", to.as_str()), ("interval", "5m")])
        .send()
        .await
        .unwrap();
    let histogram: Value = histogram.json().await.unwrap();
    assert_eq!(histogram["total"], 5, "{histogram}");
    // Events sent meanwhile wait in the journal for the primary, as ever.
    assert_eq!(app.post_json(&event("replicated", "while down")).await.status(), StatusCode::ACCEPTED);
    drop(replica);
}
