//! The PostgreSQL backend (tokio-postgres, no TLS: run it over a local socket, a private
//! network or a TLS tunnel). For operators with several nodes sharing one database.
//!
//! A small pool of [`CONNECTIONS`] connections per [`Store`](super::Store) handle (clones share
//! it), used in turn, each behind an async mutex for the length of one operation or transaction;
//! a connection that dropped is re-established on its next use. [`Postgres::lazy`] makes a pool
//! that connects on first use, so a server starts while the database is down. Migrations run in one
//! transaction under an advisory lock, so nodes starting together apply each one once.
//! Statements are those of `store/mod.rs`; each connection prepares each one once and keeps it
//! (a held copy's ingest was eight round trips per copy when every statement was prepared anew).

use super::{MIGRATIONS, Row, Stmt, StoreError, Ty, Val, latest_version};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Statement};

/// The advisory lock key migrations hold ("moat" in ASCII).
const MIGRATION_LOCK: i64 = 0x6d6f_6174;

/// Connections per store handle.
pub const CONNECTIONS: usize = 4;

/// One connection with the statements prepared on it.
struct Conn {
    client: Client,
    statements: std::collections::HashMap<&'static str, Statement>,
}

impl Conn {
    /// `sql` prepared on this connection (once; kept for the connection's life).
    async fn prepare(&mut self, sql: &'static str) -> Result<Statement, StoreError> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql).await?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }
}

/// A handle on a pool of PostgreSQL connections; clones share it.
#[derive(Clone)]
pub struct Postgres {
    clients: Arc<[Mutex<Option<Conn>>]>,
    next: Arc<AtomicUsize>,
    url: Arc<str>,
    /// Set once the migrations ran on this pool's first connection.
    migrated: Arc<tokio::sync::OnceCell<()>>,
}

async fn connect_client(url: &str) -> Result<Conn, StoreError> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "postgresql connection closed");
        }
    });
    Ok(Conn { client, statements: std::collections::HashMap::new() })
}

type Param = Box<dyn ToSql + Sync + Send>;

fn boxed(v: &Val) -> Param {
    match v.clone() {
        Val::Int(x) => Box::new(x),
        Val::Real(x) => Box::new(x),
        Val::Text(x) => Box::new(x),
        Val::Bool(x) => Box::new(x),
        Val::Bytes(x) => Box::new(x),
    }
}

fn refs(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect()
}

fn read(row: &tokio_postgres::Row, types: &[Ty]) -> Result<Vec<Val>, tokio_postgres::Error> {
    types
        .iter()
        .enumerate()
        .map(|(i, ty)| {
            Ok(match ty {
                Ty::Int => Val::Int(row.try_get(i)?),
                Ty::Real => Val::Real(row.try_get(i)?),
                Ty::Text => Val::Text(row.try_get(i)?),
                Ty::Bool => Val::Bool(row.try_get(i)?),
                Ty::Bytes => Val::Bytes(row.try_get(i)?),
            })
        })
        .collect()
}

async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)").await?;
    let current: i64 = tx.query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[]).await?.try_get(0)?;
    if current > latest_version() {
        return Err(StoreError::SchemaTooNew { found: current, known: latest_version() });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        tx.batch_execute(sql).await?;
        tx.execute("INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)", &[version, &super::unix_now()]).await?;
    }
    tx.commit().await?;
    Ok(())
}

impl Postgres {
    /// Connects the pool and runs the migrations; fails if PostgreSQL cannot be reached.
    pub(super) async fn connect(url: &str) -> Result<Postgres, StoreError> {
        let pool = Postgres::lazy(url);
        drop(pool.client().await?);
        for i in 1..CONNECTIONS {
            *pool.clients[i].lock().await = Some(connect_client(url).await?);
        }
        Ok(pool)
    }

    /// A pool that connects (and migrates) on first use, so a node can start while PostgreSQL
    /// is unreachable; every operation until then fails with the connection error.
    pub(super) fn lazy(url: &str) -> Postgres {
        let clients: Vec<Mutex<Option<Conn>>> = (0..CONNECTIONS).map(|_| Mutex::new(None)).collect();
        Postgres {
            clients: clients.into(),
            next: Arc::new(AtomicUsize::new(0)),
            url: url.into(),
            migrated: Arc::new(tokio::sync::OnceCell::new()),
        }
    }

    async fn client(&self) -> Result<MappedMutexGuard<'_, Conn>, StoreError> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len();
        let mut slot = self.clients[i].lock().await;
        if slot.as_ref().is_none_or(|conn| conn.client.is_closed()) {
            let mut conn = connect_client(&self.url).await?;
            if !self.migrated.initialized() {
                self.migrated.get_or_try_init(|| migrate(&mut conn.client)).await?;
            }
            *slot = Some(conn);
        }
        MutexGuard::try_map(slot, Option::as_mut).map_err(|_| StoreError::Task("no PostgreSQL connection".into()))
    }

    pub(super) async fn query(
        &self,
        sql: &'static str,
        params: Vec<Val>,
        types: &'static [Ty],
        table: &'static str,
    ) -> Result<Vec<Row>, StoreError> {
        let params: Vec<Param> = params.iter().map(boxed).collect();
        let mut conn = self.client().await?;
        let statement = conn.prepare(sql).await?;
        let rows = conn.client.query(&statement, &refs(&params)).await?;
        rows.iter().map(|row| Ok(Row { table, values: read(row, types)? })).collect()
    }

    pub(super) async fn transaction(&self, stmts: Vec<Stmt>, gated: bool) -> Result<Vec<u64>, StoreError> {
        let mut conn = self.client().await?;
        let mut prepared = Vec::with_capacity(stmts.len());
        for s in &stmts {
            prepared.push(conn.prepare(s.sql).await?);
        }
        let tx = conn.client.transaction().await?;
        let mut counts = Vec::with_capacity(stmts.len());
        for (i, (s, statement)) in stmts.iter().zip(&prepared).enumerate() {
            let params: Vec<Param> = s.params.iter().map(boxed).collect();
            let n = tx.execute(statement, &refs(&params)).await?;
            counts.push(n);
            if gated && i == 0 && n == 0 {
                tx.rollback().await?;
                return Ok(counts);
            }
        }
        tx.commit().await?;
        Ok(counts)
    }
}
