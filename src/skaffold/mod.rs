//! Clients of Skaffold's own servers, shared by the event sources and the servers at
//! the edge: the raw wire codec ([`RawCodec`]: message bytes as Skaffold sent them),
//! the byte-level gRPC client for the passthrough ([`Upstream`]) and the HTTP
//! gateway client ([`GatewayClient`]). Knows transports only, nothing of events,
//! the fold or metrics.

pub mod codec;
pub mod gateway;
pub mod upstream;

pub use codec::RawCodec;
pub use gateway::GatewayClient;
pub use upstream::Upstream;
