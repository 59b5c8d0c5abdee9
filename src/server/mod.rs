//! The running node: its listeners, which service each one carries, and
//! who may call it.
//!
//! ```text
//!  listener     transport                      callers (client cert issued by)   services
//!  federation   TCP, TLS 1.3 + client cert     active peers (their pinned CAs)   Federation, health
//!  match        TCP, TLS 1.3 + client cert     local services (clients CA)       Match, health, reflection
//!  match socket Unix socket (optional, 0660)   same-host services                Match, health, reflection
//!  admin        TCP, TLS 1.3 + client cert     operators (operators CA)          Admin, health, reflection
//!  admin socket DIR/run/admin.sock (0700 dir)  the node's owner (the CLI)        Admin, Match*, health, reflection
//!  metrics      TCP, plain HTTP (loopback)     Prometheus                        /metrics
//! ```
//!
//! (*) Match on the admin socket is how `hashfed match` asks a running
//! node: the same service as on the match listener, except that an
//! operator's lookups leave no match records
//! ([`MatchService::without_match_records`]).
//!
//! Roles are kept apart by the CA each TLS listener trusts (see
//! [`crate::identity::server`]): a certificate valid on one listener fails
//! the handshake on the others. The Unix sockets are protected by file
//! permissions instead.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::codegen::http;
use tonic::transport::Server;

use crate::config::Config;
use crate::database::Database;
use crate::federation::service::FederationService;
use crate::federation::Federation;
use crate::identity::server::{Acceptor, Listener};
use crate::identity::IdentityError;
use crate::metrics::{Kind, Metrics};
use crate::ops::Ops;
use crate::service::admin::AdminService;
use crate::service::matching::MatchService;
use crate::service::MAX_MATCH_MESSAGE_BYTES;
use crate::wire::proto::admin_server::AdminServer;
use crate::wire::proto::federation_server::FederationServer;
use crate::wire::proto::match_server::MatchServer;
use crate::wire::{proto, MAX_MESSAGE_BYTES};

/// Why the node could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A listener could not be bound.
    #[error("binding the {listener} listener to {address}: {source}")]
    Bind {
        /// Which listener.
        listener: &'static str,
        /// The address or socket path.
        address: String,
        /// What happened.
        source: std::io::Error,
    },
    /// Another node already serves on a socket.
    #[error("{0} is in use: is the node already running?")]
    SocketInUse(PathBuf),
    /// Certificates or keys could not be loaded.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// A gRPC server failed.
    #[error("{listener} listener: {source}")]
    Transport {
        /// Which listener.
        listener: &'static str,
        /// What happened.
        source: tonic::transport::Error,
    },
    /// The metrics endpoint failed.
    #[error("metrics listener: {0}")]
    Metrics(std::io::Error),
    /// A listener's task ended abnormally.
    #[error("a listener task failed: {0}")]
    Task(String),
    /// The reflection service could not be built.
    #[error("reflection: {0}")]
    Reflection(String),
    /// The federation (peers, signer) could not be set up.
    #[error("federation: {0}")]
    Federation(#[from] crate::federation::FederationError),
}

/// Where the running node listens.
#[derive(Clone, Debug)]
pub struct Addresses {
    /// Peers.
    pub federation: SocketAddr,
    /// Local services (mTLS).
    pub match_: SocketAddr,
    /// Local services on this host, if configured.
    pub match_socket: Option<PathBuf>,
    /// Operators (mTLS).
    pub admin: SocketAddr,
    /// The node's owner on this host.
    pub admin_socket: PathBuf,
    /// Prometheus.
    pub metrics: SocketAddr,
}

/// Where the node's admin socket is: `DIR/run/admin.sock`.
pub fn admin_socket(dir: &Path) -> PathBuf {
    dir.join("run").join("admin.sock")
}

/// Streams one connection may have open at once (HTTP/2
/// SETTINGS_MAX_CONCURRENT_STREAMS; tonic would otherwise set no limit).
pub const MAX_STREAMS: u32 = 256;

