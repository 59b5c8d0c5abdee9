//! How operator commands reach a node's admin service: over the node's
//! Unix socket when the node is running (the running node owns the
//! database, and writing through it keeps its index in step), or, when it
//! is not, by running the same service in this process over the database
//! opened directly. Either way the command sees the same answers.
//!
//! The admin socket also serves the match service (see [`hashfed::server`]),
//! so `hashfed match` makes the same MatchHashes and MatchImage calls as a
//! local service, to the running node or to the same service in-process.

use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use hashfed::database::Database;
use hashfed::identity::client::node_endpoint;
use hashfed::identity::tls::CertKey;
use hashfed::metrics::Metrics;
use hashfed::server::admin_socket;
use hashfed::service::admin::AdminService;
use hashfed::service::matching::MatchService;
use hashfed::store::StoreOptions;
use hashfed::wire::proto::{
    self, admin_client::AdminClient, admin_server::Admin, match_client::MatchClient,
    match_server::Match,
};
use tokio_stream::{Stream, StreamExt};
use tonic::transport::Channel;
use tonic::Request;

/// An operator's certificate and key (from `hashfed client issue
/// --operator`), and where the node's admin listener is.
#[derive(clap::Args, Debug, Clone)]
pub struct OperatorArgs {
    /// Act as the operator with this certificate (PEM), over the node's
    /// admin listener: needed where the node must know who acts (vetting).
    #[arg(long, value_name = "PEM", global = true, requires = "operator_key")]
    pub operator_cert: Option<std::path::PathBuf>,
    /// The operator certificate's private key.
    #[arg(long, value_name = "KEY", global = true, requires = "operator_cert")]
    pub operator_key: Option<std::path::PathBuf>,
    /// The admin listener (default: listen.admin in hashfed.toml).
    #[arg(long, value_name = "HOST:PORT", global = true)]
    pub admin_addr: Option<String>,
}

/// Where [`NodeAdmin::open_as`] connects, as whom.
pub struct OperatorLogin {
    /// Certificate (PEM file).
    pub cert: std::path::PathBuf,
    /// Key (PEM file).
    pub key: std::path::PathBuf,
    /// The admin listener, if not the configured one.
    pub addr: Option<String>,
}

impl OperatorArgs {
    /// The login these options name, if any.
    pub fn login(&self) -> Option<OperatorLogin> {
        Some(OperatorLogin {
            cert: self.operator_cert.clone()?,
            key: self.operator_key.clone()?,
            addr: self.admin_addr.clone(),
        })
    }
}

/// The admin service of a node, running or not.
pub struct NodeAdmin {
    runtime: tokio::runtime::Runtime,
    via: Via,
}

enum Via {
    /// The running node, over its admin socket (or, from
    /// [`NodeAdmin::open_as`], its admin listener, which serves no match
    /// service: match calls there are refused as unimplemented).
    Socket {
        admin: AdminClient<Channel>,
        /// Boxed: two clients side by side make the enum twice the size of
        /// the in-process variant.
        matcher: Box<MatchClient<Channel>>,
    },
    /// The services in this process, over the database opened here.
    InProcess {
        admin: AdminService,
        matcher: MatchService,
        db: Arc<Database>,
    },
}

impl Via {
    /// Both services over one connection to a node.
    fn socket(channel: Channel) -> Self {
        Via::Socket {
            admin: AdminClient::new(channel.clone()),
            // The owner's own node: its answers are not limited in size, as
            // a match on the database opened here is not (a wide radius can
            // match many entries).
            matcher: Box::new(MatchClient::new(channel).max_decoding_message_size(usize::MAX)),
        }
    }
}

