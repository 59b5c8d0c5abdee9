//! How operator commands reach a node's admin service: over the node's
//! Unix socket when the node is running (the running node owns the
//! database, and writing through it keeps its index in step), or, when it
//! is not, by running the same service in this process over the database
//! opened directly. Either way the command sees the same answers.

use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use hashfed::database::Database;
use hashfed::identity::client::node_endpoint;
use hashfed::identity::tls::CertKey;
use hashfed::server::admin_socket;
use hashfed::service::admin::AdminService;
use hashfed::service::proto::{self, admin_client::AdminClient, admin_server::Admin};
use hashfed::store::StoreOptions;
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
    /// The running node, over its admin socket.
    Socket(AdminClient<Channel>),
    /// The service in this process, over the database opened here.
    InProcess {
        service: AdminService,
        db: Arc<Database>,
    },
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
    let socket = admin_socket(dir);
    if !socket.exists() {
        return None;
    }
    let channel = runtime
        .block_on(hashfed::service::client::unix_channel(&socket))
        .ok()?;
    Some(AdminClient::new(channel))
}

/// A gRPC status as a CLI error: the node's message is the useful part.
pub fn status(e: tonic::Status) -> anyhow::Error {
    anyhow!("{}", e.message())
}

/// Makes one admin call, over the socket or in-process: the same request
/// type and answer either way.
macro_rules! call {
    ($self:ident, $method:ident, $request:expr) => {{
        let request = $request;
        let answer = match &mut $self.via {
            Via::Socket(client) => $self.runtime.block_on(client.$method(request)),
            Via::InProcess { service, .. } => $self
                .runtime
                .block_on(service.$method(Request::new(request))),
        };
        Ok(answer.map_err(status)?.into_inner())
    }};
}

impl NodeAdmin {
    /// Reaches the node in `dir`.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let runtime = runtime()?;
        if let Some(client) = running(&runtime, dir) {
            return Ok(NodeAdmin {
                runtime,
                via: Via::Socket(client),
            });
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
                )?;
                AdminService::new(db.clone(), config.node_id, config.name).with_federation(fed)
            }
            None => AdminService::new(db.clone(), String::new(), String::new()),
        };
        Ok(NodeAdmin {
            runtime,
            via: Via::InProcess { service, db },
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
            via: Via::Socket(AdminClient::new(channel)),
        })
    }

    /// Whether the commands go to a running node.
    pub fn is_remote(&self) -> bool {
        matches!(self.via, Via::Socket(_))
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
        use tokio_stream::StreamExt;
        let request = proto::BackupRequest {};
        let runtime = &self.runtime;
        let mut stream: std::pin::Pin<
            Box<dyn tokio_stream::Stream<Item = Result<proto::BackupChunk, tonic::Status>> + Send>,
        > = match &mut self.via {
            Via::Socket(client) => Box::pin(
                runtime
                    .block_on(client.backup(request))
                    .map_err(status)?
                    .into_inner(),
            ),
            Via::InProcess { service, .. } => runtime
                .block_on(service.backup(Request::new(request)))
                .map_err(status)?
                .into_inner(),
        };
        let mut bytes = 0;
        while let Some(chunk) = runtime.block_on(stream.next()) {
            let chunk = chunk.map_err(status)?;
            out.write_all(&chunk.data).context("writing the backup")?;
            bytes += chunk.data.len() as u64;
        }
        Ok(bytes)
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
        if let Via::InProcess { service, db } = via {
            drop(service);
            let db =
                Arc::try_unwrap(db).map_err(|_| anyhow!("the database is still in use at exit"))?;
            db.close()?;
        }
        Ok(())
    }
}
