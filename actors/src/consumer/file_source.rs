//! The file source: JSON-lines files (plain or gzip) read once, in the
//! given order, as one log. A line's [`LinePosition`] is its offset, so the
//! position is committed with the results like a Kafka offset and a rerun
//! resumes at the first line not committed.
//!
//! Resuming reads the current file from its start and skips the committed
//! lines (a gzip stream cannot seek, and line numbers must stay true for
//! dead letters): a one-off cost per start, proportional to the position in
//! one file.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use std::sync::mpsc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use flate2::read::MultiGzDecoder;
use rayon::prelude::*;

use crate::event::{Event, Rejection};
use crate::lines::{event_text, LinePosition};

/// Lines read in one batch per parse thread (2,000 on two cores). Small
/// enough that a batch's events (about 110 bytes each) are still in cache
/// when the window actors read them, and that the allocator reuses freed
/// batch buffers instead of mapping fresh zeroed pages: 20,000-line batches
/// cost the window thread a third of its time in cache misses.
const LINES_PER_THREAD: usize = 1_000;
/// Batches read and parsed ahead of the consumer (bounds memory).
const READ_AHEAD: usize = 8;
/// Pieces of parallel parse work per parse thread and batch.
const PIECES_PER_THREAD: usize = 2;

/// Read buffer of each file.
const READ_BUFFER: usize = 1 << 20;

/// A file could not be opened or read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}: {source}")]
pub struct ReadError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    #[source]
    pub source: io::Error,
}

/// The file reader thread stopped before the end of the input.
#[derive(Debug, thiserror::Error)]
#[error("the file reader thread stopped before the end of the input")]
pub struct ReaderGone;

/// Lines read in one batch: their text in one buffer, and where each is.
#[derive(Debug, Default)]
pub(super) struct LineBatch {
    /// The batch's event texts, back to back.
    pub buf: Vec<u8>,
    /// Each event's bytes in `buf` and its position.
    pub lines: Vec<(Range<usize>, LinePosition)>,
    /// Each line's parse, in line order (filled by the reader thread).
    pub parsed: Vec<Result<Event, Rejection>>,
}

/// Counts the bytes read from a file: for the progress bar (shared with
/// the pipeline's status) and for this source's own estimate.
struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
    own: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        self.own.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// The files of a source and the next line to read.
pub(super) struct FileSource {
    paths: Vec<PathBuf>,
    /// The file being read, positioned at `next`.
    open: Option<Box<dyn BufRead + Send>>,
    next: LinePosition,
    /// Bytes of the files read so far (compressed bytes for gzip).
    read_bytes: Arc<AtomicU64>,
    /// The same count for this source alone (a reader of an earlier
    /// incarnation may still be adding to `read_bytes` for a moment).
    own_bytes: Arc<AtomicU64>,
    /// Bytes of all the files, as counted in `read_bytes`.
    total_bytes: u64,
}

impl FileSource {
    /// A source over `paths`, counting the bytes it reads in `read_bytes`.
    pub fn new(paths: Vec<PathBuf>, read_bytes: Arc<AtomicU64>) -> Self {
        let total_bytes = paths.iter().map(|p| file_size(p)).sum();
        FileSource {
            paths,
            open: None,
            next: LinePosition::START,
            read_bytes,
            own_bytes: Arc::default(),
            total_bytes,
        }
    }

    /// Opens `path`, counting what is read from it.
    fn open_counted(&self, path: &Path) -> Result<Box<dyn BufRead + Send>, ReadError> {
        open(path, &self.read_bytes, &self.own_bytes)
    }

    /// Bytes this source read so far and bytes left.
    fn progress(&self) -> (u64, u64) {
        let read = self.own_bytes.load(Ordering::Relaxed);
        (read, self.total_bytes.saturating_sub(read))
    }

    /// Positions the source at `next` (a committed next offset's position):
    /// the lines before it in its file are read and skipped.
    pub fn seek(&mut self, next: LinePosition) -> Result<(), ReadError> {
        let before: u64 = self
            .paths
            .iter()
            .take(next.file)
            .map(|p| file_size(p))
            .sum();
        self.read_bytes.store(before, Ordering::Relaxed);
        self.own_bytes.store(before, Ordering::Relaxed);
        self.open = None;
        self.next = LinePosition {
            file: next.file,
            line: 1,
        };
        let Some(path) = self.paths.get(next.file) else {
            return Ok(());
        };
        let mut reader = self.open_counted(path)?;
        let mut skipped = Vec::new();
        while self.next.line < next.line {
            skipped.clear();
            let n = reader
                .read_until(b'\n', &mut skipped)
                .map_err(|source| read_error(path, source))?;
            if n == 0 {
                let changed = io::Error::other(format!(
                    "it ends at line {} but line {} was committed: the file changed since (replay it under another --source)",
                    self.next.line - 1,
                    next.line - 1
                ));
                return Err(read_error(path, changed));
            }
            self.next.line += 1;
        }
        self.open = Some(reader);
        Ok(())
    }

