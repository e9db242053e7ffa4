//! What a case hands back: table rows (a figure, its baseline measured in the
//! same run, the ratio and the target), notes, and correctness
//! failures — the only thing that makes the tool exit non-zero.

use std::fmt::Write as _;

/// One line of a case's table.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    metric: String,
    value: String,
    baseline: String,
    ratio: String,
    target: String,
}

/// A case's results.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// The case's name.
    pub(crate) case: &'static str,
    rows: Vec<Row>,
    notes: Vec<String>,
    failures: Vec<String>,
}

impl Outcome {
    /// No rows yet.
    pub(crate) fn new(case: &'static str) -> Self {
        Self {
            case,
            rows: Vec::new(),
            notes: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// A measured figure against its baseline, with the ratio
    /// `value / baseline` and the target it is held to.
    pub(crate) fn compare(
        &mut self,
        metric: impl Into<String>,
        value: String,
        baseline: String,
        ratio: Option<f64>,
        target: &str,
    ) {
        self.rows.push(Row {
            metric: metric.into(),
            value,
            baseline,
            ratio: ratio.map_or_else(|| "—".into(), |r| format!("{r:.2}×")),
            target: target.into(),
        });
    }

    /// A figure without a baseline.
    pub(crate) fn fact(&mut self, metric: impl Into<String>, value: String, target: &str) {
        self.rows.push(Row {
            metric: metric.into(),
            value,
            baseline: "—".into(),
            ratio: "—".into(),
            target: target.into(),
        });
    }

    /// A remark printed under the table.
    pub(crate) fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }

    /// Records a correctness failure unless `ok`.
    pub(crate) fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.failures.push(what());
        }
    }

    /// Records a correctness failure.
    pub(crate) fn fail(&mut self, what: impl Into<String>) {
        self.failures.push(what.into());
    }

    /// The correctness failures.
    pub(crate) fn failures(&self) -> &[String] {
        &self.failures
    }

    /// The case's table, notes and verdict as plain text.
    pub(crate) fn text(&self) -> String {
        let mut s = String::new();
        for r in &self.rows {
            let _ = writeln!(
                s,
                "{:<16} {:<44} {:>14} {:>14} {:>8}  {}",
                self.case, r.metric, r.value, r.baseline, r.ratio, r.target
            );
        }
        for n in &self.notes {
            let _ = writeln!(s, "{:<16} note: {n}", self.case);
        }
        if self.failures.is_empty() {
            let _ = writeln!(s, "{:<16} answers: OK", self.case);
        } else {
            for f in &self.failures {
                let _ = writeln!(s, "{:<16} FAILED: {f}", self.case);
            }
        }
        s
    }

    /// The case's rows as Markdown table lines (for BENCHMARKS.md).
    pub(crate) fn markdown(&self) -> String {
        let mut s = String::new();
        for r in &self.rows {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} |",
                self.case, r.metric, r.value, r.baseline, r.ratio, r.target
            );
        }
        s
    }
}

/// The column header of [`Outcome::text`].
pub(crate) fn header() -> String {
    format!(
        "{:<16} {:<44} {:>14} {:>14} {:>8}  target",
        "case", "metric", "value", "baseline", "ratio"
    )
}

/// The column header of [`Outcome::markdown`].
pub(crate) const MARKDOWN_HEADER: &str =
    "| case | metric | value | baseline (same run) | ratio | target |\n|---|---|---|---|---|---|";
