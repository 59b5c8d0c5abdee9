//! The live exchanges' operations: a page of an outside service's list
//! applied to its set with the cursor past it (one batch, one audit
//! record), an exchange's state, a failure noted, a reset.
//!
//! What fetches the pages (the service clients, the schedule, the lease)
//! is `crate::exchange`, above this layer; here is only what touches the
//! database, the same for a scheduled fetch, `hashfed exchange fetch` on
//! a running node and on a stopped one.

use std::collections::BTreeMap;

use super::{Actor, Ops, OpsError};
use crate::config::ExchangeConfig;
use crate::import::load::to_change;
use crate::import::ImportItem;
use crate::model::audit::Action;
use crate::model::exchange::{ExchangeState, FeedbackOut};
use crate::model::{EntryId, SetId};
use crate::store::{Change, Outcome};

/// What the operations make of one page.
#[derive(Clone, Debug)]
pub struct ExchangePage {
    /// Its items, in the service's order.
    pub items: Vec<ImportItem>,
    /// Records the client skipped (counted with the page).
    pub skipped: u64,
    /// Where the next page starts.
    pub cursor: String,
    /// Whether the service has no more for now.
    pub caught_up: bool,
}

/// What the retractions an exchange makes say in the log.
const WITHDRAWN: &str = "withdrawn by the exchange";

/// What the withdrawal of a hash its record no longer has says.
const NO_LONGER: &str = "no longer in the exchange's record";

impl Ops {
    /// The state of exchange `name` (the default if it never ran). What it
    /// counts matches: it is read once the page that wrote it is in the
    /// indexes too.
    pub fn exchange_state(&self, name: &str) -> Result<ExchangeState, OpsError> {
        Ok(self
            .db
            .settled(|store| store.exchange_state(name))?
            .map(|b| {
                ExchangeState::from_bytes(&b).ok_or_else(|| {
                    OpsError::Precondition(format!(
                        "the stored state of exchange {name} is damaged"
                    ))
                })
            })
            .transpose()?
            .unwrap_or_default())
    }

    /// Applies one page of exchange `config` to its set (created, and
    /// audited, at the first page): the page's changes, the cursor past
    /// them and the counts, with one audit record, in one batch. A record
    /// a page brings is the whole record: the set's hashes with its
    /// external id that the page does not bring again are withdrawn.
    /// Items the set refuses (a hash that does not parse, a label outside
    /// its vocabulary) are skipped and counted.
    pub fn apply_exchange_page(
        &self,
        config: &ExchangeConfig,
        page: ExchangePage,
    ) -> Result<ExchangeState, OpsError> {
        let actor = Actor::new(format!("exchange:{}", config.name));
        let id: SetId = config
            .set
            .parse()
            .map_err(|e| OpsError::Invalid(format!("exchange {}: set: {e}", config.name)))?;
        let set = self
            .ensure_set(&actor, &id, &format!("by exchange {}", config.name))?
            .info;
        let mut changes = Vec::with_capacity(page.items.len());
        let mut skipped = page.skipped;
        for item in page.items {
            match to_change(&set, item.op, WITHDRAWN) {
                Ok(change) => changes.push(change),
                Err(why) => {
                    skipped += 1;
                    tracing::debug!(exchange = %config.name, position = %item.position, reason = %why, "record skipped");
                }
            }
        }
        // A page carries each record whole: a hash its record no longer
        // has (an NCMEC entry whose fingerprints changed) is withdrawn
        // after the page's own changes, or it would match forever.
        let own = changes.len();
        let mut kept: BTreeMap<String, Vec<EntryId>> = BTreeMap::new();
        for change in &changes {
            if let Change::Add(data) = change {
                if let Some(external_id) = &data.external_id {
                    let entry = EntryId::derive(&id, &data.signal);
                    kept.entry(external_id.clone()).or_default().push(entry);
                }
            }
        }
        changes.extend(
            kept.into_iter()
                .map(|(external_id, keep)| Change::RetractExternalExcept {
                    external_id,
                    keep,
                    reason: NO_LONGER.to_owned(),
                }),
        );
        let now = crate::database::now_ms();
        let (cursor, caught_up) = (page.cursor, page.caught_up);
        // The state is read and written inside the batch (under the
        // writer lock, so a verdict counted meanwhile is not lost), with
        // the counts of what the changes did.
        let name = config.name.clone();
        let mut written = ExchangeState::default();
        self.db.apply_exchange_page(
            &id,
            &changes,
            &name,
            |current, applied| {
                let mut state = read_state(current);
                state.cursor.clone_from(&cursor);
                state.last_success_ms = now;
                if caught_up {
                    state.caught_up_ms = now;
                }
                state.last_error.clear();
                state.failures = 0;
                state.pages += 1;
                state.skipped += skipped;
                count(applied, own).add_to(&mut state);
                written = state;
                written.to_bytes()
            },
            |applied| {
                // A page that brought nothing (a caught-up poll, every
                // interval) changes nothing worth a record: its time is
                // in the state, which `exchange status` shows.
                if own == 0 && skipped == 0 {
                    return Vec::new();
                }
                let c = count(applied, own);
                vec![actor.note(
                    Action::ExchangeFetched,
                    id.as_str(),
                    format!(
                        "exchange {name}: page of {own} records: {} added, {} updated, {} unchanged, \
                         {} retracted, {} retractions found nothing, {skipped} skipped",
                        c.added,
                        c.updated,
                        c.unchanged,
                        c.retracted,
                        c.not_found
                    ),
                )]
            },
        )?;
        Ok(written)
    }

