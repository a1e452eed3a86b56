//! skaffold-exporter: turns Skaffold's event stream into Prometheus metrics and
//! OpenTelemetry spans.
//!
//! Layout: `source` (gRPC subscription, decoders) → `pipeline` (the fold task:
//! replay de-duplication, `core::State::apply`) → `sink` (Prometheus); `server` (HTTP
//! `/metrics`, gRPC passthrough) at the edge; `logging` sets up the exporter's own log; `simulator` is a real gRPC Skaffold
//! stand-in for the demo and the tests.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms, missing_docs)]

pub mod app;
pub mod config;
pub mod core;
pub mod logging;
pub mod pb;
pub mod pipeline;
pub mod replay;
pub mod server;
pub mod simulator;
pub mod sink;
pub mod source;
