//! The thread that carries every worker session.

use tokio::sync::oneshot;

use crate::ScriptsError;

/// The thread that runs the I/O of every worker session (tonic's connection and stream tasks,
/// the reader of replies, the spawned worker processes) on one current-thread runtime. A hook
/// call then wakes this one thread to send and, with the reply, the caller's task: no other
/// thread of the proxy's runtime takes part in a call.
pub(crate) struct IoThread {
    pub(crate) handle: tokio::runtime::Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for IoThread {
    /// Stops the thread and waits for its runtime to drop its tasks: the links go, and with
    /// them the worker processes this client spawned (killed on drop), before the caller goes
    /// on (a `flowtap` that exits right after must not leave a worker behind).
    fn drop(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take()
            && thread.thread().id() != std::thread::current().id()
        {
            let _ = thread.join();
        }
    }
}

impl IoThread {
    /// Starts the thread.
    pub(crate) fn start() -> Result<Self, ScriptsError> {
        let io_error = |e: std::io::Error| ScriptsError::Spawn {
            binary: "script-host".into(),
            reason: format!("starting the script I/O thread: {e}"),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .on_thread_park(flowtap_spin::before_park)
            .build()
            .map_err(io_error)?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("script-io".into())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })
            .map_err(io_error)?;
        Ok(Self {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}
