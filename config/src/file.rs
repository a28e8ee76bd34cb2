//! Reading the TOML file: syntax and types through serde (unknown keys refused), then every
//! value checked, with all problems reported together, each with its key and line.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{ConfigError, ConfigErrors};
use crate::schema::{
    AppendAck, Backend, Compression, Config, Delay, Encryption, Journal, PlaintextAuth, S3, Secret,
    SingleInstance, Store, Tls,
};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    data_dir: Option<String>,
    imap: Option<RawImap>,
    tls: Option<RawTls>,
    storage: Option<RawStorage>,
    stores: Option<BTreeMap<String, RawStore>>,
    index: Option<RawIndex>,
    auth: Option<RawAuth>,
    log: Option<RawLog>,
    lmtp: Option<RawLmtp>,
    quota: Option<RawQuota>,
    metrics: Option<RawMetrics>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawQuota {
    storage: Option<NumberOrText>,
    messages: Option<NumberOrText>,
}

/// A value given as a number or as text (`"2G"`, `"unlimited"`).
#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrText {
    Number(u64),
    Text(String),
}

impl NumberOrText {
    fn text(&self) -> String {
        match self {
            NumberOrText::Number(n) => n.to_string(),
            NumberOrText::Text(t) => t.clone(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLmtp {
    listen: Option<String>,
    socket: Option<String>,
    hostname: Option<String>,
    domains: Option<Vec<String>>,
    detail_delimiter: Option<String>,
    detail_mailbox: Option<bool>,
    max_message_bytes: Option<u64>,
    max_recipients: Option<u32>,
    max_connections: Option<u32>,
    timeout_secs: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    backend: Option<String>,
    cache_entries: Option<u32>,
    cache_ttl_secs: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawImap {
    starttls: Option<String>,
    tls: Option<String>,
    plaintext_auth: Option<String>,
    max_connections: Option<u32>,
    max_connections_per_ip: Option<u32>,
    max_command_bytes: Option<u32>,
    max_literal_bytes: Option<u64>,
    max_command_bytes_before_login: Option<u32>,
    max_literal_bytes_before_login: Option<u32>,
    login_timeout_secs: Option<u64>,
    command_timeout_secs: Option<u64>,
    idle_timeout_secs: Option<u64>,
    failed_login_delay_ms: Option<u64>,
    max_failed_logins_per_ip: Option<u32>,
    max_failed_logins_per_account: Option<u32>,
    max_login_checks_per_ip: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Option<String>,
    key: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    name: Option<String>,
    id: Option<u16>,
    backend: Option<String>,
    append_ack: Option<String>,
    read_concurrency: Option<u32>,
    reconcile_interval_secs: Option<u64>,
    maildir: Option<RawMaildir>,
    sql: Option<RawSql>,
    s3: Option<RawS3>,
    journal: Option<RawJournal>,
    delay: Option<RawDelay>,
    compression: Option<RawCompression>,
    encryption: Option<RawEncryption>,
    single_instance: Option<RawSingleInstance>,
    tiering: Option<RawTiering>,
    cache: Option<RawCache>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTiering {
    to: Option<String>,
    interval_secs: Option<u64>,
    rate: Option<NumberOrText>,
    date: Option<String>,
    rule: Option<Vec<RawTierRule>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTierRule {
    older_than_days: Option<u64>,
    mailboxes: Option<Vec<String>>,
    larger_than: Option<NumberOrText>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCache {
    dir: Option<String>,
    size: Option<NumberOrText>,
    stores: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStore {
    id: Option<u16>,
    backend: Option<String>,
    maildir: Option<RawMaildir>,
    sql: Option<RawSql>,
    s3: Option<RawS3>,
    journal: Option<RawJournal>,
    delay: Option<RawDelay>,
    compression: Option<RawCompression>,
    encryption: Option<RawEncryption>,
    single_instance: Option<RawSingleInstance>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawEncryption {
    keys: Option<String>,
    key_id: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSingleInstance {
    min_part: Option<NumberOrText>,
    grace_secs: Option<u64>,
    collect_interval_secs: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCompression {
    level: Option<i32>,
    frame_kib: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawS3 {
    endpoint: Option<String>,
    bucket: Option<String>,
    prefix: Option<String>,
    region: Option<String>,
    access_key: Option<String>,
    secret_key: Option<String>,
    path_style: Option<bool>,
    max_requests: Option<u32>,
    attempts: Option<u32>,
    connect_timeout_ms: Option<u64>,
    request_timeout_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawJournal {
    enabled: Option<bool>,
    dir: Option<String>,
    max_mb: Option<u64>,
    segment_mb: Option<u64>,
    uploads: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSql {
    url: Option<String>,
    max_connections: Option<u32>,
    chunk_kb: Option<u64>,
    connect_timeout_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMaildir {
    root: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDelay {
    seed: Option<u64>,
    read_ms: Option<u64>,
    read_jitter_ms: Option<u64>,
    write_ms: Option<u64>,
    write_jitter_ms: Option<u64>,
    error_rate: Option<f64>,
    stall_rate: Option<f64>,
    stall_ms: Option<u64>,
    ack_ms: Option<u64>,
    ack_jitter_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawIndex {
    group_commit_window_ms: Option<u64>,
    flag_sync_delay_ms: Option<u64>,
    cache_mb: Option<u64>,
    repack_ratio: Option<f64>,
    log_retention: Option<u64>,
    ship: Option<RawShip>,
    fts: Option<RawFts>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFts {
    enabled: Option<bool>,
    writer_memory_mb: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawShip {
    enabled: Option<bool>,
    dir: Option<String>,
    max_lag_ms: Option<u64>,
    max_changes: Option<u64>,
    compact_ratio: Option<f64>,
    max_diffs: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: Option<String>,
    format: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Option<String>,
}

/// Reads the file into the raw structure. A key serde refuses (unknown, or holding a value of
/// the wrong type) is recorded against its dotted key and taken out, and the rest read again,
/// so that every such problem is reported at once with all the others. Only a syntax error
/// stops it.
fn raw_config(text: &str) -> Result<(RawConfig, Vec<(String, String)>), toml::de::Error> {
    let mut doc: toml_edit::DocumentMut = match text.parse() {
        Ok(d) => d,
        Err(_) => return toml::from_str::<RawConfig>(text).map(|r| (r, Vec::new())),
    };
    let mut refused = Vec::new();
    loop {
        let current = doc.to_string();
        let e = match toml::from_str::<RawConfig>(&current) {
            Ok(raw) => return Ok((raw, refused)),
            Err(e) => e,
        };
        let parsed = toml_edit::Document::parse(current.clone()).ok();
        let path = e
            .span()
            .zip(parsed.as_ref())
            .and_then(|(span, d)| key_at(d.as_table(), span.start));
        let Some(path) = path.filter(|p| remove_key(&mut doc, p)) else {
            // Nothing to take out: report it as it is, against no key.
            refused.push((String::new(), e.message().to_string()));
            return Ok((RawConfig::default(), refused));
        };
        refused.push((path.join("."), e.message().to_string()));
    }
}

/// The dotted path of the innermost key whose name or value holds byte `offset`.
fn key_at(table: &toml_edit::Table, offset: usize) -> Option<Vec<String>> {
    let within = |s: Option<std::ops::Range<usize>>| s.is_some_and(|s| s.contains(&offset));
    for (name, item) in table.iter() {
        let key_span = table.key(name).and_then(toml_edit::Key::span);
        let deeper = match item {
            toml_edit::Item::Table(t) => key_at(t, offset),
            toml_edit::Item::Value(toml_edit::Value::InlineTable(t)) => {
                key_at(&t.clone().into_table(), offset)
            }
            _ => None,
        };
        if let Some(mut rest) = deeper {
            rest.insert(0, name.to_string());
            return Some(rest);
        }
        if within(key_span) || within(item.span()) {
            return Some(vec![name.to_string()]);
        }
    }
    None
}

/// Takes the key at `path` out of the document; whether it was there.
fn remove_key(doc: &mut toml_edit::DocumentMut, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut table: &mut dyn toml_edit::TableLike = doc.as_table_mut();
    for part in parents {
        match table.get_mut(part).and_then(|i| i.as_table_like_mut()) {
            Some(t) => table = t,
            None => return false,
        }
    }
    table.remove(last).is_some()
}

/// Whether a tracing filter directive is one Strata's logging takes as meant: a level, or a
/// `target=level`. A bare word is taken by the filter as a target and would silence the rest.
fn log_directive(d: &str) -> bool {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let level = |l: &str| LEVELS.iter().any(|v| v.eq_ignore_ascii_case(l.trim()));
    match d.split_once('=') {
        Some((target, l)) => !target.trim().is_empty() && level(l),
        None => level(d),
    }
}

/// Whether a URL names a database the SQL backend speaks.
fn sql_scheme(url: &str) -> bool {
    let scheme = url
        .split(':')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    matches!(
        scheme.as_str(),
        "sqlite" | "sqlite3" | "postgres" | "postgresql" | "mysql" | "mariadb"
    ) && url.len() > scheme.len() + 1
}

/// Collects problems as (dotted key, message).
#[derive(Default)]
struct Problems(Vec<(String, String)>);

impl Problems {
    fn add(&mut self, key: &str, message: impl Into<String>) {
        self.0.push((key.to_string(), message.into()));
    }

    fn positive<T: PartialOrd + Default + Copy>(
        &mut self,
        key: &str,
        v: Option<T>,
        default: T,
    ) -> T {
        match v {
            Some(v) if v <= T::default() => {
                self.add(key, "must be greater than 0");
                default
            }
            Some(v) => v,
            None => default,
        }
    }

    fn rate(&mut self, key: &str, v: Option<f64>) -> f64 {
        match v {
            Some(r) if !(0.0..=1.0).contains(&r) => {
                self.add(key, format!("{r} is not a rate between 0 and 1"));
                0.0
            }
            Some(r) => r,
            None => 0.0,
        }
    }

    fn listener(
        &mut self,
        key: &str,
        v: Option<String>,
        default: Option<SocketAddr>,
    ) -> Option<SocketAddr> {
        match v.as_deref().map(str::trim) {
            None => default,
            Some("") => None,
            Some(text) => match text.to_socket_addrs().map(|mut a| a.next()) {
                Ok(Some(addr)) => Some(addr),
                _ => {
                    self.add(key, format!("{text:?} is not an address and port (like \"127.0.0.1:1143\"); \"\" disables the listener"));
                    default
                }
            },
        }
    }
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = PathBuf::from(p);
    if p.is_absolute() { p } else { base.join(p) }
}

/// Parses a configuration text. Relative paths in it are taken from `base` (the file's
/// directory); `file` names the file in errors.
pub fn parse(text: &str, base: &Path, file: Option<&Path>) -> Result<Config, ConfigErrors> {
    parse_checked(text, base, file, false)
}

/// [`parse`], also checking that the files the configuration names can be read (`check_fs`),
/// so that those problems come with the others, each with its line.
fn parse_checked(
    text: &str,
    base: &Path,
    file: Option<&Path>,
    check_fs: bool,
) -> Result<Config, ConfigErrors> {
    let (raw, refused) = match raw_config(text) {
        Ok(r) => r,
        Err(e) => {
            let line = e.span().map(|s| line_of(text, s.start));
            return Err(ConfigErrors(vec![ConfigError {
                file: file.map(Path::to_path_buf),
                key: String::new(),
                line,
                message: e.message().to_string(),
            }]));
        }
    };
    let mut p = Problems(refused);
    let defaults = Config::default();
    let data_dir = match raw.data_dir.as_deref() {
        Some("") => {
            p.add("data_dir", "must not be empty");
            defaults.data_dir.clone()
        }
        Some(d) => resolve(base, d),
        None => defaults.data_dir.clone(),
    };

    let ri = raw.imap.unwrap_or_default();
    let di = &defaults.imap;
    let plaintext_auth = match ri.plaintext_auth.as_deref() {
        None => di.plaintext_auth,
        Some("never") => PlaintextAuth::Never,
        Some("loopback") => PlaintextAuth::Loopback,
        Some("always") => PlaintextAuth::Always,
        Some(other) => {
            p.add(
                "imap.plaintext_auth",
                format!("{other:?} is not one of \"never\", \"loopback\", \"always\""),
            );
            di.plaintext_auth
        }
    };
    let imap = crate::schema::Imap {
        starttls: p.listener("imap.starttls", ri.starttls, di.starttls),
        tls: p.listener("imap.tls", ri.tls, di.tls),
        plaintext_auth,
        max_connections: p.positive(
            "imap.max_connections",
            ri.max_connections,
            di.max_connections,
        ),
        max_connections_per_ip: p.positive(
            "imap.max_connections_per_ip",
            ri.max_connections_per_ip,
            di.max_connections_per_ip,
        ),
        max_command_bytes: p.positive(
            "imap.max_command_bytes",
            ri.max_command_bytes,
            di.max_command_bytes,
        ),
        max_literal_bytes: p.positive(
            "imap.max_literal_bytes",
            ri.max_literal_bytes,
            di.max_literal_bytes,
        ),
        max_command_bytes_before_login: p.positive(
            "imap.max_command_bytes_before_login",
            ri.max_command_bytes_before_login,
            di.max_command_bytes_before_login,
        ),
        max_literal_bytes_before_login: p.positive(
            "imap.max_literal_bytes_before_login",
            ri.max_literal_bytes_before_login,
            di.max_literal_bytes_before_login,
        ),
        login_timeout: Duration::from_secs(p.positive(
            "imap.login_timeout_secs",
            ri.login_timeout_secs,
            di.login_timeout.as_secs(),
        )),
        command_timeout: Duration::from_secs(p.positive(
            "imap.command_timeout_secs",
            ri.command_timeout_secs,
            di.command_timeout.as_secs(),
        )),
        idle_timeout: Duration::from_secs(p.positive(
            "imap.idle_timeout_secs",
            ri.idle_timeout_secs,
            di.idle_timeout.as_secs(),
        )),
        failed_login_delay: Duration::from_millis(
            ri.failed_login_delay_ms
                .unwrap_or(di.failed_login_delay.as_millis() as u64),
        ),
        max_failed_logins_per_ip: p.positive(
            "imap.max_failed_logins_per_ip",
            ri.max_failed_logins_per_ip,
            di.max_failed_logins_per_ip,
        ),
        max_failed_logins_per_account: p.positive(
            "imap.max_failed_logins_per_account",
            ri.max_failed_logins_per_account,
            di.max_failed_logins_per_account,
        ),
        max_login_checks_per_ip: p.positive(
            "imap.max_login_checks_per_ip",
            ri.max_login_checks_per_ip,
            di.max_login_checks_per_ip,
        ),
    };
    if imap.starttls.is_none() && imap.tls.is_none() {
        p.add(
            "imap",
            "both listeners are disabled; set imap.starttls or imap.tls",
        );
    }
    if imap.max_connections_per_ip > imap.max_connections {
        p.add(
            "imap.max_connections_per_ip",
            "is larger than imap.max_connections",
        );
    }

    let tls = match raw.tls.unwrap_or_default() {
        RawTls {
            cert: None,
            key: None,
        } => Tls::SelfSigned,
        RawTls {
            cert: Some(c),
            key: Some(k),
        } if !c.is_empty() && !k.is_empty() => {
            let (cert, key) = (resolve(base, &c), resolve(base, &k));
            if check_fs {
                for (name, path) in [("tls.cert", &cert), ("tls.key", &key)] {
                    if let Err(e) = std::fs::File::open(path) {
                        p.add(name, format!("cannot read {}: {e}", path.display()));
                    }
                }
            }
            Tls::Files { cert, key }
        }
        RawTls {
            cert: Some(c),
            key: Some(k),
        } if c.is_empty() && k.is_empty() => Tls::SelfSigned,
        RawTls { cert, .. } => {
            let key = if cert.as_deref().is_none_or(str::is_empty) {
                "tls.cert"
            } else {
                "tls.key"
            };
            p.add(key, "tls.cert and tls.key go together: set both, or neither for a self-signed certificate");
            Tls::SelfSigned
        }
    };

    let rs = raw.storage.unwrap_or_default();
    let ds = &defaults.storage;
    let append_ack = match rs.append_ack.as_deref() {
        None => ds.append_ack,
        Some("soft-done") => AppendAck::SoftDone,
        Some("acked") => AppendAck::Acked,
        Some(other) => {
            p.add(
                "storage.append_ack",
                format!("{other:?} is not \"soft-done\" or \"acked\""),
            );
            ds.append_ack
        }
    };
    let read_concurrency = p.positive(
        "storage.read_concurrency",
        rs.read_concurrency,
        ds.read_concurrency,
    );
    let main_name = rs.name.clone().unwrap_or_else(|| ds.main.name.clone());
    if !valid_store_name(&main_name) {
        p.add(
            "storage.name",
            format!("{main_name:?} is not a store name (1 to 32 of a-z 0-9 _ -)"),
        );
    }
    let main_raw = RawStore {
        id: Some(rs.id.unwrap_or(ds.main.id)),
        backend: rs.backend,
        maildir: rs.maildir,
        sql: rs.sql,
        s3: rs.s3,
        journal: rs.journal,
        delay: rs.delay,
        compression: rs.compression,
        single_instance: rs.single_instance,
        encryption: rs.encryption,
    };
    let ctx = StoreContext {
        base,
        data_dir: &data_dir,
        journal: &ds.main.journal,
    };
    let main_journal = data_dir.join("journal");
    let main = store(&mut p, &ctx, "storage", main_name, main_raw, main_journal);
    let mut others = Vec::new();
    for (name, raw_store) in raw.stores.unwrap_or_default() {
        let key = format!("stores.{name}");
        if !valid_store_name(&name) {
            p.add(
                &key,
                format!("{name:?} is not a store name (1 to 32 of a-z 0-9 _ -)"),
            );
        }
        if raw_store.id.is_none() {
            p.add(
                &key,
                "needs an id: the number the index records for bodies in this store",
            );
        }
        // Each other store gets a journal directory of its own.
        let journal_dir = data_dir.join(format!("journal-{name}"));
        others.push(store(&mut p, &ctx, &key, name, raw_store, journal_dir));
    }
    let mut storage = crate::schema::Storage {
        main,
        others,
        append_ack,
        read_concurrency,
        reconcile_interval: rs
            .reconcile_interval_secs
            .map_or(ds.reconcile_interval, Duration::from_secs),
        tiering: None,
        cache: None,
    };
    check_distinct(&mut p, &storage);
    storage.tiering = rs.tiering.and_then(|t| tiering(&mut p, t, &storage));
    storage.cache = rs
        .cache
        .and_then(|c| cache(&mut p, c, &storage, &data_dir, base));

    let rx = raw.index.unwrap_or_default();
    let dx = &defaults.index;
    let repack_ratio = match rx.repack_ratio {
        Some(r) if r.is_nan() || r <= 1.0 => {
            p.add(
                "index.repack_ratio",
                format!("{r} must be greater than 1 (the file over its live data)"),
            );
            dx.repack_ratio
        }
        Some(r) => r,
        None => dx.repack_ratio,
    };
    let index = crate::schema::Index {
        group_commit_window: rx
            .group_commit_window_ms
            .map_or(dx.group_commit_window, Duration::from_millis),
        flag_sync_delay: rx
            .flag_sync_delay_ms
            .map_or(dx.flag_sync_delay, Duration::from_millis),
        cache_bytes: p.positive("index.cache_mb", rx.cache_mb, dx.cache_bytes >> 20) << 20,
        repack_ratio,
        log_retention: rx.log_retention.unwrap_or(dx.log_retention),
        ship: ship(
            &mut p,
            rx.ship.unwrap_or_default(),
            &dx.ship,
            &storage.main,
            ctx.base,
        ),
        fts: {
            let rf = rx.fts.unwrap_or_default();
            let mb = rf
                .writer_memory_mb
                .unwrap_or(dx.fts.writer_memory_bytes >> 20);
            if !(15..=4096).contains(&mb) {
                p.add(
                    "index.fts.writer_memory_mb",
                    format!("{mb} is outside 15..=4096 (the full-text writer needs at least 15)"),
                );
            }
            crate::schema::Fts {
                enabled: rf.enabled.unwrap_or(dx.fts.enabled),
                writer_memory_bytes: mb.clamp(15, 4096) << 20,
            }
        },
    };
    if index.group_commit_window > Duration::from_secs(1) {
        p.add(
            "index.group_commit_window_ms",
            "more than 1000 ms would hold every flag change that long",
        );
    }

    if index.flag_sync_delay > Duration::from_secs(10) {
        p.add(
            "index.flag_sync_delay_ms",
            "more than 10000 ms would risk that much of flag changes on a power loss",
        );
    }

    let raw_auth = raw.auth.unwrap_or_default();
    let auth = crate::schema::Auth {
        cache_entries: raw_auth
            .cache_entries
            .unwrap_or(defaults.auth.cache_entries),
        cache_ttl: raw_auth
            .cache_ttl_secs
            .map_or(defaults.auth.cache_ttl, Duration::from_secs),
        backend: match raw_auth.backend.as_deref() {
            None | Some("file") => crate::schema::AccountsIn::File,
            Some("store") => {
                let shipped_to_dir = index.ship.enabled && index.ship.dir.is_some();
                if matches!(storage.main.backend, Backend::Maildir { .. }) && !shipped_to_dir {
                    p.add(
                        "auth.backend",
                        "\"store\" keeps accounts in the main store, which must be SQL or S3 to \
                         be shared between nodes, or in index.ship.dir where one is set",
                    );
                }
                crate::schema::AccountsIn::Store
            }
            Some(other) => {
                p.add(
                    "auth.backend",
                    format!("{other:?} is not \"file\" (this node's users file) or \"store\" (the main store)"),
                );
                crate::schema::AccountsIn::File
            }
        },
    };

    let raw_log = raw.log.unwrap_or_default();
    let log = crate::schema::Log {
        format: match raw_log.format.as_deref() {
            None | Some("text") => crate::schema::LogFormat::Text,
            Some("json") => crate::schema::LogFormat::Json,
            Some(other) => {
                p.add(
                    "log.format",
                    format!("{other:?} is not a log format: \"text\" or \"json\""),
                );
                crate::schema::LogFormat::Text
            }
        },
        level: match raw_log.level {
            Some(l) if l.trim().is_empty() => {
                p.add("log.level", "must not be empty");
                defaults.log.level.clone()
            }
            Some(l) if !l.split(',').all(log_directive) => {
                p.add(
                    "log.level",
                    format!(
                        "{l:?} is not a level (off, error, warn, info, debug, trace) or a list of \
                         them and target=level directives (\"strata=debug,info\")"
                    ),
                );
                defaults.log.level.clone()
            }
            Some(l) => l,
            None => defaults.log.level.clone(),
        },
    };

    let lmtp = lmtp(&mut p, base, raw.lmtp.unwrap_or_default(), &defaults.lmtp);
    let quota = quota(&mut p, raw.quota.unwrap_or_default());
    let metrics = crate::schema::Metrics {
        listen: p.listener(
            "metrics.listen",
            raw.metrics.and_then(|m| m.listen),
            defaults.metrics.listen,
        ),
    };

    if !p.0.is_empty() {
        return Err(errors(text, file, p.0));
    }
    Ok(Config {
        data_dir,
        imap,
        tls,
        storage,
        index,
        auth,
        log,
        lmtp,
        quota,
        metrics,
    })
}

/// `[quota]`.
fn quota(p: &mut Problems, r: RawQuota) -> crate::schema::Quota {
    let mut limit =
        |key: &str, v: Option<NumberOrText>, parse: fn(&str) -> Result<Option<u64>, String>| {
            let text = v?.text();
            parse(&text).unwrap_or_else(|why| {
                p.add(key, why);
                None
            })
        };
    crate::schema::Quota {
        storage: limit("quota.storage", r.storage, crate::size::parse_size),
        messages: limit("quota.messages", r.messages, crate::size::parse_count),
    }
}

/// `[lmtp]`.
fn lmtp(p: &mut Problems, base: &Path, r: RawLmtp, d: &crate::schema::Lmtp) -> crate::schema::Lmtp {
    let hostname = match r.hostname {
        Some(h)
            if h.is_empty()
                || !h
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-".contains(c)) =>
        {
            p.add("lmtp.hostname", format!("{h:?} is not a host name"));
            d.hostname.clone()
        }
        Some(h) => h,
        None => d.hostname.clone(),
    };
    let domains = r.domains.map_or_else(
        || d.domains.clone(),
        |list| {
            list.into_iter()
                .filter_map(|dom| {
                    let ok = !dom.is_empty()
                        && dom
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || ".-".contains(c));
                    if !ok {
                        p.add("lmtp.domains", format!("{dom:?} is not a domain name"));
                    }
                    ok.then(|| dom.to_ascii_lowercase())
                })
                .collect()
        },
    );
    let detail_delimiter = match r.detail_delimiter.as_deref() {
        None => d.detail_delimiter,
        Some("") => None,
        Some(s) => {
            let mut chars = s.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) if c.is_ascii_punctuation() && c != '@' => Some(c),
                _ => {
                    p.add(
                        "lmtp.detail_delimiter",
                        format!("{s:?} is not one punctuation character (like \"+\"); \"\" turns details off"),
                    );
                    d.detail_delimiter
                }
            }
        }
    };
    crate::schema::Lmtp {
        listen: p.listener("lmtp.listen", r.listen, d.listen),
        socket: match r.socket.as_deref() {
            None => d.socket.clone(),
            Some("") => None,
            Some(s) => Some(resolve(base, s)),
        },
        hostname,
        domains,
        detail_delimiter,
        detail_mailbox: r.detail_mailbox.unwrap_or(d.detail_mailbox),
        max_message_bytes: p.positive(
            "lmtp.max_message_bytes",
            r.max_message_bytes,
            d.max_message_bytes,
        ),
        max_recipients: p.positive("lmtp.max_recipients", r.max_recipients, d.max_recipients),
        max_connections: p.positive("lmtp.max_connections", r.max_connections, d.max_connections),
        timeout: Duration::from_secs(p.positive(
            "lmtp.timeout_secs",
            r.timeout_secs,
            d.timeout.as_secs(),
        )),
    }
}

/// What every store's defaults come from.
struct StoreContext<'a> {
    base: &'a Path,
    data_dir: &'a Path,
    journal: &'a Journal,
}

/// Store names: short, and safe in journal directory names and on the command line.
fn valid_store_name(n: &str) -> bool {
    (1..=32).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// One store's table (`[storage]` or `[stores.NAME]`, named by `pfx`), checked.
/// `journal_dir` is where its journal goes unless the table says otherwise.
fn store(
    p: &mut Problems,
    ctx: &StoreContext,
    pfx: &str,
    name: String,
    rs: RawStore,
    journal_dir: PathBuf,
) -> Store {
    let key = |k: &str| format!("{pfx}.{k}");
    // A table for another backend than the one chosen is a mistake, not a spare.
    let chosen = rs.backend.as_deref().unwrap_or("maildir");
    for (table, present) in [
        ("maildir", rs.maildir.is_some()),
        ("sql", rs.sql.is_some()),
        ("s3", rs.s3.is_some()),
    ] {
        if present && table != chosen && ["maildir", "sql", "s3"].contains(&chosen) {
            p.add(
                &key(table),
                format!(
                    "is set, but {pfx}.backend is {chosen:?}; remove it or set backend = {table:?}"
                ),
            );
        }
    }
    let maildir_root = rs
        .maildir
        .and_then(|m| m.root)
        .map_or_else(|| ctx.data_dir.join("mail"), |r| resolve(ctx.base, &r));
    let backend = match rs.backend.as_deref() {
        None | Some("maildir") => Backend::Maildir { root: maildir_root },
        Some("sql") => sql(p, pfx, ctx.base, rs.sql.unwrap_or_default()),
        Some("s3") => Backend::S3(s3(p, pfx, rs.s3.unwrap_or_default())),
        Some(other) => {
            p.add(
                &key("backend"),
                format!(
                    "{other:?} is not a backend this Strata has (\"maildir\", \"sql\", \"s3\")"
                ),
            );
            Backend::Maildir { root: maildir_root }
        }
    };
    let delay = rs.delay.map(|d| Delay {
        seed: d.seed.unwrap_or(0),
        read: Duration::from_millis(d.read_ms.unwrap_or(0)),
        read_jitter: Duration::from_millis(d.read_jitter_ms.unwrap_or(0)),
        write: Duration::from_millis(d.write_ms.unwrap_or(0)),
        write_jitter: Duration::from_millis(d.write_jitter_ms.unwrap_or(0)),
        error_rate: p.rate(&key("delay.error_rate"), d.error_rate),
        stall_rate: p.rate(&key("delay.stall_rate"), d.stall_rate),
        stall: Duration::from_millis(d.stall_ms.unwrap_or(5000)),
        ack: Duration::from_millis(d.ack_ms.unwrap_or(0)),
        ack_jitter: Duration::from_millis(d.ack_jitter_ms.unwrap_or(0)),
    });
    if rs.compression.is_some() && matches!(backend, Backend::Maildir { .. }) {
        p.add(
            &key("compression"),
            "a Maildir is read as plain files (by other mail programs, and by `strata index \
             rebuild`): compression is for SQL and S3 stores",
        );
    }
    let compression = rs.compression.map(|c| {
        let level = c.level.unwrap_or(3);
        if !(1..=19).contains(&level) {
            p.add(
                &key("compression.level"),
                format!("{level} is not a zstd level from 1 to 19"),
            );
        }
        let frame_kib = c.frame_kib.unwrap_or(64);
        if !(4..=4096).contains(&frame_kib) {
            p.add(
                &key("compression.frame_kib"),
                format!("{frame_kib} is not a frame size from 4 to 4096 KiB"),
            );
        }
        Compression {
            level: level.clamp(1, 19),
            frame_bytes: frame_kib.clamp(4, 4096) << 10,
        }
    });
    if rs.encryption.is_some() && matches!(backend, Backend::Maildir { .. }) {
        p.add(
            &key("encryption"),
            "a Maildir is read as plain files (by other mail programs, and by `strata index \
             rebuild`): encryption is for SQL and S3 stores",
        );
    }
    let encryption = rs.encryption.and_then(|e| match e.keys {
        Some(keys) if !keys.is_empty() => Some(Encryption {
            keys: resolve(ctx.base, &keys),
            key_id: e.key_id,
        }),
        _ => {
            p.add(&key("encryption.keys"), "must name the keyring file");
            None
        }
    });
    if rs.single_instance.is_some() && matches!(backend, Backend::Maildir { .. }) {
        p.add(
            &key("single_instance"),
            "a Maildir keeps each message whole for other mail programs: single-instance \
             parts are for SQL and S3 stores",
        );
    }
    let single_instance = rs.single_instance.map(|r| {
        let d = SingleInstance::default();
        let min_part = match r.min_part.map(|v| v.text()) {
            None => d.min_part,
            Some(text) => match crate::size::parse_size(&text) {
                Ok(Some(n)) if n >= 1024 => n,
                Ok(_) => {
                    p.add(
                        &key("single_instance.min_part"),
                        format!("{text:?}: parts smaller than 1K are not worth a reference"),
                    );
                    d.min_part
                }
                Err(why) => {
                    p.add(&key("single_instance.min_part"), why);
                    d.min_part
                }
            },
        };
        let grace = r.grace_secs.map_or(d.grace, Duration::from_secs);
        if grace.is_zero() {
            p.add(
                &key("single_instance.grace_secs"),
                "must be at least 1: longer than any write takes and than the nodes' clocks \
                 differ (a day by default)",
            );
        }
        SingleInstance {
            min_part,
            grace: grace.max(Duration::from_secs(1)),
            collect_interval: r
                .collect_interval_secs
                .map_or(d.collect_interval, |s| Duration::from_secs(s.max(1))),
        }
    });
    let journal = journal(p, pfx, rs.journal, &backend, ctx, journal_dir);
    Store {
        name,
        id: rs.id.unwrap_or(0),
        backend,
        delay,
        compression,
        encryption,
        single_instance,
        journal,
    }
}

/// `[storage.tiering]`, checked against the configured stores.
fn tiering(
    p: &mut Problems,
    raw: RawTiering,
    storage: &crate::schema::Storage,
) -> Option<crate::schema::Tiering> {
    let key = |k: &str| format!("storage.tiering.{k}");
    let to = match raw.to {
        None => {
            p.add(
                &key("to"),
                "must name the store cold bodies go to (a [stores.NAME])",
            );
            None
        }
        Some(to) if to == storage.main.name => {
            p.add(
                &key("to"),
                format!("{to:?} is the main store: tiering moves bodies from it to another"),
            );
            None
        }
        Some(to) if storage.named(&to).is_none() => {
            let names: Vec<&str> = storage.others.iter().map(|s| s.name.as_str()).collect();
            p.add(
                &key("to"),
                format!(
                    "no store is named {to:?}; the [stores] tables name {}",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ),
            );
            None
        }
        Some(to) => Some(to),
    };
    let rate = match raw.rate.map(|r| r.text()) {
        None => Some(20 << 20),
        Some(text) => crate::size::parse_size(&text).unwrap_or_else(|why| {
            p.add(
                &key("rate"),
                format!("{why} (bytes per second, or \"unlimited\")"),
            );
            None
        }),
    };
    let date = match raw.date.as_deref() {
        None | Some("savedate") => crate::schema::TierDate::Saved,
        Some("internaldate") => crate::schema::TierDate::Internal,
        Some(other) => {
            p.add(
                &key("date"),
                format!("{other:?} is not \"savedate\" or \"internaldate\""),
            );
            crate::schema::TierDate::Saved
        }
    };
    let raw_rules = raw.rule.unwrap_or_default();
    if raw_rules.is_empty() {
        p.add(
            "storage.tiering",
            "needs at least one [[storage.tiering.rule]]: without one nothing is cold",
        );
    }
    let mut rules = Vec::new();
    for (i, r) in raw_rules.into_iter().enumerate() {
        let rkey = |k: &str| format!("storage.tiering.rule.{i}.{k}");
        let mailboxes = r.mailboxes.unwrap_or_default();
        if mailboxes
            .iter()
            .any(|m| m.is_empty() || m.starts_with('/') || m.ends_with('/'))
        {
            p.add(
                &rkey("mailboxes"),
                "names full mailbox names, such as \"Archive\" or \"Lists/old\"",
            );
        }
        let larger_than = r.larger_than.as_ref().map(|v| v.text()).and_then(|text| {
            crate::size::parse_size(&text).unwrap_or_else(|why| {
                p.add(&rkey("larger_than"), why);
                None
            })
        });
        let older_than = r.older_than_days.map(|d| Duration::from_secs(d * 86_400));
        if r.older_than_days.is_none() && mailboxes.is_empty() && r.larger_than.is_none() {
            p.add(
                &format!("storage.tiering.rule.{i}"),
                "sets no condition (older_than_days, mailboxes, larger_than): it would make \
                 every message cold",
            );
        }
        rules.push(crate::schema::TierRule {
            older_than,
            mailboxes,
            larger_than,
        });
    }
    Some(crate::schema::Tiering {
        to: to?,
        interval: Duration::from_secs(raw.interval_secs.unwrap_or(3600).max(1)),
        rate,
        date,
        rules,
    })
}

/// `[storage.cache]`, checked against the configured stores.
fn cache(
    p: &mut Problems,
    raw: RawCache,
    storage: &crate::schema::Storage,
    data_dir: &Path,
    base: &Path,
) -> Option<crate::schema::Cache> {
    let size = match raw.size.map(|v| v.text()) {
        None => 1 << 30,
        Some(text) => match crate::size::parse_size(&text) {
            Ok(Some(n)) if n >= 1 << 20 => n,
            Ok(_) => {
                p.add(
                    "storage.cache.size",
                    format!("{text:?}: a cache is at least 1M"),
                );
                return None;
            }
            Err(why) => {
                p.add("storage.cache.size", why);
                return None;
            }
        },
    };
    let local = |s: &Store| matches!(s.backend, Backend::Maildir { .. });
    let stores = match raw.stores {
        Some(names) => {
            for name in &names {
                match storage.named(name) {
                    None => p.add(
                        "storage.cache.stores",
                        format!("no store is named {name:?}"),
                    ),
                    Some(s) if local(s) => p.add(
                        "storage.cache.stores",
                        format!("{name:?} is a Maildir: its bodies are local files already"),
                    ),
                    Some(_) => {}
                }
            }
            names
        }
        // The colder stores: the tiering target, else every other store not on local disk.
        None => match &storage.tiering {
            Some(t) => vec![t.to.clone()],
            None => storage
                .others
                .iter()
                .filter(|s| !local(s))
                .map(|s| s.name.clone())
                .collect(),
        },
    };
    Some(crate::schema::Cache {
        dir: raw
            .dir
            .map_or_else(|| data_dir.join("cache"), |d| resolve(base, &d)),
        size,
        stores,
    })
}

/// Stores must differ in name, id, journal directory and the place they keep bodies: two
/// stores over one place would delete each other's bodies in a migration.
fn check_distinct(p: &mut Problems, storage: &crate::schema::Storage) {
    let key = |s: &Store| {
        if std::ptr::eq(s, &storage.main) {
            "storage".to_string()
        } else {
            format!("stores.{}", s.name)
        }
    };
    let all: Vec<&Store> = storage.stores().collect();
    for (i, a) in all.iter().enumerate() {
        for b in &all[..i] {
            let clash = if a.name == b.name {
                Some(format!("has the same name as {}", key(b)))
            } else if a.id == b.id {
                Some(format!("has the same id ({}) as {}", a.id, key(b)))
            } else if a.journal.enabled && b.journal.enabled && a.journal.dir == b.journal.dir {
                Some(format!("shares its journal directory with {}", key(b)))
            } else if same_place(&a.backend, &b.backend) {
                Some(format!("keeps bodies in the same place as {}", key(b)))
            } else {
                None
            };
            // One clash per store is enough to act on.
            if let Some(msg) = clash {
                p.add(&key(a), msg);
                break;
            }
        }
    }
}

fn same_place(a: &Backend, b: &Backend) -> bool {
    match (a, b) {
        (Backend::Maildir { root: x }, Backend::Maildir { root: y }) => x == y,
        (Backend::Sql { url: x, .. }, Backend::Sql { url: y, .. }) => x == y,
        (Backend::S3(x), Backend::S3(y)) => {
            x.endpoint == y.endpoint
                && x.bucket == y.bucket
                && (x.prefix.starts_with(&y.prefix) || y.prefix.starts_with(&x.prefix))
        }
        _ => false,
    }
}

/// The `sql` backend's table, checked.
fn sql(p: &mut Problems, pfx: &str, base: &Path, sql: RawSql) -> Backend {
    let key = |k: &str| format!("{pfx}.sql.{k}");
    let url = match sql.url {
        Some(u) if sql_scheme(&u) => {
            // A relative SQLite path is relative to the configuration file.
            match u
                .strip_prefix("sqlite:")
                .filter(|r| !r.starts_with('/') && !r.starts_with("//") && !r.starts_with(':'))
            {
                Some(rel) => format!("sqlite:{}", resolve(base, rel).display()),
                None => u,
            }
        }
        Some(u) => {
            p.add(
                &key("url"),
                format!(
                    "{:?} is not a database URL (sqlite:PATH, postgres://..., mysql://...)",
                    u.split('@').next_back().unwrap_or_default()
                ),
            );
            String::new()
        }
        None => {
            p.add(&key("url"), "backend \"sql\" needs the database's URL");
            String::new()
        }
    };
    let chunk_kb = p.positive(&key("chunk_kb"), sql.chunk_kb, 1024);
    if chunk_kb > 16 * 1024 {
        p.add(
            &key("chunk_kb"),
            "more than 16384 (16 MiB) exceeds MySQL's default packet limit",
        );
    }
    Backend::Sql {
        url,
        max_connections: p.positive(&key("max_connections"), sql.max_connections, 16),
        chunk_bytes: chunk_kb << 10,
        connect_timeout: Duration::from_millis(p.positive(
            &key("connect_timeout_ms"),
            sql.connect_timeout_ms,
            10_000,
        )),
    }
}

/// The `s3` backend's table, checked.
fn s3(p: &mut Problems, pfx: &str, r: RawS3) -> S3 {
    let key = |k: &str| format!("{pfx}.s3.{k}");
    let endpoint = match r.endpoint {
        Some(e) if e.starts_with("http://") || e.starts_with("https://") => {
            Some(e.trim_end_matches('/').to_string())
        }
        Some(e) => {
            p.add(
                &key("endpoint"),
                format!("{e:?} is not an http:// or https:// URL"),
            );
            None
        }
        None => None,
    };
    let bucket = match r.bucket {
        Some(b) if valid_bucket(&b) => b,
        Some(b) => {
            p.add(
                &key("bucket"),
                format!("{b:?} is not a bucket name (3 to 63 of a-z 0-9 . -)"),
            );
            String::new()
        }
        None => {
            p.add(&key("bucket"), "backend \"s3\" needs a bucket");
            String::new()
        }
    };
    let mut prefix = r.prefix.unwrap_or_default();
    if !prefix.is_empty() && !prefix.ends_with('/') {
        prefix.push('/');
    }
    if prefix.starts_with('/')
        || prefix.contains("//")
        || prefix
            .chars()
            .any(|c| !(c.is_ascii_alphanumeric() || "/._-".contains(c)))
    {
        p.add(
            &key("prefix"),
            format!("{prefix:?} must be segments of A-Z a-z 0-9 . _ - separated by /"),
        );
    }
    let credentials = match (r.access_key, r.secret_key) {
        (Some(a), Some(s)) if !a.is_empty() && !s.is_empty() => Some((a, Secret(s))),
        (None, None) => None,
        (a, _) => {
            let which = if a.as_deref().is_none_or(str::is_empty) {
                "access_key"
            } else {
                "secret_key"
            };
            p.add(
                &key(which),
                "access_key and secret_key go together: set both, or neither for the AWS environment's credentials",
            );
            None
        }
    };
    S3 {
        endpoint,
        bucket,
        prefix,
        region: r.region.filter(|r| !r.is_empty()),
        credentials,
        path_style: r.path_style.unwrap_or(true),
        max_requests: p.positive(&key("max_requests"), r.max_requests, 64),
        attempts: p.positive(&key("attempts"), r.attempts, 4),
        connect_timeout: Duration::from_millis(p.positive(
            &key("connect_timeout_ms"),
            r.connect_timeout_ms,
            5000,
        )),
        request_timeout: Duration::from_millis(p.positive(
            &key("request_timeout_ms"),
            r.request_timeout_ms,
            30_000,
        )),
    }
}

/// S3's bucket naming rules, the part every S3-compatible store shares.
fn valid_bucket(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && b.starts_with(|c: char| c.is_ascii_alphanumeric())
        && b.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// A store's `journal` table, checked against the backend it fronts.
fn journal(
    p: &mut Problems,
    pfx: &str,
    r: Option<RawJournal>,
    backend: &Backend,
    ctx: &StoreContext,
    default_dir: PathBuf,
) -> Journal {
    let key = |k: &str| format!("{pfx}.journal.{k}");
    let d = ctx.journal;
    let r = r.unwrap_or_default();
    let slow = matches!(backend, Backend::Sql { .. } | Backend::S3(_));
    let enabled = r.enabled.unwrap_or(slow);
    match backend {
        Backend::S3(_) if !enabled => p.add(
            &key("enabled"),
            "the s3 backend needs the journal: S3 has no multi-object transaction",
        ),
        _ => {}
    }
    let max_mb = p.positive(&key("max_mb"), r.max_mb, d.max_bytes >> 20);
    let segment_mb = p.positive(&key("segment_mb"), r.segment_mb, d.segment_bytes >> 20);
    if segment_mb > max_mb {
        p.add(
            &key("segment_mb"),
            format!("{segment_mb} is more than {} ({max_mb})", key("max_mb")),
        );
    }
    Journal {
        enabled,
        dir: r.dir.map_or(default_dir, |x| resolve(ctx.base, &x)),
        max_bytes: max_mb << 20,
        segment_bytes: segment_mb << 20,
        uploads: p.positive(&key("uploads"), r.uploads, d.uploads),
    }
}

/// Reads and parses a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: Some(path.to_path_buf()),
            key: String::new(),
            line: None,
            message: format!("cannot read it: {e}"),
        }])
    })?;
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    parse_checked(&text, base, Some(path), true)
}

/// Problems that need the filesystem: certificate files that cannot be read. For
/// `strata check-config`, which runs before the server would find them missing.
pub fn check_files(config: &Config) -> Vec<ConfigError> {
    let mut out = Vec::new();
    if let Tls::Files { cert, key } = &config.tls {
        for (k, path) in [("tls.cert", cert), ("tls.key", key)] {
            if let Err(e) = std::fs::File::open(path) {
                out.push(ConfigError {
                    file: None,
                    key: k.into(),
                    line: None,
                    message: format!("cannot read {}: {e}", path.display()),
                });
            }
        }
    }
    for store in config.storage.stores() {
        if let Some(e) = &store.encryption
            && let Err(err) = std::fs::File::open(&e.keys)
        {
            let table = if std::ptr::eq(store, &config.storage.main) {
                "storage".to_string()
            } else {
                format!("stores.{}", store.name)
            };
            out.push(ConfigError {
                file: None,
                key: format!("{table}.encryption.keys"),
                line: None,
                message: format!("cannot read {}: {err}", e.keys.display()),
            });
        }
    }
    out
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Turns (key, message) pairs into errors with lines, in file order.
fn errors(text: &str, file: Option<&Path>, problems: Vec<(String, String)>) -> ConfigErrors {
    let doc = toml_edit::Document::parse(text.to_string()).ok();
    let mut out: Vec<ConfigError> = problems
        .into_iter()
        .map(|(key, message)| {
            // The key's line, or for a key that is missing, its table's.
            let line = doc.as_ref().and_then(|d| {
                let mut item: Option<&toml_edit::Item> = None;
                for part in key.split('.') {
                    let next = match (item, part.parse::<usize>()) {
                        (None, _) => d.get(part),
                        // An entry of an array of tables (`rule.0`).
                        (Some(i), Ok(n)) => i.get(n),
                        (Some(i), Err(_)) => i.get(part),
                    };
                    match next {
                        Some(n) => item = Some(n),
                        None => break,
                    }
                }
                item.and_then(toml_edit::Item::span)
                    .map(|s| line_of(text, s.start))
            });
            ConfigError {
                file: file.map(Path::to_path_buf),
                key,
                line,
                message,
            }
        })
        .collect();
    out.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
    ConfigErrors(out)
}

/// `[index.ship]`: on by default where there is somewhere to ship to: a shared main store
/// (SQL, S3) or a directory.
fn ship(
    p: &mut Problems,
    r: RawShip,
    d: &crate::schema::Ship,
    main: &Store,
    base: &Path,
) -> crate::schema::Ship {
    let dir = r.dir.map(|x| resolve(base, &x));
    let shared = !matches!(main.backend, Backend::Maildir { .. });
    let enabled = r.enabled.unwrap_or(shared || dir.is_some());
    if enabled && !shared && dir.is_none() {
        p.add(
            "index.ship.enabled",
            "a Maildir main store holds no shipped index: set index.ship.dir to a directory \
             on another disk (or a shared file system) to ship there",
        );
    }
    let compact_ratio = match r.compact_ratio {
        Some(x) if x.is_nan() || x <= 0.0 || x > 100.0 => {
            p.add(
                "index.ship.compact_ratio",
                format!("{x} must be above 0 and at most 100 (the diffs over the base)"),
            );
            d.compact_ratio
        }
        Some(x) => x,
        None => d.compact_ratio,
    };
    let max_lag = r.max_lag_ms.map_or(d.max_lag, Duration::from_millis);
    if max_lag > Duration::from_secs(3600) {
        p.add(
            "index.ship.max_lag_ms",
            "more than an hour of mail state would be lost with the node",
        );
    }
    crate::schema::Ship {
        enabled,
        dir,
        max_lag,
        max_changes: p.positive("index.ship.max_changes", r.max_changes, d.max_changes),
        compact_ratio,
        max_diffs: p.positive("index.ship.max_diffs", r.max_diffs, d.max_diffs),
    }
}
