//! Inputs of `skaffold-exporter replay`: an event log file, a capture or stdin, opened
//! and read record by record into a [`Records`] receiver (the replay's fold).
//!
//! An input is JSON Lines or one JSON document, told apart by its first line. With
//! `--follow` a file is read as it grows, like `tail -f`, and read again from the
//! start when it is replaced (rotated), truncated or rewritten in place. A v1 event
//! log given together with its own `.v2` sibling is dropped ([`select_inputs`]):
//! Skaffold writes every event to both.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read as _};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;

use super::{Item, LineReader, Read, each_record, hint_from_name, item_from_bytes, oversize_line};
use crate::source::json::parse_json;
use crate::source::limits::MAX_JSON_BYTES;
use crate::source::{Api, Payload};

/// Where the records of the inputs go (the replay's fold), and what it is told about
/// the inputs.
pub trait Records {
    /// An input begins (each input is a Skaffold session of its own).
    fn begin_input(&mut self);
    /// One record, read from `file` at `line` (1-based).
    fn feed(&mut self, file: &str, line: u64, item: Item);
    /// One record as read (`hint`: the input's API, when known); a blank line is
    /// none.
    fn feed_bytes(&mut self, file: &str, line: u64, bytes: &[u8], hint: Option<Api>) {
        if let Some(item) = item_from_bytes(bytes, hint) {
            self.feed(file, line, item);
        }
    }
    /// An input, or its rest, is not JSON (or too large a document): counted as
    /// malformed, with `note` saying where.
    fn malformed_input(&mut self, note: String);
    /// A note (an input skipped, or read again from the start).
    fn note(&mut self, note: String);
    /// An input could not be opened, or not read to its end (`why`).
    fn unreadable(&mut self, why: String);
    /// Everything read so far has been handed over (`--follow`: caught up).
    fn caught_up(&mut self);
}

/// How far the reader is through an input, told to whoever shows it (`replay`'s
/// progress bar): a source draws nothing. `()` is told nothing.
pub trait ReadProgress {
    /// Reading the lines of `name` begins; `size` in bytes when known (a regular
    /// file).
    fn begin(&mut self, name: &str, size: Option<u64>);
    /// `offset` bytes have been read (told every [`PROGRESS_LINES`] lines).
    fn advance(&mut self, offset: u64);
    /// The input was read to its end.
    fn end(&mut self);
}

impl ReadProgress for () {
    fn begin(&mut self, _: &str, _: Option<u64>) {}
    fn advance(&mut self, _: u64) {}
    fn end(&mut self) {}
}

/// How many lines the reader reads between two [`ReadProgress::advance`] calls.
pub const PROGRESS_LINES: u64 = 2048;

/// Why an input could not be opened or read (the message names it).
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// Opening it failed.
    #[error("cannot open {name}: {error}")]
    Open {
        /// The input's name.
        name: String,
        /// What the OS said.
        error: io::Error,
    },
    /// It is a directory.
    #[error("cannot read {0}: it is a directory")]
    Directory(String),
    /// Reading it failed at `at` (its name, and the line when known).
    #[error("reading {at}: {error}")]
    Read {
        /// The input's name, and `:line`.
        at: String,
        /// What the OS said.
        error: io::Error,
    },
}

/// Largest JSON document read whole (an input that is not JSON Lines: a JSON array,
/// a `{"records": [...]}` capture). Its records are folded one at a time; each is
/// held to the limits of `source::limits`.
pub const MAX_DOCUMENT_BYTES: u64 = 64 * 1024 * 1024;

type Reader = LineReader<Box<dyn BufRead + Send>>;

/// An opened input, its first line already read.
pub struct Input {
    name: String,
    lines: Reader,
    path: Option<PathBuf>,
    size: Option<u64>,
    hint: Option<Api>,
    kind: InputKind,
    /// The file as opened (`--follow` notices when it is replaced or rewritten).
    watch: Option<FileWatch>,
}

enum InputKind {
    Empty,
    /// JSON Lines; the first line is kept for the reader.
    Lines {
        /// Blank lines before the first one.
        blank: u64,
        first: Vec<u8>,
        read: Read,
        api: Option<Api>,
    },
    /// One document, read whole (records parsed one at a time).
    Document {
        text: Vec<u8>,
        api: Option<Api>,
        error: Option<String>,
    },
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Input")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn bytes_api(bytes: &[u8], hint: Option<Api>) -> Option<Api> {
    match item_from_bytes(bytes, hint)? {
        Item::Message {
            api,
            payload: Payload::V1(_) | Payload::V2(_) | Payload::SkippedLog(_),
        } => Some(api),
        _ => None,
    }
}

