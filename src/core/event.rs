//! The domain event: what Skaffold said, stripped of wire details.
//!
//! Decoders (`source::decode`) turn protobuf messages into these; the fold
//! (`core::state`) consumes them. Timestamps are Skaffold's own, in nanoseconds since
//! the Unix epoch, never the time we received the event.

use super::reason::Reason;
use super::transition::Phase;

/// Nanoseconds since the Unix epoch, as Skaffold stamped the event.
pub type Nanos = i64;

/// A name in an event (artifact, image, resource, ...): UTF-8 text, a copy of the
/// received field, held in the event itself up to 24 bytes (nearly every name) and on
/// the heap beyond. A decoded event points into nothing of the message it came from,
/// so the gRPC source drops each v1 message where it decoded it, and the fold reads
/// only the events it is handed (see `source::grpc`).
pub type Name = compact_str::CompactString;

/// One event from Skaffold.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Skaffold's timestamp (entries without one are rejected by the decoders).
    pub at: Nanos,
    /// What happened.
    pub kind: EventKind,
}

/// Lifecycle status, normalised from Skaffold's strings (v1 "In Progress", v2
/// "InProgress", the documented-but-never-sent "Completed", ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// "Not Started" / "NotStarted".
    NotStarted,
    /// "In Progress" / "InProgress" / "Started": a phase began (or, for a resource, is still rolling out).
    InProgress,
    /// "Complete" / "Completed" / "Succeeded".
    Succeeded,
    /// "Failed".
    Failed,
    /// "Canceled" / "Cancelled".
    Canceled,
    /// "Information": a non-fatal note (deploy).
    Information,
    /// "Terminated" (debug containers).
    Terminated,
}

impl Status {
    /// Parses a Skaffold status string; `None` for anything unknown.
    pub fn parse(s: &str) -> Option<Status> {
        Self::parse_bytes(s.as_bytes())
    }

    /// [`Status::parse`] of a string field as received: every known status is ASCII,
    /// so a match needs no UTF-8 check first.
    pub fn parse_bytes(s: &[u8]) -> Option<Status> {
        Some(match s {
            b"Not Started" | b"NotStarted" | b"Not started" => Status::NotStarted,
            b"In Progress" | b"InProgress" | b"In progress" | b"Started" => Status::InProgress,
            b"Complete" | b"Completed" | b"Succeeded" => Status::Succeeded,
            b"Failed" => Status::Failed,
            b"Canceled" | b"Cancelled" => Status::Canceled,
            b"Information" => Status::Information,
            b"Terminated" => Status::Terminated,
            _ => return None,
        })
    }
}

/// An error Skaffold attached to a failed event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ErrorInfo {
    /// Skaffold's StatusCode name (`BUILD_PUSH_ACCESS_DENIED`), when it sent a known one.
    pub code: Option<String>,
    /// Human-readable message.
    pub message: String,
}

