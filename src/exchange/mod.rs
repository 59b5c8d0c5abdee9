//! Live exchanges: keeping a set current from an outside hash-sharing
//! service (NCMEC's Hash Sharing API, StopNCII, Meta's ThreatExchange,
//! Tech Against Terrorism's TCAP), and sending providers' feedback back.
//!
//! One module per service (`ncmec.rs`, `stopncii.rs`, `threatexchange.rs`,
//! `tcap.rs`), each written from the service's public description, each
//! turning the service's pages into the importer's items
//! ([`crate::import::ImportItem`]: add this hash, withdraw this hash or
//! everything that came with this source record), so that what an
//! exchange brings in goes through the same operation, checks and audit
//! as a file import. A client knows its API's paging and says where the
//! next page starts (its [`Page::cursor`], opaque to everyone else); the
//! fetcher (`fetch.rs`) writes that cursor in the same batch as the
//! records it covers, so a crash never skips or repeats a page.
//!
//! HTTP goes through [`http::Http`] (deadlines, body limits, TLS by
//! `identity::https`); credentials come from an owner-only file and are
//! never logged ([`Credentials`]).

mod fetch;
pub mod http;
pub mod ncmec;
pub mod standin;
pub mod stopncii;
pub mod tcap;
pub mod text;
pub mod threatexchange;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{ExchangeConfig, ExchangeKind};
use crate::import::ImportItem;
use crate::model::{Signal, Verdict};

pub use fetch::{Exchanges, FetchError, Pass};

/// Why an exchange could not do what was asked. Most are worth a retry
/// ([`ExchangeError::retryable`]); the others need an operator.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// The exchange's configuration is wrong (bad endpoint, missing
    /// filter).
    #[error("configuration: {0}")]
    Config(String),
    /// The credentials file is missing, unreadable, too open or lacks a
    /// field.
    #[error("credentials {path}: {reason}")]
    Credentials {
        /// The file.
        path: PathBuf,
        /// What is wrong (never the secret).
        reason: String,
    },
    /// TLS set-up or handshake.
    #[error("TLS")]
    Tls(#[source] crate::identity::IdentityError),
    /// Connecting, or the connection broke.
    #[error("{0}")]
    Transport(String),
    /// The request took longer than the exchange's timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The service asked us to slow down (HTTP 429). Shown in `hashfed
    /// exchange status`: "rate limited (retry after 2s)", or "rate
    /// limited" when the service named no time.
    #[error("rate limited{}", .retry_after.map(|d| format!(" (retry after {d:?})")).unwrap_or_default())]
    RateLimited {
        /// What its `Retry-After` said.
        retry_after: Option<Duration>,
    },
    /// The service failed (HTTP 5xx).
    #[error("the service failed (HTTP {status})")]
    Server {
        /// The status.
        status: u16,
    },
    /// The service refused the request (HTTP 4xx other than 429: bad
    /// credentials, a bad request).
    #[error("the service refused the request (HTTP {status}): {message}")]
    Refused {
        /// The status.
        status: u16,
        /// The start of what it said.
        message: String,
    },
    /// An answer larger than the limit.
    #[error("an answer larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// An answer that does not parse at all (a page with some bad
    /// records is a [`Page`] with [`Page::skipped`] instead).
    #[error("malformed answer: {0}")]
    Malformed(String),
    /// The service went back: a cursor older than the one we hold.
    #[error("the service's cursor went back ({0}); kept ours")]
    CursorBack(String),
    /// The service has no such operation (e.g. feedback).
    #[error("{0}")]
    Unsupported(&'static str),
}

impl ExchangeError {
    /// Whether trying again later may succeed (transport, timeouts, rate
    /// limits, 5xx, malformed answers, a cursor that went back); refusals
    /// and configuration errors wait for an operator, though they are
    /// retried too, slowly.
    pub fn retryable(&self) -> bool {
        !matches!(
            self,
            ExchangeError::Config(_)
                | ExchangeError::Credentials { .. }
                | ExchangeError::Refused { .. }
                | ExchangeError::Unsupported(_)
        )
    }

    /// How long the service asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ExchangeError::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }
}

/// A record of a page that was skipped: why, and where (never its values).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// The service's id for it, if it had one.
    pub id: Option<String>,
    /// Why.
    pub reason: String,
}

/// One page of a service's list.
#[derive(Clone, Debug, Default)]
pub struct Page {
    /// What it adds and withdraws, in the service's order. External ids
    /// are `<kind>:<service id>` (e.g. `ncmec:<member>:<entry>`), the same
    /// in adds and withdrawals.
    pub items: Vec<ImportItem>,
    /// Records skipped (malformed, unknown signal type): counted, logged
    /// with their reason, never a reason to stall.
    pub skipped: Vec<Skipped>,
    /// Where the next page starts (the client's own format; "" for the
    /// beginning). Written with this page's records.
    pub cursor: String,
    /// More pages wait now; `false` once caught up (the fetcher waits its
    /// interval).
    pub more: bool,
}

/// A provider's verdict on a match of an entry that came from an
/// exchange, on its way back to the service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutgoingFeedback {
    /// The entry's external id (`<kind>:...`, as its page gave it).
    pub external_id: String,
    /// The entry's hash (some services take feedback per fingerprint).
    pub signal: Signal,
    /// Confirmed, or a false positive.
    pub verdict: Verdict,
    /// The reason code's name (e.g. `benign_collision`); "" for none.
    pub reason: String,
}

