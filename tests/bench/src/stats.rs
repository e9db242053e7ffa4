//! Latency histograms (microsecond resolution, three significant figures)
//! and the few ways the tool prints durations, rates and sizes.

use std::time::Duration;

use hdrhistogram::Histogram;

/// A latency histogram in microseconds.
#[derive(Debug, Clone)]
pub(crate) struct Hist(Histogram<u64>);

impl Default for Hist {
    fn default() -> Self {
        Self::new()
    }
}

impl Hist {
    /// An empty histogram that grows to any latency.
    pub(crate) fn new() -> Self {
        let mut h = Histogram::new(3).expect("three significant figures are valid");
        h.auto(true);
        Self(h)
    }

    /// Records one latency.
    pub(crate) fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        // Auto-resizing: `record` grows the range (`saturating_record` would not).
        let _ = self.0.record(us.min(1 << 40));
    }

    /// Adds every value of `other`.
    pub(crate) fn merge(&mut self, other: &Hist) {
        self.0
            .add(&other.0)
            .expect("auto-resizing histograms always merge");
    }

    /// Number of recorded values.
    pub(crate) fn len(&self) -> u64 {
        self.0.len()
    }

    /// The `q` quantile (0.5, 0.99, …); zero when empty.
    pub(crate) fn q(&self, q: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        Duration::from_micros(self.0.value_at_quantile(q))
    }

    /// 99th percentile.
    pub(crate) fn p99(&self) -> Duration {
        self.q(0.99)
    }

    /// Largest value.
    pub(crate) fn max(&self) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        Duration::from_micros(self.0.max())
    }
}

/// A duration as µs below 1 ms, ms below 10 s, s above.
pub(crate) fn dur(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else if us < 10_000_000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{:.1} s", us / 1e6)
    }
}

/// A signed difference of durations, as `+1.23 ms` / `-40 µs`.
pub(crate) fn delta(a: Duration, b: Duration) -> String {
    if a >= b {
        format!("+{}", dur(a - b))
    } else {
        format!("-{}", dur(b - a))
    }
}

/// A rate per second.
pub(crate) fn rate(per_s: f64) -> String {
    if per_s >= 10_000.0 {
        format!("{:.1}k/s", per_s / 1000.0)
    } else {
        format!("{per_s:.0}/s")
    }
}

/// A size in KiB or MiB.
pub(crate) fn kib(k: f64) -> String {
    if k.abs() >= 10_240.0 {
        format!("{:.1} MiB", k / 1024.0)
    } else {
        format!("{k:.1} KiB")
    }
}

/// `a / b`, or `None` when `b` is zero.
pub(crate) fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

/// `a / b` of two durations.
pub(crate) fn dratio(a: Duration, b: Duration) -> Option<f64> {
    ratio(a.as_secs_f64(), b.as_secs_f64())
}
