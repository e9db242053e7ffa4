//! The orex risk-assessment service (issue 8), built in slices. So far:
//!
//! - [`formula`]: the EU criticality-assessment supply-risk formula with
//!   every component kept, so an analyst can recompute a score by hand.
//!
//! Next: the versioned reference data with its sources, the service
//! (`orex.risk.v1.RiskService`) behind the gateway, live disruptions from
//! the sharing stream, scenarios and alerts.

pub mod formula;