    /// Notes that a fetch of exchange `name` failed (`error`, in words):
    /// the cursor stays; not audited (nothing changed), shown by `status`.
    pub fn exchange_failed(&self, name: &str, error: &str) -> Result<ExchangeState, OpsError> {
        let mut written = ExchangeState::default();
        self.db.put_exchange_state(
            name,
            |current| {
                let mut state = read_state(current);
                state.last_attempt_ms = crate::database::now_ms();
                state.last_error = error.chars().take(500).collect();
                state.failures += 1;
                written = state;
                written.to_bytes()
            },
            vec![],
        )?;
        Ok(written)
    }

    /// Verdicts waiting for exchange `config`'s service, at most `limit`,
    /// with the keys [`Ops::exchange_feedback_done`] takes.
    pub fn exchange_outbox(
        &self,
        config: &ExchangeConfig,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, FeedbackOut)>, OpsError> {
        let set: SetId = config
            .set
            .parse()
            .map_err(|e| OpsError::Invalid(format!("exchange {}: set: {e}", config.name)))?;
        Ok(self.db.store().exchange_outbox(&set, limit)?)
    }

    /// A verdict left the outbox: taken by the service (`refused` "") or
    /// refused by it for good (`refused` says why). Audited, with the
    /// exchange's count, in the batch that removes it.
    pub fn exchange_feedback_done(
        &self,
        config: &ExchangeConfig,
        key: &[u8],
        item: &FeedbackOut,
        refused: &str,
    ) -> Result<ExchangeState, OpsError> {
        let detail = if refused.is_empty() {
            format!(
                "exchange {}: {} on {} sent",
                config.name, item.verdict, item.external_id
            )
        } else {
            format!(
                "exchange {}: {} on {} refused by the service: {}",
                config.name,
                item.verdict,
                item.external_id,
                refused.chars().take(300).collect::<String>()
            )
        };
        let actor = Actor::new(format!("exchange:{}", config.name));
        let note = actor.note(Action::ExchangeFeedbackSent, item.set.as_str(), detail);
        let mut written = ExchangeState::default();
        self.db.exchange_feedback_sent(
            key,
            &config.name,
            |current| {
                let mut state = read_state(current);
                if refused.is_empty() {
                    state.feedback_sent += 1;
                }
                written = state;
                written.to_bytes()
            },
            vec![note],
        )?;
        Ok(written)
    }

    /// Forgets exchange `name`'s cursor: its next fetch starts from the
    /// service's beginning (imports are idempotent: what is there stays,
    /// what the service withdrew meanwhile is withdrawn). Audited.
    pub fn reset_exchange(&self, actor: &Actor, name: &str) -> Result<ExchangeState, OpsError> {
        let note = actor.note(Action::ExchangeReset, name, "cursor cleared");
        let mut written = ExchangeState::default();
        self.db.put_exchange_state(
            name,
            |current| {
                let mut state = read_state(current);
                state.cursor.clear();
                state.caught_up_ms = 0;
                written = state;
                written.to_bytes()
            },
            vec![note],
        )?;
        Ok(written)
    }
}

/// A stored state, or a fresh one if there is none (or it is damaged:
/// then the next fetch starts over, which imports make harmless).
fn read_state(current: Option<&[u8]>) -> ExchangeState {
    current
        .and_then(ExchangeState::from_bytes)
        .unwrap_or_default()
}

#[derive(Default)]
struct Counts {
    added: u64,
    updated: u64,
    unchanged: u64,
    retracted: u64,
    not_found: u64,
}

impl Counts {
    fn add_to(&self, state: &mut ExchangeState) {
        state.added += self.added;
        state.updated += self.updated;
        state.unchanged += self.unchanged;
        state.retracted += self.retracted;
        state.not_found += self.not_found;
    }
}

/// What the page's `own` changes did, and what the withdrawals of hashes
/// no longer in their records that follow them did (a record that kept
/// its hashes is no retraction that found nothing).
fn count(applied: &crate::store::Applied, own: usize) -> Counts {
    let mut c = Counts::default();
    for (i, outcome) in applied.outcomes.iter().enumerate() {
        match outcome {
            Outcome::NotFound if i >= own => {}
            Outcome::Added(_) => c.added += 1,
            Outcome::Updated(_) => c.updated += 1,
            Outcome::Unchanged(_) => c.unchanged += 1,
            Outcome::Retracted(ids) => c.retracted += ids.len() as u64,
            Outcome::NotFound => c.not_found += 1,
        }
    }
    c
}
