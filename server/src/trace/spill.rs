//! The trace's spill: a writer thread that appends every finished entry to NDJSON files rotated by size.
//!
//! The request path never waits for the disk: it hands an `Arc<TraceEntry>` to a bounded channel
//! with `try_send`, and when the writer has fallen that far behind the line is dropped and counted
//! ([`TraceStats::spill_dropped`](super::TraceStats::spill_dropped)) instead. The writer
//! serializes each entry as one line of JSON (the same shape as `GET /_rotary/trace` and the
//! run report), starts a new file when the next line would take the current one past
//! `max_file_bytes`, flushes whenever its queue runs empty, and keeps every file it wrote.

use super::TraceEntry;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::time::Duration;

/// Where and how the trace spills finished entries to disk.
///
/// ```
/// use rotary_server::trace::SpillConfig;
/// let spill = SpillConfig::new("/tmp/rotary-trace", 64 << 20);
/// assert_eq!(spill.max_file_bytes, 64 << 20);
/// assert_eq!(spill.queue, SpillConfig::DEFAULT_QUEUE);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpillConfig {
    /// The directory of the files (`trace-000001.ndjson`, `trace-000002.ndjson`, …); created if
    /// missing. Numbering continues after the highest file already there, so nothing is
    /// overwritten.
    pub dir: PathBuf,
    /// A file is closed and the next one started when a line would take it past this size (a
    /// single larger line gets a file of its own).
    pub max_file_bytes: u64,
    /// Entries that may wait for the writer; beyond that, lines are dropped and counted.
    pub queue: usize,
}

impl SpillConfig {
    /// Entries the writer's queue holds by default (about 2 s of traffic at 30,000 requests/s).
    pub const DEFAULT_QUEUE: usize = 65_536;

    /// Spill into `dir`, rotating at `max_file_bytes`, with the default queue.
    pub fn new(dir: impl Into<PathBuf>, max_file_bytes: u64) -> Self {
        Self {
            dir: dir.into(),
            max_file_bytes: max_file_bytes.max(1),
            queue: Self::DEFAULT_QUEUE,
        }
    }
}

/// The writer's nap between drains while entries come.
const MIN_NAP: Duration = Duration::from_millis(2);
/// Its longest nap when nothing comes (a flush or the end is seen within this).
const MAX_NAP: Duration = Duration::from_millis(50);

/// What the writer thread is told.
pub(super) enum Msg {
    /// Append this entry.
    Entry(Arc<TraceEntry>),
    /// Close the current file; the next line starts a new one (after a reset: seqs restart).
    Rotate,
    /// Flush and answer once everything sent before has been written.
    Flush(SyncSender<()>),
}

/// Counters the writer and the request path share.
#[derive(Debug, Default)]
pub(super) struct SpillCounters {
    pub written: AtomicU64,
    pub dropped: AtomicU64,
    pub errors: AtomicU64,
    pub files: AtomicU64,
}

/// The request side of the spill.
#[derive(Debug)]
pub(super) struct Spill {
    tx: Option<SyncSender<Msg>>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub counters: Arc<SpillCounters>,
}

impl Spill {
    /// Creates the directory and starts the writer thread.
    pub fn start(config: &SpillConfig) -> io::Result<Spill> {
        std::fs::create_dir_all(&config.dir)?;
        let next = next_file_number(&config.dir)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(config.queue.max(1));
        let counters = Arc::new(SpillCounters::default());
        let mut writer = Writer {
            dir: config.dir.clone(),
            max_file_bytes: config.max_file_bytes.max(1),
            next,
            file: None,
            bytes: 0,
            line: Vec::with_capacity(1024),
            counters: counters.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("rotary-trace-spill".into())
            .spawn(move || writer.run(&rx))?;
        Ok(Spill {
            tx: Some(tx),
            thread: Some(thread),
            counters,
        })
    }

    /// Queues an entry without waiting; counts it as dropped when the queue is full.
    pub fn send(&self, entry: Arc<TraceEntry>) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(Msg::Entry(entry)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Starts a new file for what comes next (waits if the queue is full: resets are rare).
    pub fn rotate(&self) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Msg::Rotate);
        }
    }

    /// Blocks until every entry queued so far is written and flushed.
    pub fn flush(&self) {
        let Some(tx) = &self.tx else { return };
        let (ack, done) = std::sync::mpsc::sync_channel(1);
        if tx.send(Msg::Flush(ack)).is_ok() {
            let _ = done.recv();
        }
    }
}

impl Drop for Spill {
    fn drop(&mut self) {
        // Closing the channel lets the writer drain its queue, flush and stop.
        self.tx = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `trace-000042.ndjson` → 42.
fn file_number(name: &str) -> Option<u64> {
    name.strip_prefix("trace-")?.strip_suffix(".ndjson")?.parse().ok()
}

/// The spill file with number `n` in `dir`.
pub fn spill_file(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("trace-{n:06}.ndjson"))
}

fn next_file_number(dir: &Path) -> io::Result<u64> {
    let mut highest = 0;
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        if let Some(n) = name.to_str().and_then(file_number) {
            highest = highest.max(n);
        }
    }
    Ok(highest + 1)
}

/// The spill files in `dir`, oldest first.
///
/// ```
/// let dir = std::env::temp_dir().join("rotary-doc-no-spill-here");
/// assert!(rotary_server::trace::spill_files(&dir).unwrap_or_default().is_empty());
/// ```
pub fn spill_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut numbered: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let n = e.file_name().to_str().and_then(file_number)?;
            Some((n, e.path()))
        })
        .collect();
    numbered.sort();
    Ok(numbered.into_iter().map(|(_, p)| p).collect())
}

