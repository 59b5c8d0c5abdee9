//! Flood quarantine: an entry that suddenly matches far more often than
//! entries do is switched off on this node and flagged to operators.
//!
//! Why: a benign image that collides with a listed hash (a logo, a blank
//! frame, a meme) can match thousands of uploads a minute, and every
//! provider acting on those matches at once would remove innocent content
//! at scale. The node cannot tell a collision from a real spike, so it
//! stops the entry locally and leaves the call to a person (`hashfed entry
//! enable` lifts it). The origin is not told; its set is untouched.
//!
//! Counting is per fixed minute (queries in an atomic, hits under a mutex:
//! hits are rare next to queries), so the query path pays one atomic add
//! (and a read of the minute).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use crate::model::EntryId;

pub use crate::config::FloodLimits;

/// The minute's counts.
#[derive(Default)]
struct Window {
    minute: u64,
    hits: HashMap<EntryId, u64>,
    /// Entries quarantined this minute (each is reported once).
    tripped: HashSet<EntryId>,
}

/// Counts queries and hits; says when an entry floods.
#[derive(Default)]
pub(super) struct FloodGuard {
    limits: RwLock<FloodLimits>,
    minute: AtomicU64,
    queries: AtomicU64,
    window: Mutex<Window>,
}

impl FloodGuard {
    /// Replaces the limits.
    pub fn set_limits(&self, limits: FloodLimits) {
        *self.limits.write().unwrap_or_else(|p| p.into_inner()) = limits;
    }

    /// Counts one query at `now_s` (seconds since the epoch).
    pub fn query(&self, now_s: u64) {
        let minute = now_s / 60;
        // Read first: a write to the shared minute on every query would
        // bounce its cache line between cores.
        if self.minute.load(Ordering::Relaxed) != minute
            && self.minute.swap(minute, Ordering::Relaxed) != minute
        {
            self.queries.store(0, Ordering::Relaxed);
        }
        self.queries.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one hit of `entry`; returns why it floods the first time it
    /// does in this minute.
    pub fn hit(&self, entry: EntryId, now_s: u64) -> Option<String> {
        let limits = self
            .limits
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let minute = now_s / 60;
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        if w.minute != minute {
            *w = Window {
                minute,
                ..Window::default()
            };
        }
        let count = {
            let c = w.hits.entry(entry).or_insert(0);
            *c += 1;
            *c
        };
        if w.tripped.contains(&entry) {
            return None;
        }
        let queries = self.queries.load(Ordering::Relaxed).max(1);
        let reason = if limits.per_minute > 0 && count > limits.per_minute {
            Some(format!(
                "{count} matches within a minute (limit {})",
                limits.per_minute
            ))
        } else if limits.share > 0.0
            && count >= limits.min_matches.max(1)
            && count as f64 > limits.share * queries as f64
        {
            Some(format!(
                "{count} matches within a minute, {:.1}% of the minute's {queries} queries \
                 (limit {:.1}%)",
                100.0 * count as f64 / queries as f64,
                100.0 * limits.share
            ))
        } else {
            None
        };
        if reason.is_some() {
            w.tripped.insert(entry);
        }
        reason
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_over_the_rate_or_the_share_trips_once() {
        let g = FloodGuard::default();
        g.set_limits(FloodLimits {
            per_minute: 10,
            share: 0.0,
            min_matches: 0,
        });
        let (e, other) = (EntryId([1; 16]), EntryId([2; 16]));
        let t = 6000;
        for _ in 0..10 {
            assert_eq!(g.hit(e, t), None);
        }
        assert!(g.hit(e, t).unwrap().contains("11 matches"));
        assert_eq!(g.hit(e, t), None, "reported once");
        assert_eq!(g.hit(other, t), None);
        // A new minute starts from zero.
        assert_eq!(g.hit(e, t + 60), None);

        g.set_limits(FloodLimits {
            per_minute: 0,
            share: 0.5,
            min_matches: 3,
        });
        let t = 12_000;
        for _ in 0..4 {
            g.query(t);
        }
        assert_eq!(g.hit(e, t), None, "under min_matches");
        assert_eq!(g.hit(e, t), None, "2 of 4 queries is not over half");
        assert!(g.hit(e, t).unwrap().contains("75.0%"));
    }
}
