//! Cheap looks at an encoded v2 `Event` before decoding it:
//!
//! - `SkaffoldLogEvent` / `ApplicationLogEvent` are most of a v2 stream (one per line
//!   of output) and carry no metric: they are recognised from the oneof tag and
//!   skipped without decoding (only a `Syncing N files for IMAGE` line is decoded,
//!   coloured or not, because Skaffold reports file syncs over v2 in no other way).
//! - Skaffold v1.22–v1.25 numbered `TaskEvent`, `BuildSubtaskEvent` and the v2
//!   `BuildMetadata` differently (renumbered in place in v1.26.0). Decoding those
//!   bytes with the current layout gives garbage or a wire-type error, so a stream's
//!   layout is decided here from its MetaEvent ([`meta_layout`]: the version Skaffold
//!   names in it, else the shape of its build metadata), once per stream (see
//!   `source::grpc`). Single messages are never taken as evidence: a message that
//!   does not fit the stream's layout is counted as invalid on its own.
//!
//! Works on the protobuf wire format directly: tags, varints, length-delimited
//! fields; nothing is allocated.

use prost_reflect::{Kind, MessageDescriptor};

use super::decode_v2::is_sync_line;
use super::limits::{MAX_DEPTH, MAX_EVENT_BYTES, MAX_VALUES, TooBig};

/// What the bytes are, as far as the cheap look can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peek {
    /// Decode it.
    Decode,
    /// A log event that carries no metric: skip it.
    SkipLog(LogKind),
}

pub use crate::core::LogKind;

/// The v2 message layout of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Skaffold v1.26 and later (what our proto describes).
    Current,
    /// Skaffold v1.22–v1.25, and why we think so.
    Old(&'static str),
}

/// Why the bytes cannot be decoded with our proto.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeekError {
    /// A Skaffold older than v1.26 (v2 messages renumbered in place since).
    #[error(
        "Skaffold's event API v2 uses the pre-v1.26 message layout ({0}); this exporter decodes the v1.26+ layout only: upgrade Skaffold to v1.26 or later, or use --api v1"
    )]
    OldLayout(&'static str),
    /// Not a protobuf message.
    #[error("malformed protobuf: {0}")]
    Malformed(&'static str),
}

// Protobuf's wire types.
pub(super) const VARINT: u8 = 0;
pub(super) const I64: u8 = 1;
pub(super) const LEN: u8 = 2;
pub(super) const START_GROUP: u8 = 3;
pub(super) const END_GROUP: u8 = 4;
pub(super) const I32: u8 = 5;

/// The fields of a message, in order: (number, wire type, value).
struct Fields<'a> {
    buf: &'a [u8],
}

enum Value<'a> {
    Varint,
    Len(&'a [u8]),
    Fixed,
}

/// Reads a varint off the front of `buf`, as prost does: at most 10 bytes, the tenth
/// holding only the top bit. Keys, lengths and small numbers take one byte (the
/// inlined first test); a timestamp's seconds and nanoseconds take four or five.
#[inline(always)]
pub(super) fn read_varint(buf: &mut &[u8]) -> Result<u64, &'static str> {
    match buf.first() {
        Some(&b) if b < 0x80 => {
            *buf = &buf[1..];
            Ok(u64::from(b))
        }
        _ => read_long_varint(buf),
    }
}

/// [`read_varint`] past its first byte: a varint of several bytes (or a truncated one).
fn read_long_varint(buf: &mut &[u8]) -> Result<u64, &'static str> {
    let mut v = 0u64;
    for (i, &b) in buf.iter().take(10).enumerate() {
        if i == 9 && b > 1 {
            return Err("varint overflows 64 bits");
        }
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            *buf = &buf[i + 1..];
            return Ok(v);
        }
    }
    // Ten bytes always end the loop above (the tenth has no continuation bit or is
    // refused): fewer were left.
    Err("truncated varint")
}

