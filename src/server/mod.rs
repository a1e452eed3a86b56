//! Servers at the edge: HTTP (`/metrics`, health, `/v1/state`) and gRPC (the
//! `GetState` passthrough), plus the raw upstream client they share.

pub mod grpc;
pub mod http;
pub mod upstream;
