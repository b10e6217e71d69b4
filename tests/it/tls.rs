//! The store over TLS: a throwaway PostgreSQL cluster that accepts TLS connections only
//! (`hostssl`, no `host` line), with a certificate for `localhost` from a CA made here,
//! reached under each `sslmode`.

// A failed unwrap is a failed test, which is what these helpers are for.

use aurore_domain::{
    EventDraft, EventId, EventQuery, EventReader, EventSink, QueryLimits, RetentionPolicy, SortField, SortOrder,
    StoreHealth,
};
use aurore_store_postgres::{PostgresSettings, PostgresStore, SslMode};
use chrono::{Duration as Days, Utc};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A PostgreSQL cluster in a temporary directory, stopped and removed on drop.
struct TlsCluster {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    /// The CA that signed the server's certificate.
    ca: PathBuf,
    /// A CA that signed nothing the server holds.
    stranger: PathBuf,
    _dir: tempfile::TempDir,
}

/// The newest server binaries on this machine.
fn server_binaries() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    found.sort_by_key(|bin| bin.parent().and_then(|version| version.file_name()?.to_str()?.parse::<u32>().ok()));
    found.pop().expect("PostgreSQL server binaries in /usr/lib/postgresql/*/bin (apt-get install postgresql)")
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|process| process.uid() == 0)
}