/// What an event is about.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// Skaffold (re)started a runner.
    Meta {
        /// Skaffold's version, parsed from the `Starting Skaffold: &{Version:...}` text.
        version: Option<String>,
    },
    /// An artifact build.
    Build {
        /// Image name from skaffold.yaml.
        artifact: Name,
        /// Status.
        status: Status,
        /// Error, when failed.
        error: Option<ErrorInfo>,
    },
    /// Tests (custom / structure tests).
    Test {
        /// Status.
        status: Status,
        /// Error, when failed.
        error: Option<ErrorInfo>,
    },
    /// Deploy (the deployer itself; the status check is separate).
    Deploy {
        /// Status.
        status: Status,
        /// Error, when failed.
        error: Option<ErrorInfo>,
    },
    /// The status check as a whole.
    StatusCheck {
        /// Status.
        status: Status,
        /// Error, when failed.
        error: Option<ErrorInfo>,
    },
    /// One resource inside a status check.
    ResourceStatus {
        /// `namespace:kind/name` or `kind/name`.
        resource: Name,
        /// Status.
        status: Status,
        /// Error, when failed.
        error: Option<ErrorInfo>,
    },
    /// A file sync to running containers.
    FileSync {
        /// Image the files went to.
        image: Name,
        /// Number of files.
        file_count: u64,
        /// Status.
        status: Status,
        /// Error, when failed.
        error: Option<ErrorInfo>,
    },
    /// A port forward was announced.
    PortForward {
        /// Local port.
        local_port: i32,
        /// Resource type (`service`, `pod`, ...).
        resource_type: Name,
        /// Resource name.
        resource_name: Name,
        /// Namespace.
        namespace: Name,
    },
    /// A dev-loop iteration boundary.
    DevLoop {
        /// 0 is the initial loop.
        iteration: i64,
        /// Status.
        status: Status,
        /// Error, when failed.
        error: Option<ErrorInfo>,
    },
    /// Skaffold is terminating (v1: only on initialisation failure).
    Termination {
        /// Status.
        status: Status,
        /// Error, if any.
        error: Option<ErrorInfo>,
    },
    /// A debuggable container started or stopped (counted, not measured).
    Debug,
    /// v2 only: the build-cache lookup of one artifact (BuildSubtaskEvent, step
    /// `Cache`): `Succeeded` is a hit, `Failed` a miss, `InProgress` the lookup start.
    BuildCache {
        /// Image name from skaffold.yaml.
        artifact: Name,
        /// Status.
        status: Status,
    },
    /// v2 only: rendering manifests (`Render` task).
    Render {
        /// Status.
        status: Status,
        /// Error, when failed.
        error: Option<ErrorInfo>,
    },
    /// v2 only: `skaffold verify` (`Verify` task).
    Verify {
        /// Status.
        status: Status,
        /// Error, when failed.
        error: Option<ErrorInfo>,
    },
    /// v2 only: custom actions, `skaffold exec` (`Exec` task).
    Exec {
        /// Status.
        status: Status,
        /// Error, when failed.
        error: Option<ErrorInfo>,
    },
    /// v2 only: one unit of work inside a phase: a deployer, a tester, a renderer, a
    /// verify test or an exec action. Measured (for spans), never counted as a phase.
    Subtask {
        /// Which kind of subtask (`Phase::DeploySubtask`, ...).
        phase: Phase,
        /// Skaffold's subtask id (deployer index, test name, ...).
        id: Name,
        /// Status.
        status: Status,
        /// Error, when failed.
        error: Option<ErrorInfo>,
    },
    /// v2 only: the run id from the MetaEvent metadata (Skaffold v1.26+), sent right
    /// after the `Meta` that started the run.
    RunIdentified {
        /// Skaffold's run id.
        run_id: String,
    },
}

/// Every value of [`EventKind::name`] (for sinks that must enumerate the series).
pub const EVENT_NAMES: [&str; 17] = [
    "meta",
    "build",
    "test",
    "deploy",
    "status_check",
    "resource_status_check",
    "file_sync",
    "port",
    "dev_loop",
    "termination",
    "debugging_container",
    "build_cache",
    "render",
    "verify",
    "exec",
    "subtask",
    "run_id",
];

impl EventKind {
    /// Bounded name of the event type, for `skaffold_exporter_events_total{event}`
    /// (one of [`EVENT_NAMES`]).
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Meta { .. } => "meta",
            EventKind::Build { .. } => "build",
            EventKind::Test { .. } => "test",
            EventKind::Deploy { .. } => "deploy",
            EventKind::StatusCheck { .. } => "status_check",
            EventKind::ResourceStatus { .. } => "resource_status_check",
            EventKind::FileSync { .. } => "file_sync",
            EventKind::PortForward { .. } => "port",
            EventKind::DevLoop { .. } => "dev_loop",
            EventKind::Termination { .. } => "termination",
            EventKind::Debug => "debugging_container",
            EventKind::BuildCache { .. } => "build_cache",
            EventKind::Render { .. } => "render",
            EventKind::Verify { .. } => "verify",
            EventKind::Exec { .. } => "exec",
            EventKind::Subtask { .. } => "subtask",
            EventKind::RunIdentified { .. } => "run_id",
        }
    }
}

/// Why an event could not be interpreted. The `reason` is a bounded label value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidEvent {
    /// The entry had no event at all.
    #[error("entry carries no event")]
    Empty,
    /// A status string that Skaffold does not send.
    #[error("unknown status {status:?} on {event} event")]
    UnknownStatus {
        /// Which event.
        event: &'static str,
        /// The status string (truncated).
        status: String,
    },
    /// A required field was empty.
    #[error("{event} event without {field}")]
    MissingField {
        /// Which event.
        event: &'static str,
        /// Which field.
        field: &'static str,
    },
    /// A value outside any sane range.
    #[error("absurd value in {event} event: {detail}")]
    AbsurdValue {
        /// Which event.
        event: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The bytes or JSON could not be decoded.
    #[error("undecodable: {0}")]
    Undecodable(String),
}

pub use super::reason::INVALID_REASONS;

/// Which log stream a skipped event belonged to (v2 log events are counted, never
/// folded).
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