/// What identifies the file an input was opened from: `--follow` starts over when
/// the path names another file (rotated: deleted or moved, and created again), when
/// the file shrank (truncated), or when it changed without growing (rewritten in
/// place with the same size).
#[derive(Debug, Clone, PartialEq)]
struct FileWatch {
    identity: (u64, u64, Option<std::time::SystemTime>),
    /// Modification time seen at `seen_at` bytes read.
    mtime: Option<std::time::SystemTime>,
    seen_at: u64,
}

#[cfg(unix)]
fn identity(m: &std::fs::Metadata) -> (u64, u64, Option<std::time::SystemTime>) {
    use std::os::unix::fs::MetadataExt as _;
    (m.dev(), m.ino(), m.created().ok())
}

#[cfg(not(unix))]
fn identity(m: &std::fs::Metadata) -> (u64, u64, Option<std::time::SystemTime>) {
    (0, 0, m.created().ok())
}

impl FileWatch {
    fn of(m: &std::fs::Metadata) -> Self {
        Self {
            identity: identity(m),
            mtime: m.modified().ok(),
            seen_at: 0,
        }
    }

    /// Why the input must be read again from the start, if it must; `read` bytes of
    /// it have been read (all there were, a moment ago).
    fn changed(&mut self, path: &std::path::Path, read: u64) -> Option<&'static str> {
        // Gone (rotated, not yet created again): wait.
        let m = std::fs::metadata(path).ok()?;
        if identity(&m) != self.identity {
            return Some("replaced by a new file");
        }
        if m.len() < read {
            return Some("truncated");
        }
        let mtime = m.modified().ok();
        if m.len() == read && self.seen_at == read && mtime != self.mtime {
            return Some("rewritten");
        }
        self.mtime = mtime;
        self.seen_at = read;
        None
    }
}

impl Input {
    /// Opens `name` (`-` = stdin) and looks at its first line.
    pub fn open(name: &str) -> Result<Self, InputError> {
        let (reader, path, size, watch): (Box<dyn BufRead + Send>, _, _, _) = if name == "-" {
            (Box::new(BufReader::new(std::io::stdin())), None, None, None)
        } else {
            let cannot_open = |error| InputError::Open {
                name: name.to_owned(),
                error,
            };
            let f = File::open(name).map_err(cannot_open)?;
            let meta = f.metadata().map_err(cannot_open)?;
            if meta.is_dir() {
                return Err(InputError::Directory(name.to_owned()));
            }
            let size = meta.is_file().then_some(meta.len());
            (
                Box::new(BufReader::with_capacity(256 * 1024, f)),
                Some(PathBuf::from(name)),
                size,
                Some(FileWatch::of(&meta)),
            )
        };
        let mut input = Self::from_reader(name, reader, path, size)?;
        input.watch = watch;
        Ok(input)
    }

