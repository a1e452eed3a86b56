//! A small HTTP/1.1 client for Skaffold's HTTP gateway (`--rpc-http-port`): the
//! event source streams `/v1/events` / `/v2/events` through it, the passthrough
//! fetches `/v1/state`.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// A small HTTP/1.1 client for the gateway (hyper-util's pooled client).
#[derive(Debug, Clone)]
pub struct GatewayClient {
    base: Uri,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl GatewayClient {
    /// A client for the gateway at `base` (`http://host:port`).
    pub fn new(base: Uri) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        connector.set_nodelay(true);
        Self {
            base,
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// The gateway's base URL.
    pub fn base(&self) -> &Uri {
        &self.base
    }

    fn uri(&self, path: &str) -> Result<Uri, RequestError> {
        let base = self.base.to_string();
        format!("{}{path}", base.trim_end_matches('/'))
            .parse()
            .map_err(|source| RequestError::InvalidUrl {
                path: path.to_owned(),
                source,
            })
    }

    /// Starts a GET; returns the response with its body still streaming.
    pub async fn get(&self, path: &str) -> Result<http::Response<Incoming>, RequestError> {
        let req = Request::get(self.uri(path)?)
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new())?;
        self.client
            .request(req)
            .await
            .map_err(|error| RequestError::Send {
                url: format!("{}{path}", self.base),
                cause: std::error::Error::source(&error)
                    .map(|s| format!(": {s}"))
                    .unwrap_or_default(),
                error,
            })
    }

    /// GET with a deadline; returns the status and the whole body.
    pub async fn get_body(
        &self,
        path: &str,
        deadline: Duration,
    ) -> Result<(StatusCode, Bytes), GatewayError> {
        let fetch = async {
            let resp = self
                .get(path)
                .await
                .map_err(|e| GatewayError::Failed(e.to_string()))?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| GatewayError::Failed(format!("reading {path}: {e}")))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(deadline, fetch).await.map_err(|_| {
            GatewayError::Timeout(format!(
                "Skaffold's gateway at {} did not answer within {} ms",
                self.base,
                deadline.as_millis()
            ))
        })?
    }
}

/// Why a request to the gateway got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// No answer within the deadline.
    #[error("{0}")]
    Timeout(String),
    /// The connection or the request failed.
    #[error("{0}")]
    Failed(String),
}

/// Why a GET to the gateway could not be sent or got no response.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The base URL and the path do not make a URL.
    #[error("invalid URL for {path}: {source}")]
    InvalidUrl {
        /// The path asked for.
        path: String,
        /// Why the URL is invalid.
        source: http::uri::InvalidUri,
    },
    /// The request could not be built.
    #[error("{0}")]
    Build(#[from] http::Error),
    /// Connecting or sending failed.
    #[error("GET {url}: {error}{cause}")]
    Send {
        /// What was asked for.
        url: String,
        /// The client's error.
        error: hyper_util::client::legacy::Error,
        /// Its cause, `": ..."`, or empty.
        cause: String,
    },
}
