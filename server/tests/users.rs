//! The account database.

use strata_server::users::{UserDb, UserError};

#[test]
fn accounts_are_added_verified_changed_listed_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let db = UserDb::new(dir.path().join("users"));
    assert!(db.list().unwrap().is_empty());
    db.add("alice", "correct horse").unwrap();
    db.add("bob@example.org", "hunter2").unwrap();
    assert!(matches!(db.add("alice", "x"), Err(UserError::Exists(_))));
    assert_eq!(db.list().unwrap(), ["alice", "bob@example.org"]);
    assert!(db.verify("alice", "correct horse").unwrap());
    assert!(!db.verify("alice", "wrong").unwrap());
    assert!(!db.verify("nobody", "correct horse").unwrap());
    db.set_password("alice", "battery staple").unwrap();
    assert!(!db.verify("alice", "correct horse").unwrap());
    assert!(db.verify("alice", "battery staple").unwrap());
    assert!(matches!(
        db.set_password("carol", "x"),
        Err(UserError::NoSuchUser(_))
    ));
    db.remove("bob@example.org").unwrap();
    assert!(matches!(
        db.remove("bob@example.org"),
        Err(UserError::NoSuchUser(_))
    ));
    assert_eq!(db.list().unwrap(), ["alice"]);
    let text = std::fs::read_to_string(db.path()).unwrap();
    assert!(text.contains("alice:$argon2id$"), "{text}");
    assert!(!text.contains("battery"), "a password reached the file");
}

#[test]
fn names_that_could_not_be_file_names_and_bad_passwords_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = UserDb::new(dir.path().join("users"));
    for bad in [
        "",
        ".hidden",
        "a/b",
        "../x",
        "sp ace",
        "colon:",
        "nul\0",
        &"x".repeat(65),
    ] {
        assert!(
            matches!(db.add(bad, "pw"), Err(UserError::InvalidName(_))),
            "{bad:?}"
        );
    }
    assert!(matches!(db.add("ok", ""), Err(UserError::InvalidPassword)));
    assert!(matches!(
        db.add("ok", &"p".repeat(1025)),
        Err(UserError::InvalidPassword)
    ));
    assert!(db.list().unwrap().is_empty());
}

#[test]
fn a_damaged_file_is_reported_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users");
    std::fs::write(&path, "# comment\nalice:$argon2id$v=19$m=19456,t=2,p=1$jnV1NNW9UL9XWePZIinSdA$nDCZ85iP3e/6BfYgkx2Wwj/x3qDgm24irn7nA1ZBjxs\nbroken line\n").unwrap();
    let db = UserDb::new(&path);
    let e = db.list().unwrap_err();
    assert!(
        e.to_string().ends_with("users:3: expected name:hash"),
        "{e}"
    );
    assert!(matches!(
        db.add("bob", "pw"),
        Err(UserError::Malformed { line: 3, .. })
    ));
}

#[test]
fn concurrent_changes_from_several_threads_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users");
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let path = path.clone();
            std::thread::spawn(move || UserDb::new(path).add(&format!("user{i}"), "pw").unwrap())
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let mut names = UserDb::new(&path).list().unwrap();
    names.sort();
    assert_eq!(
        names,
        (0..8).map(|i| format!("user{i}")).collect::<Vec<_>>()
    );
}

#[test]
fn an_account_keeps_scram_keys_for_its_password_across_changes_and_quota_edits() {
    use strata_protocol::scram::ScramKeys;
    use strata_server::users::{Limit, QuotaOverride};
    let dir = tempfile::tempdir().unwrap();
    let db = UserDb::new(dir.path().join("users"));
    let keys_of = |db: &UserDb| db.account("alice").unwrap().unwrap().scram.unwrap();
    let matches =
        |k: &ScramKeys, password: &str| ScramKeys::derive(password, &k.salt, k.iterations) == *k;
    db.add("alice", "correct horse").unwrap();
    let first = keys_of(&db);
    assert!(matches(&first, "correct horse"));
    assert!(!matches(&first, "wrong"));
    // A quota change keeps them; a new password makes new ones, under a new salt.
    let quota = QuotaOverride {
        storage: Some(Limit::At(1 << 20)),
        messages: None,
    };
    db.set_quota("alice", quota).unwrap();
    assert_eq!(keys_of(&db), first);
    assert_eq!(db.account("alice").unwrap().unwrap().quota, quota);
    db.set_password("alice", "battery staple").unwrap();
    let second = keys_of(&db);
    assert!(matches(&second, "battery staple"));
    assert_ne!(second.salt, first.salt);
    // An account written before SCRAM (a hash alone) reads with no keys.
    let hash = db.hash_of("alice").unwrap().unwrap();
    std::fs::write(dir.path().join("users"), format!("old:{hash}\n")).unwrap();
    assert_eq!(db.account("old").unwrap().unwrap().scram, None);
}