/// A call the node refused, with its gRPC code, so that a command can tell
/// "not found" (exit 1, as grep) from a failure (exit 2).
#[derive(Debug)]
pub struct Refused {
    /// The gRPC code.
    pub code: tonic::Code,
    /// The node's message.
    pub message: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Refused {}

/// Whether `e` is the node saying that what was asked for does not exist.
pub fn is_not_found(e: &anyhow::Error) -> bool {
    e.downcast_ref::<Refused>()
        .is_some_and(|r| r.code == tonic::Code::NotFound)
}

/// A small runtime for driving one command's calls.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// The admin service of the node in `dir`, if that node is running.
pub fn running(runtime: &tokio::runtime::Runtime, dir: &Path) -> Option<AdminClient<Channel>> {
    running_channel(runtime, dir).map(AdminClient::new)
}

/// A connection to the admin socket of the node in `dir`, if it runs.
fn running_channel(runtime: &tokio::runtime::Runtime, dir: &Path) -> Option<Channel> {
    let socket = admin_socket(dir);
    if !socket.exists() {
        return None;
    }
    runtime
        .block_on(hashfed::service::client::unix_channel(&socket))
        .ok()
}

/// A gRPC status as a CLI error: the node's message is the useful part
/// (the code stays readable with [`is_not_found`]).
pub fn status(e: tonic::Status) -> anyhow::Error {
    anyhow::Error::new(Refused {
        code: e.code(),
        message: e.message().to_owned(),
    })
}

/// Makes one call, over the socket or in-process: the same request type
/// and answer either way. The admin service's unless `match:` says the
/// match service's.
macro_rules! call {
    ($self:ident, match: $method:ident, $request:expr) => {
        call!(@ $self, matcher, $method, $request)
    };
    ($self:ident, $method:ident, $request:expr) => {
        call!(@ $self, admin, $method, $request)
    };
    (@ $self:ident, $service:ident, $method:ident, $request:expr) => {{
        let request = $request;
        let answer = match &mut $self.via {
            Via::Socket { $service: client, .. } => {
                $self.runtime.block_on(client.$method(request))
            }
            Via::InProcess {
                $service: service, ..
            } => $self
                .runtime
                .block_on(service.$method(Request::new(request))),
        };
        Ok(answer.map_err(status)?.into_inner())
    }};
}

/// Writes every chunk of a streamed answer to `out` and returns the bytes
/// written; `data` takes a message's bytes out; `what` names the output in
/// a write error.
fn drain<T>(
    runtime: &tokio::runtime::Runtime,
    mut stream: std::pin::Pin<Box<dyn Stream<Item = Result<T, tonic::Status>> + Send>>,
    out: &mut impl std::io::Write,
    what: &str,
    mut data: impl FnMut(T) -> Vec<u8>,
) -> anyhow::Result<u64> {
    let mut bytes = 0;
    while let Some(message) = runtime.block_on(stream.next()) {
        let chunk = data(message.map_err(status)?);
        out.write_all(&chunk)
            .with_context(|| format!("writing {what}"))?;
        bytes += chunk.len() as u64;
    }
    Ok(bytes)
}

impl NodeAdmin {
    /// Reaches the node in `dir`: the running node through its admin
    /// socket, else its database opened here. A directory with neither a
    /// node's configuration nor a database is refused (rather than given an
    /// empty database, which would answer every question with nothing).
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let runtime = runtime()?;
        if let Some(channel) = running_channel(&runtime, dir) {
            return Ok(NodeAdmin {
                runtime,
                via: Via::socket(channel),
            });
        }
        if !dir.join("hashfed.toml").is_file() && !super::store_dir(dir).exists() {
            bail!(
                "{} is not a node directory (no hashfed.toml, no store): `hashfed init --dir {0}` makes one",
                dir.display()
            );
        }
        let config = hashfed::identity::load_config(dir).ok();
        let db = Arc::new(Database::open(
            &super::store_dir(dir),
            &StoreOptions::default(),
        )?);
        let service = match config {
            Some(config) => {
                let fed = hashfed::federation::Federation::for_node(
                    dir,
                    &config,
                    db.clone(),
                    Default::default(),
                    Default::default(),
                )?;
                let service =
                    AdminService::new(db.clone(), config.node_id.clone(), config.name.clone())
                        .with_federation(fed);
                let exchanges = hashfed::exchange::Exchanges::new(
                    dir,
                    &config.exchanges,
                    service.ops().clone(),
                    Default::default(),
                    Arc::new(Metrics::new(&[])),
                )?;
                service.with_exchanges(Arc::new(exchanges))
            }
            None => AdminService::new(db.clone(), String::new(), String::new()),
        };
        // Its counts go nowhere: no metrics endpoint runs here.
        let matcher =
            MatchService::new(db.clone(), Arc::new(Metrics::new(&[]))).without_match_records();
        Ok(NodeAdmin {
            runtime,
            via: Via::InProcess {
                admin: service,
                matcher,
                db,
            },
        })
    }

