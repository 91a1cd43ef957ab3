//! The ratio table.

use std::time::Duration;

use crate::measure::{Pair, median, ms};

/// One line of the table.
#[derive(Debug)]
pub(crate) struct Row {
    pub fs: String,
    pub what: String,
    pub baseline: String,
    pub ours: Duration,
    pub base: Duration,
    pub goal: String,
    pub met: bool,
}

impl Row {
    /// A row from interleaved times, judged by `goal` (given the medians,
    /// ours and the baseline's).
    pub(crate) fn new(
        fs: &str,
        what: impl Into<String>,
        baseline: impl Into<String>,
        pair: &Pair,
        goal: Goal,
    ) -> Row {
        let (ours, base) = (median(&pair.ours), median(&pair.base));
        let row = Row {
            fs: fs.to_owned(),
            what: what.into(),
            baseline: baseline.into(),
            ours,
            base,
            goal: goal.to_string(),
            met: goal.met(ours, base),
        };
        eprintln!("  {}", row.markdown());
        row
    }

    pub(crate) fn ratio(&self) -> f64 {
        self.ours.as_secs_f64() / self.base.as_secs_f64().max(1e-9)
    }

    pub(crate) fn markdown(&self) -> String {
        // A row without a baseline (an absolute goal) shows dashes.
        let (base, ratio) = if self.base.is_zero() {
            ("-".to_owned(), "-".to_owned())
        } else {
            (
                format!("{:.2}", ms(self.base)),
                format!("{:.2}x", self.ratio()),
            )
        };
        format!(
            "| {} | {} | {} | {:.2} | {base} | {ratio} | {} | {} |",
            self.fs,
            self.what,
            self.baseline,
            ms(self.ours),
            self.goal,
            if self.met { "yes" } else { "**no**" }
        )
    }
}

pub(crate) const HEADER: &str = "| fs | cargo-ktstr | baseline | ktstr ms | baseline ms | ratio | goal | met |\n\
                          | --- | --- | --- | ---: | ---: | ---: | --- | --- |";

/// The whole table, markdown, as README carries it.
pub(crate) fn render(rows: &[Row]) -> String {
    let mut out = String::from(HEADER);
    out.push('\n');
    for row in rows {
        out += &row.markdown();
        out.push('\n');
    }
    out
}

/// What a row should reach: at most `ratio` times the baseline, and, where
/// given, at most `max_ms`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Goal {
    pub ratio: f64,
    pub max_ms: Option<f64>,
}

impl Goal {
    pub(crate) fn ratio(ratio: f64) -> Goal {
        Goal {
            ratio,
            max_ms: None,
        }
    }

    /// A reference figure with nothing to reach.
    pub(crate) fn floor() -> Goal {
        Goal::ratio(f64::INFINITY)
    }

    fn met(self, ours: Duration, base: Duration) -> bool {
        // An infinite ratio is no goal (and times a zero baseline, NaN).
        (self.ratio.is_infinite() || ours.as_secs_f64() <= base.as_secs_f64() * self.ratio)
            && self.max_ms.is_none_or(|max| ms(ours) <= max)
    }
}

impl std::fmt::Display for Goal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(max) = self.max_ms {
            parts.push(format!("< {max} ms"));
        }
        if self.ratio.is_finite() {
            parts.push(format!("<= {}x", self.ratio));
        }
        if parts.is_empty() {
            parts.push("none (reference)".to_owned());
        }
        write!(f, "{}", parts.join(", "))
    }
}
