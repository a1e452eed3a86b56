//! skaffold-exporter: turns Skaffold's event stream into Prometheus metrics and
//! OpenTelemetry spans.
//!
//! # Module map
//!
//! - [`core`]: the pure fold. Domain events in, transitions out; replay
//!   de-duplication and ordering. No I/O, no clock reads.
//! - [`pb`]: Skaffold's protos (v1, v2), generated at build time.
//! - [`skaffold`]: clients of Skaffold's servers (the raw wire codec, the byte-level
//!   gRPC client, the HTTP gateway client), shared by sources and servers.
//! - [`source`]: where events come from (gRPC, the HTTP gateway, files), decoded into
//!   `core` events and handed on as in-band deliveries.
//! - [`sink`]: where transitions go (Prometheus, OTLP spans and metrics).
//! - [`pipeline`]: the fold task, joining sources to `core` and `core` to sinks.
//! - [`server`]: HTTP (`/metrics`, health, `/v1/state`) and the gRPC passthrough.
//! - [`simulator`]: a real gRPC Skaffold stand-in for the demo and the tests.
//! - [`catch_up`]: the latch that says when scraped and pushed metrics may be
//!   published (a restarted exporter never shows a partial re-fold).
//! - The edge: [`config`] (CLI), [`signal`], [`logging`] (the exporter's own log),
//!   [`app`] (the live exporter), [`replay`].
//!
//! # Dependency rule
//!
//! Imports point one way, down this list, and never sideways:
//!
//! | module      | may use (besides itself)                                |
//! |-------------|---------------------------------------------------------|
//! | `core`      | nothing of ours                                         |
//! | `pb`        | nothing of ours                                         |
//! | `skaffold`  | `pb`, `core`                                            |
//! | `source`    | `core`, `pb`, `skaffold`                                |
//! | `catch_up`  | `core`                                                  |
//! | `sink`      | `core`, `catch_up`                                      |
//! | `pipeline`  | `core`, `pb`, `source`, `sink`, `catch_up`              |
//! | `server`    | `core`, `pb`, `skaffold`, `source`, `sink`, `pipeline`, `catch_up` |
//! | `simulator` | `core`, `pb`, `skaffold`, `source`                      |
//! | the edge    | anything, without cycles among top-level modules        |
//!
//! So a source never names a sink: what only the reader knows (reconnects, a stalled
//! fold) it reports through [`core::ReaderHealth`], and the connection's state travels
//! in band ([`source::Delivery`]). A sink never names a source: what both need
//! (e.g. [`core::LogKind`]) lives in `core`. Unit-test modules are exempt.
//! `tests/architecture.rs` fails when an import breaks the rule.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms, missing_docs)]

pub mod app;
pub mod catch_up;
pub mod config;
pub mod core;
pub mod logging;
pub mod pb;
pub mod pipeline;
pub mod replay;
pub mod server;
pub mod signal;
pub mod simulator;
pub mod sink;
pub mod skaffold;
pub mod source;
