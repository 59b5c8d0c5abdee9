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
//!
//! The node owns what it runs, so that stopping it is one call that
//! returns when nothing of it runs any more (see [`Node::stop`]); then the
//! database it served can be closed at once ([`Node::into_database`]).

mod lifetime;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_stream::wrappers::UnixListenerStream;
use tokio_stream::{Stream, StreamExt as _};
use tonic::body::Body;
use tonic::codegen::http;
use tonic::service::Routes;
use tonic::transport::server::Connected;
use tonic::transport::Server;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, HealthService};
use tower::layer::util::{Identity, Stack};
use tower::util::MapResponseLayer;

use self::lifetime::{Cuttable, TrackCalls};

use crate::config::Config;
use crate::database::Database;
use crate::exchange::Exchanges;
use crate::federation::service::FederationService;
use crate::federation::Federation;
use crate::identity::server::{Acceptor, Listener};
use crate::identity::IdentityError;
use crate::metrics::{Kind, Metrics};
use crate::ops::Ops;
use crate::service::admin::AdminService;
use crate::service::matching::MatchService;
use crate::service::MAX_MATCH_MESSAGE_BYTES;
use crate::tasks::Tasks;
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
    /// An `[[exchange]]` of `hashfed.toml` that cannot run.
    #[error("exchange: {0}")]
    Exchange(#[from] crate::exchange::ExchangeError),
    /// A listener's serve loop did not end even after its connections
    /// were cut; it was aborted.
    #[error("a listener did not end after its connections were cut")]
    ListenerStuck,
    /// Tasks were still running when stopping gave up waiting (blocking
    /// work such as an import cannot be interrupted); whatever they hold,
    /// the database included, is still held.
    #[error("{0} tasks still running after the node stopped")]
    TasksRunning(usize),
    /// The database was to be handed back, but handles outside the node
    /// still share it (the caller kept one?).
    #[error("the database is still in use after the node stopped: {holders} other handles")]
    DatabaseInUse {
        /// How many handles besides the one handed back.
        holders: usize,
    },
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

/// How long stopping waits, once the grace period is over and the
/// connections still open are cut, for the listeners and tasks to end.
pub const CUT_WAIT: Duration = Duration::from_secs(2);

/// A running node. Dropping it does not stop it; call [`Node::stop`], or
/// [`Node::into_database`] to close the database afterwards.
///
/// The node owns everything it starts: the listeners' serve loops (joined
/// by [`Node::failed`] and [`Node::stop`]) and every other task, through
/// its [`Tasks`] (shared with the federation and the services).
pub struct Node {
    addresses: Addresses,
    stop: watch::Sender<bool>,
    listeners: JoinSet<Result<(), ServerError>>,
    tasks: Tasks,
    db: Arc<Database>,
    metrics: Arc<Metrics>,
    federation: Arc<Federation>,
    ops: Arc<Ops>,
}

/// The function that maps oversized messages' status (see
/// [`oversized_is_invalid`]), as a nameable type.
type OversizedFn = fn(http::Response<Body>) -> http::Response<Body>;

/// The gRPC server every listener runs (see [`Start::grpc`]).
type GrpcServer = Server<Stack<TrackCalls, Stack<MapResponseLayer<OversizedFn>, Identity>>>;

/// What the listeners are made of while the node starts: one method per
/// listener binds it and spawns its serve loop into `listeners`.
struct Start<'a> {
    dir: &'a Path,
    config: &'a Config,
    db: &'a Arc<Database>,
    metrics: &'a Arc<Metrics>,
    federation: &'a Arc<Federation>,
    ops: &'a Arc<Ops>,
    exchanges: &'a Arc<Exchanges>,
    health: HealthReporter,
    tasks: &'a Tasks,
    stopped: watch::Receiver<bool>,
    listeners: JoinSet<Result<(), ServerError>>,
    /// The Unix sockets bound so far (removed if the start fails).
    sockets: Vec<PathBuf>,
}

