//! Shared helpers for the black-box suites: a fresh database per test, the real app on a
//! random port, and the real binary as a child process.

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

/// The server the suites create their databases on: `AURORE_TEST_DATABASE_URL`, else
/// `DATABASE_URL`, else the local default. `just test` sets it after finding or starting
/// a server.
pub fn admin_url() -> String {
    std::env::var("AURORE_TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Calls `probe` every 20 ms until `done` holds for what it returns or `within` passes, and
/// returns the last value: callers assert on it, so a timeout fails with the value in view.
pub async fn poll<T, Fut>(within: Duration, mut probe: impl FnMut() -> Fut, done: impl Fn(&T) -> bool) -> T
where
    Fut: std::future::Future<Output = T>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let value = probe().await;
        if done(&value) || tokio::time::Instant::now() >= deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Instants as the API writes them: UTC, milliseconds, `Z`.
pub fn iso(instant: chrono::DateTime<chrono::Utc>) -> String {
    instant.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// An event of `service` as clients send it, stamped now.
pub fn event(service: &str, message: &str) -> serde_json::Value {
    serde_json::json!({"timestamp": iso(chrono::Utc::now()), "service": service, "message": message})
}

/// From an hour ago to an hour ahead: a range that holds every event a test sends.
pub fn window() -> (String, String) {
    let now = chrono::Utc::now();
    (iso(now - chrono::Duration::hours(1)), iso(now + chrono::Duration::hours(1)))
}

/// `POST url` with `headers` and `body` as JSON.
pub async fn post_with(
    client: &reqwest::Client,
    url: String,
    headers: &[(&str, &str)],
    body: &serde_json::Value,
) -> reqwest::Response {
    let request = headers.iter().fold(client.post(&url), |request, (name, value)| request.header(*name, *value));
    request.json(body).send().await.unwrap_or_else(|error| panic!("POST {url}: {error}"))
}

/// `GET url` with `headers`.
pub async fn get_with(client: &reqwest::Client, url: String, headers: &[(&str, &str)]) -> reqwest::Response {
    let request = headers.iter().fold(client.get(&url), |request, (name, value)| request.header(*name, *value));
    request.send().await.unwrap_or_else(|error| panic!("GET {url}: {error}"))
}

/// `url` with its database name replaced.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(base, query)| (base, Some(query)));
    let (server, _) = base.rsplit_once('/').filter(|(server, _)| server.contains("//")).unwrap_or((base, ""));
    match query {
        Some(query) => format!("{server}/{database}?{query}"),
        None => format!("{server}/{database}"),
    }
}

/// A database created for one test and dropped when the test ends.
#[derive(Debug)]
pub struct TestDatabase {
    pub url: String,
    pub name: String,
    /// The server's `postgres` database, to drop this one from.
    admin: String,
}

impl TestDatabase {
    pub async fn create() -> Self {
        Self::create_on(&admin_url()).await
    }

    /// A fresh database on the server `admin` (its `postgres` database) names.
    pub async fn create_on(admin: &str) -> Self {
        let name = format!("aurore_test_{}", uuid::Uuid::now_v7().simple());
        let admin = admin.to_owned();
        let mut connection = AsyncPgConnection::establish(&admin).await.unwrap_or_else(|error| {
            panic!("cannot reach PostgreSQL at {admin} ({error}); run the tests with `just test`")
        });
        diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut connection).await.expect("create database");
        Self { url: with_database(&admin, &name), name, admin }
    }

    pub async fn connection(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.url).await.expect("connect to the test database")
    }

    /// Runs `sql` (which must return one bigint column named `n`) and returns the number.
    pub async fn count(&self, sql: &str) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut connection = self.connection().await;
        diesel::sql_query(sql).get_result::<Count>(&mut connection).await.expect("count query").n
    }

    /// Polls `sql` until it returns `expected` or `within` passes; returns the last value.
    pub async fn wait_for_count(&self, sql: &str, expected: i64, within: Duration) -> i64 {
        poll(within, || self.count(sql), |found| *found == expected).await
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = self.name.clone();
        // Drop runs outside any async context guarantee, so the cleanup gets its own runtime.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let mut connection = AsyncPgConnection::establish(&admin).await.ok()?;
                diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut connection)
                    .await
                    .ok()
            })
        })
        .join();
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_the_database_name() {
        assert_eq!(with_database("postgres://u@h:5432/postgres", "t"), "postgres://u@h:5432/t");
        assert_eq!(with_database("postgres://u@h:5432", "t"), "postgres://u@h:5432/t");
        assert_eq!(with_database("postgres://u@h/db?sslmode=disable", "t"), "postgres://u@h/t?sslmode=disable");
    }
}