fn varint(buf: &mut &[u8]) -> Result<u64, PeekError> {
    read_varint(buf).map_err(PeekError::Malformed)
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, u8, Value<'a>), PeekError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            return None;
        }
        let mut step = || {
            let tag = varint(&mut self.buf)?;
            let (field, wt) = (tag >> 3, (tag & 7) as u8);
            let value = match wt {
                VARINT => {
                    varint(&mut self.buf)?;
                    Value::Varint
                }
                LEN => {
                    let n = usize::try_from(varint(&mut self.buf)?)
                        .map_err(|_| PeekError::Malformed("length overflow"))?;
                    if n > self.buf.len() {
                        return Err(PeekError::Malformed("truncated field"));
                    }
                    let (v, rest) = self.buf.split_at(n);
                    self.buf = rest;
                    Value::Len(v)
                }
                I64 | I32 => {
                    let n = if wt == I64 { 8 } else { 4 };
                    if n > self.buf.len() {
                        return Err(PeekError::Malformed("truncated fixed field"));
                    }
                    self.buf = &self.buf[n..];
                    Value::Fixed
                }
                _ => return Err(PeekError::Malformed("unsupported wire type")),
            };
            Ok((field, wt, value))
        };
        let r = step();
        if r.is_err() {
            self.buf = &[];
        }
        Some(r)
    }
}

fn fields(buf: &[u8]) -> Fields<'_> {
    Fields { buf }
}

/// The layout of a stream, when `bytes` is its MetaEvent (`None` for any other
/// message, or one too malformed to tell). The MetaEvent's text names Skaffold's
/// version (`Starting Skaffold: &{Version:v1.25.0 ...}`); without a version, the
/// build metadata tells: field 1 is `artifacts` (a message) since v1.26 and was
/// `numberOfArtifacts` (a varint) before.
pub fn meta_layout(bytes: &[u8]) -> Option<Layout> {
    let mut meta = None;
    for f in fields(bytes) {
        if let (2, _, Value::Len(m)) = f.ok()? {
            meta = Some(m);
        }
    }
    let meta = meta?;
    let mut version = None;
    let mut old_build = false;
    for m in fields(meta) {
        match m.ok()? {
            (1, _, Value::Len(entry)) => {
                version = std::str::from_utf8(entry)
                    .ok()
                    .and_then(crate::core::event::parse_version)
                    .and_then(|v| major_minor(&v));
            }
            (2, _, Value::Len(md)) => {
                for b in fields(md) {
                    if let Ok((1, _, Value::Len(build))) = b {
                        old_build |= fields(build).any(|x| matches!(x, Ok((1, VARINT, _))));
                    }
                }
            }
            _ => {}
        }
    }
    Some(match version {
        Some(v) if v < (1, 26) => Layout::Old("the MetaEvent names a Skaffold older than v1.26"),
        Some(_) => Layout::Current,
        None if old_build => Layout::Old("BuildMetadata.numberOfArtifacts at field 1"),
        None => Layout::Current,
    })
}

/// `v1.25.2-3-gabc` → (1, 25).
fn major_minor(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.trim_start_matches('v').split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Checks that decoding `bytes` as a `desc` message stays within the limits of
/// `source::limits` (size, values, nesting), walking the wire format with the
/// message's descriptor: every field counts one value, every element of a packed
/// repeated field one per byte (an upper bound), and message fields are walked into.
/// Bytes that are not a valid message are left for the decoder to report. `desc` is
/// looked up only for a message that must be walked (not for nearly every event).
pub fn check_proto<'d>(
    bytes: &[u8],
    desc: impl FnOnce() -> &'d MessageDescriptor,
) -> Result<(), TooBig> {
    if bytes.len() > MAX_EVENT_BYTES {
        return Err(TooBig::Bytes(bytes.len(), MAX_EVENT_BYTES));
    }
    // Every value takes at least one byte, so a message of at most MAX_VALUES bytes
    // cannot hold too many; and Skaffold's messages are not recursive, so their
    // nesting is bounded by the schema (prost skips unknown fields without
    // descending, and stops at its own recursion limit). Nearly every event is far
    // below this size: walking it too would double the reader's work per event.
    if bytes.len() <= MAX_VALUES {
        return Ok(());
    }
    let mut values = 0usize;
    walk(bytes, desc(), 1, &mut values)
}

