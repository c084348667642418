//! The servers' tokio runtime on its own OS thread, and how the benchmarks start Rotary on it.

use anyhow::{Context, Result};
use rotary_server::{MintRequest, MockHomeserver};
use std::future::Future;
use std::path::PathBuf;

/// A tokio runtime for the servers, on its own OS thread; stops when dropped.
pub struct ServerRuntime {
    pub handle: tokio::runtime::Handle,
    /// Where Rotary's servers spill their traces, if anywhere (`--trace-spill`).
    pub spill: Option<PathBuf>,
    pub stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerRuntime {
    pub fn new(threads: usize, spill: Option<PathBuf>) -> Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("bench-servers".into())
            .spawn(move || {
                let rt = if threads <= 1 {
                    tokio::runtime::Builder::new_current_thread().enable_all().build()
                } else {
                    tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(threads)
                        .thread_name("bench-server-worker")
                        .enable_all()
                        .build()
                };
                match rt {
                    Ok(rt) => {
                        let _ = tx.send(Ok(rt.handle().clone()));
                        rt.block_on(async {
                            let _ = stopped.await;
                        });
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            })?;
        let handle = rx.recv().context("server runtime thread")??;
        Ok(Self {
            handle,
            spill,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Runs a future on the server runtime and waits for its output.
    pub async fn run<F>(&self, f: F) -> Result<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        Ok(self.handle.spawn(f).await?)
    }

    pub async fn start_rotary(&self) -> Result<MockHomeserver> {
        let mut builder = MockHomeserver::builder();
        if let Some(dir) = &self.spill {
            builder = builder.trace_spill(dir, 256 << 20);
        }
        Ok(self.run(builder.start()).await??)
    }
}

impl Drop for ServerRuntime {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub fn no_refresh(user: &str) -> MintRequest {
    MintRequest {
        refresh_token: false,
        ..MintRequest::for_user(user)
    }
}
