//! The lifecycle engine: S3 lifecycle rules evaluated against object versions, and the worker
//! that performs what falls due.
//!
//! - [`rules`]: the rule model as the gateway hands it over (a draft), validated with S3's
//!   errors into the persisted `strata_metadata::lifecycle::LifecycleConfig`; filter matching.
//! - [`due`]: due dates as S3 computes them (days from creation, or from becoming noncurrent,
//!   rounded up to the next midnight UTC), the scaled-day mode, and which action wins.
//! - [`worker`]: the background pass over every bucket with a configuration: a persisted cursor
//!   and pending actions, each action conditional on the version it was decided for.
//! - [`explain`]: why a version is (not yet) acted on, and what the rules would do in the next
//!   days, without doing it.

pub mod due;
pub mod explain;
pub mod rules;
pub mod worker;

pub use due::DayClock;
