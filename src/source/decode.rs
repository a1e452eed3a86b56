//! Protobuf → domain: `decode_v1(&LogEntry) -> Result<Event, InvalidEvent>`, from the
//! lean `LogEntry` read in place (`source::v1_view`: the fields the fold reads,
//! strings as bytes checked as UTF-8 here, where they are read).
//!
//! Everything Skaffold may get wrong or leave out is checked here, so the fold only
//! sees well-formed events: missing timestamps, unknown status strings, empty names,
//! negative counts and timestamps outside 2000-2200 are rejected with a reason.

use crate::core::{ErrorInfo, Event, EventKind, InvalidEvent, Name, Nanos, Status, event};
use crate::pb::enums::StatusCode;
use crate::source::v1_view::{self as v1, Malformed};

/// Earliest and latest plausible event time (2000-01-01, 2200-01-01), in seconds.
const SANE_SECONDS: std::ops::Range<i64> = 946_684_800..7_258_118_400;
/// Longest name (artifact, image, resource) kept; longer ones are truncated.
pub(crate) const MAX_NAME: usize = 512;

/// Name of a Skaffold StatusCode, for the `code` label; `None` for 0 (OK, or
/// "not sent") and for numbers newer than our enum.
pub fn status_code_name(code: i32) -> Option<String> {
    if code == 0 {
        return None;
    }
    StatusCode::try_from(code)
        .ok()
        .map(|c| c.as_str_name().to_owned())
}

/// A build Skaffold reports `Failed` with one of its cancellation codes was cancelled.
/// Ctrl-C during a build: v1 sends BuildEvent `Failed` with the error's code
/// (`BUILD_CANCELLED` from the "context canceled" text, `build/build_problems.go`;
/// `BUILD_DOCKER_CANCELLED` from the Docker client, `build/docker/errors.go`) while
/// v2 sends `Canceled` (`build/scheduler.go`, `scheduler.build`). Timeouts
/// (`*_DEADLINE*`) are failures.
pub(crate) fn build_status(status: Status, code: Option<&str>) -> Status {
    const CANCELLED: [StatusCode; 3] = [
        StatusCode::BuildCancelled,
        StatusCode::BuildDockerCancelled,
        StatusCode::BuildGcbBuildCancelled,
    ];
    match code {
        Some(c) if status == Status::Failed && CANCELLED.iter().any(|k| k.as_str_name() == c) => {
            Status::Canceled
        }
        _ => status,
    }
}

/// Converts a protobuf timestamp to nanoseconds, rejecting absurd ones.
pub fn timestamp_nanos(ts: Option<&prost_types::Timestamp>) -> Result<Nanos, InvalidEvent> {
    let ts = ts.ok_or(InvalidEvent::MissingField {
        event: "entry",
        field: "timestamp",
    })?;
    if !SANE_SECONDS.contains(&ts.seconds) || !(0..1_000_000_000).contains(&ts.nanos) {
        return Err(InvalidEvent::AbsurdValue {
            event: "entry",
            detail: format!("timestamp {}s {}ns", ts.seconds, ts.nanos),
        });
    }
    Ok(ts.seconds * 1_000_000_000 + i64::from(ts.nanos))
}

/// The first `max` characters of `s`, as an owned string (a plain copy when it is
/// short enough, which it nearly always is).
pub(crate) fn truncated(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    s.chars().take(max).collect()
}

/// A string field of a lean message as text; a field that is not UTF-8 makes the
/// event undecodable (as it made the whole message undecodable for prost).
pub(crate) fn text(s: &[u8]) -> Result<&str, InvalidEvent> {
    std::str::from_utf8(s)
        .map_err(|e| InvalidEvent::Undecodable(format!("a string field is not UTF-8: {e}")))
}

pub(crate) fn status(event: &'static str, s: &[u8]) -> Result<Status, InvalidEvent> {
    if let Some(st) = Status::parse_bytes(s) {
        return Ok(st);
    }
    Err(InvalidEvent::UnknownStatus {
        event,
        status: truncated(text(s)?, 64),
    })
}

