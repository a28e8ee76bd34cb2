//! The configuration file: defaults, the example, and errors that name key and line.

use std::path::Path;

use strata_config::*;

/// Each problem's key and line, in order.
fn keys_and_lines(errs: &strata_config::ConfigErrors) -> Vec<(String, Option<usize>)> {
    errs.0.iter().map(|e| (e.key.clone(), e.line)).collect()
}

#[test]
fn the_example_file_is_valid_and_states_the_defaults() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../strata.example.toml");
    let text = std::fs::read_to_string(&example).unwrap();
    let parsed = parse(&text, Path::new("."), Some(&example)).unwrap();
    assert_eq!(parsed, Config::default());
}

#[test]
fn the_docker_compose_configuration_is_valid() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker/strata.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    let c = parse(&text, Path::new("/etc/strata"), Some(&file)).unwrap();
    assert!(matches!(c.storage.main.backend, Backend::S3(_)));
    assert!(c.storage.main.journal.enabled);
    assert_eq!(c.storage.named("pg").map(|s| s.id), Some(2));
}

#[test]
fn an_empty_file_means_the_defaults() {
    assert_eq!(parse("", Path::new("."), None).unwrap(), Config::default());
}

#[test]
fn values_are_read_and_relative_paths_follow_the_file() {
    let text = r#"
data_dir = "data"
[imap]
starttls = ""
tls = "[::1]:9993"
plaintext_auth = "never"
[tls]
cert = "certs/chain.pem"
key = "/etc/strata/key.pem"
[storage]
append_ack = "acked"
[storage.delay]
read_ms = 50
error_rate = 0.25
[index]
cache_mb = 8
"#;
    let c = parse(text, Path::new("/srv/strata"), None).unwrap();
    assert_eq!(c.data_dir, Path::new("/srv/strata/data"));
    assert_eq!(c.imap.starttls, None);
    assert_eq!(c.imap.tls.unwrap().to_string(), "[::1]:9993");
    assert_eq!(c.imap.plaintext_auth, PlaintextAuth::Never);
    assert_eq!(
        c.tls,
        Tls::Files {
            cert: "/srv/strata/certs/chain.pem".into(),
            key: "/etc/strata/key.pem".into()
        }
    );
    assert_eq!(
        c.storage.main.backend,
        Backend::Maildir {
            root: "/srv/strata/data/mail".into()
        }
    );
    assert_eq!(c.storage.append_ack, AppendAck::Acked);
    let d = c.storage.main.delay.unwrap();
    assert_eq!((d.read.as_millis(), d.error_rate), (50, 0.25));
    assert_eq!(c.index.cache_bytes, 8 << 20);
}

#[test]
fn every_problem_is_reported_with_its_key_and_line() {
    let text = "data_dir = \"d\"\n\
[imap]\n\
starttls = \"not an address\"\n\
max_connections = 0\n\
plaintext_auth = \"sometimes\"\n\
[storage]\n\
backend = \"tape\"\n\
[storage.delay]\n\
error_rate = 1.5\n\
[index]\n\
repack_ratio = 0.5\n";
    let errs = parse(text, Path::new("."), Some(Path::new("strata.toml"))).unwrap_err();
    let got = keys_and_lines(&errs);
    assert_eq!(
        got,
        [
            ("imap.starttls".to_string(), Some(3)),
            ("imap.max_connections".to_string(), Some(4)),
            ("imap.plaintext_auth".to_string(), Some(5)),
            ("storage.backend".to_string(), Some(7)),
            ("storage.delay.error_rate".to_string(), Some(9)),
            ("index.repack_ratio".to_string(), Some(11)),
        ]
    );
    let shown = errs.to_string();
    assert!(shown.contains("strata.toml:3: imap.starttls:"), "{shown}");
    assert!(shown.contains("\"tape\" is not a backend"), "{shown}");
}

