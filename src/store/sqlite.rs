//! The SQLite backend: one database file (created with mode 0600, its directory if missing),
//! WAL journal, `synchronous=FULL` (a committed transaction survives power loss), a 10 s busy
//! timeout so several handles (or processes such as the CLI) can share the file.
//!
//! rusqlite is blocking: every operation runs on tokio's blocking thread pool
//! (`spawn_blocking`) with the connection behind a mutex, so async tasks never stall on disk.
//! Statements are those of `store/mod.rs`; `$N` placeholders become SQLite's `?N`.

use super::{MIGRATIONS, Row, Stmt, StoreError, Ty, Val, latest_version};
use crate::clock::blocking;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, TransactionBehavior, params_from_iter};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A handle on one SQLite connection; clones share it.
#[derive(Clone)]
pub struct Sqlite {
    conn: Arc<Mutex<Connection>>,
}

/// `$12` → `?12` (parameters keep their numbers).
fn placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

fn value(v: &Val) -> SqlValue {
    match v.clone() {
        Val::Int(x) => x.map_or(SqlValue::Null, SqlValue::Integer),
        Val::Real(x) => x.map_or(SqlValue::Null, SqlValue::Real),
        Val::Text(x) => x.map_or(SqlValue::Null, SqlValue::Text),
        Val::Bool(x) => x.map_or(SqlValue::Null, |b| SqlValue::Integer(i64::from(b))),
        Val::Bytes(x) => x.map_or(SqlValue::Null, SqlValue::Blob),
    }
}

fn read(row: &rusqlite::Row<'_>, types: &[Ty]) -> rusqlite::Result<Vec<Val>> {
    types
        .iter()
        .enumerate()
        .map(|(i, ty)| {
            Ok(match ty {
                Ty::Int => Val::Int(row.get(i)?),
                Ty::Real => Val::Real(row.get(i)?),
                Ty::Text => Val::Text(row.get(i)?),
                Ty::Bool => Val::Bool(row.get(i)?),
                Ty::Bytes => Val::Bytes(row.get(i)?),
            })
        })
        .collect()
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)")?;
    let current: i64 = tx.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_version", [], |r| r.get(0))?;
    if current > latest_version() {
        return Err(StoreError::SchemaTooNew { found: current, known: latest_version() });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        tx.execute_batch(&sql.replace("BYTEA", "BLOB"))?;
        tx.execute("INSERT INTO schema_version (version, applied_at) VALUES (?1, ?2)", (version, super::unix_now()))?;
    }
    tx.commit()?;
    Ok(())
}

impl Sqlite {
    pub(super) async fn open(path: &Path) -> Result<Sqlite, StoreError> {
        let path = path.to_path_buf();
        blocking(move || {
            let io = |source| StoreError::Io { path: path.clone(), source };
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            {
                use std::os::unix::fs::OpenOptionsExt;
                // Subjects and addresses are personal data: the file (and the WAL, which SQLite
                // creates with the same mode) is readable by moat only.
                std::fs::OpenOptions::new().write(true).create(true).truncate(false).mode(0o600).open(&path).map_err(io)?;
            }
            let mut conn = Connection::open(&path)?;
            conn.busy_timeout(Duration::from_secs(10))?;
            let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(StoreError::Corrupt { table: "sqlite", detail: format!("journal_mode is {mode}, not wal") });
            }
            conn.pragma_update(None, "synchronous", "FULL")?;
            migrate(&mut conn)?;
            Ok(Sqlite { conn: Arc::new(Mutex::new(conn)) })
        })
        .await
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = Arc::clone(&self.conn);
        blocking(move || {
            let mut guard = conn.lock().map_err(|_| StoreError::Task("an earlier store operation panicked".into()))?;
            f(&mut guard)
        })
        .await
    }

    pub(super) async fn query(
        &self,
        sql: &'static str,
        params: Vec<Val>,
        types: &'static [Ty],
        table: &'static str,
    ) -> Result<Vec<Row>, StoreError> {
        self.with(move |conn| {
            let mut statement = conn.prepare_cached(&placeholders(sql))?;
            let rows = statement.query_map(params_from_iter(params.iter().map(value)), |row| read(row, types))?;
            rows.map(|values| Ok(Row { table, values: values? })).collect()
        })
        .await
    }

    pub(super) async fn transaction(&self, stmts: Vec<Stmt>, gated: bool) -> Result<Vec<u64>, StoreError> {
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut counts = Vec::with_capacity(stmts.len());
            for (i, s) in stmts.iter().enumerate() {
                let n = tx.prepare_cached(&placeholders(s.sql))?.execute(params_from_iter(s.params.iter().map(value)))?;
                counts.push(n as u64);
                if gated && i == 0 && n == 0 {
                    return Ok(counts); // dropping `tx` rolls back
                }
            }
            tx.commit()?;
            Ok(counts)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::placeholders;
    use crate::store::{Store, StoreError, latest_version};

    #[tokio::test]
    async fn the_file_is_private_wal_and_a_newer_schema_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new/moat.db");
        let store = Store::open_sqlite(&path).await.unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        drop(store);
        let conn = rusqlite::Connection::open(&path).unwrap();
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        conn.execute("INSERT INTO schema_version (version, applied_at) VALUES (?1, 0)", [latest_version() + 1]).unwrap();
        drop(conn);
        let err = Store::open_sqlite(&path).await.unwrap_err();
        assert!(matches!(err, StoreError::SchemaTooNew { found, .. } if found == latest_version() + 1), "{err:?}");
    }

    #[test]
    fn placeholders_keep_their_numbers() {
        assert_eq!(placeholders("a = $1 AND b = $12 OR c = $1"), "a = ?1 AND b = ?12 OR c = ?1");
        assert_eq!(placeholders("x = '$'"), "x = '$'");
    }
}