    /// Reaches the running node in `dir` as the operator whose certificate
    /// `login` names, over the admin listener (mTLS, pinned to the node's
    /// CA): the node then knows who acts (two-person vetting needs it).
    /// Without `login`, the same as [`NodeAdmin::open`].
    pub fn open_as(dir: &Path, login: Option<&OperatorLogin>) -> anyhow::Result<Self> {
        let Some(login) = login else {
            return Self::open(dir);
        };
        let config = hashfed::identity::load_config(dir)
            .with_context(|| format!("reading {}", dir.join("hashfed.toml").display()))?;
        let read = |p: &Path| {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
        };
        let operator = CertKey {
            cert: read(&login.cert)?,
            key: read(&login.key)?,
        };
        let addr = login.addr.clone().unwrap_or(config.listen.admin);
        let endpoint = node_endpoint(
            dir,
            &addr,
            &format!("{}.hashfed", config.node_id),
            Some(&operator),
        )
        .with_context(|| format!("dialling the admin listener at {addr}"))?;
        let runtime = runtime()?;
        let channel = runtime
            .block_on(async {
                endpoint
                    .connect_timeout(std::time::Duration::from_secs(5))
                    .connect()
                    .await
            })
            .with_context(|| format!("connecting to the admin listener at {addr}"))?;
        Ok(NodeAdmin {
            runtime,
            via: Via::socket(channel),
        })
    }

    /// Whether the commands go to a running node.
    pub fn is_remote(&self) -> bool {
        matches!(self.via, Via::Socket { .. })
    }

    /// Looks hashes up (MatchHashes: 1 to 1024 queries).
    pub fn match_hashes(
        &mut self,
        request: proto::MatchRequest,
    ) -> anyhow::Result<proto::MatchResponse> {
        call!(self, match: match_hashes, request)
    }

    /// Hashes an image and looks its hashes up (MatchImage).
    pub fn match_image(
        &mut self,
        request: proto::MatchImageRequest,
    ) -> anyhow::Result<proto::MatchImageResponse> {
        call!(self, match: match_image, request)
    }

    /// The store's consistency check.
    pub fn verify(&mut self) -> anyhow::Result<proto::VerifyResponse> {
        call!(self, verify, proto::VerifyRequest {})
    }

    /// Streams an export into `out`; returns how many entries it holds. An
    /// export that ends without the node's last message is an error: the
    /// bytes written are then not the whole export.
    pub fn export(
        &mut self,
        request: proto::ExportRequest,
        out: &mut impl std::io::Write,
    ) -> anyhow::Result<u64> {
        let runtime = &self.runtime;
        let stream: std::pin::Pin<
            Box<dyn Stream<Item = Result<proto::ExportChunk, tonic::Status>> + Send>,
        > = match &mut self.via {
            Via::Socket { admin, .. } => Box::pin(
                runtime
                    .block_on(admin.export(request))
                    .map_err(status)?
                    .into_inner(),
            ),
            Via::InProcess { admin, .. } => runtime
                .block_on(admin.export(Request::new(request)))
                .map_err(status)?
                .into_inner(),
        };
        let mut entries = None;
        drain(runtime, stream, out, "the export", |chunk| {
            if chunk.done {
                entries = Some(chunk.entries);
            }
            chunk.data
        })?;
        entries.ok_or_else(|| anyhow!("the export ended before the node finished it"))
    }

    /// Every set.
    pub fn list_sets(&mut self) -> anyhow::Result<proto::ListSetsResponse> {
        call!(self, list_sets, proto::ListSetsRequest {})
    }

    /// One entry.
    pub fn get_entry(&mut self, id: String) -> anyhow::Result<proto::Entry> {
        call!(self, get_entry, proto::EntryRef { id })
    }

    /// Retracts an entry.
    pub fn retract(&mut self, id: String, reason: String) -> anyhow::Result<proto::Entry> {
        call!(self, retract, proto::RetractRequest { id, reason })
    }