/// A secret from a credentials file: never printed.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, to put in a request.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[secret]")
    }
}

/// An exchange's credentials: named fields of a TOML file (`user`,
/// `password`, `token`, ... : each client says which it needs), owner-only.
#[derive(Clone, Debug)]
pub struct Credentials {
    path: PathBuf,
    fields: BTreeMap<String, Secret>,
}

impl Credentials {
    /// Reads `path`, which must be a regular file readable and writable by
    /// its owner only (mode 0600 or stricter): anything more open is
    /// refused, since these are the node's keys to outside services.
    pub fn load(path: &Path) -> Result<Self, ExchangeError> {
        let fail = |reason: String| ExchangeError::Credentials {
            path: path.to_owned(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
        if !meta.is_file() {
            return Err(fail("not a file".into()));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(fail(format!(
                    "mode {mode:04o} lets others read it; chmod 600 it"
                )));
            }
        }
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        // The parser's message may quote the line: say where, not what.
        let fields: BTreeMap<String, Secret> = toml::from_str(&text).map_err(|e| {
            fail(match e.span() {
                Some(span) => format!("not TOML of string fields (at byte {})", span.start),
                None => "not TOML of string fields".into(),
            })
        })?;
        Ok(Credentials {
            path: path.to_owned(),
            fields,
        })
    }

    /// Credentials from fields, for tests and tools.
    pub fn from_fields(fields: impl IntoIterator<Item = (String, String)>) -> Self {
        Credentials {
            path: PathBuf::from("(given)"),
            fields: fields.into_iter().map(|(k, v)| (k, Secret(v))).collect(),
        }
    }

    /// The field `name`, or an error naming the file and the field.
    pub fn get(&self, name: &str) -> Result<&Secret, ExchangeError> {
        self.fields
            .get(name)
            .filter(|s| !s.0.is_empty())
            .ok_or_else(|| ExchangeError::Credentials {
                path: self.path.clone(),
                reason: format!("no `{name}` field"),
            })
    }

    /// The field `name`, if there.
    pub fn optional(&self, name: &str) -> Option<&Secret> {
        self.fields.get(name).filter(|s| !s.0.is_empty())
    }
}

/// `filters.signal_types` as signal types (empty: take every type), for
/// the clients whose services name types as hashfed does.
pub(crate) fn signal_types(
    config: &ExchangeConfig,
) -> Result<Vec<crate::model::SignalType>, ExchangeError> {
    config
        .filters
        .signal_types
        .iter()
        .map(|name| {
            crate::model::SignalType::parse(name)
                .map_err(|e| ExchangeError::Config(format!("filters.signal_types: {e}")))
        })
        .collect()
}

/// A client of one exchange, whichever service it is.
#[derive(Debug)]
pub enum Client {
    /// NCMEC Hash Sharing v2.
    Ncmec(ncmec::Client),
    /// StopNCII.
    Stopncii(stopncii::Client),
    /// ThreatExchange.
    Threatexchange(threatexchange::Client),
    /// TCAP.
    Tcap(tcap::Client),
}

impl Client {
    /// The client `config` describes, with its credentials, over `http`.
    pub fn new(
        config: &ExchangeConfig,
        credentials: Credentials,
        http: http::Http,
    ) -> Result<Self, ExchangeError> {
        Ok(match config.kind {
            ExchangeKind::Ncmec => Client::Ncmec(ncmec::Client::new(config, credentials, http)?),
            ExchangeKind::Stopncii => {
                Client::Stopncii(stopncii::Client::new(config, credentials, http)?)
            }
            ExchangeKind::Threatexchange => {
                Client::Threatexchange(threatexchange::Client::new(config, credentials, http)?)
            }
            ExchangeKind::Tcap => Client::Tcap(tcap::Client::new(config, credentials, http)?),
        })
    }

    /// The client for `config`, its credentials and CA file read from the
    /// node directory `dir` (relative paths are inside it).
    pub fn for_node(dir: &Path, config: &ExchangeConfig) -> Result<Self, ExchangeError> {
        let in_dir = |p: &str| {
            let p = Path::new(p);
            if p.is_absolute() {
                p.to_owned()
            } else {
                dir.join(p)
            }
        };
        let credentials = Credentials::load(&in_dir(&config.credentials))?;
        let ca = config.ca_file.as_deref().map(in_dir);
        let http = http::Http::new(
            &config.endpoint,
            ca.as_deref(),
            Duration::from_secs(config.timeout_secs.max(1)),
            http::MAX_BODY,
        )?;
        Client::new(config, credentials, http)
    }

    /// The page after `cursor` ("" for the first).
    pub async fn fetch(&mut self, cursor: &str) -> Result<Page, ExchangeError> {
        match self {
            Client::Ncmec(c) => c.fetch(cursor).await,
            Client::Stopncii(c) => c.fetch(cursor).await,
            Client::Threatexchange(c) => c.fetch(cursor).await,
            Client::Tcap(c) => c.fetch(cursor).await,
        }
    }

    /// Sends one verdict back to the service, in its vocabulary.
    pub async fn send_feedback(
        &mut self,
        feedback: &OutgoingFeedback,
    ) -> Result<(), ExchangeError> {
        match self {
            Client::Ncmec(c) => c.send_feedback(feedback).await,
            Client::Stopncii(c) => c.send_feedback(feedback).await,
            Client::Threatexchange(c) => c.send_feedback(feedback).await,
            Client::Tcap(c) => c.send_feedback(feedback).await,
        }
    }
}
