//! One page of `GET /events`. The sort column is chosen at run time, so the statement is
//! assembled from fixed fragments (never from client text) with every value bound.

use crate::error;
use aurore_domain::{CursorKey, Event, EventId, EventQuery, SortField, SortOrder, StoreError, StoredEvent};
use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::sql_types::{BigInt, Jsonb, Nullable, Text, Timestamptz, Uuid};
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
    let mut sql = String::from(
        r#"SELECT id, "timestamp", service, message, metadata, ingested_at, created_at FROM events
           WHERE service = $1 AND "timestamp" >= $2 AND "timestamp" <= $3"#,
    );
    if query.cursor.is_some() {
        // A row comparison walks the index from the cursor: the cost of a page does not
        // depend on how deep it is.
        sql.push_str(&format!(" AND ({column}, id) {after} ($4, $5)"));
    }
    sql.push_str(&format!(" ORDER BY {column} {direction}, id {direction} LIMIT "));
    let limit_param = if query.cursor.is_some() { 6 } else { 4 };
    sql.push_str(&format!("${limit_param} OFFSET ${}", limit_param + 1));

    let mut statement = diesel::sql_query(sql)
        .into_boxed::<Pg>()
        .bind::<Text, _>(query.service.clone())
        .bind::<Timestamptz, _>(query.from)
        .bind::<Timestamptz, _>(query.to);
    if let Some(cursor) = &query.cursor {
        statement = match &cursor.key {
            CursorKey::Time(time) => statement.bind::<Timestamptz, _>(*time),
            CursorKey::Text(text) => statement.bind::<Text, _>(text.clone()),
        }
        .bind::<Uuid, _>(cursor.id);
    }
    let page_size = i64::from(query.page_size);
    let offset = i64::try_from(query.offset()).unwrap_or(i64::MAX);
    let rows: Vec<Row> = statement
        .bind::<BigInt, _>(page_size + 1)
        .bind::<BigInt, _>(offset)
        .load(connection)
        .await
        .map_err(error::from_diesel)?;
    let has_more = rows.len() > query.page_size as usize;
    let events = rows.into_iter().take(query.page_size as usize).map(StoredEvent::from).collect();
    Ok((events, has_more))
}
