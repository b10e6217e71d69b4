//! The limit to compare with: the same events written by binary COPY straight into an
//! `events` table (give it a database migrated by `aurore migrate`), with as many
//! connections as Aurore has writers, no HTTP, no journal.

use crate::events;
use std::time::Instant;
use tokio_postgres::NoTls;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;

#[derive(Debug, Clone, clap::Args)]
pub struct BaselineArgs {
    /// A database with Aurore's schema.
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    #[arg(long, default_value_t = 5000)]
    batch: usize,
    /// Parallel COPY connections (Aurore's default is 2 writers).
    #[arg(long, default_value_t = 2)]
    connections: usize,
    #[arg(long, default_value_t = 10)]
    services: usize,
    #[arg(long, default_value_t = 64)]
    metadata_bytes: usize,
    /// Timestamps drawn uniformly from this many seconds before now, as a load whose
    /// events arrive late by up to that much (0: now, in order). Where rows land in the
    /// indexes, and so what COPY costs, depends on it: match the load compared with.
    #[arg(long, default_value_t = 0)]
    timestamp_spread_seconds: u32,
    #[arg(long)]
    json: bool,
}

const COPY: &str =
    r#"COPY events (id, "timestamp", service, message, metadata, ingested_at) FROM STDIN (FORMAT binary)"#;
const TYPES: [Type; 6] = [Type::UUID, Type::TIMESTAMPTZ, Type::TEXT, Type::TEXT, Type::JSONB, Type::TIMESTAMPTZ];

struct Row {
    id: uuid::Uuid,
    timestamp: chrono::DateTime<chrono::Utc>,
    service: String,
    message: String,
    metadata: serde_json::Value,
}

fn row(run_id: &str, args: &BaselineArgs) -> Row {
    let mut event = events::event(run_id, args.services, args.metadata_bytes, false);
    Row {
        id: uuid::Uuid::now_v7(),
        timestamp: chrono::Utc::now()
            - chrono::Duration::milliseconds(fastrand::i64(0..=i64::from(args.timestamp_spread_seconds) * 1000)),
        service: event["service"].as_str().unwrap_or_default().to_owned(),
        message: event["message"].as_str().unwrap_or_default().to_owned(),
        metadata: event["metadata"].take(),
    }
}

pub async fn run(args: BaselineArgs) -> anyhow::Result<()> {
    let run_id = format!("{:08x}", fastrand::u32(..));
    let per_connection = args.events / args.connections.max(1) as u64;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.connections.max(1) {
        let (client, connection) = tokio_postgres::connect(&args.database_url, NoTls).await?;
        tokio::spawn(connection);
        let (args, run_id) = (args.clone(), run_id.clone());
        tasks.push(tokio::spawn(async move {
            let mut written = 0u64;
            while written < per_connection {
                let size = (per_connection - written).min(args.batch as u64);
                let rows: Vec<Row> = (0..size).map(|_| row(&run_id, &args)).collect();
                let sink = client.copy_in(COPY).await?;
                let writer = BinaryCopyInWriter::new(sink, &TYPES);
                let mut writer = std::pin::pin!(writer);
                let now = chrono::Utc::now();
                for row in &rows {
                    writer
                        .as_mut()
                        .write(&[&row.id, &row.timestamp, &row.service, &row.message, &row.metadata, &now])
                        .await?;
                }
                writer.finish().await?;
                written += size;
            }
            anyhow::Ok(written)
        }));
    }
    let mut rows = 0;
    for task in tasks {
        rows += task.await??;
    }
    let seconds = start.elapsed().as_secs_f64();
    let rate = rows as f64 / seconds;
    if args.json {
        println!("{}", serde_json::json!({"rows": rows, "seconds": seconds, "rows_per_second": rate}));
    } else {
        println!(
            "raw binary COPY: {rows} rows in {seconds:.1} s = {rate:.0} rows/s ({} connections, batches of {})",
            args.connections, args.batch
        );
    }
    Ok(())
}