    /// An input over any reader (tests).
    pub fn from_reader(
        name: &str,
        reader: Box<dyn BufRead + Send>,
        path: Option<PathBuf>,
        size: Option<u64>,
    ) -> Result<Self, InputError> {
        let reading = |error| InputError::Read {
            at: name.to_owned(),
            error,
        };
        let hint = hint_from_name(name);
        let mut lines = LineReader::new(reader, MAX_JSON_BYTES);
        let mut first = Vec::new();
        let mut blank = 0u64;
        let read = loop {
            first.clear();
            let read = lines.read(&mut first).map_err(reading)?;
            if read == Read::Line && first.trim_ascii().is_empty() {
                blank += 1;
                continue;
            }
            break read;
        };
        // An over-long line the input ended in is an over-long line.
        let read = match (read, lines.take_unfinished()) {
            (Read::End, Some(n)) => Read::TooLong(n),
            (read, _) => read,
        };
        let trimmed = first.trim_ascii();
        let kind = if read == Read::End && trimmed.is_empty() {
            InputKind::Empty
        } else if matches!(read, Read::TooLong(_))
            || (trimmed.starts_with(b"{")
                && trimmed.ends_with(b"}")
                && parse_json(trimmed)
                    .map_or(true, |v| !v.get("records").is_some_and(Value::is_array)))
        {
            // JSON Lines: one record per line (a malformed or over-long first line is
            // reported as such, line by line).
            let api = bytes_api(trimmed, hint);
            InputKind::Lines {
                blank,
                first,
                read,
                api,
            }
        } else {
            // A document spread over lines (or a JSON array): read it whole.
            let mut text = first;
            let limit = MAX_DOCUMENT_BYTES.saturating_sub(text.len() as u64) + 1;
            lines
                .get_mut()
                .take(limit)
                .read_to_end(&mut text)
                .map_err(reading)?;
            if text.len() as u64 > MAX_DOCUMENT_BYTES {
                InputKind::Document {
                    text: Vec::new(),
                    api: None,
                    error: Some(format!(
                        "{name}: malformed: a JSON document over {MAX_DOCUMENT_BYTES} bytes (write one record per line: JSON Lines have no size limit)"
                    )),
                }
            } else {
                let mut api = None;
                let _ = each_record(&text, |rec| {
                    if api.is_none() {
                        api = bytes_api(rec, hint);
                    }
                });
                InputKind::Document {
                    text,
                    api,
                    error: None,
                }
            }
        };
        Ok(Self {
            name: name.to_owned(),
            lines,
            path,
            size,
            hint,
            kind,
            watch: None,
        })
    }

    /// The API of the input's first decodable record.
    pub fn api(&self) -> Option<Api> {
        match &self.kind {
            InputKind::Lines { api, .. } | InputKind::Document { api, .. } => *api,
            InputKind::Empty => None,
        }
    }

    /// Feeds every record to `r`. With `follow`, keeps reading as the file grows
    /// until `stop` is set (and starts over when the file is replaced, truncated or
    /// rewritten). `progress` is told how far the lines are read. An error means the
    /// input could not be read from some line on; what was read before is folded.
    pub fn feed(
        self,
        r: &mut impl Records,
        follow: bool,
        stop: &AtomicBool,
        progress: &mut impl ReadProgress,
    ) -> Result<(), InputError> {
        let Input {
            name,
            mut lines,
            path,
            size,
            hint,
            kind,
            mut watch,
        } = self;
        r.begin_input();
        let (mut line_no, mut buf, first_read) = match kind {
            InputKind::Empty if !follow => return Ok(()),
            InputKind::Document { text, error, .. } => {
                if let Some(e) = error {
                    r.malformed_input(e);
                }
                let mut i = 0u64;
                let parsed = each_record(&text, |rec| {
                    i += 1;
                    r.feed_bytes(&name, i, rec, hint);
                });
                if let Err(e) = parsed {
                    r.malformed_input(format!(
                        "{name}:{}:{}: malformed: neither JSON Lines nor a JSON document: {e}",
                        e.line(),
                        e.column()
                    ));
                }
                return Ok(());
            }
            InputKind::Empty => (0, Vec::new(), None),
            InputKind::Lines {
                blank, first, read, ..
            } => (blank, first, Some(read)),
        };
        progress.begin(&name, size);
        let mut offset = 0u64;
        let mut next = first_read;
        loop {
            let read = match next.take() {
                Some(read) => read,
                None => lines.read(&mut buf).map_err(|error| InputError::Read {
                    at: format!("{name}:{}", line_no + 1),
                    error,
                })?,
            };
            match read {
                Read::Line => {
                    line_no += 1;
                    offset += buf.len() as u64;
                    r.feed_bytes(&name, line_no, &buf, hint);
                    buf.clear();
                    if line_no.is_multiple_of(PROGRESS_LINES) {
                        progress.advance(offset);
                    }
                }
                Read::TooLong(n) => {
                    line_no += 1;
                    offset += n;
                    r.feed(&name, line_no, oversize_line(hint, n));
                }
                Read::End => {
                    if !follow || stop.load(Ordering::Acquire) {
                        if !buf.is_empty() {
                            line_no += 1;
                            r.feed_bytes(&name, line_no, &buf, hint);
                        }
                        if let Some(n) = lines.take_unfinished() {
                            line_no += 1;
                            r.feed(&name, line_no, oversize_line(hint, n));
                        }
                        break;
                    }
                    // Replaced (rotated), truncated or rewritten? Start over.
                    let pending = offset + buf.len() as u64;
                    if let (Some(p), Some(w)) = (&path, watch.as_mut())
                        && let Some(why) = w.changed(p, pending)
                        && let Ok(f) = File::open(p)
                        && let Ok(meta) = f.metadata()
                    {
                        r.note(format!("{name}: {why}; reading it again from the start"));
                        lines = LineReader::new(Box::new(BufReader::new(f)), MAX_JSON_BYTES);
                        watch = Some(FileWatch::of(&meta));
                        offset = 0;
                        line_no = 0;
                        buf.clear();
                        continue;
                    }
                    // Caught up once the file as read has been looked at: a change
                    // from then on (even a same-size rewrite) is noticed.
                    r.caught_up();
                    std::thread::sleep(FOLLOW_POLL);
                }
            }
        }
        progress.end();
        Ok(())
    }
}

