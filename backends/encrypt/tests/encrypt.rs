//! The encryption layer keeps the contract over a store in memory and over a real Maildir, alone
//! and under compression; what the store holds reveals nothing of the mail; keys rotate; and a
//! missing key, a flipped byte or an object that was never sealed is corruption naming the key,
//! while other objects stay readable.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use strata_backend_api::{Backend, Batch, ErrorKind, Key, MemoryBackend, conformance};
use strata_backend_encrypt::{EncryptBackend, Keyring};
use strata_backend_maildir::MaildirBackend;

fn keyring(ids: &[u32]) -> Keyring {
    let text: String = ids
        .iter()
        .map(|id| {
            let key = base64::engine::general_purpose::STANDARD.encode([*id as u8 + 100; 32]);
            format!("{id}:{key}\n")
        })
        .collect();
    Keyring::parse(&text, None).unwrap()
}

fn sealed(inner: Arc<dyn Backend>, ids: &[u32]) -> Arc<dyn Backend> {
    Arc::new(EncryptBackend::new(inner, keyring(ids)))
}

fn k(s: &str) -> Key {
    Key::new(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layer_keeps_the_contract_alone_over_a_maildir_and_under_compression() {
    conformance::run_all(|| async { sealed(Arc::new(MemoryBackend::new()), &[1]) }).await;
    let dir = tempfile::tempdir().unwrap();
    let n = AtomicU64::new(0);
    conformance::run_all(|| {
        let root = dir
            .path()
            .join(n.fetch_add(1, Ordering::Relaxed).to_string());
        async move { sealed(Arc::new(MaildirBackend::open(root).unwrap()), &[1]) }
    })
    .await;
    // Compressed, then sealed: the order a store with both keeps.
    conformance::run_all(|| async {
        let opts = strata_backend_compress::CompressOptions {
            level: 3,
            frame_size: 1000,
        };
        let inner = sealed(Arc::new(MemoryBackend::new()), &[1]);
        Arc::new(strata_backend_compress::CompressBackend::new(inner, opts)) as Arc<dyn Backend>
    })
    .await;
}

#[tokio::test]
async fn the_store_sees_no_mail_keys_rotate_and_damage_names_the_key() {
    let store = Arc::new(MemoryBackend::new());
    let message = "Subject: quarterly figures\r\n\r\nthe secret number is 42\r\n".repeat(3000);
    let old = sealed(store.clone(), &[1]);
    old.commit(Batch::new().put(k("a"), message.clone()))
        .await
        .unwrap();
    let raw = store.get(&k("a"), None).await.unwrap();
    assert!(
        !raw.windows(6).any(|w| w == b"secret"),
        "plaintext in the store"
    );
    // Rotated: the new key seals, the old still opens.
    let rotated = sealed(store.clone(), &[1, 2]);
    rotated
        .commit(Batch::new().put(k("b"), message.clone()))
        .await
        .unwrap();
    for key in ["a", "b"] {
        assert_eq!(
            rotated.get(&k(key), None).await.unwrap(),
            message.as_bytes()
        );
        assert_eq!(
            rotated.get(&k(key), Some(100_000..100_050)).await.unwrap(),
            message.as_bytes()[100_000..100_050]
        );
        assert_eq!(rotated.size(&k(key)).await.unwrap(), message.len() as u64);
    }
    // The old keyring cannot open what the new key sealed, and says which key it lacks.
    let e = old.get(&k("b"), None).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Corrupt);
    assert!(
        e.to_string()
            .contains("b: encrypted object cannot be opened: sealed with key 2"),
        "{e}"
    );
    // A flipped byte: the frame fails, named, whole or by range; the other object reads.
    let mut bad = store.get(&k("a"), None).await.unwrap().to_vec();
    let at = bad.len() / 2;
    bad[at] ^= 1;
    store.commit(Batch::new().put(k("a"), bad)).await.unwrap();
    for range in [None, Some(at as u64 - 200..at as u64 - 100)] {
        let e = rotated.get(&k("a"), range).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Corrupt);
        assert!(
            e.to_string().contains("fails authentication under key 1"),
            "{e}"
        );
    }
    assert_eq!(
        rotated.get(&k("b"), None).await.unwrap(),
        message.as_bytes()
    );
    // An object that was never sealed is not taken as mail.
    store
        .commit(Batch::new().put(k("plain"), "Subject: forged\r\n\r\n"))
        .await
        .unwrap();
    let e = rotated.get(&k("plain"), None).await.unwrap_err();
    assert!(e.to_string().contains("not an encrypted object"), "{e}");
}