    /// Reads up to `max` events into `batch` (emptied first). `Ok(true)`
    /// when the end of the last file is reached.
    pub fn read_batch(&mut self, batch: &mut LineBatch, max: usize) -> Result<bool, ReadError> {
        batch.buf.clear();
        batch.lines.clear();
        while batch.lines.len() < max {
            let reader = match &mut self.open {
                Some(reader) => reader,
                None => {
                    let Some(path) = self.paths.get(self.next.file) else {
                        return Ok(true);
                    };
                    let reader = self.open_counted(path)?;
                    self.open.insert(reader)
                }
            };
            let start = batch.buf.len();
            let n = reader
                .read_until(b'\n', &mut batch.buf)
                .map_err(|source| read_error(&self.paths[self.next.file], source))?;
            if n == 0 {
                self.open = None;
                self.next = LinePosition {
                    file: self.next.file + 1,
                    line: 1,
                };
                continue;
            }
            let position = self.next;
            self.next.line += 1;
            let line = &batch.buf[start..];
            let line = line.strip_suffix(b"\n").unwrap_or(line);
            match event_text(line) {
                Some(text) => {
                    let end = start + text.len();
                    batch.lines.push((start..end, position));
                    batch.buf.truncate(end);
                }
                None => batch.buf.truncate(start),
            }
        }
        Ok(false)
    }
}

/// A batch of lines with each line's parse, in line order.
pub(super) struct ParsedBatch {
    pub lines: LineBatch,
    /// When it was read: the log time that bounds its event times.
    pub read_at: DateTime<Utc>,
    /// The last file ended with this batch.
    pub ended: bool,
    /// Lines estimated to be left after this batch, at the rate of lines
    /// per byte read so far (`u64::MAX` before anything is read).
    pub lines_left: u64,
}

/// The files of a source, before and after the claim positions them.
pub(super) enum FileInput {
    /// Not yet positioned at the committed line.
    Unpositioned(Box<FileSource>),
    /// Read and parsed ahead by a thread of its own.
    Reading(FileReader),
    /// Only while `start` swaps the source into its reader.
    Started,
}

impl FileInput {
    /// Starts reading ahead from `next` (positioning the files is the
    /// reader thread's first step, so a long skip never blocks the
    /// consumer; a failure arrives as its first batch).
    pub fn start(&mut self, next: LinePosition, skew: TimeDelta) {
        if !matches!(self, FileInput::Unpositioned(_)) {
            return;
        }
        if let FileInput::Unpositioned(source) = std::mem::replace(self, FileInput::Started) {
            *self = FileInput::Reading(FileReader::start(*source, next, skew));
        }
    }
}

/// A thread that reads batches of lines and parses them (on rayon's pool,
/// one thread per core), `READ_AHEAD` batches ahead of the consumer: the
/// consumer only counts, groups and dispatches.
pub(super) struct FileReader {
    batches: mpsc::Receiver<Result<ParsedBatch, ReadError>>,
    /// Line buffers handed back for reuse.
    recycle: mpsc::Sender<LineBatch>,
}

impl FileReader {
    fn start(mut source: FileSource, next: LinePosition, skew: TimeDelta) -> FileReader {
        let (tx, batches) = mpsc::sync_channel(READ_AHEAD);
        let (recycle, recycled) = mpsc::channel::<LineBatch>();
        std::thread::spawn(move || {
            if let Err(e) = source.seek(next) {
                let _ = tx.send(Err(e));
                return;
            }
            // Bytes of the last batch: a fresh buffer is allocated at that
            // size at once rather than grown (and copied) line by line.
            let mut last_bytes = 0;
            // Bytes read before the first batch (the skipped part on a
            // resume), and lines read since: the rate of the estimate.
            let (skipped_bytes, _) = source.progress();
            let mut lines_read = 0u64;
            let batch_lines = LINES_PER_THREAD * rayon::current_num_threads();
            loop {
                let mut lines = recycled.try_recv().unwrap_or_default();
                lines.buf.reserve(last_bytes);
                let read = source.read_batch(&mut lines, batch_lines).map(|ended| {
                    last_bytes = lines.buf.len();
                    lines_read += lines.lines.len() as u64;
                    let (read, left) = source.progress();
                    let lines_left =
                        estimate_left(lines_read, read.saturating_sub(skipped_bytes), left);
                    let read_at = Utc::now();
                    parse_in_parallel(&mut lines, Some(read_at), skew);
                    ParsedBatch {
                        lines,
                        read_at,
                        ended,
                        lines_left: if ended { 0 } else { lines_left },
                    }
                });
                let last = read.as_ref().map_or(true, |b| b.ended);
                // A send fails when the incarnation is gone: stop reading.
                if tx.send(read).is_err() || last {
                    return;
                }
            }
        });
        FileReader { batches, recycle }
    }

    /// The next batch, waiting at most `wait`: `Ok(None)` if none is ready
    /// yet, `Err` if the reader thread is gone (it stops after the batch
    /// that ends the input, so gone before that means it panicked).
    pub fn next(
        &self,
        wait: Duration,
    ) -> Result<Option<Result<ParsedBatch, ReadError>>, ReaderGone> {
        match self.batches.recv_timeout(wait) {
            Ok(batch) => Ok(Some(batch)),
            Err(mpsc::RecvTimeoutError::Timeout) => Ok(None),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(ReaderGone),
        }
    }

