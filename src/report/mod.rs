//! The transparency report: what a node did over a period, in counts.
//!
//! The EU interim regulation (2021/1232) asks providers that detect this
//! material voluntarily to publish yearly figures: the technologies used,
//! how much was detected, how often detection was wrong. This builds them
//! from the store's daily counts (see [`crate::store::usage`]): queries
//! per signal type; matches, feedback (confirmed, false positive),
//! entries added and retracted and queries an allowlist answered, per set
//! and signal type. Counts only, never
//! hash values or anything a caller sent.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::store::usage::{Counter, UsageCount};

/// One line of figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// Queries answered (per signal type only: a query is not per set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queries: Option<u64>,
    /// Matches answered.
    pub matches: u64,
    /// Feedback saying the match was right.
    pub confirmed: u64,
    /// Feedback saying it was a false positive.
    pub false_positives: u64,
    /// False positives among the matches that got feedback (none without
    /// feedback).
    pub false_positive_rate: Option<f64>,
    /// Entries that became matchable.
    pub entries_added: u64,
    /// Entries withdrawn.
    pub entries_retracted: u64,
    /// Queries an allowlist answered: they matched a known-benign entry,
    /// so no block list's hit was returned (0 in reports made before
    /// allowlists existed).
    #[serde(default)]
    pub allowlisted: u64,
}

impl Figures {
    fn add(&mut self, counter: Counter, n: u64) {
        match counter {
            Counter::Queries => *self.queries.get_or_insert(0) += n,
            Counter::Matches => self.matches += n,
            Counter::Confirmed => self.confirmed += n,
            Counter::FalsePositive => self.false_positives += n,
            Counter::Added => self.entries_added += n,
            Counter::Retracted => self.entries_retracted += n,
            Counter::Allowlisted => self.allowlisted += n,
        }
    }

    fn finish(&mut self) {
        let judged = self.confirmed + self.false_positives;
        self.false_positive_rate =
            (judged > 0).then(|| self.false_positives as f64 / judged as f64);
    }
}

/// The figures of one set and signal type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SetFigures {
    /// The set.
    pub set: String,
    /// The signal type.
    pub signal_type: String,
    /// Its figures.
    #[serde(flatten)]
    pub figures: Figures,
}

/// A node's figures over a period.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The node's name.
    pub node: String,
    /// First day, `YYYY-MM-DD` (UTC).
    pub from: String,
    /// Last day, included.
    pub to: String,
    /// Signal types with any activity in the period.
    pub signal_types: Vec<String>,
    /// Everything together.
    pub total: Figures,
    /// Per signal type.
    pub by_signal_type: BTreeMap<String, Figures>,
    /// Per set and signal type.
    pub by_set: Vec<SetFigures>,
}

impl Report {
    /// Adds up `counts` (the store's daily counts for the period).
    pub fn build(node: &str, from_day: u32, to_day: u32, counts: &[UsageCount]) -> Report {
        let mut total = Figures {
            queries: Some(0),
            ..Figures::default()
        };
        let mut by_type: BTreeMap<String, Figures> = BTreeMap::new();
        let mut by_set: BTreeMap<(String, String), Figures> = BTreeMap::new();
        for c in counts {
            total.add(c.counter, c.count);
            by_type
                .entry(c.kind.clone())
                .or_insert_with(|| Figures {
                    queries: Some(0),
                    ..Figures::default()
                })
                .add(c.counter, c.count);
            if let Some(set) = &c.set {
                by_set
                    .entry((set.to_string(), c.kind.clone()))
                    .or_default()
                    .add(c.counter, c.count);
            }
        }
        total.finish();
        by_type.values_mut().for_each(Figures::finish);
        Report {
            node: node.to_owned(),
            from: date(from_day),
            to: date(to_day),
            signal_types: by_type.keys().cloned().collect(),
            total,
            by_signal_type: by_type,
            by_set: by_set
                .into_iter()
                .map(|((set, signal_type), mut figures)| {
                    figures.finish();
                    SetFigures {
                        set,
                        signal_type,
                        figures,
                    }
                })
                .collect(),
        }
    }