#[test]
fn unknown_keys_wrong_types_and_bad_syntax_name_the_line() {
    let cases = [
        ("[imap]\nstartls = \"127.0.0.1:1\"\n", 2, "unknown field"),
        ("[imap]\nmax_connections = \"many\"\n", 2, "invalid type"),
        ("[index]\ncache_mb = 8\n[index\n", 3, ""),
    ];
    for (text, line, needle) in cases {
        let errs = parse(text, Path::new("."), Some(Path::new("s.toml"))).unwrap_err();
        assert_eq!(errs.0.len(), 1, "{text:?}");
        assert_eq!(errs.0[0].line, Some(line), "{text:?}: {errs}");
        assert!(errs.0[0].message.contains(needle), "{text:?}: {errs}");
        assert!(
            errs.to_string().starts_with(&format!("s.toml:{line}:")),
            "{errs}"
        );
    }
}

#[test]
fn certificate_and_key_go_together_and_must_be_readable() {
    let errs = parse("[tls]\ncert = \"c.pem\"\n", Path::new("."), None).unwrap_err();
    assert_eq!(errs.0[0].key, "tls.key");
    let errs = parse(
        "[imap]\nstarttls = \"\"\ntls = \"\"\n",
        Path::new("."),
        None,
    )
    .unwrap_err();
    assert_eq!(errs.0[0].key, "imap");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.pem"), "x").unwrap();
    let c = parse(
        "[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n",
        dir.path(),
        None,
    )
    .unwrap();
    let problems = check_files(&c);
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].key, "tls.key");
    assert!(problems[0].message.contains("k.pem"));
}

#[test]
fn a_missing_file_is_reported_by_name() {
    let errs = load(Path::new("/nonexistent/strata.toml")).unwrap_err();
    assert!(
        errs.to_string()
            .starts_with("/nonexistent/strata.toml: cannot read it"),
        "{errs}"
    );
}

#[test]
fn the_sql_backend_is_read_and_its_mistakes_name_the_line() {
    let text =
        "[storage]\nbackend = \"sql\"\n[storage.sql]\nurl = \"sqlite:bodies.db\"\nchunk_kb = 64\n";
    let c = parse(text, Path::new("/etc/strata"), None).unwrap();
    match c.storage.main.backend {
        Backend::Sql {
            url, chunk_bytes, ..
        } => {
            assert_eq!(url, "sqlite:/etc/strata/bodies.db", "relative to the file");
            assert_eq!(chunk_bytes, 64 << 10);
        }
        other => panic!("{other:?}"),
    }
    let text =
        "[storage]\nbackend = \"sql\"\n[storage.sql]\nurl = \"ftp://secret@x/y\"\nchunk_kb = 0\n";
    let errs = parse(text, Path::new("."), Some(Path::new("s.toml"))).unwrap_err();
    let got = keys_and_lines(&errs);
    assert_eq!(
        got,
        [
            ("storage.sql.url".to_string(), Some(4)),
            ("storage.sql.chunk_kb".to_string(), Some(5)),
        ]
    );
    assert!(!errs.to_string().contains("secret"), "{errs}");
    let errs = parse("[storage]\nbackend = \"sql\"\n", Path::new("."), None).unwrap_err();
    assert!(errs.to_string().contains("storage.sql.url"), "{errs}");
}