    /// Disables or enables an entry on this node.
    pub fn set_disabled(&mut self, id: String, disabled: bool) -> anyhow::Result<proto::Entry> {
        call!(
            self,
            set_entry_disabled,
            proto::SetEntryDisabledRequest { id, disabled }
        )
    }

    /// Counts.
    pub fn stats(&mut self) -> anyhow::Result<proto::StatsResponse> {
        call!(self, stats, proto::StatsRequest {})
    }

    /// The live exchanges with their state.
    pub fn list_exchanges(&mut self) -> anyhow::Result<proto::ListExchangesResponse> {
        call!(self, list_exchanges, proto::ListExchangesRequest {})
    }

    /// One pass of exchange `name` now.
    pub fn fetch_exchange(&mut self, name: String) -> anyhow::Result<proto::ExchangeStatus> {
        call!(self, fetch_exchange, proto::ExchangeRef { name })
    }

    /// Forgets exchange `name`'s cursor.
    pub fn reset_exchange(&mut self, name: String) -> anyhow::Result<proto::ExchangeStatus> {
        call!(self, reset_exchange, proto::ExchangeRef { name })
    }

    /// Every peer.
    pub fn list_peers(&mut self) -> anyhow::Result<proto::ListPeersResponse> {
        call!(self, list_peers, proto::ListPeersRequest {})
    }

    /// Adds a peer from its card.
    pub fn add_peer(&mut self, request: proto::AddPeerRequest) -> anyhow::Result<proto::Peer> {
        call!(self, add_peer, request)
    }

    /// Replaces a peer's grants.
    pub fn set_peer_grants(
        &mut self,
        request: proto::SetPeerGrantsRequest,
    ) -> anyhow::Result<proto::Peer> {
        call!(self, set_peer_grants, request)
    }

    /// Suspends, resumes or revokes a peer.
    pub fn set_peer_status(&mut self, name: String, status: &str) -> anyhow::Result<proto::Peer> {
        call!(
            self,
            set_peer_status,
            proto::SetPeerStatusRequest {
                name,
                status: status.to_owned()
            }
        )
    }

    /// Changes an own set's policy.
    pub fn set_policy(
        &mut self,
        request: proto::SetPolicyRequest,
    ) -> anyhow::Result<proto::SetSummary> {
        call!(self, set_policy, request)
    }

    /// Creates an own set (a block list or an allowlist).
    pub fn create_set(
        &mut self,
        request: proto::CreateSetRequest,
    ) -> anyhow::Result<proto::SetSummary> {
        call!(self, create_set, request)
    }

    /// Compares sets with peers.
    pub fn verify_sets(&mut self) -> anyhow::Result<proto::VerifySetsResponse> {
        call!(self, verify_sets, proto::VerifySetsRequest {})
    }

    /// Feedback received from peers.
    pub fn received_feedback(&mut self) -> anyhow::Result<proto::ListReceivedFeedbackResponse> {
        call!(
            self,
            list_received_feedback,
            proto::ListReceivedFeedbackRequest {}
        )
    }

    /// Sets how many reviewers must confirm each new entry of a set.
    pub fn set_vetting(
        &mut self,
        set: String,
        reviewers: u32,
    ) -> anyhow::Result<proto::SetSummary> {
        call!(
            self,
            set_vetting,
            proto::SetVettingRequest { set, reviewers }
        )
    }

    /// Puts an entry up for vetting.
    pub fn submit_entry(
        &mut self,
        request: proto::SubmitEntryRequest,
    ) -> anyhow::Result<proto::PendingEntry> {
        call!(self, submit_entry, request)
    }

    /// Confirms a pending entry (as the caller).
    pub fn confirm_entry(&mut self, id: String) -> anyhow::Result<proto::ConfirmEntryResponse> {
        call!(self, confirm_entry, proto::EntryRef { id })
    }

    /// Withdraws a pending entry.
    pub fn reject_entry(
        &mut self,
        id: String,
        reason: String,
    ) -> anyhow::Result<proto::PendingEntry> {
        call!(self, reject_entry, proto::RejectEntryRequest { id, reason })
    }

    /// Entries waiting for confirmations.
    pub fn list_pending(&mut self, set: String) -> anyhow::Result<proto::ListPendingResponse> {
        call!(self, list_pending, proto::ListPendingRequest { set })
    }

