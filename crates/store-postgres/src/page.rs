//! One page of `GET /events`. The sort column is chosen at run time, so the statement is
//! assembled from fixed fragments (never from client text) with every value bound.

use crate::error;
use crate::filter::Bound;
use aurore_domain::{CursorKey, Event, EventId, EventQuery, SortField, SortOrder, StoreError, StoredEvent};
use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::query_builder::{BoxedSqlQuery, SqlQuery};
use diesel::sql_types::{Array, BigInt, Jsonb, Nullable, Text, Timestamptz, Uuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

#[derive(diesel::QueryableByName)]
struct Row {
    #[diesel(sql_type = Uuid)]
    id: uuid::Uuid,
    #[diesel(sql_type = Timestamptz)]
    timestamp: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    service: String,
    #[diesel(sql_type = Text)]
    message: String,
    #[diesel(sql_type = Nullable<Jsonb>)]
    metadata: Option<serde_json::Value>,
    #[diesel(sql_type = Timestamptz)]
    ingested_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
}

impl From<Row> for StoredEvent {
    fn from(row: Row) -> Self {
        StoredEvent {
            event: Event {
                id: EventId::from_uuid(row.id),
                timestamp: row.timestamp,
                service: row.service,
                message: row.message,
                metadata: row.metadata,
                ingested_at: row.ingested_at,
            },
            created_at: row.created_at,
        }
    }
}

fn column(field: SortField) -> &'static str {
    match field {
        SortField::Timestamp => r#""timestamp""#,
        SortField::Service => "service",
        SortField::Message => "message",
        SortField::IngestedAt => "ingested_at",
        SortField::CreatedAt => "created_at",
    }
}

/// A statement over the events a query selects: `select`, then the WHERE clause shared by a
/// page and its count, every value bound. Returns the number of the next placeholder.
fn filtered(select: &str, query: &EventQuery) -> (BoxedSqlQuery<'static, Pg, SqlQuery>, usize) {
    let mut sql = format!(r#"{select} FROM events WHERE service = $1 AND "timestamp" >= $2 AND "timestamp" <= $3"#);
    let mut next = 4;
    for filter in &query.metadata {
        if filter.excluded {
            // NULL metadata lacks the key, so it is kept.
            sql.push_str(&format!(" AND NOT coalesce(metadata @> ANY(${next}::jsonb[]), false)"));
        } else {
            sql.push_str(&format!(" AND metadata @> ANY(${next}::jsonb[])"));
        }
        next += 1;
    }
    let mut bound = Vec::new();
    if let Some(filter) = &query.filter {
        sql.push_str(" AND ");
        sql.push_str(&crate::filter::compile(filter, &mut next, &mut bound));
    }
    let mut statement = diesel::sql_query(sql)
        .into_boxed::<Pg>()
        .bind::<Text, _>(query.service.clone())
        .bind::<Timestamptz, _>(query.from)
        .bind::<Timestamptz, _>(query.to);
    for filter in &query.metadata {
        statement = statement.bind::<Array<Jsonb>, _>(filter.candidates());
    }
    for value in bound {
        statement = match value {
            Bound::Text(text) => statement.bind::<Text, _>(text),
            Bound::Jsonbs(values) => statement.bind::<Array<Jsonb>, _>(values),
            Bound::Path(keys) => statement.bind::<Array<Text>, _>(keys),
        };
    }
    (statement, next)
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    total: i64,
}

/// Exactly how many events a filtered query selects (the hourly counts know only service
/// and time). Bounded by the service's rows in the range, read through its index.
pub(crate) async fn count(connection: &mut AsyncPgConnection, query: &EventQuery) -> Result<u64, StoreError> {
    let (statement, _) = filtered("SELECT count(*) AS total", query);
    let count: Count = statement.get_result(connection).await.map_err(error::from_diesel)?;
    Ok(count.total.unsigned_abs())
}

/// Reads one row more than the page holds, to know whether another page follows.
pub(crate) async fn fetch(
    connection: &mut AsyncPgConnection,
    query: &EventQuery,
) -> Result<(Vec<StoredEvent>, bool), StoreError> {
    let column = column(query.sort_field);
    let (direction, after) = match query.sort_order {
        SortOrder::Asc => ("ASC", ">"),
        SortOrder::Desc => ("DESC", "<"),
    };
    let (mut statement, mut next) =
        filtered("SELECT id, \"timestamp\", service, message, metadata, ingested_at, created_at", query);
    if let Some(cursor) = &query.cursor {
        // A row comparison walks the index from the cursor: the cost of a page does not
        // depend on how deep it is.
        let key = match cursor.key {
            CursorKey::Time(_) => format!("${next}"),
            // The row's own sort key, read by primary key; a row gone since (retention)
            // ends the walk.
            CursorKey::Row(_) => {
                format!(r#"(SELECT {column} FROM events WHERE "timestamp" = ${next} AND id = ${})"#, next + 1)
            }
        };
        statement = statement.sql(format!(" AND ({column}, id) {after} ({key}, ${})", next + 1));
        let (CursorKey::Time(instant) | CursorKey::Row(instant)) = cursor.key;
        statement = statement.bind::<Timestamptz, _>(instant).bind::<Uuid, _>(cursor.id);
        next += 2;
    }
    let page_size = i64::from(query.page_size);
    let offset = i64::try_from(query.offset()).unwrap_or(i64::MAX);
    let rows: Vec<Row> = statement
        .sql(format!(" ORDER BY {column} {direction}, id {direction} LIMIT ${next} OFFSET ${}", next + 1))
        .bind::<BigInt, _>(page_size + 1)
        .bind::<BigInt, _>(offset)
        .load(connection)
        .await
        .map_err(error::from_diesel)?;
    let has_more = rows.len() > query.page_size as usize;
    let events = rows.into_iter().take(query.page_size as usize).map(StoredEvent::from).collect();
    Ok((events, has_more))
}