#[test]
fn s3_backend_and_its_journal_are_checked_with_lines() {
    let text = "[storage]\nbackend = \"s3\"\n[storage.s3]\nendpoint = \"http://127.0.0.1:9000/\"\nbucket = \"mail\"\nprefix = \"strata\"\naccess_key = \"AK\"\nsecret_key = \"SK\"\n[storage.journal]\nmax_mb = 256\n";
    let c = parse(text, Path::new("/etc/strata"), None).unwrap();
    let Backend::S3(s3) = &c.storage.main.backend else {
        panic!("{:?}", c.storage.main.backend)
    };
    assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
    assert_eq!(s3.prefix, "strata/");
    assert_eq!(s3.credentials.as_ref().unwrap().0, "AK");
    assert!(
        !format!("{c:?}").contains("SK"),
        "the secret stays out of debug output"
    );
    assert!(c.storage.main.journal.enabled, "s3 goes behind the journal");
    assert_eq!(c.storage.main.journal.max_bytes, 256 << 20);
    assert_eq!(c.storage.main.journal.dir, c.data_dir.join("journal"));

    let text = "[storage]\nbackend = \"s3\"\n[storage.s3]\nendpoint = \"ftp://x\"\nbucket = \"No_Such\"\naccess_key = \"AK\"\n[storage.journal]\nenabled = false\n";
    let errs = parse(text, Path::new("."), Some(Path::new("s.toml"))).unwrap_err();
    let got = keys_and_lines(&errs);
    assert_eq!(
        got,
        [
            // Missing: its table's line.
            ("storage.s3.secret_key".to_string(), Some(3)),
            ("storage.s3.endpoint".to_string(), Some(4)),
            ("storage.s3.bucket".to_string(), Some(5)),
            ("storage.journal.enabled".to_string(), Some(8)),
        ]
    );
    let errs = parse("[storage]\nbackend = \"s3\"\n", Path::new("."), None).unwrap_err();
    assert!(errs.to_string().contains("storage.s3.bucket"), "{errs}");
    let c = parse("[storage.journal]\nenabled = true\n", Path::new("."), None).unwrap();
    assert!(
        c.storage.main.journal.enabled,
        "maildir may go behind the journal, to share one fsync among APPENDs"
    );
    let c = parse("", Path::new("."), None).unwrap();
    assert!(
        !c.storage.main.journal.enabled,
        "maildir writes its files directly unless asked"
    );
    let c = parse("[storage]\nbackend = \"sql\"\n[storage.sql]\nurl = \"sqlite:b.db\"\n[storage.journal]\nenabled = false\n", Path::new("."), None).unwrap();
    assert!(
        !c.storage.main.journal.enabled,
        "sql may commit straight to the database"
    );
}

#[test]
fn other_stores_are_named_numbered_and_kept_apart() {
    let text = "[storage]\nid = 1\nbackend = \"sql\"\n[storage.sql]\nurl = \"sqlite:b.db\"\n\n[stores.old]\nid = 0\nbackend = \"maildir\"\n\n[stores.cold]\nid = 7\nbackend = \"s3\"\n[stores.cold.s3]\nbucket = \"cold-mail\"\n";
    let c = parse(text, Path::new("/etc/strata"), None).unwrap();
    assert_eq!(
        (c.storage.main.name.as_str(), c.storage.main.id),
        ("main", 1)
    );
    let names: Vec<(&str, u16)> = c
        .storage
        .stores()
        .map(|s| (s.name.as_str(), s.id))
        .collect();
    assert_eq!(names, [("main", 1), ("cold", 7), ("old", 0)]);
    let old = c.storage.named("old").unwrap();
    assert_eq!(
        old.backend,
        Backend::Maildir {
            root: c.data_dir.join("mail")
        },
        "an old Maildir defaults to where the main one was"
    );
    let cold = c.storage.named("cold").unwrap();
    assert!(cold.journal.enabled);
    assert_eq!(cold.journal.dir, c.data_dir.join("journal-cold"));

    let text = "[storage]\nbackend = \"maildir\"\n\n[stores.old]\nid = 2\nbackend = \"maildir\"\n[stores.Bad]\nid = 0\nbackend = \"sql\"\n[stores.Bad.sql]\nurl = \"ftp://x\"\n[stores.noid]\n";
    let errs = parse(text, Path::new("."), Some(Path::new("s.toml"))).unwrap_err();
    let got = keys_and_lines(&errs);
    assert_eq!(
        got,
        [
            ("stores.old".to_string(), Some(4)),
            ("stores.Bad".to_string(), Some(7)),
            ("stores.Bad".to_string(), Some(7)),
            ("stores.Bad.sql.url".to_string(), Some(11)),
            ("stores.noid".to_string(), Some(12)),
            ("stores.noid".to_string(), Some(12)),
        ],
        "{errs}"
    );
    let text = errs.to_string();
    assert!(text.contains("needs an id"), "{text}");
    assert!(
        text.contains("keeps bodies in the same place as storage"),
        "{text}"
    );
    assert!(text.contains("same id (0) as storage"), "{text}");
}