    /// Switches a set off (or on) on this node.
    pub fn set_suppressed(
        &mut self,
        set: String,
        suppressed: bool,
        reason: String,
    ) -> anyhow::Result<proto::SetSummary> {
        call!(
            self,
            set_suppressed,
            proto::SetSuppressedRequest {
                set,
                suppressed,
                reason
            }
        )
    }

    /// Sets a set's dispute policy.
    pub fn set_dispute_policy(
        &mut self,
        request: proto::SetDisputePolicyRequest,
    ) -> anyhow::Result<proto::SetSummary> {
        call!(self, set_dispute_policy, request)
    }

    /// The dispute review queue.
    pub fn list_disputes(&mut self, set: String) -> anyhow::Result<proto::ListDisputesResponse> {
        call!(self, list_disputes, proto::ListDisputesRequest { set })
    }

    /// Reviews a disputed entry.
    pub fn review_dispute(
        &mut self,
        request: proto::ReviewDisputeRequest,
    ) -> anyhow::Result<proto::Entry> {
        call!(self, review_dispute, request)
    }

    /// Streams a backup of the database into `out`; returns its bytes.
    pub fn backup(&mut self, out: &mut impl std::io::Write) -> anyhow::Result<u64> {
        let request = proto::BackupRequest {};
        let runtime = &self.runtime;
        let stream: std::pin::Pin<
            Box<dyn Stream<Item = Result<proto::BackupChunk, tonic::Status>> + Send>,
        > = match &mut self.via {
            Via::Socket { admin, .. } => Box::pin(
                runtime
                    .block_on(admin.backup(request))
                    .map_err(status)?
                    .into_inner(),
            ),
            Via::InProcess { admin, .. } => runtime
                .block_on(admin.backup(Request::new(request)))
                .map_err(status)?
                .into_inner(),
        };
        drain(runtime, stream, out, "the backup", |chunk| chunk.data)
    }

    /// Switches review of a peer's entries.
    pub fn set_peer_review(&mut self, name: String, review: bool) -> anyhow::Result<proto::Peer> {
        call!(
            self,
            set_peer_review,
            proto::SetPeerReviewRequest { name, review }
        )
    }

    /// Entries held for review.
    pub fn list_held(&mut self, set: String) -> anyhow::Result<proto::ListHeldResponse> {
        call!(self, list_held, proto::ListHeldRequest { set, limit: 0 })
    }

    /// Releases held entries (one by id, or a set's).
    pub fn release_held(
        &mut self,
        id: String,
        set: String,
    ) -> anyhow::Result<proto::ReleaseHeldResponse> {
        call!(self, release_held, proto::ReleaseHeldRequest { id, set })
    }

    /// The transparency report.
    pub fn report(&mut self, from_day: u32, to_day: u32) -> anyhow::Result<proto::ReportResponse> {
        call!(self, report, proto::ReportRequest { from_day, to_day })
    }

    /// Audit records after `after_seq`.
    pub fn list_audit(
        &mut self,
        after_seq: u64,
        limit: u32,
    ) -> anyhow::Result<proto::ListAuditResponse> {
        call!(
            self,
            list_audit,
            proto::ListAuditRequest { after_seq, limit }
        )
    }

    /// Rotates the signing key and/or renews the certificates.
    pub fn rotate_keys(
        &mut self,
        signing: bool,
        tls: bool,
    ) -> anyhow::Result<proto::RotateKeysResponse> {
        call!(self, rotate_keys, proto::RotateKeysRequest { signing, tls })
    }

    /// Checks the audit log's chain and signed head.
    pub fn verify_audit(&mut self) -> anyhow::Result<proto::VerifyAuditResponse> {
        call!(self, verify_audit, proto::VerifyAuditRequest {})
    }

    /// Ends the session; an in-process database is closed cleanly (which
    /// leaves a current index snapshot for the next start).
    pub fn close(self) -> anyhow::Result<()> {
        let NodeAdmin { runtime, via } = self;
        drop(runtime);
        if let Via::InProcess { admin, matcher, db } = via {
            drop(admin);
            drop(matcher);
            let db =
                Arc::try_unwrap(db).map_err(|_| anyhow!("the database is still in use at exit"))?;
            db.close()?;
        }
        Ok(())
    }
}