/// A string field as a [`Name`]: a copy of it, checked as UTF-8, truncated to
/// `MAX_NAME` characters. Held inline up to 24 bytes (see [`Name`]).
pub(crate) fn name_of(s: &[u8]) -> Result<Name, InvalidEvent> {
    text(s).map(cut)
}

/// `s`'s first `MAX_NAME` characters, as a [`Name`].
fn cut(s: &str) -> Name {
    if s.len() <= MAX_NAME {
        return Name::new(s);
    }
    Name::from(truncated(s, MAX_NAME))
}

/// A name that must not be blank (as a whole, before it is truncated).
pub(crate) fn name(
    event: &'static str,
    field: &'static str,
    s: &[u8],
) -> Result<Name, InvalidEvent> {
    let n = text(s)?;
    // A name nearly always starts with a visible ASCII character: then it is not
    // blank, without a walk over it for Unicode white space.
    let visible = n.as_bytes().first().is_some_and(u8::is_ascii_graphic);
    if !visible && n.trim().is_empty() {
        return Err(InvalidEvent::MissingField { event, field });
    }
    Ok(cut(n))
}

/// A port forward (v1 and v2 `PortEvent` alike); a local port that is no port is
/// invalid.
pub(crate) fn port_forward(
    local_port: i32,
    resource_type: &[u8],
    resource_name: &[u8],
    namespace: &[u8],
) -> Result<EventKind, InvalidEvent> {
    if !(0..=65535).contains(&local_port) {
        return Err(InvalidEvent::AbsurdValue {
            event: "port",
            detail: format!("localPort {local_port}"),
        });
    }
    Ok(EventKind::PortForward {
        local_port,
        resource_type: name_of(resource_type)?,
        resource_name: name_of(resource_name)?,
        namespace: name_of(namespace)?,
    })
}

/// A file sync's `fileCount` (v1 and v2 `FileSyncEvent` alike); a negative one is
/// invalid.
pub(crate) fn file_count(count: i32) -> Result<u64, InvalidEvent> {
    u64::try_from(count).map_err(|_| InvalidEvent::AbsurdValue {
        event: "file_sync",
        detail: format!("fileCount {count}"),
    })
}

/// Builds the error of a failed event from the legacy `err`/`errCode` fields and the
/// newer `actionableErr` (which wins when set). A message that is not UTF-8 is kept
/// with its bad bytes replaced: the failure still counts.
fn error(
    status: Status,
    err: &[u8],
    code: i32,
    actionable: Option<&v1::ActionableErr<'_>>,
) -> Option<ErrorInfo> {
    if status != Status::Failed {
        return None;
    }
    let (code, message) = match actionable {
        Some(a) => (
            status_code_name(a.err_code).or_else(|| status_code_name(code)),
            if a.message.is_empty() { err } else { a.message },
        ),
        None => (status_code_name(code), err),
    };
    Some(ErrorInfo {
        code,
        message: truncated(&String::from_utf8_lossy(message), 4096),
    })
}

/// Decodes one encoded v1 `LogEntry` (read in place, see `source::v1_view`).
pub fn decode_v1_bytes(bytes: &[u8]) -> Result<Event, InvalidEvent> {
    let entry = v1::read(bytes).map_err(|e: Malformed| InvalidEvent::Undecodable(e.to_string()))?;
    decode_v1(&entry)
}

/// Decodes one v1 `LogEntry` of the full proto (JSON sources, files, tests).
pub fn decode_v1_full(entry: &crate::pb::v1::LogEntry) -> Result<Event, InvalidEvent> {
    use prost::Message as _;
    decode_v1_bytes(&entry.encode_to_vec())
}

