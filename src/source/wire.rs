//! Cheap looks at an encoded v2 `Event` before decoding it:
//!
//! - `SkaffoldLogEvent` / `ApplicationLogEvent` are most of a v2 stream (one per line
//!   of output) and carry no metric: they are recognised from the oneof tag and
//!   skipped without decoding (only a `Syncing N files for IMAGE` line is decoded,
//!   coloured or not, because Skaffold reports file syncs over v2 in no other way).
//! - Skaffold v1.22–v1.25 numbered `TaskEvent`, `BuildSubtaskEvent` and the v2
//!   `BuildMetadata` differently (renumbered in place in v1.26.0). Decoding those
//!   bytes with the current layout gives garbage or a wire-type error, so the old
//!   layout is detected here and reported as such.
//!
//! Works on the protobuf wire format directly: tags, varints, length-delimited
//! fields; nothing is allocated.

use super::decode_v2::is_sync_line;

/// What the bytes are, as far as the cheap look can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peek {
    /// Decode it.
    Decode,
    /// A log event that carries no metric: skip it.
    SkipLog(LogKind),
}

/// Which log stream a skipped event belonged to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogKind {
    /// `SkaffoldLogEvent`: Skaffold's own output.
    Skaffold,
    /// `ApplicationLogEvent`: the user's containers' output.
    Application,
}

impl LogKind {
    /// Label value for `skaffold_exporter_log_events_skipped_total{event}`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogKind::Skaffold => "skaffold_log",
            LogKind::Application => "application_log",
        }
    }
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

const VARINT: u8 = 0;
const I64: u8 = 1;
const LEN: u8 = 2;
const I32: u8 = 5;

/// The fields of a message, in order: (number, wire type, value).
struct Fields<'a> {
    buf: &'a [u8],
}

enum Value<'a> {
    Varint,
    Len(&'a [u8]),
    Fixed,
}

fn varint(buf: &mut &[u8]) -> Result<u64, PeekError> {
    let mut v = 0u64;
    for i in 0..10 {
        let (&b, rest) = buf
            .split_first()
            .ok_or(PeekError::Malformed("truncated varint"))?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(PeekError::Malformed("varint too long"))
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

/// Status strings, which the pre-v1.26 BuildSubtaskEvent had at field 4 (now `step`).
const STATUSES: [&[u8]; 9] = [
    b"InProgress",
    b"Succeeded",
    b"Failed",
    b"Canceled",
    b"Complete",
    b"NotStarted",
    b"In Progress",
    b"Started",
    b"Information",
];

/// Looks at an encoded v2 `Event` (field numbers of the current layout).
pub fn peek_v2(bytes: &[u8]) -> Result<Peek, PeekError> {
    for f in fields(bytes) {
        let (field, _, value) = f?;
        let Value::Len(sub) = value else {
            continue;
        };
        match field {
            // metaEvent → metadata (2) → build (1) → field 1: `artifacts` (LEN) since
            // v1.26, `numberOfArtifacts` (varint) before.
            2 => {
                for m in fields(sub) {
                    if let (2, _, Value::Len(md)) = m? {
                        for b in fields(md) {
                            if let (1, _, Value::Len(build)) = b? {
                                for x in fields(build) {
                                    if let (1, VARINT, _) = x? {
                                        return Err(PeekError::OldLayout(
                                            "BuildMetadata.numberOfArtifacts at field 1",
                                        ));
                                    }
                                }
                            }
                        }
                    }
                }
            }
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
            // taskEvent: iteration moved 3 → 4 and status 4 → 5 in v1.26.
            5 => {
                for t in fields(sub) {
                    match t? {
                        (3, VARINT, _) => {
                            return Err(PeekError::OldLayout("TaskEvent.iteration at field 3"));
                        }
                        (4, LEN, _) => {
                            return Err(PeekError::OldLayout("TaskEvent.status at field 4"));
                        }
                        _ => {}
                    }
                }
            }
            // buildSubtaskEvent: status moved 4 → 5 (4 is now `step`) in v1.26.
            6 => {
                for b in fields(sub) {
                    if let (4, LEN, Value::Len(v)) = b?
                        && STATUSES.contains(&v)
                    {
                        return Err(PeekError::OldLayout("BuildSubtaskEvent.status at field 4"));
                    }
                }
            }
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
        let meta = encode(E::MetaEvent(v2::MetaEvent {
            entry: "x".into(),
            metadata: Some(v2::Metadata {
                build: Some(v2::BuildMetadata {
                    artifacts: vec![Default::default()],
                    r#type: 3,
                    additional: Default::default(),
                }),
                run_id: "r".into(),
                ..Default::default()
            }),
        }));
        assert_eq!(peek_v2(&meta), Ok(Peek::Decode));
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

    #[test]
    fn pre_v1_26_layout_is_reported_not_misdecoded() {
        let old_task = OldEvent {
            task: Some(OldTaskEvent {
                id: "DevLoop-0".into(),
                task: "DevLoop".into(),
                iteration: 0,
                status: "InProgress".into(),
            }),
            ..Default::default()
        }
        .encode_to_vec();
        assert!(matches!(peek_v2(&old_task), Err(PeekError::OldLayout(_))));
        let old_task_iter = OldEvent {
            task: Some(OldTaskEvent {
                iteration: 2,
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec();
        assert!(matches!(
            peek_v2(&old_task_iter),
            Err(PeekError::OldLayout(_))
        ));
        let old_build = OldEvent {
            build: Some(OldBuildSubtask {
                id: "web".into(),
                task_id: "Build-0".into(),
                artifact: "web".into(),
                status: "InProgress".into(),
            }),
            ..Default::default()
        }
        .encode_to_vec();
        let e = peek_v2(&old_build).unwrap_err();
        assert!(e.to_string().contains("pre-v1.26"), "{e}");
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