/// How often the entry and set gauges are refreshed.
const GAUGE_PERIOD: Duration = Duration::from_secs(15);

/// The signal type code a metrics kind counts, if it counts one.
fn kind_code(kind: Kind) -> Option<u8> {
    use crate::model::SignalType as T;
    Some(match kind {
        Kind::Pdq => T::Pdq.code(),
        Kind::Md5 => T::Md5.code(),
        Kind::Sha1 => T::Sha1.code(),
        Kind::Sha256 => T::Sha256.code(),
        Kind::Blake3 => T::Blake3.code(),
        Kind::Opaque => T::Opaque(String::new()).code(),
        Kind::Image => return None,
    })
}

/// gRPC methods named in the metrics.
const METHODS: &[&str] = &["MatchHashes", "MatchStream", "MatchImage", "Feedback"];

/// A running node. Dropping it does not stop it; call [`Node::stop`].
pub struct Node {
    addresses: Addresses,
    stop: watch::Sender<bool>,
    tasks: JoinSet<Result<(), ServerError>>,
    metrics: Arc<Metrics>,
    federation: Arc<Federation>,
    ops: Arc<Ops>,
}

/// tonic answers a message over the size limit with `OUT_OF_RANGE`, before
/// any handler runs; to the caller it is a malformed request, so it is
/// reported as `INVALID_ARGUMENT` (the handlers do the same for streams).
fn oversized_is_invalid<B>(mut response: http::Response<B>) -> http::Response<B> {
    let out_of_range = (tonic::Code::OutOfRange as i32).to_string();
    let headers = response.headers_mut();
    if headers
        .get("grpc-status")
        .is_some_and(|v| v.as_bytes() == out_of_range.as_bytes())
    {
        let invalid = (tonic::Code::InvalidArgument as i32).to_string();
        if let Ok(value) = http::HeaderValue::from_str(&invalid) {
            headers.insert("grpc-status", value);
        }
    }
    response
}

async fn bind(listener: &'static str, address: &str) -> Result<TcpListener, ServerError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| ServerError::Bind {
            listener,
            address: address.to_owned(),
            source,
        })
}

/// Binds a Unix socket at `path` with `mode`, refusing if a live server is
/// on it and replacing a stale file left by a crash.
async fn bind_unix(
    listener: &'static str,
    path: &Path,
    mode: u32,
) -> Result<UnixListener, ServerError> {
    let fail = |source| ServerError::Bind {
        listener,
        address: path.display().to_string(),
        source,
    };
    if path.exists() {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            return Err(ServerError::SocketInUse(path.to_owned()));
        }
        std::fs::remove_file(path).map_err(fail)?;
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(fail)?;
    }
    let socket = UnixListener::bind(path).map_err(fail)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(fail)?;
    Ok(socket)
}

fn make_private_dir(path: &Path) -> Result<(), ServerError> {
    use std::os::unix::fs::PermissionsExt;
    let fail = |source| ServerError::Bind {
        listener: "admin socket",
        address: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(path).map_err(fail)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(fail)
}

fn reflection() -> Result<
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
    ServerError,
> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServerError::Reflection(e.to_string()))
}

impl Node {
    /// Binds every listener named in `config` (port 0 picks a free port)
    /// and starts serving `db`.
    pub async fn start(
        dir: &Path,
        config: &Config,
        db: Arc<Database>,
    ) -> Result<Node, ServerError> {
        let metrics = Arc::new(Metrics::new(METHODS));
        db.set_flood_limits(config.quarantine.clone());
        metrics.load_certificate_expiries(dir);
        db.set_match_retention(config.retention.match_days);
        let (stop, stopped) = watch::channel(false);
        let shutdown = move || {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            }
        };
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter.set_serving::<MatchServer<MatchService>>().await;
        reporter.set_serving::<AdminServer<AdminService>>().await;
        reporter
            .set_serving::<FederationServer<FederationService>>()
            .await;
        let federation = {
            let (dir, config, db) = (dir.to_owned(), config.clone(), db.clone());
            let metrics = metrics.clone();
            tokio::task::spawn_blocking(move || Federation::for_node(&dir, &config, db, metrics))
                .await
                .map_err(|e| ServerError::Task(e.to_string()))??
        };

