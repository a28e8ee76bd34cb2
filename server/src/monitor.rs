//! `[metrics] listen`: an HTTP/1.1 endpoint (hyper) for the operator's monitoring: `/metrics`,
//! the process's Prometheus families with each journal's backlog read at the scrape, and
//! `/health`, `200 ready` once every store answers, else `503` naming the ones that do not.
//! Nothing else is served, nothing is written, and no request can hold more than a connection
//! slot for a few seconds.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::backends::Backends;

/// Scrapes served at once; more wait for a slot.
const CONNECTIONS: usize = 16;
/// How long a request may take to arrive, and a store to answer `/health`.
const DEADLINE: Duration = Duration::from_secs(5);

/// Serves the endpoint until shutdown.
pub async fn serve(
    listener: TcpListener,
    backends: Arc<Backends>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let (tcp, _) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let backends = backends.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| answer(req, backends.clone()));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(DEADLINE)
                .keep_alive(false)
                .serve_connection(TokioIo::new(tcp), service);
            let _ = tokio::time::timeout(DEADLINE * 3, conn).await;
            drop(slot);
        });
    }
}

async fn answer(
    req: Request<Incoming>,
    backends: Arc<Backends>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode, kind: &str, body: String| {
        Response::builder()
            .status(status)
            .header("content-type", kind)
            .body(Full::new(Bytes::from(body)))
            .expect("a response from valid parts")
    };
    const TEXT: &str = "text/plain; charset=utf-8";
    if req.method() != Method::GET {
        return Ok(reply(
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            "only GET\n".into(),
        ));
    }
    Ok(match req.uri().path() {
        "/metrics" => {
            let m = strata_metrics::metrics();
            for (store, s) in backends.journals() {
                m.journal(&store, s.pending_batches, s.pending_bytes, s.oldest);
            }
            for (store, c, _) in backends.caches() {
                m.cache(&store, c.hits, c.misses, c.objects, c.bytes);
            }
            reply(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                m.text(),
            )
        }
        "/health" => {
            let stores = backends.health(DEADLINE).await;
            let mut body = String::new();
            for (name, answer) in &stores {
                match answer {
                    Ok(()) => body.push_str(&format!("store {name}: ok\n")),
                    Err(why) => body.push_str(&format!("store {name}: down: {why}\n")),
                }
            }
            if stores.iter().all(|(_, a)| a.is_ok()) {
                reply(StatusCode::OK, TEXT, format!("ready\n{body}"))
            } else {
                reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    TEXT,
                    format!("not ready\n{body}"),
                )
            }
        }
        _ => reply(StatusCode::NOT_FOUND, TEXT, "/metrics or /health\n".into()),
    })
}
