//! The three SQL dialects and each one's statements. The statements are written once with `?`
//! placeholders; PostgreSQL's `$n` form is derived from them.

use std::sync::OnceLock;

/// Which database a URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite (`sqlite:path` or `sqlite://path`).
    Sqlite,
    /// PostgreSQL (`postgres://` or `postgresql://`).
    Postgres,
    /// MySQL or MariaDB (`mysql://` or `mariadb://`).
    MySql,
}

impl Dialect {
    /// The dialect of a database URL, by its scheme.
    pub fn of_url(url: &str) -> Option<Dialect> {
        let scheme = url.split(':').next()?.to_ascii_lowercase();
        match scheme.as_str() {
            "sqlite" | "sqlite3" => Some(Dialect::Sqlite),
            "postgres" | "postgresql" => Some(Dialect::Postgres),
            "mysql" | "mariadb" => Some(Dialect::MySql),
            _ => None,
        }
    }

    /// Its short name (`sqlite`, `postgres`, `mysql`).
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
            Dialect::MySql => "mysql",
        }
    }
}

/// Every statement the backend runs, in one dialect.
pub(crate) struct Statements {
    pub exists: &'static str,
    pub meta: &'static str,
    pub del_chunks: &'static str,
    pub del_object: &'static str,
    pub ins_object: &'static str,
    pub ins_chunk: &'static str,
    /// Binds (to, from).
    pub copy_object: &'static str,
    /// Binds (to, from).
    pub copy_chunks: &'static str,
    pub all_chunks: &'static str,
    /// Binds (key, first chunk, last chunk).
    pub range_chunks: &'static str,
    /// Binds (prefix length, prefix): byte-exact, whatever the column's collation sorts by.
    pub list: &'static str,
    /// Binds (user, mailbox, mailbox name, guid, date, zone, saved, key).
    pub set_meta: &'static str,
    /// Size, then the metadata columns in `set_meta`'s order.
    pub get_meta: &'static str,
}

const PORTABLE: Statements = Statements {
    exists: "SELECT 1 FROM strata_objects WHERE okey = ?",
    meta: "SELECT size, chunk_bytes FROM strata_objects WHERE okey = ?",
    del_chunks: "DELETE FROM strata_chunks WHERE okey = ?",
    del_object: "DELETE FROM strata_objects WHERE okey = ?",
    ins_object: "INSERT INTO strata_objects (okey, size, chunk_bytes) VALUES (?, ?, ?)",
    ins_chunk: "INSERT INTO strata_chunks (okey, n, data) VALUES (?, ?, ?)",
    copy_object: "INSERT INTO strata_objects (okey, size, chunk_bytes, mail_user, mail_mailbox, \
                  mail_mailbox_name, mail_guid, mail_date, mail_zone, mail_saved) \
                  SELECT ?, size, chunk_bytes, mail_user, mail_mailbox, mail_mailbox_name, \
                  mail_guid, mail_date, mail_zone, mail_saved FROM strata_objects WHERE okey = ?",
    copy_chunks: "INSERT INTO strata_chunks (okey, n, data) \
                  SELECT ?, n, data FROM strata_chunks WHERE okey = ?",
    all_chunks: "SELECT data FROM strata_chunks WHERE okey = ? ORDER BY n",
    range_chunks: "SELECT data FROM strata_chunks WHERE okey = ? AND n >= ? AND n <= ? ORDER BY n",
    list: "SELECT okey, size FROM strata_objects WHERE substr(okey, 1, ?) = ?",
    set_meta: "UPDATE strata_objects SET mail_user = ?, mail_mailbox = ?, mail_mailbox_name = ?, \
               mail_guid = ?, mail_date = ?, mail_zone = ?, mail_saved = ? WHERE okey = ?",
    get_meta: "SELECT size, mail_user, mail_mailbox, mail_mailbox_name, mail_guid, mail_date, \
               mail_zone, mail_saved FROM strata_objects WHERE okey = ?",
};

/// `?` placeholders numbered `$1, $2...`, for PostgreSQL.
fn numbered(sql: &str) -> &'static str {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    // Built once per process (see `Statements::get`), so leaking is bounded.
    Box::leak(out.into_boxed_str())
}

impl Statements {
    /// The statements of `d`.
    pub fn get(d: Dialect) -> &'static Statements {
        static PG: OnceLock<Statements> = OnceLock::new();
        match d {
            Dialect::Sqlite | Dialect::MySql => &PORTABLE,
            Dialect::Postgres => PG.get_or_init(|| {
                let p = &PORTABLE;
                Statements {
                    exists: numbered(p.exists),
                    meta: numbered(p.meta),
                    del_chunks: numbered(p.del_chunks),
                    del_object: numbered(p.del_object),
                    ins_object: numbered(p.ins_object),
                    ins_chunk: numbered(p.ins_chunk),
                    copy_object: numbered(p.copy_object),
                    copy_chunks: numbered(p.copy_chunks),
                    all_chunks: numbered(p.all_chunks),
                    range_chunks: numbered(p.range_chunks),
                    list: numbered(p.list),
                    set_meta: numbered(p.set_meta),
                    get_meta: numbered(p.get_meta),
                }
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_placeholders_are_numbered() {
        let s = Statements::get(Dialect::Postgres);
        assert_eq!(
            s.range_chunks,
            "SELECT data FROM strata_chunks WHERE okey = $1 AND n >= $2 AND n <= $3 ORDER BY n"
        );
    }

    #[test]
    fn urls_choose_the_dialect() {
        assert_eq!(Dialect::of_url("sqlite:/var/x.db"), Some(Dialect::Sqlite));
        assert_eq!(
            Dialect::of_url("postgresql://u@h/db"),
            Some(Dialect::Postgres)
        );
        assert_eq!(Dialect::of_url("mariadb://root@h/db"), Some(Dialect::MySql));
        assert_eq!(Dialect::of_url("oracle://h"), None);
    }
}