        let match_service = || {
            MatchServer::new(MatchService::new(db.clone(), metrics.clone()))
                .max_decoding_message_size(MAX_MATCH_MESSAGE_BYTES)
        };
        let ops = Arc::new(
            Ops::new(db.clone(), config.node_id.clone(), config.name.clone())
                .with_federation(federation.clone()),
        );
        let admin_service = || {
            AdminServer::new(AdminService::from_ops(ops.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
        };
        // Federation and match calls have a deadline (a caller that sends
        // half a request and stalls holds nothing past it); the admin
        // listener's imports and backups may take as long as they need.
        let deadline = Duration::from_secs(u64::from(config.limits.request_secs.max(1)));
        let builder = |deadline: Option<Duration>| {
            let server = Server::builder()
                .http2_keepalive_interval(Some(Duration::from_secs(30)))
                .max_concurrent_streams(MAX_STREAMS);
            match deadline {
                Some(d) => server.timeout(d),
                None => server,
            }
            .layer(tower::util::MapResponseLayer::new(
                oversized_is_invalid::<tonic::body::Body>,
            ))
        };

        let match_router = || -> Result<_, ServerError> {
            Ok(builder(Some(deadline))
                .add_service(match_service())
                .add_service(health.clone())
                .add_service(reflection()?))
        };
        let admin_router = || -> Result<_, ServerError> {
            Ok(builder(None)
                .add_service(admin_service())
                .add_service(health.clone())
                .add_service(reflection()?))
        };
        // The owner at the admin socket may also match (`hashfed match`
        // on a running node), through the same service as local services.
        let admin_socket_router = || -> Result<_, ServerError> {
            Ok(builder(None)
                .add_service(admin_service())
                .add_service(
                    MatchServer::new(
                        MatchService::new(db.clone(), metrics.clone()).without_match_records(),
                    )
                    .max_decoding_message_size(MAX_MATCH_MESSAGE_BYTES),
                )
                .add_service(health.clone())
                .add_service(reflection()?))
        };
        let mut tasks = JoinSet::new();
        /// Serves a router on a stream of connections until shutdown, as
        /// one of the node's tasks.
        macro_rules! serve {
            ($name:literal, $router:expr, $incoming:expr) => {{
                let (router, incoming, done) = ($router, $incoming, shutdown());
                tasks.spawn(async move {
                    router
                        .serve_with_incoming_shutdown(incoming, done)
                        .await
                        .map_err(|source| ServerError::Transport {
                            listener: $name,
                            source,
                        })
                });
            }};
        }

        // Federation: active peers only, each call checked against the set
        // policies; a peer's connections close when it is suspended or
        // revoked.
        let tcp = bind("federation", &config.listen.federation).await?;
        let federation_addr = local_addr("federation", &tcp)?;
        let incoming =
            Acceptor::federation(federation.certs(), federation.trust().clone())?.incoming(tcp);
        serve!(
            "federation",
            builder(Some(deadline))
                .add_service(
                    FederationServer::new(FederationService::new(federation.clone()))
                        .max_decoding_message_size(MAX_MESSAGE_BYTES)
                        .max_encoding_message_size(MAX_MESSAGE_BYTES)
                )
                .add_service(health.clone()),
            incoming
        );
        tokio::spawn(federation.clone().run());

        // Match over mTLS, and over a Unix socket if configured.
        let tcp = bind("match", &config.listen.match_).await?;
        let match_addr = local_addr("match", &tcp)?;
        let incoming = Acceptor::new(federation.certs(), Listener::Match)?.incoming(tcp);
        serve!("match", match_router()?, incoming);
        let match_socket = match &config.listen.match_socket {
            Some(path) => {
                let path = dir.join(path);
                let socket = bind_unix("match socket", &path, 0o660).await?;
                serve!(
                    "match socket",
                    match_router()?,
                    UnixListenerStream::new(socket)
                );
                Some(path)
            }
            None => None,
        };

        // Admin over mTLS, and over the owner's Unix socket.
        let tcp = bind("admin", &config.listen.admin).await?;
        let admin_addr = local_addr("admin", &tcp)?;
        let incoming = Acceptor::new(federation.certs(), Listener::Admin)?.incoming(tcp);
        serve!("admin", admin_router()?, incoming);
        let socket_path = admin_socket(dir);
        if let Some(run) = socket_path.parent() {
            make_private_dir(run)?;
        }
        let socket = bind_unix("admin socket", &socket_path, 0o600).await?;
        serve!(
            "admin socket",
            admin_socket_router()?,
            UnixListenerStream::new(socket)
        );

        // Metrics.
        let tcp = bind("metrics", &config.listen.metrics).await?;
        let metrics_addr = local_addr("metrics", &tcp)?;
        let done = shutdown();
        let served = metrics.clone();
        tasks.spawn(async move {
            crate::metrics::serve_http(served, tcp, done)
                .await
                .map_err(ServerError::Metrics)
        });

        // Gauges: refreshed now and then, never on the query path.
        let (gauges, gauge_db, mut done) = (metrics.clone(), db.clone(), Box::pin(shutdown()));
        tasks.spawn(async move {
            loop {
                let db = gauge_db.clone();
                if let Ok((sets, counts)) = tokio::task::spawn_blocking(move || {
                    (db.store().sets().len() as u64, db.matchable_by_type())
                })
                .await
                {
                    gauges.set_sets(sets);
                    for kind in Kind::ALL {
                        if let Some(code) = kind_code(kind) {
                            gauges.set_entries(kind, counts[usize::from(code)]);
                        }
                    }
                }
                tokio::select! {
                    () = &mut done => return Ok(()),
                    () = tokio::time::sleep(GAUGE_PERIOD) => {}
                }
            }
        });

        tracing::info!(node = %config.node_id, "serving");
        Ok(Node {
            addresses: Addresses {
                federation: federation_addr,
                match_: match_addr,
                match_socket,
                admin: admin_addr,
                admin_socket: socket_path,
                metrics: metrics_addr,
            },
            stop,
            tasks,
            metrics,
            federation,
            ops,
        })
    }

    /// The node's operations (what its admin service translates to).
    pub fn ops(&self) -> &Arc<Ops> {
        &self.ops
    }

    /// The node's federation (peers, sync).
    pub fn federation(&self) -> &Arc<Federation> {
        &self.federation
    }

    /// Where the node listens.
    pub fn addresses(&self) -> &Addresses {
        &self.addresses
    }

    /// The node's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Completes when a listener stops on its own (an error: they run
    /// until [`Node::stop`]).
    pub async fn failed(&mut self) -> Result<(), ServerError> {
        match self.tasks.join_next().await {
            Some(Ok(result)) => result,
            Some(Err(e)) => Err(ServerError::Task(e.to_string())),
            None => std::future::pending().await,
        }
    }

    /// Stops accepting, lets calls in flight finish for up to `grace`, then
    /// closes what is left. Removes the Unix sockets.
    pub async fn stop(mut self, grace: Duration) -> Result<(), ServerError> {
        self.federation.shutdown();
        let _ = self.stop.send(true);
        let mut first_error = None;
        let drained = tokio::time::timeout(grace, async {
            while let Some(joined) = self.tasks.join_next().await {
                if let Ok(Err(e)) = joined {
                    first_error.get_or_insert(e);
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!("connections still open after the grace period; closed");
            self.tasks.shutdown().await;
        }
        for path in [
            Some(&self.addresses.admin_socket),
            self.addresses.match_socket.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            let _ = std::fs::remove_file(path);
        }
        first_error.map_or(Ok(()), Err)
    }
}

fn local_addr(listener: &'static str, tcp: &TcpListener) -> Result<SocketAddr, ServerError> {
    tcp.local_addr().map_err(|source| ServerError::Bind {
        listener,
        address: "(bound)".into(),
        source,
    })
}