    /// Hands a batch's buffers back for reuse.
    pub fn recycle(&self, lines: LineBatch) {
        let _ = self.recycle.send(lines);
    }
}

/// A file's size in bytes (0 if it cannot be read: opening it reports why).
fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Lines left in `left` bytes, at the rate of `lines` in `read` bytes.
fn estimate_left(lines: u64, read: u64, left: u64) -> u64 {
    if read == 0 {
        return u64::MAX;
    }
    let estimate = u128::from(left) * u128::from(lines) / u128::from(read);
    u64::try_from(estimate).unwrap_or(u64::MAX)
}

/// Parses a batch of lines on rayon's pool into `lines.parsed` (reusing
/// its allocation); the results keep line order.
fn parse_in_parallel(lines: &mut LineBatch, log_time: Option<DateTime<Utc>>, skew: TimeDelta) {
    let LineBatch { buf, lines, parsed } = lines;
    lines
        .par_iter()
        .with_min_len(LINES_PER_THREAD / PIECES_PER_THREAD)
        .map(|(range, _)| Event::parse_bounded(&buf[range.clone()], log_time, skew))
        .collect_into_vec(parsed);
}

fn read_error(path: &Path, source: io::Error) -> ReadError {
    ReadError {
        path: path.to_owned(),
        source,
    }
}

/// Opens a file for reading, through a gzip decoder if its name ends in `.gz`.
fn open(
    path: &Path,
    read_bytes: &Arc<AtomicU64>,
    own_bytes: &Arc<AtomicU64>,
) -> Result<Box<dyn BufRead + Send>, ReadError> {
    let file = File::open(path).map_err(|source| read_error(path, source))?;
    let counted = Counting {
        inner: file,
        read: read_bytes.clone(),
        own: own_bytes.clone(),
    };
    let gzip = path.extension().is_some_and(|e| e == "gz");
    Ok(if gzip {
        Box::new(BufReader::with_capacity(
            READ_BUFFER,
            MultiGzDecoder::new(BufReader::with_capacity(READ_BUFFER, counted)),
        ))
    } else {
        Box::new(BufReader::with_capacity(READ_BUFFER, counted))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn lines_left_are_estimated_at_the_rate_read_so_far() {
        assert_eq!(estimate_left(0, 0, 1_000), u64::MAX, "nothing read yet");
        assert_eq!(estimate_left(10, 1_000, 3_000), 30);
        assert_eq!(estimate_left(10, 1_000, 0), 0);
        assert_eq!(estimate_left(u64::MAX, 1, u64::MAX), u64::MAX);
    }

    fn read_all(source: &mut FileSource) -> Vec<(String, LinePosition)> {
        let mut out = Vec::new();
        let mut batch = LineBatch::default();
        loop {
            let end = source.read_batch(&mut batch, 2).expect("readable");
            for (range, pos) in &batch.lines {
                out.push((
                    String::from_utf8_lossy(&batch.buf[range.clone()]).into_owned(),
                    *pos,
                ));
            }
            if end {
                return out;
            }
        }
    }

    #[test]
    fn plain_and_gzip_files_read_as_one_log_and_resume_at_a_position() {
        let dir = std::env::temp_dir().join(format!("streamstats-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let plain = dir.join("a.jsonl");
        std::fs::write(&plain, "a1\n\na3\r\na4").expect("write");
        let gz = dir.join("b.jsonl.gz");
        let mut enc = flate2::write::GzEncoder::new(
            File::create(&gz).expect("create"),
            flate2::Compression::fast(),
        );
        enc.write_all(b"b1\nb2\n").expect("gzip");
        enc.finish().expect("gzip end");
        let bytes = Arc::new(AtomicU64::new(0));
        let mut source = FileSource::new(vec![plain.clone(), gz.clone()], bytes.clone());
        let all = read_all(&mut source);
        let pos = |file, line| LinePosition { file, line };
        assert_eq!(
            all,
            vec![
                ("a1".into(), pos(0, 1)),
                ("a3".into(), pos(0, 3)),
                ("a4".into(), pos(0, 4)),
                ("b1".into(), pos(1, 1)),
                ("b2".into(), pos(1, 2)),
            ]
        );
        let total = std::fs::metadata(&plain).expect("meta").len()
            + std::fs::metadata(&gz).expect("meta").len();
        assert_eq!(bytes.load(Ordering::Relaxed), total);
        for (i, (_, at)) in all.iter().enumerate() {
            let mut source = FileSource::new(vec![plain.clone(), gz.clone()], bytes.clone());
            source.seek(*at).expect("seek");
            assert_eq!(
                read_all(&mut source),
                all[i..].to_vec(),
                "resumed at {at:?}"
            );
        }
        let mut source = FileSource::new(vec![plain, gz], bytes);
        source
            .seek(pos(1, 3))
            .expect("seek past the end of the last file");
        assert!(read_all(&mut source).is_empty());
        std::fs::remove_dir_all(&dir).ok();
    }
}