#[test]
fn every_refused_key_is_reported_at_once_with_its_key_and_line() {
    let text = "[imap]\n\
startls = \"127.0.0.1:1\"\n\
max_connections = -3\n\
login_timeout_secs = \"soon\"\n\
[index]\n\
cache_mb = 8\n\
bogus = true\n\
[log]\n\
level = \"verbose\"\n\
[storage]\n\
backend = \"maildir\"\n\
[storage.sql]\n\
url = \"sqlite:x.db\"\n";
    let errs = parse(text, Path::new("."), Some(Path::new("bad.toml"))).unwrap_err();
    let got = keys_and_lines(&errs);
    assert_eq!(
        got,
        [
            ("imap.startls".to_string(), Some(2)),
            ("imap.max_connections".to_string(), Some(3)),
            ("imap.login_timeout_secs".to_string(), Some(4)),
            ("index.bogus".to_string(), Some(7)),
            ("log.level".to_string(), Some(9)),
            ("storage.sql".to_string(), Some(12)),
        ],
        "{errs}"
    );
    let shown = errs.to_string();
    assert!(
        shown.contains("bad.toml:3: imap.max_connections: invalid value"),
        "{shown}"
    );
    assert!(
        shown.contains("bad.toml:9: log.level: \"verbose\" is not a level"),
        "{shown}"
    );
    for good in [
        "debug",
        "strata=debug,info",
        "warn,strata_server=trace",
        "OFF",
    ] {
        let text = format!("[log]\nlevel = \"{good}\"\n");
        assert!(parse(&text, Path::new("."), None).is_ok(), "{good}");
    }
}

#[test]
fn load_reports_unreadable_certificates_with_their_lines_among_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("strata.toml");
    std::fs::write(
        &path,
        "[imap]\nmax_connections = 0\n[tls]\ncert = \"missing.pem\"\nkey = \"missing-key.pem\"\n",
    )
    .unwrap();
    let errs = load(&path).unwrap_err();
    let got = keys_and_lines(&errs);
    assert_eq!(
        got,
        [
            ("imap.max_connections".to_string(), Some(2)),
            ("tls.cert".to_string(), Some(4)),
            ("tls.key".to_string(), Some(5)),
        ],
        "{errs}"
    );
    assert!(
        errs.to_string()
            .contains("strata.toml:4: tls.cert: cannot read"),
        "{errs}"
    );
}

#[test]
fn index_shipping_is_on_for_shared_stores_and_its_mistakes_name_the_line() {
    let sql = "[storage]\nbackend = \"sql\"\n[storage.sql]\nurl = \"sqlite:b.db\"\n";
    let c = parse(sql, Path::new("."), None).unwrap();
    assert!(c.index.ship.enabled, "on by default with a shared store");
    let c = parse(
        &format!("{sql}[index.ship]\nenabled = false\n"),
        Path::new("."),
        None,
    )
    .unwrap();
    assert!(!c.index.ship.enabled);
    assert!(!Config::default().index.ship.enabled, "off for Maildir");

    let text =
        "[index.ship]\nenabled = true\ncompact_ratio = 0.0\nmax_diffs = 0\nmax_lag_ms = 99999999\n";
    let errs = parse(text, Path::new("."), Some(Path::new("s.toml"))).unwrap_err();
    let got = keys_and_lines(&errs);
    assert_eq!(
        got,
        [
            ("index.ship.enabled".to_string(), Some(2)),
            ("index.ship.compact_ratio".to_string(), Some(3)),
            ("index.ship.max_diffs".to_string(), Some(4)),
            ("index.ship.max_lag_ms".to_string(), Some(5)),
        ]
    );
    assert!(errs.to_string().contains("index.ship.dir"), "{errs}");
}

#[test]
fn a_maildir_ships_to_a_directory_and_may_keep_accounts_there() {
    let text = "[index.ship]\ndir = \"../shipped\"\n[auth]\nbackend = \"store\"\n";
    let c = parse(text, Path::new("/etc/strata"), None).unwrap();
    assert!(
        c.index.ship.enabled,
        "on by default once there is a directory"
    );
    assert_eq!(
        c.index.ship.dir.as_deref(),
        Some(Path::new("/etc/strata/../shipped"))
    );
    let errs = parse(
        "[auth]\nbackend = \"store\"\n",
        Path::new("."),
        Some(Path::new("s.toml")),
    )
    .unwrap_err();
    assert!(
        errs.to_string().contains("s.toml:2: auth.backend")
            && errs.to_string().contains("index.ship.dir"),
        "{errs}"
    );
}