    /// The report as a Markdown page.
    pub fn to_markdown(&self) -> String {
        let rate = |f: &Figures| {
            f.false_positive_rate
                .map_or("n/a".to_owned(), |r| format!("{:.2}%", 100.0 * r))
        };
        let mut out = format!(
            "# Transparency report: {}\n\nPeriod: {} to {} (UTC, both included).\n\n\
             Signal types in use: {}.\n\n## Totals\n\n\
             | queries | matches | confirmed | false positives | false-positive rate | entries added | entries retracted | allowlisted |\n\
             |---:|---:|---:|---:|---:|---:|---:|---:|\n| {} | {} | {} | {} | {} | {} | {} | {} |\n\n\
             ## By signal type\n\n\
             | signal type | queries | matches | confirmed | false positives | false-positive rate | entries added | entries retracted | allowlisted |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
            self.node,
            self.from,
            self.to,
            if self.signal_types.is_empty() {
                "none".to_owned()
            } else {
                self.signal_types.join(", ")
            },
            self.total.queries.unwrap_or(0),
            self.total.matches,
            self.total.confirmed,
            self.total.false_positives,
            rate(&self.total),
            self.total.entries_added,
            self.total.entries_retracted,
            self.total.allowlisted,
        );
        for (kind, f) in &self.by_signal_type {
            out.push_str(&format!(
                "| {kind} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                f.queries.unwrap_or(0),
                f.matches,
                f.confirmed,
                f.false_positives,
                rate(f),
                f.entries_added,
                f.entries_retracted,
                f.allowlisted
            ));
        }
        out.push_str(
            "\n## By set\n\n\
             | set | signal type | matches | confirmed | false positives | false-positive rate | entries added | entries retracted | allowlisted |\n\
             |---|---|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for s in &self.by_set {
            let f = &s.figures;
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                s.set,
                s.signal_type,
                f.matches,
                f.confirmed,
                f.false_positives,
                rate(f),
                f.entries_added,
                f.entries_retracted,
                f.allowlisted
            ));
        }
        out
    }
}

/// Days since the Unix epoch of a `YYYY-MM-DD` date.
pub fn parse_day(text: &str) -> Result<u32, String> {
    let bad = || format!("{text:?} is not a date (YYYY-MM-DD)");
    let mut parts = text.splitn(3, '-');
    let mut next = || {
        parts
            .next()
            .and_then(|p| p.parse::<i32>().ok())
            .ok_or_else(bad)
    };
    let (y, m, d) = (next()?, next()?, next()?);
    let month = time::Month::try_from(u8::try_from(m).map_err(|_| bad())?).map_err(|_| bad())?;
    let date = time::Date::from_calendar_date(y, month, u8::try_from(d).map_err(|_| bad())?)
        .map_err(|_| bad())?;
    let days = date.to_julian_day()
        - time::Date::from_calendar_date(1970, time::Month::January, 1)
            .map_err(|_| bad())?
            .to_julian_day();
    u32::try_from(days).map_err(|_| format!("{text} is before 1970"))
}

/// `YYYY-MM-DD` of a day since the Unix epoch.
pub fn date(day: u32) -> String {
    let epoch = time::Date::from_calendar_date(1970, time::Month::January, 1)
        .map(|d| d.to_julian_day())
        .unwrap_or(2_440_588);
    match time::Date::from_julian_day(epoch + day as i32) {
        Ok(d) => format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()),
        Err(_) => day.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_and_bad_ones_are_refused() {
        assert_eq!(parse_day("1970-01-01"), Ok(0));
        assert_eq!(
            parse_day("2026-11-24").map(date),
            Ok("2026-11-24".to_owned())
        );
        for bad in [
            "2026-13-01",
            "2026-02-30",
            "yesterday",
            "1969-12-31",
            "2026-1",
        ] {
            assert!(parse_day(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn figures_add_up_per_type_and_set() {
        let set = Some("a/list".parse().unwrap());
        let c = |counter, set: &Option<crate::model::SetId>, kind: &str, count| UsageCount {
            day: 1,
            counter,
            set: set.clone(),
            kind: kind.into(),
            count,
        };
        let r = Report::build(
            "a",
            0,
            2,
            &[
                c(Counter::Queries, &None, "pdq", 10),
                c(Counter::Matches, &set, "pdq", 4),
                c(Counter::Confirmed, &set, "pdq", 1),
                c(Counter::FalsePositive, &set, "pdq", 3),
                c(Counter::Added, &set, "md5", 2),
            ],
        );
        assert_eq!(r.signal_types, ["md5", "pdq"]);
        assert_eq!(r.total.queries, Some(10));
        assert_eq!(r.total.false_positive_rate, Some(0.75));
        assert_eq!(r.by_set.len(), 2);
        assert!(r
            .to_markdown()
            .contains("| a/list | pdq | 4 | 1 | 3 | 75.00% | 0 | 0 |"));
    }
}
