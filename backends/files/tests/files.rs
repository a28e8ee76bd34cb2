//! The file store against the contract, and its create-only writes against a second process's
//! view of the same directory.

use std::sync::Arc;

use strata_backend_api::{Backend, Batch, ErrorKind, Key, conformance};
use strata_backend_files::FilesBackend;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_the_contract() {
    let dirs = std::sync::Mutex::new(Vec::new());
    conformance::run_all(|| {
        let dir = tempfile::tempdir().unwrap();
        let store = FilesBackend::open(dir.path()).unwrap();
        dirs.lock().unwrap().push(dir);
        async move { Arc::new(store) as Arc<dyn Backend> }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_only_holds_between_two_openers_of_one_directory() {
    let dir = tempfile::tempdir().unwrap();
    // Two openers stand for two nodes on a shared file system: no lock in common.
    let stores: Vec<Arc<FilesBackend>> = (0..2)
        .map(|_| Arc::new(FilesBackend::open(dir.path()).unwrap()))
        .collect();
    let k = Key::new("strata-index/epoch.00000000000000000001").unwrap();
    let tries = (0..8).map(|i| {
        let s = stores[i % 2].clone();
        let k = k.clone();
        tokio::spawn(async move {
            s.commit(
                Batch::new()
                    .require_absent(k.clone())
                    .put(k, format!("{i}")),
            )
            .await
        })
    });
    let mut won = 0;
    for t in tries {
        match t.await.unwrap() {
            Ok(_) => won += 1,
            Err(e) => assert_eq!(e.kind, ErrorKind::Conflict, "{e}"),
        }
    }
    assert_eq!(won, 1, "exactly one create wins");
    // Nothing staged is left behind, and the one object is listed.
    let listed = stores[0].list("").await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        stores[1]
            .clean_partial(std::time::Duration::ZERO)
            .await
            .unwrap(),
        0
    );
}
