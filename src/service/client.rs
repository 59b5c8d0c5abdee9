//! Connecting to a node's Unix sockets: how the `hashfed` CLI reaches the
//! admin service of a node that is running, and how same-host services
//! can reach the match service without TLS.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};

/// Opens a channel to the gRPC server on the Unix socket at `path`.
///
/// The connection is made now, so a missing socket or a node that is not
/// running is an error here rather than at the first call.
pub async fn unix_channel(path: &Path) -> Result<Channel, tonic::transport::Error> {
    let path: PathBuf = path.to_owned();
    // The URI is required by the API but unused: the connector ignores it.
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await
}