/// Requests to a running service, in-process or a child, by path (with its query string).
pub trait Api {
    fn client(&self) -> &reqwest::Client;
    fn address(&self) -> &str;

    /// `method` on `path`, no body.
    async fn call(&self, method: reqwest::Method, path: &str) -> reqwest::Response {
        let url = format!("{}{path}", self.address());
        self.client()
            .request(method.clone(), url)
            .send()
            .await
            .unwrap_or_else(|error| panic!("{method} {path}: {error}"))
    }

    /// `GET path`.
    async fn get(&self, path: &str) -> reqwest::Response {
        self.call(reqwest::Method::GET, path).await
    }

    /// `GET path`, its body as JSON.
    async fn get_json(&self, path: &str) -> serde_json::Value {
        let response = self.get(path).await;
        response.json().await.unwrap_or_else(|error| panic!("GET {path}: the body is not JSON: {error}"))
    }

    /// `GET path`, its body as text.
    async fn get_text(&self, path: &str) -> String {
        let response = self.get(path).await;
        response.text().await.unwrap_or_else(|error| panic!("GET {path}: the body was cut: {error}"))
    }
}

impl Api for TestApp {
    fn client(&self) -> &reqwest::Client {
        &self.client
    }
    fn address(&self) -> &str {
        &self.address
    }
}

impl Api for Service {
    fn client(&self) -> &reqwest::Client {
        &self.client
    }
    fn address(&self) -> &str {
        &self.address
    }
}

/// The service running in this process on a random port, against its own database.
#[derive(Debug)]
pub struct TestApp {
    pub address: String,
    pub database: TestDatabase,
    /// Taken out by tests that look at the journal after the app stopped.
    pub journal: Option<tempfile::TempDir>,
    pub client: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// Settings for a test: port 0, a short linger, the given database and journal.
pub fn test_settings(database_url: &str, journal: &std::path::Path) -> aurore::Settings {
    let mut settings = aurore::Settings::default();
    settings.server.port = 0;
    settings.server.workers = 2;
    settings.writer.linger = Duration::from_millis(10);
    settings.partitions.days_behind = 2;
    settings.partitions.days_ahead = 2;
    settings.database.url = serde_json::from_value(serde_json::Value::String(database_url.to_owned())).expect("url");
    settings.journal.dir = journal.to_owned();
    settings.journal.segment_size = 1 << 20;
    // Suites about other things poll and page fast; the edge suite turns limits on.
    settings.rate_limit = aurore::settings::RateLimitConfig::off();
    settings
}

impl TestApp {
    /// Starts the app with default test settings and waits until it is ready.
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(configure: impl FnOnce(&mut aurore::Settings)) -> Self {
        let app = Self::start(TestDatabase::create().await, configure).await;
        app.wait_until_ready().await;
        app
    }