/// Reads every entry of the spill files in `dir`, in the order they were written (completion
/// order; sort by `seq` for arrival order). Lines that do not parse are skipped.
pub fn read_spill(dir: &Path) -> io::Result<Vec<TraceEntry>> {
    let mut out = Vec::new();
    for path in spill_files(dir)? {
        let text = std::fs::read_to_string(&path)?;
        out.extend(text.lines().filter_map(|l| serde_json::from_str(l).ok()));
    }
    Ok(out)
}

/// The writer thread's state.
struct Writer {
    dir: PathBuf,
    max_file_bytes: u64,
    next: u64,
    file: Option<BufWriter<File>>,
    bytes: u64,
    line: Vec<u8>,
    counters: Arc<SpillCounters>,
}

impl Writer {
    /// Drains the queue, flushes, sleeps, and again: the writer never waits *in* the channel, so
    /// that a request queueing an entry never has to wake it (a futex call per request, measured
    /// at several µs). The sleep doubles while nothing comes, from 2 ms up to 50 ms.
    fn run(&mut self, rx: &Receiver<Msg>) {
        let mut idle = MIN_NAP;
        loop {
            let mut got = false;
            loop {
                match rx.try_recv() {
                    Ok(msg) => {
                        got = true;
                        self.handle(msg);
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        self.close();
                        return;
                    }
                }
            }
            // Make what was written visible to readers.
            self.flush();
            idle = if got { MIN_NAP } else { (idle * 2).min(MAX_NAP) };
            std::thread::sleep(idle);
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Entry(e) => self.write(&e),
            Msg::Rotate => self.close(),
            Msg::Flush(ack) => {
                self.flush();
                let _ = ack.send(());
            }
        }
    }

    fn write(&mut self, entry: &TraceEntry) {
        self.line.clear();
        if let Err(e) = serde_json::to_writer(&mut self.line, entry) {
            self.failed(&io::Error::other(e));
            return;
        }
        self.line.push(b'\n');
        let len = self.line.len() as u64;
        if self.file.is_some() && self.bytes + len > self.max_file_bytes {
            self.close();
        }
        if self.file.is_none() {
            let path = spill_file(&self.dir, self.next);
            match File::create(&path) {
                Ok(f) => {
                    self.file = Some(BufWriter::with_capacity(64 * 1024, f));
                    self.bytes = 0;
                    self.next += 1;
                    self.counters.files.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    self.failed(&e);
                    return;
                }
            }
        }
        let Some(file) = self.file.as_mut() else { return };
        match file.write_all(&self.line) {
            Ok(()) => {
                self.bytes += len;
                self.counters.written.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => self.failed(&e),
        }
    }

    fn flush(&mut self) {
        if let Some(f) = self.file.as_mut()
            && let Err(e) = f.flush()
        {
            self.failed(&e);
        }
    }

    fn close(&mut self) {
        self.flush();
        self.file = None;
    }

    fn failed(&self, e: &io::Error) {
        let before = self.counters.errors.fetch_add(1, Ordering::Relaxed);
        // Once, and then every 10,000th: a full disk must not flood the log.
        if before.is_multiple_of(10_000) {
            tracing::warn!(error = %e, dir = %self.dir.display(), "trace spill write failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::entry_at as entry;
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_every_line() {
        let dir = tempfile::tempdir().unwrap();
        let line_len = serde_json::to_vec(&*entry(1)).unwrap().len() as u64 + 1;
        // Three lines per file.
        let spill = Spill::start(&SpillConfig::new(dir.path(), 3 * line_len + 2)).unwrap();
        for seq in 1..=10 {
            spill.send(entry(seq));
        }
        spill.flush();
        let files = spill_files(dir.path()).unwrap();
        assert_eq!(files.len(), 4, "{files:?}");
        for f in &files[..3] {
            assert_eq!(std::fs::read_to_string(f).unwrap().lines().count(), 3);
        }
        let seqs: Vec<u64> = read_spill(dir.path()).unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
        assert_eq!(spill.counters.written.load(Ordering::Relaxed), 10);
        assert_eq!(spill.counters.files.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn rotate_starts_a_new_file_and_numbering_continues_after_existing_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(spill_file(dir.path(), 7), "").unwrap();
        {
            let spill = Spill::start(&SpillConfig::new(dir.path(), 1 << 20)).unwrap();
            spill.send(entry(1));
            spill.rotate();
            spill.send(entry(1));
            // Dropping drains the queue and closes the file.
        }
        let files = spill_files(dir.path()).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "trace-000007.ndjson",
                "trace-000008.ndjson",
                "trace-000009.ndjson"
            ]
        );
        assert_eq!(read_spill(dir.path()).unwrap().len(), 2);
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = SpillConfig::new(dir.path(), 1 << 30);
        config.queue = 1;
        let spill = Spill::start(&config).unwrap();
        for seq in 1..=5000 {
            spill.send(entry(seq));
        }
        spill.flush();
        let written = spill.counters.written.load(Ordering::Relaxed);
        let dropped = spill.counters.dropped.load(Ordering::Relaxed);
        assert_eq!(written + dropped, 5000);
        assert_eq!(read_spill(dir.path()).unwrap().len() as u64, written);
    }

    #[test]
    fn file_names_parse() {
        assert_eq!(file_number("trace-000042.ndjson"), Some(42));
        assert_eq!(file_number("trace-x.ndjson"), None);
        assert_eq!(file_number("other.ndjson"), None);
    }
}
