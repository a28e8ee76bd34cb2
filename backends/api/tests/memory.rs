//! The in-memory backend keeps the whole contract.

use std::sync::Arc;

use strata_backend_api::{Backend, MemoryBackend, conformance};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_backend_keeps_the_contract() {
    conformance::run_all(|| async { Arc::new(MemoryBackend::new()) as Arc<dyn Backend> }).await;
}

/// A backend that applies a batch one op at a time, and so breaks atomicity.
struct PieceByPiece(MemoryBackend);

#[async_trait::async_trait]
impl Backend for PieceByPiece {
    fn name(&self) -> &str {
        "piece-by-piece"
    }
    fn capabilities(&self) -> strata_backend_api::Capabilities {
        self.0.capabilities()
    }
    async fn commit(
        &self,
        batch: strata_backend_api::Batch,
    ) -> Result<strata_backend_api::Receipt, strata_backend_api::BackendError> {
        let mut last = None;
        for op in batch.ops {
            let mut one = strata_backend_api::Batch::new();
            one.ops.push(op);
            one.preconditions = batch.preconditions.clone();
            last = Some(self.0.commit(one).await?);
        }
        match last {
            Some(r) => Ok(r),
            None => self.0.commit(strata_backend_api::Batch::new()).await,
        }
    }
    async fn flush(&self, seq: u64) -> Result<(), strata_backend_api::BackendError> {
        self.0.flush(seq).await
    }
    async fn get(
        &self,
        key: &strata_backend_api::Key,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<bytes::Bytes, strata_backend_api::BackendError> {
        self.0.get(key, range).await
    }
    async fn size(
        &self,
        key: &strata_backend_api::Key,
    ) -> Result<u64, strata_backend_api::BackendError> {
        self.0.size(key).await
    }
    async fn list(
        &self,
        prefix: &str,
    ) -> Result<Vec<strata_backend_api::Listed>, strata_backend_api::BackendError> {
        self.0.list(prefix).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "piece-by-piece: a_batch_is_all_or_nothing")]
async fn the_suite_catches_a_backend_that_is_not_atomic() {
    conformance::run_all(|| async {
        Arc::new(PieceByPiece(MemoryBackend::new())) as Arc<dyn Backend>
    })
    .await;
}