#[test]
fn quota_limits_read_as_sizes_counts_or_unlimited() {
    let c = parse(
        "[quota]\nstorage = \"2G\"\nmessages = 100000\n",
        Path::new("."),
        None,
    )
    .unwrap();
    assert_eq!(c.quota.storage, Some(2 << 30));
    assert_eq!(c.quota.messages, Some(100_000));
    let c = parse(
        "[quota]\nstorage = 1048576\nmessages = \"unlimited\"\n",
        Path::new("."),
        None,
    )
    .unwrap();
    assert_eq!((c.quota.storage, c.quota.messages), (Some(1 << 20), None));
    let errs = parse(
        "[quota]\nstorage = \"lots\"\nmessages = 0\n",
        Path::new("."),
        Some(Path::new("s.toml")),
    )
    .unwrap_err();
    let got = keys_and_lines(&errs);
    assert_eq!(
        got,
        [
            ("quota.storage".to_string(), Some(2)),
            ("quota.messages".to_string(), Some(3)),
        ]
    );
    assert!(errs.to_string().contains("say \"unlimited\""), "{errs}");
}

#[test]
fn log_format_and_metrics_listener_are_checked() {
    let c = parse(
        "[log]\nformat = \"json\"\n[metrics]\nlisten = \"127.0.0.1:9100\"\n",
        Path::new("."),
        None,
    )
    .unwrap();
    assert_eq!(c.log.format, strata_config::LogFormat::Json);
    assert_eq!(c.metrics.listen, Some("127.0.0.1:9100".parse().unwrap()));
    let errs = parse(
        "[log]\nformat = \"xml\"\n[metrics]\nlisten = \"everywhere\"\n",
        Path::new("."),
        Some(Path::new("s.toml")),
    )
    .unwrap_err();
    let got = keys_and_lines(&errs);
    assert_eq!(
        got,
        [
            ("log.format".to_string(), Some(2)),
            ("metrics.listen".to_string(), Some(4)),
        ]
    );
}

#[test]
fn compression_is_read_for_shared_stores_and_refused_for_a_maildir() {
    let text = "[storage]\nbackend = \"sql\"\n[storage.sql]\nurl = \"sqlite:b.db\"\n\
                [storage.compression]\nlevel = 9\n";
    let c = parse(text, Path::new("."), None).unwrap();
    let z = c.storage.main.compression.unwrap();
    assert_eq!((z.level, z.frame_bytes), (9, 64 << 10));
    let text = "[storage]\nbackend = \"sql\"\n[storage.sql]\nurl = \"sqlite:b.db\"\n\
                [storage.compression]\nlevel = 30\nframe_kib = 1\n";
    let errs = parse(text, Path::new("."), None).unwrap_err();
    assert_eq!(
        keys_and_lines(&errs),
        [
            ("storage.compression.level".to_string(), Some(6)),
            ("storage.compression.frame_kib".to_string(), Some(7)),
        ]
    );
    let errs = parse("[storage.compression]\n", Path::new("."), None).unwrap_err();
    assert_eq!(
        keys_and_lines(&errs),
        [("storage.compression".to_string(), Some(1))]
    );
    assert!(errs.to_string().contains("SQL and S3"), "{errs}");
}

#[test]
fn encryption_names_its_keyring_and_is_refused_for_a_maildir() {
    let text = "[storage]\nbackend = \"sql\"\n[storage.sql]\nurl = \"sqlite:b.db\"\n\
                [storage.encryption]\nkeys = \"keyring\"\nkey_id = 2\n";
    let c = parse(text, Path::new("/etc/strata"), None).unwrap();
    let e = c.storage.main.encryption.clone().unwrap();
    assert_eq!(
        e.keys,
        Path::new("/etc/strata/keyring"),
        "relative to the file"
    );
    assert_eq!(e.key_id, Some(2));
    // A keyring that cannot be read is reported with the store's key.
    let problems = strata_config::check_files(&c);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].key, "storage.encryption.keys");
    let text = "[storage]\nbackend = \"sql\"\n[storage.sql]\nurl = \"sqlite:b.db\"\n\
                [storage.encryption]\n";
    let errs = parse(text, Path::new("."), None).unwrap_err();
    assert_eq!(
        keys_and_lines(&errs),
        [("storage.encryption.keys".to_string(), Some(5))]
    );
    let errs = parse("[storage.encryption]\nkeys = \"k\"\n", Path::new("."), None).unwrap_err();
    assert_eq!(
        keys_and_lines(&errs),
        [("storage.encryption".to_string(), Some(1))]
    );
}