impl InvalidEvent {
    /// Bounded reason, for `skaffold_exporter_invalid_events_total{reason}`.
    pub fn reason(&self) -> Reason {
        match self {
            InvalidEvent::Empty => Reason::EmptyEvent,
            InvalidEvent::UnknownStatus { .. } => Reason::UnknownStatus,
            InvalidEvent::MissingField { .. } => Reason::MissingField,
            InvalidEvent::AbsurdValue { .. } => Reason::AbsurdValue,
            InvalidEvent::Undecodable(_) => Reason::Undecodable,
        }
    }
}

/// Parses the Skaffold version out of a v1 MetaEvent text
/// (`Starting Skaffold: &{Version:v1.5.0 ConfigVersion:...}`).
pub fn parse_version(meta_entry: &str) -> Option<String> {
    let rest = &meta_entry[meta_entry.find("Version:")? + "Version:".len()..];
    let v: String = rest
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '}')
        .take(64)
        .collect();
    (!v.is_empty()).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_strings_as_skaffold_sends_them_and_as_documented() {
        assert_eq!(Status::parse("In Progress"), Some(Status::InProgress));
        assert_eq!(Status::parse("InProgress"), Some(Status::InProgress));
        assert_eq!(Status::parse("Complete"), Some(Status::Succeeded));
        assert_eq!(Status::parse("Completed"), Some(Status::Succeeded));
        assert_eq!(Status::parse("Started"), Some(Status::InProgress));
        assert_eq!(Status::parse("Canceled"), Some(Status::Canceled));
        assert_eq!(Status::parse("Information"), Some(Status::Information));
        assert_eq!(Status::parse("Exploded"), None);
        assert_eq!(Status::parse(""), None);
    }

    #[test]
    fn every_event_name_is_listed() {
        let s = || Status::Succeeded;
        let kinds = [
            EventKind::Meta { version: None },
            EventKind::Build {
                artifact: Name::default(),
                status: s(),
                error: None,
            },
            EventKind::Test {
                status: s(),
                error: None,
            },
            EventKind::Deploy {
                status: s(),
                error: None,
            },
            EventKind::StatusCheck {
                status: s(),
                error: None,
            },
            EventKind::ResourceStatus {
                resource: Name::default(),
                status: s(),
                error: None,
            },
            EventKind::FileSync {
                image: Name::default(),
                file_count: 0,
                status: s(),
                error: None,
            },
            EventKind::PortForward {
                local_port: 0,
                resource_type: Name::default(),
                resource_name: Name::default(),
                namespace: Name::default(),
            },
            EventKind::DevLoop {
                iteration: 0,
                status: s(),
                error: None,
            },
            EventKind::Termination {
                status: s(),
                error: None,
            },
            EventKind::Debug,
            EventKind::Render {
                status: s(),
                error: None,
            },
            EventKind::Verify {
                status: s(),
                error: None,
            },
            EventKind::Exec {
                status: s(),
                error: None,
            },
            EventKind::RunIdentified {
                run_id: String::new(),
            },
            EventKind::BuildCache {
                artifact: Name::default(),
                status: s(),
            },
            EventKind::Subtask {
                phase: crate::core::Phase::DeploySubtask,
                id: Name::default(),
                status: s(),
                error: None,
            },
        ];
        assert_eq!(kinds.len(), EVENT_NAMES.len(), "one of each kind");
        for k in &kinds {
            assert!(EVENT_NAMES.contains(&k.name()), "{}", k.name());
        }
    }

    #[test]
    fn every_decoder_reason_is_listed() {
        let all = [
            InvalidEvent::Empty,
            InvalidEvent::UnknownStatus {
                event: "x",
                status: "y".into(),
            },
            InvalidEvent::MissingField {
                event: "x",
                field: "y",
            },
            InvalidEvent::AbsurdValue {
                event: "x",
                detail: "y".into(),
            },
            InvalidEvent::Undecodable("x".into()),
        ];
        for e in all {
            assert!(Reason::ALL.contains(&e.reason()), "{}", e.reason());
        }
    }

    #[test]
    fn parses_version_from_meta_text() {
        let t = "Starting Skaffold: &{Version:v1.5.0-16-gc9be4210c ConfigVersion:skaffold/v2beta1 GitVersion: }";
        assert_eq!(parse_version(t).as_deref(), Some("v1.5.0-16-gc9be4210c"));
        assert_eq!(
            parse_version("Starting Skaffold: &{Version:v2.1.0}").as_deref(),
            Some("v2.1.0")
        );
        assert_eq!(parse_version("no version here"), None);
        assert_eq!(parse_version("Version:"), None);
    }
}