/// Runs a server binary as the cluster's owner: PostgreSQL refuses to run as root.
fn as_owner(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn run(mut command: Command) {
    let output = command.output().unwrap();
    assert!(output.status.success(), "{command:?}: {}", String::from_utf8_lossy(&output.stderr));
}

fn certificate_authority(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

impl TlsCluster {
    fn start() -> Self {
        let bin = server_binaries();
        let dir = tempfile::Builder::new().prefix("aurore-tls-").tempdir().unwrap();
        let data = dir.path().join("data");
        let chown = |path: &Path| {
            if is_root() {
                run({
                    let mut command = Command::new("chown");
                    command.args(["-R", "postgres:"]).arg(path);
                    command
                });
            }
        };
        chown(dir.path());
        run({
            let mut command = as_owner(&bin.join("initdb"));
            command.arg("--pgdata").arg(&data).args(["--username=postgres", "--auth=trust", "--no-instructions"]);
            command
        });

        let authority = certificate_authority("Aurore test CA");
        let server_key = KeyPair::generate().unwrap();
        let server =
            CertificateParams::new(vec!["localhost".to_owned()]).unwrap().signed_by(&server_key, &authority).unwrap();
        std::fs::write(data.join("server.crt"), server.pem()).unwrap();
        std::fs::write(data.join("server.key"), server_key.serialize_pem()).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(data.join("server.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, authority.pem()).unwrap();
        let stranger = dir.path().join("stranger.pem");
        std::fs::write(&stranger, certificate_authority("Someone else's CA").pem()).unwrap();

        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let conf = format!(
            "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nlisten_addresses = '127.0.0.1'\n\
             port = {port}\nunix_socket_directories = '{}'\nfsync = off\n",
            dir.path().display()
        );
        let mut postgresql_conf = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
        postgresql_conf.push_str(&conf);
        std::fs::write(data.join("postgresql.conf"), postgresql_conf).unwrap();
        // TCP clients must use TLS: no `host` line, so a plain connection has no entry.
        std::fs::write(data.join("pg_hba.conf"), "local all all trust\nhostssl all all 127.0.0.1/32 trust\n").unwrap();
        chown(dir.path());

        let cluster = Self { bin, data, port, ca, stranger, _dir: dir };
        run({
            let mut command = as_owner(&cluster.bin.join("pg_ctl"));
            command.arg("--pgdata").arg(&cluster.data).arg("--log").arg(cluster.data.join("server.log"));
            command.args(["--wait", "--silent", "start"]);
            command
        });
        cluster
    }

    fn url(&self, host: &str, query: &str) -> String {
        format!("postgres://postgres@{host}:{}/postgres{query}", self.port)
    }
}

impl Drop for TlsCluster {
    fn drop(&mut self) {
        let _ = as_owner(&self.bin.join("pg_ctl"))
            .arg("--pgdata")
            .arg(&self.data)
            .args(["--mode=immediate", "--wait", "--silent", "stop"])
            .output();
    }
}

fn store(url: String, sslmode: Option<SslMode>, sslrootcert: Option<&Path>) -> PostgresStore {
    PostgresStore::connect(&PostgresSettings {
        url,
        read_url: None,
        sslmode,
        sslrootcert: sslrootcert.map(Path::to_owned),
        query_connections: 1,
        write_connections: 1,
        connect_timeout: Duration::from_secs(5),
        query_timeout: Duration::from_secs(30),
        retention: RetentionPolicy { event_days: 30, dead_letter_days: 30, rollup_days: 30 },
    })
    .unwrap()
}

/// Writes a batch by COPY (the write pool) and reads it back (the query pool).
async fn writes_and_reads(store: &PostgresStore, service: &str) {
    let now = Utc::now();
    let events: Vec<_> = (0..3)
        .map(|n| {
            EventDraft {
                timestamp: now,
                service: service.to_owned(),
                message: format!("over TLS {n}"),
                metadata: None,
                idempotency_key: None,
            }
            .enrich(EventId::generate(), now)
        })
        .collect();
    store.write_batch(&events.iter().collect::<Vec<_>>()).await.unwrap();
    let page = store
        .query(&EventQuery {
            service: service.to_owned(),
            from: now - Days::minutes(1),
            to: now + Days::minutes(1),
            page: 1,
            page_size: 10,
            sort_field: SortField::Timestamp,
            sort_order: SortOrder::Desc,
            cursor: None,
            metadata: Vec::new(),
            filter: None,
            max_sorted_rows: QueryLimits::default().max_sorted_rows,
        })
        .await
        .unwrap();
    assert_eq!(page.events.len(), 3, "{service}");
}

async fn refused(store: &PostgresStore) -> String {
    store.ping().await.expect_err("the connection must be refused").to_string()
}

#[tokio::test]
async fn a_server_that_requires_tls_is_refused_in_plain_and_served_encrypted() {
    let cluster = TlsCluster::start();

    let error = refused(&store(cluster.url("127.0.0.1", "?sslmode=disable"), None, None)).await;
    assert!(error.contains("no encryption"), "the server turns plain TCP away: {error}");

    let required = store(cluster.url("127.0.0.1", "?sslmode=require"), None, None);
    required.migrate().await.unwrap();
    let today = Utc::now().date_naive();
    required.ensure_partitions(today - Days::days(1), today + Days::days(1)).await.unwrap();
    writes_and_reads(&required, "require").await;

    // `prefer` (the default) takes the TLS the server offers; the setting overrides the URL.
    writes_and_reads(&store(cluster.url("127.0.0.1", ""), None, None), "prefer").await;
    writes_and_reads(&store(cluster.url("127.0.0.1", "?sslmode=disable"), Some(SslMode::Require), None), "override")
        .await;
}

#[tokio::test]
async fn verifying_modes_trust_only_the_given_root_and_verify_full_the_host_name() {
    let cluster = TlsCluster::start();
    let ca = cluster.ca.to_str().unwrap();
    let verify_full = store(cluster.url("localhost", &format!("?sslmode=verify-full&sslrootcert={ca}")), None, None);
    verify_full.migrate().await.unwrap();
    let today = Utc::now().date_naive();
    verify_full.ensure_partitions(today - Days::days(1), today + Days::days(1)).await.unwrap();
    writes_and_reads(&verify_full, "verify-full").await;

    let unknown_issuer = [
        store(cluster.url("localhost", ""), Some(SslMode::VerifyFull), Some(&cluster.stranger)),
        store(cluster.url("localhost", ""), Some(SslMode::VerifyCa), Some(&cluster.stranger)),
        // `require` with a root certificate verifies the chain, as libpq does.
        store(cluster.url("localhost", "?sslmode=require"), None, Some(&cluster.stranger)),
        // Mozilla's roots do not include a CA made a moment ago.
        store(cluster.url("localhost", "?sslmode=verify-full"), None, None),
    ];
    for store in &unknown_issuer {
        let error = refused(store).await;
        assert!(error.contains("invalid peer certificate: UnknownIssuer"), "{error}");
    }

    // The certificate names `localhost`, not 127.0.0.1: only the chain is checked by verify-ca.
    let by_address = cluster.url("127.0.0.1", "");
    let error = refused(&store(by_address.clone(), Some(SslMode::VerifyFull), Some(&cluster.ca))).await;
    assert!(error.contains("certificate not valid for name \"127.0.0.1\""), "{error}");
    writes_and_reads(&store(by_address, Some(SslMode::VerifyCa), Some(&cluster.ca)), "verify-ca").await;
}
