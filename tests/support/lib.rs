//! Shared helpers for the black-box suites: a fresh database per test, the real app on a
//! random port, and the real binary as a child process.

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use std::time::Duration;

/// The server the suites create their databases on: `AURORE_TEST_DATABASE_URL`, else
/// `DATABASE_URL`, else the local default. `just test` sets it after finding or starting
/// a server.
pub fn admin_url() -> String {
    std::env::var("AURORE_TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
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
    name: String,
}

impl TestDatabase {
    pub async fn create() -> Self {
        let name = format!("aurore_test_{}", uuid::Uuid::now_v7().simple());
        let admin = admin_url();
        let mut connection = AsyncPgConnection::establish(&admin)
            .await
            .unwrap_or_else(|error| panic!("cannot reach PostgreSQL at {admin} ({error}); run the tests with `just test`"));
        diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut connection).await.expect("create database");
        Self { url: with_database(&admin, &name), name }
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
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let found = self.count(sql).await;
            if found == expected || tokio::time::Instant::now() >= deadline {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin = admin_url();
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