#[test]
fn tiering_and_the_cache_are_read_and_their_mistakes_name_the_line() {
    let stores = "data_dir = \"/var/strata\"\n\
                  [stores.cold]\nid = 1\nbackend = \"s3\"\n[stores.cold.s3]\nbucket = \"mail\"\n\
                  endpoint = \"http://127.0.0.1:9000\"\n";
    let text = format!(
        "{stores}[storage.tiering]\nto = \"cold\"\nrate = \"5M\"\ndate = \"internaldate\"\n\
         [[storage.tiering.rule]]\nolder_than_days = 90\n\
         [[storage.tiering.rule]]\nmailboxes = [\"Trash\", \"Archive\"]\nlarger_than = \"1M\"\n\
         [storage.cache]\nsize = \"2G\"\n"
    );
    let c = parse(&text, Path::new("."), None).unwrap();
    let t = c.storage.tiering.unwrap();
    assert_eq!(t.to, "cold");
    assert_eq!(t.rate, Some(5 << 20));
    assert_eq!(t.date, TierDate::Internal);
    assert_eq!(t.interval, std::time::Duration::from_secs(3600));
    assert_eq!(
        t.rules,
        [
            TierRule {
                older_than: Some(std::time::Duration::from_secs(90 * 86_400)),
                ..TierRule::default()
            },
            TierRule {
                mailboxes: vec!["Trash".into(), "Archive".into()],
                larger_than: Some(1 << 20),
                ..TierRule::default()
            },
        ]
    );
    let cache = c.storage.cache.unwrap();
    assert_eq!(cache.size, 2 << 30);
    assert_eq!(cache.dir, Path::new("/var/strata/cache"));
    assert_eq!(cache.stores, ["cold"], "the tiering target by default");

    // Mistakes, each at its line (the rules' by their place in the array).
    let text = format!(
        "{stores}[storage.tiering]\nto = \"main\"\n\
         [[storage.tiering.rule]]\nlarger_than = \"big\"\n\
         [[storage.tiering.rule]]\n\
         [storage.cache]\nsize = \"1K\"\n"
    );
    let errs = parse(&text, Path::new("."), None).unwrap_err();
    assert_eq!(
        keys_and_lines(&errs),
        [
            ("storage.tiering.to".to_string(), Some(9)),
            ("storage.tiering.rule.0.larger_than".to_string(), Some(11)),
            ("storage.tiering.rule.1".to_string(), Some(12)),
            ("storage.cache.size".to_string(), Some(14)),
        ],
        "{errs}"
    );
    let text = format!(
        "{stores}[storage.tiering]\nto = \"cold\"\nrate = \"fast\"\ndate = \"arrival\"\n\
         [[storage.tiering.rule]]\nlarger_than = \"big\"\n\
         [[storage.tiering.rule]]\nmailboxes = []\n\
         [storage.cache]\nstores = [\"nowhere\", \"main\"]\n"
    );
    let errs = parse(&text, Path::new("."), None).unwrap_err();
    assert_eq!(
        keys_and_lines(&errs),
        [
            ("storage.tiering.rate".to_string(), Some(10)),
            ("storage.tiering.date".to_string(), Some(11)),
            ("storage.tiering.rule.0.larger_than".to_string(), Some(13)),
            ("storage.tiering.rule.1".to_string(), Some(14)),
            ("storage.cache.stores".to_string(), Some(17)),
            ("storage.cache.stores".to_string(), Some(17)),
        ],
        "{errs}"
    );
    let errs = parse(
        &format!("{stores}[storage.tiering]\nto = \"warm\"\n"),
        Path::new("."),
        None,
    )
    .unwrap_err();
    assert_eq!(
        keys_and_lines(&errs),
        [
            ("storage.tiering".to_string(), Some(8)),
            ("storage.tiering.to".to_string(), Some(9)),
        ],
        "{errs}"
    );
    assert!(errs.to_string().contains("cold"), "{errs}");
}
