//! The login cache: a repeated login is answered from it, and an account change the server is
//! told of (as `strata user passwd` and `del` tell it) takes effect at once.

use strata_integration_tests::{TestServer, USERS};
use strata_server::users::UserDb;

async fn login(s: &TestServer, user: &str, password: &str) -> String {
    let mut c = s.connect().await;
    c.cmd(&format!("LOGIN {user} {password}")).await.status
}

#[tokio::test]
async fn a_changed_password_or_removed_account_is_not_taken_from_the_cache() {
    let s = TestServer::start().await;
    let (alice, old) = USERS[0];
    assert!(login(&s, alice, old).await.starts_with("OK"));
    // Cached now: a second login with it works, a wrong one does not.
    assert!(login(&s, alice, old).await.starts_with("OK"));
    assert!(login(&s, alice, "not-it").await.starts_with("NO"));
    let db = UserDb::new(s.data_dir.join("users"));
    db.set_password(alice, "a-new-password").unwrap();
    let told = strata_server::control::request(&s.data_dir, "account alice", &mut |_| {})
        .await
        .unwrap();
    assert_eq!(told.as_deref(), Some(""));
    assert!(login(&s, alice, old).await.starts_with("NO"));
    assert!(login(&s, alice, "a-new-password").await.starts_with("OK"));
    // Removed: the cached password goes with the account.
    db.remove(alice).unwrap();
    strata_server::control::request(&s.data_dir, "account alice", &mut |_| {})
        .await
        .unwrap();
    assert!(login(&s, alice, "a-new-password").await.starts_with("NO"));
}
