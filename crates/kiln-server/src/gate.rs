//! The concurrency gate: a slot per running request, a bounded queue, 429 past it.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::http::StatusCode;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::error::ApiError;
use crate::metrics::Metrics;

pub(crate) struct Gate {
    slots: Arc<Semaphore>,
    max_queue: usize,
}

/// A held slot: model work may run while it lives (moved into the blocking task).
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
    state: crate::State,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.state.metrics.running.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Queued<'a>(&'a Metrics);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Gate {
    pub fn new(max_concurrent: usize, max_queue: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max_concurrent)),
            max_queue,
        }
    }

    /// A slot now, or after waiting in the queue until `deadline`; 429 when the queue is full.
    pub async fn enter(state: &crate::State, deadline: Instant) -> Result<Slot, ApiError> {
        let gate = &state.gate;
        let m = &state.metrics;
        let slot = |permit| {
            m.running.fetch_add(1, Ordering::Relaxed);
            Slot {
                _permit: permit,
                state: state.clone(),
            }
        };
        if let Ok(p) = gate.slots.clone().try_acquire_owned() {
            return Ok(slot(p));
        }
        let ahead = m.queued.fetch_add(1, Ordering::Relaxed);
        let queued = Queued(m);
        if ahead >= gate.max_queue as u64 {
            drop(queued);
            m.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                Some("rate_limit_exceeded"),
                format!(
                    "the server is busy: {} requests are waiting already; retry later",
                    gate.max_queue
                ),
            ));
        }
        let got = tokio::time::timeout_at(deadline, gate.slots.clone().acquire_owned()).await;
        drop(queued);
        match got {
            Ok(Ok(p)) => Ok(slot(p)),
            Ok(Err(_)) => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                None,
                "the server is shutting down",
            )),
            Err(_) => Err(timeout_error()),
        }
    }
}

pub(crate) fn timeout_error() -> ApiError {
    ApiError::new(
        StatusCode::GATEWAY_TIMEOUT,
        "timeout_error",
        Some("timeout"),
        "the request took longer than the server's --timeout",
    )
}