fn walk(
    bytes: &[u8],
    desc: &MessageDescriptor,
    depth: usize,
    values: &mut usize,
) -> Result<(), TooBig> {
    if depth > MAX_DEPTH {
        return Err(TooBig::Depth);
    }
    for f in fields(bytes) {
        let Ok((number, _, value)) = f else {
            // Malformed: the decoder says why.
            return Ok(());
        };
        let field = u32::try_from(number).ok().and_then(|n| desc.get_field(n));
        *values += match (&field, &value) {
            // Packed repeated scalars: at least one byte each.
            (Some(fd), Value::Len(sub)) if fd.is_list() && !is_len_kind(&fd.kind()) => sub.len(),
            _ => 1,
        };
        if *values > MAX_VALUES {
            return Err(TooBig::Values);
        }
        if let (Some(fd), Value::Len(sub)) = (field, value)
            && let Kind::Message(m) = fd.kind()
        {
            walk(sub, &m, depth + 1, values)?;
        }
    }
    Ok(())
}

/// [`check_proto`] for a v1 `LogEntry`.
pub fn check_v1(bytes: &[u8]) -> Result<(), TooBig> {
    check_proto(bytes, || descriptor("proto.LogEntry"))
}

/// [`check_proto`] for a v2 `Event`.
pub fn check_v2(bytes: &[u8]) -> Result<(), TooBig> {
    check_proto(bytes, || descriptor("proto.v2.Event"))
}

fn descriptor(name: &str) -> &'static MessageDescriptor {
    static V1: std::sync::OnceLock<MessageDescriptor> = std::sync::OnceLock::new();
    static V2: std::sync::OnceLock<MessageDescriptor> = std::sync::OnceLock::new();
    let cell = if name == "proto.LogEntry" { &V1 } else { &V2 };
    cell.get_or_init(|| {
        super::json::pool()
            .get_message_by_name(name)
            .expect("message is in the descriptor set")
    })
}

/// Kinds that are length-delimited on their own (never packed).
fn is_len_kind(kind: &Kind) -> bool {
    matches!(kind, Kind::Message(_) | Kind::String | Kind::Bytes)
}