/// Decodes one v1 `LogEntry`.
pub fn decode_v1(entry: &v1::LogEntry<'_>) -> Result<Event, InvalidEvent> {
    use v1::EventType as E;
    let ev = entry
        .event
        .as_ref()
        .and_then(|e| e.event_type.as_ref())
        .ok_or(InvalidEvent::Empty)?;
    let at = timestamp_nanos(entry.timestamp.as_ref())?;
    let kind = match ev {
        E::MetaEvent(m) => EventKind::Meta {
            version: event::parse_version(text(m.entry)?),
        },
        E::BuildEvent(b) => {
            let st = status("build", b.status)?;
            let err = error(st, b.err, b.err_code, b.actionable_err.as_ref());
            let st = build_status(st, err.as_ref().and_then(|e| e.code.as_deref()));
            EventKind::Build {
                artifact: name("build", "artifact", b.artifact)?,
                status: st,
                error: err.filter(|_| st == Status::Failed),
            }
        }
        E::DeployEvent(d) => {
            let st = status("deploy", d.status)?;
            EventKind::Deploy {
                status: st,
                error: error(st, d.err, d.err_code, d.actionable_err.as_ref()),
            }
        }
        E::PortEvent(p) => {
            port_forward(p.local_port, p.resource_type, p.resource_name, p.namespace)?
        }
        E::StatusCheckEvent(s) => {
            let st = status("status_check", s.status)?;
            EventKind::StatusCheck {
                status: st,
                error: error(st, s.err, s.err_code, s.actionable_err.as_ref()),
            }
        }
        E::ResourceStatusCheckEvent(r) => {
            let st = status("resource_status_check", r.status)?;
            EventKind::ResourceStatus {
                resource: name("resource_status_check", "resource", r.resource)?,
                status: st,
                error: error(st, r.err, r.status_code, r.actionable_err.as_ref()),
            }
        }
        E::FileSyncEvent(f) => {
            let st = status("file_sync", f.status)?;
            let file_count = file_count(f.file_count)?;
            EventKind::FileSync {
                image: name("file_sync", "image", f.image)?,
                file_count,
                status: st,
                error: error(st, f.err, f.err_code, f.actionable_err.as_ref()),
            }
        }
        E::DebuggingContainerEvent => EventKind::Debug,
        E::DevLoopEvent(d) => {
            let st = status("dev_loop", d.status)?;
            if d.iteration < 0 {
                return Err(InvalidEvent::AbsurdValue {
                    event: "dev_loop",
                    detail: format!("iteration {}", d.iteration),
                });
            }
            EventKind::DevLoop {
                iteration: i64::from(d.iteration),
                status: st,
                error: error(st, b"", 0, d.err.as_ref()),
            }
        }
        E::TerminationEvent(t) => {
            let st = status("termination", t.status)?;
            EventKind::Termination {
                status: st,
                error: error(st, b"", 0, t.err.as_ref()),
            }
        }
        E::TestEvent(t) => {
            let st = status("test", t.status)?;
            EventKind::Test {
                status: st,
                error: error(st, b"", 0, t.actionable_err.as_ref()),
            }
        }
    };
    Ok(Event { at, kind })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::pb::v1;

    #[test]
    fn a_name_is_a_copy_of_its_field_inline_when_short_truncated_when_long() {
        let message = Bytes::from_static(b"..leeroy-web..");
        let field = message.slice(2..12);
        let n = name_of(&field).unwrap();
        assert_eq!(n, "leeroy-web");
        let within = message.as_ptr_range();
        assert!(!within.contains(&n.as_bytes().as_ptr()), "a copy");
        assert!(!n.is_heap_allocated(), "held inline");
        let long = "gcr.io/k8s-skaffold/leeroy-web";
        assert!(name_of(long.as_bytes()).unwrap().is_heap_allocated());

        let long = Bytes::from("é".repeat(MAX_NAME + 3));
        let n = name_of(&long).unwrap();
        assert_eq!(n.chars().count(), MAX_NAME, "truncated by characters");
        assert!(!long.as_ptr_range().contains(&n.as_bytes().as_ptr()));

        let bad = Bytes::from_static(b"web\xff");
        assert!(matches!(name_of(&bad), Err(InvalidEvent::Undecodable(_))));
        assert!(matches!(
            name("build", "artifact", &Bytes::from_static(b" \t")),
            Err(InvalidEvent::MissingField { .. })
        ));
        // Blank by Unicode's white space, not only ASCII's.
        assert!(matches!(
            name("build", "artifact", &Bytes::from("\u{3000}")),
            Err(InvalidEvent::MissingField { .. })
        ));
        assert_eq!(
            name("build", "artifact", &Bytes::from_static(b" web")).unwrap(),
            " web"
        );
        // Blank only as far as it is kept: still a name (checked before truncation).
        let late = Bytes::from(format!("{}web", " ".repeat(MAX_NAME)));
        assert_eq!(
            name("build", "artifact", &late).unwrap(),
            " ".repeat(MAX_NAME)
        );
    }

    /// Decodes a full entry as the gRPC source does (through its lean view).
    fn decode_v1(e: &v1::LogEntry) -> Result<Event, InvalidEvent> {
        super::decode_v1_full(e)
    }

    fn entry(ev: v1::event::EventType) -> v1::LogEntry {
        v1::LogEntry {
            timestamp: Some(prost_types::Timestamp {
                seconds: 1_600_000_000,
                nanos: 5,
            }),
            event: Some(v1::Event {
                event_type: Some(ev),
            }),
            entry: String::new(),
        }
    }

    #[test]
    fn decodes_build_failure_with_actionable_error_code() {
        let e = entry(v1::event::EventType::BuildEvent(v1::BuildEvent {
            artifact: "leeroy-web".into(),
            status: "Failed".into(),
            err: "legacy".into(),
            err_code: 0,
            actionable_err: Some(v1::ActionableErr {
                err_code: StatusCode::UnknownError as i32,
                message: "docker build failed".into(),
                suggestions: vec![],
            }),
            ..Default::default()
        }));
        let ev = decode_v1(&e).unwrap();
        assert_eq!(ev.at, 1_600_000_000_000_000_005);
        assert_eq!(
            ev.kind,
            EventKind::Build {
                artifact: "leeroy-web".into(),
                status: Status::Failed,
                error: Some(ErrorInfo {
                    code: Some("UNKNOWN_ERROR".into()),
                    message: "docker build failed".into()
                }),
            }
        );
    }

    #[test]
    fn rejects_what_skaffold_never_sends() {
        let unknown = entry(v1::event::EventType::DeployEvent(v1::DeployEvent {
            status: "Exploded".into(),
            ..Default::default()
        }));
        assert_eq!(decode_v1(&unknown).unwrap_err().reason(), "unknown_status");
        let no_artifact = entry(v1::event::EventType::BuildEvent(v1::BuildEvent {
            status: "Complete".into(),
            ..Default::default()
        }));
        assert_eq!(
            decode_v1(&no_artifact).unwrap_err().reason(),
            "missing_field"
        );
        let mut no_time = unknown.clone();
        no_time.timestamp = None;
        assert_eq!(decode_v1(&no_time).unwrap_err().reason(), "missing_field");
        let empty = v1::LogEntry::default();
        assert_eq!(decode_v1(&empty).unwrap_err().reason(), "empty_event");
        let mut future = unknown;
        future.timestamp = Some(prost_types::Timestamp {
            seconds: i64::MAX,
            nanos: 0,
        });
        assert_eq!(decode_v1(&future).unwrap_err().reason(), "absurd_value");
    }

    #[test]
    fn a_build_failed_with_a_cancellation_code_was_cancelled() {
        let build = |code: StatusCode| {
            decode_v1(&entry(v1::event::EventType::BuildEvent(v1::BuildEvent {
                artifact: "web".into(),
                status: "Failed".into(),
                err: "context canceled".into(),
                err_code: code as i32,
                actionable_err: Some(v1::ActionableErr {
                    err_code: code as i32,
                    message: "context canceled".into(),
                    suggestions: vec![],
                }),
                ..Default::default()
            })))
            .unwrap()
            .kind
        };
        for code in [StatusCode::BuildCancelled, StatusCode::BuildDockerCancelled] {
            assert_eq!(
                build(code),
                EventKind::Build {
                    artifact: "web".into(),
                    status: Status::Canceled,
                    error: None
                },
                "{code:?}"
            );
        }
        // A timeout is a failure.
        assert!(matches!(
            build(StatusCode::BuildDockerDeadline),
            EventKind::Build {
                status: Status::Failed,
                error: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn unknown_status_code_numbers_decode_without_a_name() {
        assert_eq!(status_code_name(0), None);
        assert_eq!(status_code_name(987_654), None);
        assert_eq!(status_code_name(201).as_deref(), Some("BUILD_SUCCESS"));
    }
}
