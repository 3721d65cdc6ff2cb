//! strata: a persistent, disk-backed HTTP cache node for the regional and shield tiers of a
//! CDN. See `docs/architecture.md` for the request path and how the modules fit together.

pub mod access_log;
pub mod admin;
pub mod cluster;
pub mod coalesce;
pub mod config;
pub mod conn;
pub mod demo;
pub mod invalidation;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod serve;
pub mod server;
pub mod store;
pub mod surrogate;
pub mod time;
pub mod upstream;
pub mod workload;