impl Start<'_> {
    /// A gRPC server: HTTP/2 keepalive, at most [`MAX_STREAMS`] streams
    /// per connection, oversized messages reported as invalid, and every
    /// call counted as one of the node's tasks. Federation and match calls
    /// have a deadline (a caller that sends half a request and stalls
    /// holds nothing past it); the admin listener's imports and backups
    /// may take as long as they need.
    fn grpc(&self, with_deadline: bool) -> GrpcServer {
        let server = Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .max_concurrent_streams(MAX_STREAMS);
        let server = if with_deadline {
            server.timeout(Duration::from_secs(u64::from(
                self.config.limits.request_secs.max(1),
            )))
        } else {
            server
        };
        server
            .layer(MapResponseLayer::new(
                oversized_is_invalid::<Body> as OversizedFn,
            ))
            .layer(TrackCalls(self.tasks.clone()))
    }

    fn health(&self) -> HealthServer<HealthService> {
        HealthServer::new(HealthService::from_health_reporter(self.health.clone()))
    }

    fn match_service(&self) -> MatchService {
        MatchService::new(self.db.clone(), self.metrics.clone()).with_tasks(self.tasks.clone())
    }

    fn admin_service(&self) -> AdminServer<AdminService> {
        AdminServer::new(
            AdminService::from_ops(self.ops.clone())
                .with_exchanges(self.exchanges.clone())
                .with_tasks(self.tasks.clone()),
        )
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// Match, health and reflection: the match listener and socket.
    fn match_routes(&self) -> Result<Routes, ServerError> {
        Ok(Routes::new(
            MatchServer::new(self.match_service())
                .max_decoding_message_size(MAX_MATCH_MESSAGE_BYTES),
        )
        .add_service(self.health())
        .add_service(reflection()?))
    }

    /// Admin, health and reflection: the admin listener.
    fn admin_routes(&self) -> Result<Routes, ServerError> {
        Ok(Routes::new(self.admin_service())
            .add_service(self.health())
            .add_service(reflection()?))
    }

    /// Completes when the node stops.
    fn shutdown(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut stopped = self.stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    }

    /// Serves `routes` on `incoming` until the node stops, as one of its
    /// listeners; each connection is [`Cuttable`] by the node.
    fn serve<I, IO, IE>(
        &mut self,
        listener: &'static str,
        server: GrpcServer,
        routes: Routes,
        incoming: I,
    ) where
        I: Stream<Item = Result<IO, IE>> + Send + 'static,
        IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
        IE: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    {
        let tasks = self.tasks.clone();
        let incoming = incoming.map(move |io| io.map(|io| Cuttable::new(io, &tasks)));
        let shutdown = self.shutdown();
        let mut server = server;
        let router = server.add_routes(routes);
        self.listeners.spawn(async move {
            router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
                .map_err(|source| ServerError::Transport { listener, source })
        });
    }

    /// Federation: active peers only, each call checked against the set
    /// policies; a peer's connections close when it is suspended or
    /// revoked.
    async fn federation(&mut self) -> Result<SocketAddr, ServerError> {
        let tcp = bind("federation", &self.config.listen.federation).await?;
        let address = local_addr("federation", &tcp)?;
        let incoming =
            Acceptor::federation(self.federation.certs(), self.federation.trust().clone())?
                .incoming(tcp, self.tasks);
        let routes = Routes::new(
            FederationServer::new(FederationService::new(self.federation.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(self.health());
        self.serve("federation", self.grpc(true), routes, incoming);
        Ok(address)
    }

    /// Match over mTLS, and over a Unix socket if configured.
    async fn match_(&mut self) -> Result<(SocketAddr, Option<PathBuf>), ServerError> {
        let tcp = bind("match", &self.config.listen.match_).await?;
        let address = local_addr("match", &tcp)?;
        let incoming =
            Acceptor::new(self.federation.certs(), Listener::Match)?.incoming(tcp, self.tasks);
        self.serve("match", self.grpc(true), self.match_routes()?, incoming);
        let Some(path) = &self.config.listen.match_socket else {
            return Ok((address, None));
        };
        let path = self.dir.join(path);
        let socket = bind_unix("match socket", &path, 0o660).await?;
        self.sockets.push(path.clone());
        self.serve(
            "match socket",
            self.grpc(true),
            self.match_routes()?,
            UnixListenerStream::new(socket),
        );
        Ok((address, Some(path)))
    }

    /// Admin over mTLS, and over the owner's Unix socket, where the owner
    /// may also match (`hashfed match` on a running node) through the same
    /// service as local services, leaving no match records.
    async fn admin(&mut self) -> Result<(SocketAddr, PathBuf), ServerError> {
        let tcp = bind("admin", &self.config.listen.admin).await?;
        let address = local_addr("admin", &tcp)?;
        let incoming =
            Acceptor::new(self.federation.certs(), Listener::Admin)?.incoming(tcp, self.tasks);
        self.serve("admin", self.grpc(false), self.admin_routes()?, incoming);
        let path = admin_socket(self.dir);
        if let Some(run) = path.parent() {
            make_private_dir(run)?;
        }
        let socket = bind_unix("admin socket", &path, 0o600).await?;
        self.sockets.push(path.clone());
        let routes = Routes::new(self.admin_service())
            .add_service(
                MatchServer::new(self.match_service().without_match_records())
                    .max_decoding_message_size(MAX_MATCH_MESSAGE_BYTES),
            )
            .add_service(self.health())
            .add_service(reflection()?);
        self.serve(
            "admin socket",
            self.grpc(false),
            routes,
            UnixListenerStream::new(socket),
        );
        Ok((address, path))
    }

    /// Prometheus over plain HTTP.
    async fn metrics(&mut self) -> Result<SocketAddr, ServerError> {
        let tcp = bind("metrics", &self.config.listen.metrics).await?;
        let address = local_addr("metrics", &tcp)?;
        let (metrics, done) = (self.metrics.clone(), self.shutdown());
        self.listeners.spawn(async move {
            crate::metrics::serve_http(metrics, tcp, done)
                .await
                .map_err(ServerError::Metrics)
        });
        Ok(address)
    }

    /// The entry and set gauges: set once before the node is handed back
    /// (a scrape right after start sees the real counts), then refreshed
    /// now and then, never on the query path; ends when the node stops.
    fn gauges(&self) {
        let refresh = |metrics: &Metrics, db: &Database| {
            metrics.set_sets(db.store().sets().len() as u64);
            let counts = db.matchable_by_type();
            for kind in Kind::ALL {
                if let Some(code) = kind_code(kind) {
                    metrics.set_entries(kind, counts[usize::from(code)]);
                }
            }
        };
        refresh(self.metrics, self.db);
        let (metrics, db, tasks) = (self.metrics.clone(), self.db.clone(), self.tasks.clone());
        self.tasks.spawn(async move {
            loop {
                tokio::time::sleep(GAUGE_PERIOD).await;
                let (metrics, db) = (metrics.clone(), db.clone());
                let _ = tasks.spawn_blocking(move || refresh(&metrics, &db)).await;
            }
        });
    }
}

impl Node {
    /// Binds every listener named in `config` (port 0 picks a free port)
    /// and starts serving `db`. If a listener cannot be bound, what was
    /// started is stopped again before the error is returned.
    pub async fn start(
        dir: &Path,
        config: &Config,
        db: Arc<Database>,
    ) -> Result<Node, ServerError> {
        let metrics = Arc::new(Metrics::new(METHODS));
        db.set_flood_limits(config.quarantine.clone());
        metrics.load_certificate_expiries(dir);
        db.set_match_retention(config.retention.match_days);
        let tasks = Tasks::new();
        let (reporter, _) = tonic_health::server::health_reporter();
        reporter.set_serving::<MatchServer<MatchService>>().await;
        reporter.set_serving::<AdminServer<AdminService>>().await;
        reporter
            .set_serving::<FederationServer<FederationService>>()
            .await;
        let federation = {
            let (dir, config, db) = (dir.to_owned(), config.clone(), db.clone());
            let (metrics, fed_tasks) = (metrics.clone(), tasks.clone());
            tasks
                .spawn_blocking(move || Federation::for_node(&dir, &config, db, metrics, fed_tasks))
                .await
                .map_err(|e| ServerError::Task(e.to_string()))??
        };
        let ops = Arc::new(
            Ops::new(db.clone(), config.node_id.clone(), config.name.clone())
                .with_federation(federation.clone()),
        );
        let exchanges = Arc::new(Exchanges::new(
            dir,
            &config.exchanges,
            ops.clone(),
            tasks.clone(),
            metrics.clone(),
        )?);
        let (stop, stopped) = watch::channel(false);
        let mut start = Start {
            dir,
            config,
            db: &db,
            metrics: &metrics,
            federation: &federation,
            ops: &ops,
            exchanges: &exchanges,
            health: reporter,
            tasks: &tasks,
            stopped,
            listeners: JoinSet::new(),
            sockets: Vec::new(),
        };
        let bound = async {
            let federation_addr = start.federation().await?;
            tasks.spawn(federation.clone().run());
            let (match_, match_socket) = start.match_().await?;
            let (admin, admin_socket) = start.admin().await?;
            let metrics = start.metrics().await?;
            start.gauges();
            exchanges.start();
            Ok::<_, ServerError>(Addresses {
                federation: federation_addr,
                match_,
                match_socket,
                admin,
                admin_socket,
                metrics,
            })
        }
        .await;
        let Start {
            listeners, sockets, ..
        } = start;
        match bound {
            Ok(addresses) => {
                tracing::info!(node = %config.node_id, "serving");
                Ok(Node {
                    addresses,
                    stop,
                    listeners,
                    tasks,
                    db,
                    metrics,
                    federation,
                    ops,
                })
            }
            Err(e) => {
                // What started stops at once: nobody has called it yet.
                let _ = stop.send(true);
                tasks.cut();
                let mut listeners = listeners;
                listeners.shutdown().await;
                if let Err(running) = tasks.wait(CUT_WAIT).await {
                    tracing::warn!(
                        running,
                        "tasks of a node that failed to start still running"
                    );
                }
                for path in sockets {
                    let _ = std::fs::remove_file(path);
                }
                Err(e)
            }
        }
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

    /// The node's tasks, for a test or a benchmark that wants to know
    /// how many are running.
    pub fn tasks(&self) -> &Tasks {
        &self.tasks
    }

    /// Completes when a listener stops on its own (an error: they run
    /// until [`Node::stop`]).
    pub async fn failed(&mut self) -> Result<(), ServerError> {
        match self.listeners.join_next().await {
            Some(Ok(result)) => result,
            Some(Err(e)) => Err(ServerError::Task(e.to_string())),
            None => std::future::pending().await,
        }
    }

    /// Joins the listeners until `deadline`; `false` if some still run.
    async fn join_listeners(
        &mut self,
        deadline: Instant,
        first_error: &mut Option<ServerError>,
    ) -> bool {
        tokio::time::timeout_at(deadline, async {
            while let Some(joined) = self.listeners.join_next().await {
                if let Ok(Err(e)) = joined {
                    first_error.get_or_insert(e);
                }
            }
        })
        .await
        .is_ok()
    }

    /// Stops the node, and returns once everything it started has ended:
    ///
    /// 1. background work (sync, the outbox, subscriptions, gauges) ends
    ///    and the listeners stop accepting; calls in flight run on for up
    ///    to `grace`;
    /// 2. connections still open then are cut (their calls fail), and the
    ///    listeners get [`CUT_WAIT`] more to end;
    /// 3. the node's tasks, blocking work included, are waited for (until
    ///    the grace period and [`CUT_WAIT`] are over: blocking work cannot
    ///    be interrupted).
    ///
    /// When it returns `Ok`, nothing the node started holds the database
    /// any more (see [`Node::into_database`]). Removes the Unix sockets.
    pub async fn stop(mut self, grace: Duration) -> Result<(), ServerError> {
        let deadline = Instant::now() + grace;
        self.tasks.stop();
        let _ = self.stop.send(true);
        let mut first_error = None;
        let drained = self.join_listeners(deadline, &mut first_error).await;
        if !drained {
            tracing::warn!("calls still running after the grace period; their connections are cut");
        }
        self.tasks.cut();
        if !drained
            && !self
                .join_listeners(Instant::now() + CUT_WAIT, &mut first_error)
                .await
        {
            self.listeners.shutdown().await;
            first_error.get_or_insert(ServerError::ListenerStuck);
        }
        let left = deadline.saturating_duration_since(Instant::now()) + CUT_WAIT;
        if let Err(running) = self.tasks.wait(left).await {
            tracing::warn!(running, "tasks still running after the node stopped");
            first_error.get_or_insert(ServerError::TasksRunning(running));
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

    /// Stops the node as [`Node::stop`] does and hands back the database
    /// it served, for the caller to close (which writes the index
    /// snapshot). The caller must have dropped its own handles first:
    /// then nothing else holds it, and if something still does, this says
    /// how many handles are left instead of waiting for them.
    pub async fn into_database(self, grace: Duration) -> Result<Database, ServerError> {
        let db = Arc::clone(&self.db);
        self.stop(grace).await?;
        Arc::try_unwrap(db).map_err(|db| ServerError::DatabaseInUse {
            holders: Arc::strong_count(&db) - 1,
        })
    }
}
fn local_addr(listener: &'static str, tcp: &TcpListener) -> Result<SocketAddr, ServerError> {
    tcp.local_addr().map_err(|source| ServerError::Bind {
        listener,
        address: "(bound)".into(),
        source,
    })
}
