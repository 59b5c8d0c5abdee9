//! The gRPC services a node serves, over tonic.
//!
//! * [`proto`]: the generated types (from `proto/hashfed/v1/`);
//! * [`matching`]: the match service for local services.

pub mod matching;

/// Types generated from `proto/hashfed/v1/*.proto`.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    tonic::include_proto!("hashfed.v1");
}

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Server, ServerTlsConfig};

use crate::database::Database;

/// Largest request a service accepts (a batch of 1024 PDQ queries with all
/// variants is about 300 KiB).
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;

/// Serves the match service on `listener` with `tls` until `shutdown`
/// completes.
pub async fn serve_match(
    db: Arc<Database>,
    tls: ServerTlsConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let service = proto::match_server::MatchServer::new(matching::MatchService::new(db))
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    Server::builder()
        .tls_config(tls)?
        .add_service(service)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
}
