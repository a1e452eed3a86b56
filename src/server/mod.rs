//! Servers at the edge: HTTP (`/metrics`, health, `/v1/state`) and gRPC (the
//! `GetState` passthrough). The client to Skaffold they share is
//! [`crate::skaffold::Upstream`].

pub mod grpc;
pub mod http;