/// How often `--follow` looks for more lines (and for a replaced file).
pub const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// Opens the inputs and drops each v1 file whose own `.v2` sibling is given too
/// (Skaffold writes every event to both; folding both would count everything twice).
/// An input that cannot be opened or read is reported (`r.unreadable()`), and the
/// others are still folded.
pub fn open_inputs(names: &[String], r: &mut impl Records) -> Vec<Input> {
    let mut inputs = Vec::new();
    for name in names {
        match Input::open(name) {
            Ok(i) => inputs.push(i),
            Err(e) => r.unreadable(format!("{e:#}")),
        }
    }
    select_inputs(inputs, r)
}

/// Drops an input `FILE` when `FILE.v2` is among the inputs (see [`open_inputs`]):
/// the two are one session, written twice. Every other input is kept, and folded
/// as a session of its own ([`Records::begin_input`]).
pub fn select_inputs(inputs: Vec<Input>, r: &mut impl Records) -> Vec<Input> {
    let sibling_given = |i: &Input| {
        i.path.is_some()
            && i.api() != Some(Api::V2)
            && inputs.iter().any(|o| {
                o.api() != Some(Api::V1)
                    && o.path.is_some()
                    && same_file(&o.name, &format!("{}.v2", i.name))
            })
    };
    let skip: Vec<bool> = inputs.iter().map(sibling_given).collect();
    inputs
        .into_iter()
        .zip(skip)
        .filter_map(|(i, skip)| {
            if skip {
                r.note(format!(
                    "{}: skipped: {}.v2 is given too (Skaffold writes every event to both files; only the .v2 one is folded)",
                    i.name, i.name
                ));
                return None;
            }
            Some(i)
        })
        .collect()
}

/// Whether two names are the same file (the same path, or the same file reached
/// through different paths).
fn same_file(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records nothing but what it is told.
    #[derive(Default)]
    struct Sink(u64);

    impl Records for Sink {
        fn begin_input(&mut self) {}
        fn feed(&mut self, _: &str, _: u64, _: Item) {
            self.0 += 1;
        }
        fn malformed_input(&mut self, _: String) {}
        fn note(&mut self, _: String) {}
        fn unreadable(&mut self, _: String) {}
        fn caught_up(&mut self) {}
    }

    /// What the reader told.
    #[derive(Debug, Default, PartialEq)]
    struct Told(Vec<String>);

    impl ReadProgress for Told {
        fn begin(&mut self, name: &str, size: Option<u64>) {
            self.0.push(format!("begin {name} {size:?}"));
        }
        fn advance(&mut self, offset: u64) {
            self.0.push(format!("advance {offset}"));
        }
        fn end(&mut self) {
            self.0.push("end".into());
        }
    }

    #[test]
    fn the_reader_tells_its_progress_and_draws_nothing() {
        let line = "{\"event\":{}}\n";
        let lines = 2 * PROGRESS_LINES as usize + 5;
        let text = line.repeat(lines);
        let size = text.len() as u64;
        let input = Input::from_reader(
            "f",
            Box::new(io::Cursor::new(text.into_bytes())),
            None,
            Some(size),
        )
        .unwrap();
        let (mut sink, mut told) = (Sink::default(), Told::default());
        input
            .feed(&mut sink, false, &AtomicBool::new(false), &mut told)
            .unwrap();
        assert_eq!(sink.0, lines as u64);
        let step = PROGRESS_LINES * line.len() as u64;
        assert_eq!(
            told.0,
            [
                format!("begin f Some({size})"),
                format!("advance {step}"),
                format!("advance {}", 2 * step),
                "end".into(),
            ]
        );
    }
}
