//! The orex risk-assessment service (issue 8), built in slices. So far:
//!
//! - [`formula`]: the EU criticality-assessment supply-risk formula with
//!   every component kept, so an analyst can recompute a score by hand.
//! - [`reference`]: the versioned reference data file, every figure citing
//!   its source, validated as a whole.
//!
//! Next: the data file itself (`services/risk/data/RESEARCH.md` holds the
//! sources found so far), the service
//! (`orex.risk.v1.RiskService`) behind the gateway, live disruptions from
//! the sharing stream, scenarios and alerts.

pub mod formula;
pub mod reference;
