//! v2 messages in the v1.22–v1.25 layout (before Skaffold renumbered `TaskEvent` and
//! `BuildSubtaskEvent` in v1.26), so a simulated old Skaffold can send what the
//! exporter must recognise and refuse rather than mis-decode.

/// The v1.22–v1.25 `TaskEvent`: id=1, task=2, iteration=3, status=4.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OldTaskEvent {
    /// `<Task>-<iteration>`.
    #[prost(string, tag = "1")]
    pub id: String,
    /// `DevLoop`, `Build`, ...
    #[prost(string, tag = "2")]
    pub task: String,
    /// The iteration (a varint where v1.26+ has a string).
    #[prost(int32, tag = "3")]
    pub iteration: i32,
    /// `InProgress`, `Succeeded`, ...
    #[prost(string, tag = "4")]
    pub status: String,
}

/// The v1.22–v1.25 `BuildSubtaskEvent`: id=1, task_id=2, artifact=3, status=4.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OldBuildSubtask {
    /// The artifact.
    #[prost(string, tag = "1")]
    pub id: String,
    /// `Build-<iteration>`.
    #[prost(string, tag = "2")]
    pub task_id: String,
    /// The artifact.
    #[prost(string, tag = "3")]
    pub artifact: String,
    /// The status (where v1.26+ has the step).
    #[prost(string, tag = "4")]
    pub status: String,
}

/// The v1.22–v1.25 v2 `BuildMetadata`: `numberOfArtifacts` at field 1 (a varint
/// where v1.26+ has the `artifacts` list).
#[derive(Clone, PartialEq, prost::Message)]
pub struct OldBuildMetadata {
    /// How many artifacts.
    #[prost(int32, tag = "1")]
    pub number_of_artifacts: i32,
}

/// The v2 `Metadata` of that time (only `build` shown).
#[derive(Clone, PartialEq, prost::Message)]
pub struct OldMetadata {
    /// Build metadata.
    #[prost(message, optional, tag = "1")]
    pub build: Option<OldBuildMetadata>,
}

/// The v2 `MetaEvent` (same numbers then and now: entry=1, metadata=2).
#[derive(Clone, PartialEq, prost::Message)]
pub struct OldMetaEvent {
    /// `Starting Skaffold: &{Version:v1.25.0 ...}`.
    #[prost(string, tag = "1")]
    pub entry: String,
    /// Metadata.
    #[prost(message, optional, tag = "2")]
    pub metadata: Option<OldMetadata>,
}

/// The MetaEvent a Skaffold of `version` (e.g. `v1.25.0`) sends first.
pub fn old_meta(version: &str, seconds: i64) -> OldEvent {
    OldEvent {
        timestamp: Some(prost_types::Timestamp { seconds, nanos: 0 }),
        meta: Some(OldMetaEvent {
            entry: format!(
                "Starting Skaffold: &{{Version:{version} ConfigVersion:skaffold/v2beta14 GitVersion: GitCommit:0000000 BuildDate:2021-05-05T00:00:00Z GoVersion:go1.15.8 Compiler:gc Platform:linux/amd64 User:}}"
            ),
            metadata: Some(OldMetadata {
                build: Some(OldBuildMetadata {
                    number_of_artifacts: 2,
                }),
            }),
        }),
        ..Default::default()
    }
}

/// The v2 `Event` envelope with the two renumbered members.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OldEvent {
    /// Skaffold's timestamp.
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<prost_types::Timestamp>,
    /// `metaEvent`.
    #[prost(message, optional, tag = "2")]
    pub meta: Option<OldMetaEvent>,
    /// `taskEvent`.
    #[prost(message, optional, tag = "5")]
    pub task: Option<OldTaskEvent>,
    /// `buildSubtaskEvent`.
    #[prost(message, optional, tag = "6")]
    pub build: Option<OldBuildSubtask>,
}
