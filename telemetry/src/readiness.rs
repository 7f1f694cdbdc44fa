//! What `/readyz` answers: the binary says when it is ready to serve.
//!
//! flowtap is ready once its proxy listens; flow-store while its database answers; a
//! script-host worker once it accepts sessions. A process starts not ready.

use std::sync::atomic::{AtomicBool, Ordering};

static READY: AtomicBool = AtomicBool::new(false);

/// Marks the process ready (`/readyz` answers 200) or not (503).
pub fn set_ready(ready: bool) {
    READY.store(ready, Ordering::Release);
}

/// Whether the process said it is ready.
pub fn is_ready() -> bool {
    READY.load(Ordering::Acquire)
}