/// Looks at an encoded v2 `Event` (field numbers of the current layout).
pub fn peek_v2(bytes: &[u8]) -> Result<Peek, PeekError> {
    for f in fields(bytes) {
        let (field, _, value) = f?;
        let Value::Len(sub) = value else {
            continue;
        };
        match field {
            // skaffoldLogEvent: skip unless it is the sync line (message = field 5).
            3 => {
                for m in fields(sub) {
                    if let (5, _, Value::Len(msg)) = m?
                        && is_sync_line(msg)
                    {
                        return Ok(Peek::Decode);
                    }
                }
                return Ok(Peek::SkipLog(LogKind::Skaffold));
            }
            4 => return Ok(Peek::SkipLog(LogKind::Application)),
            _ => {}
        }
    }
    Ok(Peek::Decode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::v2::{self, event::EventType as E};
    use prost::Message;

    fn encode(kind: E) -> Vec<u8> {
        v2::Event {
            timestamp: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            event_type: Some(kind),
        }
        .encode_to_vec()
    }

    use crate::simulator::old_layout::{OldBuildSubtask, OldEvent, OldTaskEvent};

    /// prost's reading of `bytes`: the value and how many bytes it took, or `None`.
    fn prost_varint(bytes: &[u8]) -> Option<(u64, usize)> {
        let mut buf = bytes;
        let v = prost::encoding::decode_varint(&mut buf).ok()?;
        Some((v, bytes.len() - buf.len()))
    }

    fn ours(bytes: &[u8]) -> Option<(u64, usize)> {
        let mut buf = bytes;
        let v = read_varint(&mut buf).ok()?;
        Some((v, bytes.len() - buf.len()))
    }

    #[test]
    fn varints_read_as_prost_reads_them() {
        let mut cases: Vec<Vec<u8>> = Vec::new();
        // Every length from 1 to 10 bytes, at its edges, alone and with bytes after it
        // (prost takes another path when fewer than 10 bytes are left).
        for v in (0..64)
            .flat_map(|bits| [(1u64 << bits) - 1, 1u64 << bits])
            .chain([u64::MAX])
        {
            let mut enc = Vec::new();
            prost::encoding::encode_varint(v, &mut enc);
            cases.push(enc.clone());
            enc.extend([0x01, 0x80, 0x00]);
            cases.push(enc);
        }
        // Truncated: continuation bits up to the end, at every length.
        for n in 0..=11 {
            cases.push(vec![0x80; n]);
            cases.push(vec![0xff; n]);
        }
        // Ten bytes whose last holds more than the top bit, or continues.
        for last in [0x00, 0x01, 0x02, 0x7f, 0x80, 0x81, 0xff] {
            let mut enc = vec![0xff; 9];
            enc.push(last);
            cases.push(enc.clone());
            enc.push(0x00);
            cases.push(enc);
        }
        // Over-long encodings of small values (padding with 0x80) are varints too.
        for n in 1..=9 {
            let mut enc = vec![0x81];
            enc.extend(std::iter::repeat_n(0x80, n - 1));
            enc.push(0x00);
            cases.push(enc);
        }
        let mut rng = fastrand::Rng::with_seed(8);
        for _ in 0..20_000 {
            let n = rng.usize(0..14);
            cases.push((0..n).map(|_| rng.u8(..)).collect());
        }
        for c in &cases {
            assert_eq!(ours(c), prost_varint(c), "{c:02x?}");
        }
    }

    #[test]
    fn current_layout_decodes() {
        let task = encode(E::TaskEvent(v2::TaskEvent {
            id: "Build-1".into(),
            task: "Build".into(),
            description: "Build containers".into(),
            iteration: 1,
            status: "InProgress".into(),
            actionable_err: None,
        }));
        assert_eq!(peek_v2(&task), Ok(Peek::Decode));
        let b = encode(E::BuildSubtaskEvent(v2::BuildSubtaskEvent {
            artifact: "web".into(),
            step: "Cache".into(),
            status: "Succeeded".into(),
            ..Default::default()
        }));
        assert_eq!(peek_v2(&b), Ok(Peek::Decode));
        assert_eq!(peek_v2(&meta("x", false)), Ok(Peek::Decode));
    }

    #[test]
    fn log_events_are_skipped_except_the_sync_line() {
        let log = |m: &str| {
            encode(E::SkaffoldLogEvent(v2::SkaffoldLogEvent {
                task_id: "DevLoop-1".into(),
                subtask_id: "-1".into(),
                level: 1,
                message: m.into(),
            }))
        };
        assert_eq!(
            peek_v2(&log("Building [web]...\n")),
            Ok(Peek::SkipLog(LogKind::Skaffold))
        );
        assert_eq!(peek_v2(&log("Syncing 2 files for web\n")), Ok(Peek::Decode));
        // Coloured (a colour terminal or --force-colors): the same line inside SGR codes.
        assert_eq!(
            peek_v2(&log("\x1b[34mSyncing 2 files for web:v1\n\x1b[0m")),
            Ok(Peek::Decode)
        );
        assert_eq!(
            peek_v2(&log("\x1b[34mWatching for changes...\n\x1b[0m")),
            Ok(Peek::SkipLog(LogKind::Skaffold))
        );
        let app = encode(E::ApplicationLogEvent(v2::ApplicationLogEvent {
            message: "GET /".into(),
            ..Default::default()
        }));
        assert_eq!(peek_v2(&app), Ok(Peek::SkipLog(LogKind::Application)));
    }

    fn meta(entry: &str, old_build: bool) -> Vec<u8> {
        let mut md = v2::Metadata {
            run_id: "r".into(),
            ..Default::default()
        };
        if !old_build {
            md.build = Some(v2::BuildMetadata {
                artifacts: vec![Default::default()],
                r#type: 3,
                additional: Default::default(),
            });
        }
        let mut bytes = encode(E::MetaEvent(v2::MetaEvent {
            entry: entry.into(),
            metadata: Some(md),
        }));
        if old_build {
            // Event.metaEvent (2) { metadata (2) { build (1) { numberOfArtifacts (1) = 3 } } }
            let build = [0x08, 3];
            let md = [&[0x0a, build.len() as u8][..], &build].concat();
            let m = [&[0x12, md.len() as u8][..], &md].concat();
            bytes = [&[0x12, m.len() as u8][..], &m].concat();
        }
        bytes
    }

    #[test]
    fn the_layout_is_decided_from_the_meta_event() {
        let v = |v: &str| {
            format!(
                "Starting Skaffold: &{{Version:{v} ConfigVersion:skaffold/v2beta12 GitVersion: GitCommit:abc BuildDate:2021-04-06T00:00:00Z GoVersion:go1.15 Compiler:gc Platform:linux/amd64 User:}}"
            )
        };
        assert_eq!(
            meta_layout(&meta(&v("v1.25.0"), false)),
            Some(Layout::Old(
                "the MetaEvent names a Skaffold older than v1.26"
            ))
        );
        assert_eq!(
            meta_layout(&meta(&v("v1.22.0-12-gabcdef"), false)),
            Some(Layout::Old(
                "the MetaEvent names a Skaffold older than v1.26"
            ))
        );
        assert_eq!(
            meta_layout(&meta(&v("v1.26.0"), false)),
            Some(Layout::Current)
        );
        assert_eq!(
            meta_layout(&meta(&v("v2.16.1"), false)),
            Some(Layout::Current)
        );
        // No version: the build metadata's shape.
        assert_eq!(meta_layout(&meta("", false)), Some(Layout::Current));
        assert_eq!(
            meta_layout(&meta("", true)),
            Some(Layout::Old("BuildMetadata.numberOfArtifacts at field 1"))
        );
        let e = PeekError::OldLayout("x").to_string();
        assert!(e.contains("pre-v1.26") && e.contains("--api v1"), "{e}");
    }

    #[test]
    fn only_a_meta_event_says_anything_about_the_layout() {
        // Messages that look like the old layout (the three measured cases) are just
        // messages: peek lets them be decoded (and fail, or be judged, on their own).
        let old_task = OldEvent {
            task: Some(OldTaskEvent {
                id: "DevLoop-0".into(),
                task: "DevLoop".into(),
                iteration: 2,
                status: "InProgress".into(),
            }),
            ..Default::default()
        }
        .encode_to_vec();
        assert_eq!(meta_layout(&old_task), None);
        assert_eq!(peek_v2(&old_task), Ok(Peek::Decode));
        let old_build = OldEvent {
            build: Some(OldBuildSubtask {
                id: "web".into(),
                task_id: "Build-0".into(),
                artifact: "web".into(),
                status: "Succeeded".into(),
            }),
            ..Default::default()
        }
        .encode_to_vec();
        assert_eq!(meta_layout(&old_build), None);
        assert_eq!(peek_v2(&old_build), Ok(Peek::Decode));
        assert_eq!(meta_layout(&[0xff; 3]), None);
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        assert!(matches!(peek_v2(&[0xff; 3]), Err(PeekError::Malformed(_))));
        assert!(matches!(
            peek_v2(&[0x2a, 0x05, 1]),
            Err(PeekError::Malformed(_))
        ));
        assert_eq!(peek_v2(&[]), Ok(Peek::Decode));
    }
}