    /// Starts the app without waiting for readiness (the database may be unreachable).
    pub async fn start(database: TestDatabase, configure: impl FnOnce(&mut aurore::Settings)) -> Self {
        // `TEST_LOG=debug` shows the app's logs; silent otherwise.
        if let Ok(level) = std::env::var("TEST_LOG") {
            let _ = aurore_telemetry::init(
                &level,
                aurore_telemetry::LogFormat::Human,
                &aurore_telemetry::TraceSettings { otlp_endpoint: None, sample_ratio: 0.0 },
            );
        }
        let journal = tempfile::tempdir().expect("journal directory");
        let mut settings = test_settings(&database.url, journal.path());
        configure(&mut settings);
        let application =
            aurore::Application::build(&settings, aurore::wiring::Role::All).await.expect("build the application");
        let address = format!("http://127.0.0.1:{}", application.port());
        let (shutdown, signal) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(application.run_until(async {
            let _ = signal.await;
        }));
        Self {
            address,
            database,
            journal: Some(journal),
            client: reqwest::Client::new(),
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }

    /// Until the app takes traffic and its schema is in place (readiness alone does not
    /// wait for the database).
    pub async fn wait_until_ready(&self) {
        wait_until_serving(&self.client, &self.address, Duration::from_secs(20)).await;
    }

    pub async fn post_json(&self, body: &serde_json::Value) -> reqwest::Response {
        self.client.post(format!("{}/events", self.address)).json(body).send().await.expect("POST /events")
    }

    pub async fn get_events(&self, query: &[(&str, &str)]) -> reqwest::Response {
        self.client.get(format!("{}/events", self.address)).query(query).send().await.expect("GET /events")
    }

    /// Stops the app the way a signal would and returns what `run_until` returned.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let task = self.task.take().expect("the app runs until shut down");
        task.await.expect("the app task panicked")
    }
}

/// Polls until `/health/ready` answers 200 and `/health/detailed` reports the journal
/// replayed and the schema migrated.
async fn wait_until_serving(client: &reqwest::Client, address: &str, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let ready = client.get(format!("{address}/health/ready")).send().await.is_ok_and(|r| r.status().is_success());
        let detailed = client.get(format!("{address}/health/detailed")).send().await;
        let migrated = match detailed {
            Ok(response) => {
                response.json::<serde_json::Value>().await.is_ok_and(|body| body["server"]["status"] == 200)
            }
            Err(_) => false,
        };
        if ready && migrated {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "the service did not become ready with its schema");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `aurore` binary next to the test executable (`just test` builds it first).
pub fn aurore_binary() -> std::path::PathBuf {
    if let Some(path) = option_env!("CARGO_BIN_EXE_aurore") {
        return path.into();
    }
    let test_executable = std::env::current_exe().expect("test executable path");
    let profile_dir = test_executable.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps");
    let binary = profile_dir.join("aurore");
    assert!(
        binary.exists(),
        "{} is missing: build it with `cargo build --bin aurore` (`just test` does)",
        binary.display()
    );
    binary
}

/// The real `aurore` binary as a child process, on a port it picks.
#[derive(Debug)]
pub struct Service {
    child: std::process::Child,
    pub address: String,
    pub client: reqwest::Client,
    /// Every line the process has written to stderr so far.
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Service {
    /// Starts the binary against `database_url` with its journal in `journal`, and waits
    /// until it reports the port it listens on.
    pub fn start(database_url: &str, journal: &std::path::Path, extra_env: &[(&str, &str)]) -> Self {
        use std::io::{BufRead, BufReader};
        let mut command = std::process::Command::new(aurore_binary());
        command
            .env_clear()
            .env("AURORE__DATABASE__URL", database_url)
            .env("AURORE__JOURNAL__DIR", journal)
            .env("AURORE__SERVER__PORT", "0")
            .env("AURORE__PARTITIONS__DAYS_BEHIND", "1")
            .env("AURORE__PARTITIONS__DAYS_AHEAD", "1")
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        for (key, value) in extra_env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start aurore");
        let stderr = child.stderr.take().expect("stderr");
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let written = lines.clone();
        // Keeps reading so the child never blocks on a full pipe; echoes with TEST_LOG.
        std::thread::spawn(move || {
            let echo = std::env::var_os("TEST_LOG").is_some();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if echo {
                    eprintln!("[aurore] {line}");
                }
                if let Some(port) = line.split("listening on http://127.0.0.1:").nth(1) {
                    let _ = port_tx.send(port.trim().parse::<u16>().expect("port"));
                }
                written.lock().expect("log lines").push(line);
            }
        });
        let port = port_rx.recv_timeout(Duration::from_secs(30)).expect("aurore reported its port");
        Self { child, address: format!("http://127.0.0.1:{port}"), client: reqwest::Client::new(), lines }
    }

    /// The most memory the process has held so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("process status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in the process status")
    }

    /// The ERROR lines logged so far.
    pub fn errors_logged(&self) -> Vec<String> {
        self.logged().into_iter().filter(|line| line.contains(" ERROR ")).collect()
    }

    /// Every line logged so far.
    pub fn logged(&self) -> Vec<String> {
        self.lines.lock().expect("log lines").clone()
    }

    /// Until the service takes traffic and its schema is in place.
    pub async fn wait_until_ready(&self) {
        wait_until_serving(&self.client, &self.address, Duration::from_secs(30)).await;
    }

    /// SIGTERM, then the exit status.
    pub async fn terminate(self) -> std::process::ExitStatus {
        self.signal(nix::sys::signal::Signal::SIGTERM).await
    }

    /// SIGKILL: no chance to flush anything.
    pub async fn kill(self) -> std::process::ExitStatus {
        self.signal(nix::sys::signal::Signal::SIGKILL).await
    }

    async fn signal(mut self, signal: nix::sys::signal::Signal) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        nix::sys::signal::kill(pid, signal).expect("signal aurore");
        tokio::task::spawn_blocking(move || self.child.wait()).await.expect("wait task").expect("wait for aurore")
    }
}

