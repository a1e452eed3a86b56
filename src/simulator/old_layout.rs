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

/// The v2 `Event` envelope with the two renumbered members.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OldEvent {
    /// Skaffold's timestamp.
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<prost_types::Timestamp>,
    /// `taskEvent`.
    #[prost(message, optional, tag = "5")]
    pub task: Option<OldTaskEvent>,
    /// `buildSubtaskEvent`.
    #[prost(message, optional, tag = "6")]
    pub build: Option<OldBuildSubtask>,
}
