//! The demo's live exchange: the provider keeps a set current from a
//! "hotline API", a local stand-in of NCMEC's Hash Sharing v2 API
//! (`hashfed::exchange::standin`: real HTTPS on loopback, NCMEC's XML and
//! paging), exactly as it would from NCMEC's. The list is the 4th image's
//! hashes among generated ones; the provider's upload pipeline matches an
//! edited copy of that image, the hit names the entry's NCMEC id, and the
//! reviewer's confirmation goes back to the API as NCMEC's vote, once.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context};
use hashfed::config::ExchangeConfig;
use hashfed::exchange::standin::{Listing, NcmecStandIn, MEMBER};
use hashfed::signal::pdq::DEFAULT_MATCH_THRESHOLD;
use hashfed::wire::proto;
use hashfed::wire::proto::match_client::MatchClient;
use tonic::transport::Channel;

use super::{match_image, ms, poll, report, step, type_name, Demo, Images, WAIT};

/// The exchange's name on the provider.
const EXCHANGE: &str = "ncmec";

/// The set it fills.
const SET: &str = "provider/ncmec";

/// Entries the API lists besides the demo's own (random hashes, MD5 and
/// PDQ each): enough for several pages.
const OTHERS: u64 = 4_999;

/// Entries per page, as NCMEC's links say.
const PAGE: usize = 1_000;

/// Now, in ms since the epoch.
pub(super) fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Starts the hotline API with its list: [`OTHERS`] entries and the
/// listed image's MD5 and PDQ, all published an hour ago.
pub(super) async fn start(images: &Images) -> anyhow::Result<NcmecStandIn> {
    let api = NcmecStandIn::start("provider-esp", "demo password", PAGE)
        .await
        .context("starting the hotline API")?;
    let hour_ago = (epoch_ms() / 1000) as i64 - 3600;
    api.list_synthetic(OTHERS, hour_ago);
    let listed = &images.listed;
    api.list(
        Listing {
            fingerprints: vec![
                ("md5".into(), listed.md5.value_hex()),
                ("pdq".into(), listed.pdq.value_hex()),
            ],
            classification: Some("A1".into()),
        },
        hour_ago,
    );
    step(
        "start",
        format_args!(
            "hotline API {} (a local stand-in of NCMEC's Hash Sharing v2: HTTPS, XML pages \
             of {PAGE}) lists {} entries, one of them the 4th image",
            api.endpoint(),
            OTHERS + 1
        ),
    );
    Ok(api)
}

/// The provider's exchange of `api`: its CA and credentials file
/// (owner-only) written into the node directory `dir`.
pub(super) fn exchange(api: &NcmecStandIn, dir: &Path) -> anyhow::Result<ExchangeConfig> {
    api.configure(dir, EXCHANGE, SET)
        .context("configuring the provider's exchange")
}

impl Demo<'_> {
    /// The provider's schedule pulled the whole list when it started; this
    /// waits for it to be caught up and says how long it took.
    pub(super) async fn exchange_fetch(&self) -> anyhow::Result<()> {
        let ops = self.p.ops();
        let want = 2 * (OTHERS + 1);
        poll(Instant::now(), || {
            ops.exchange_state(EXCHANGE)
                .is_ok_and(|s| s.caught_up_ms > 0 && s.added >= want)
        })
        .await
        .ok_or_else(|| {
            anyhow!(
                "exchange: the provider did not catch up with the hotline API within {WAIT:?}: {:?}",
                ops.exchange_state(EXCHANGE)
            )
        })?;
        let state = ops.exchange_state(EXCHANGE)?;
        ensure!(
            state.added == want && state.skipped == 0 && state.last_error.is_empty(),
            "exchange: unexpected state {state:?}"
        );
        let took = Duration::from_millis(state.caught_up_ms.saturating_sub(self.p.started_ms));
        step(
            "exchange",
            format_args!(
                "provider ← hotline API: {} entries ({} hashes, MD5 and PDQ) in {} pages into \
                 {SET}, each page stored with its cursor in one batch; caught up {} after the \
                 node started",
                OTHERS + 1,
                state.added,
                state.pages,
                ms(took)
            ),
        );
        Ok(())
    }

    /// An edited copy of the listed image matches the API's entry, and
    /// the hit says which NCMEC entry it is.
    pub(super) async fn exchange_match(
        &self,
        client: &mut MatchClient<Channel>,
    ) -> anyhow::Result<proto::Hit> {
        let (answer, took) = match_image(client, &self.images.listed_edited).await?;
        let hit = match answer.hits.iter().find(|h| type_name(h.r#type) == "PDQ") {
            Some(hit) if hit.set == SET && hit.distance <= DEFAULT_MATCH_THRESHOLD => hit,
            _ => bail!(
                "exchange: the edited 4th image gave {:?} ({})",
                answer.hits,
                answer.pdq_skipped
            ),
        };
        ensure!(
            hit.external_id.starts_with(&format!("ncmec:{}:", MEMBER.0)),
            "exchange: the hit carries no NCMEC id: {hit:?}"
        );
        step(
            "exchange",
            format_args!(
                "provider ← upload pipeline: MatchImage(edited copy of the 4th image) → hit in \
                 {SET}, PDQ distance {}, NCMEC entry {}, label {}, in {}",
                hit.distance,
                hit.external_id,
                hit.labels.join(","),
                ms(took)
            ),
        );
        Ok(hit.clone())
    }

    /// A reviewer confirms the match; the exchange's outbox sends NCMEC's
    /// affirmative vote on that fingerprint, once.
    pub(super) async fn exchange_feedback(
        &self,
        client: &mut MatchClient<Channel>,
        hit: &proto::Hit,
    ) -> anyhow::Result<()> {
        let sent = Instant::now();
        report(
            client,
            &hit.match_id,
            proto::Verdict::Confirmed,
            proto::FeedbackReason::Reviewed,
        )
        .await?;
        let arrived = poll(sent, || !self.api.votes().is_empty())
            .await
            .ok_or_else(|| {
                anyhow!("exchange: the vote did not reach the hotline API within {WAIT:?}")
            })?;
        let votes = self.api.votes();
        let entry = hit.external_id.rsplit(':').next().unwrap_or_default();
        ensure!(
            votes.len() == 1
                && votes[0].affirmative
                && votes[0].entry == entry
                && votes[0].fingerprint == "PDQ",
            "exchange: the hotline API received {votes:?}"
        );
        step(
            "exchange",
            format_args!(
                "provider → hotline API: a reviewer's CONFIRMED became NCMEC's affirmative vote \
                 (PUT v2/entries/{}/{entry}/PDQ/feedback), received once, {} after the verdict",
                votes[0].esp,
                ms(arrived)
            ),
        );
        Ok(())
    }
}