/// The ids of the events of `service` stored so far (none while the schema is missing).
pub async fn stored_ids(database: &TestDatabase, service: &str) -> HashSet<String> {
    use diesel::sql_types::{Text, Uuid};
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = Uuid)]
        id: uuid::Uuid,
    }
    let mut connection = database.connection().await;
    let rows: Vec<Row> = diesel::sql_query("SELECT id FROM events WHERE service = $1")
        .bind::<Text, _>(service)
        .load(&mut connection)
        .await
        .unwrap_or_default();
    rows.into_iter().map(|row| row.id.to_string()).collect()
}

/// Waits up to `within` until every acknowledged id of `service` is stored, then checks
/// none is stored twice. Returns the rows stored (acknowledged ones, plus any whose
/// response was cut off).
pub async fn assert_all_stored_once(
    database: &TestDatabase,
    service: &str,
    acknowledged: &HashSet<String>,
    within: Duration,
) -> i64 {
    let missing = || async { acknowledged.difference(&stored_ids(database, service).await).count() };
    let missing = poll(within, missing, |missing| *missing == 0).await;
    assert_eq!(missing, 0, "{missing} of {} acknowledged events lost", acknowledged.len());
    let rows = database.count(&format!("SELECT count(*) AS n FROM events WHERE service = '{service}'")).await;
    let distinct =
        database.count(&format!("SELECT count(DISTINCT id) AS n FROM events WHERE service = '{service}'")).await;
    assert_eq!(rows, distinct, "no event is stored twice");
    rows
}

/// A TCP proxy in front of PostgreSQL that can cut every connection and refuse new ones,
/// then let traffic through again: a database outage on demand.
pub struct Proxy {
    pub port: u16,
    open: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(true));
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn({
            let (open, connections) = (open.clone(), connections.clone());
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if !AtomicBool::load(&open, Ordering::SeqCst) {
                        continue; // dropped at once: connection refused, in effect
                    }
                    let upstream = upstream.clone();
                    connections.lock().await.push(tokio::spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    }));
                }
            }
        });
        Self { port, open, connections, accept }
    }

    pub async fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for connection in self.connections.lock().await.drain(..) {
            connection.abort();
        }
    }

    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// `url` with its host and port replaced by the proxy's.
pub fn through(url: &str, port: u16) -> (String, String) {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (credentials, rest) = rest.split_once('@').unwrap();
    let (authority, path) = rest.split_once('/').unwrap();
    (format!("{scheme}://{credentials}@127.0.0.1:{port}/{path}"), authority.to_owned())
}

/// Opens `GET /events/tail` with `query`; the stream starts before anything is posted.
pub async fn open_tail(app: &TestApp, query: &[(&str, &str)]) -> reqwest::Response {
    let stream = app.client.get(format!("{}/events/tail", app.address)).query(query).send().await.unwrap();
    assert_eq!(stream.status(), reqwest::StatusCode::OK);
    stream
}

/// The raw `data:` payload of the next `count` events a tail stream sends.
pub async fn tailed(stream: &mut reqwest::Response, count: usize) -> Vec<String> {
    let mut received = String::new();
    while received.matches("event: event").count() < count {
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.chunk()).await.unwrap().unwrap().unwrap();
        received.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    received.lines().filter_map(|line| line.strip_prefix("data: ")).map(str::to_owned).collect()
}
