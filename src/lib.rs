//! strata: a persistent, disk-backed HTTP cache node for the regional and shield tiers of a
//! CDN. See `docs/architecture.md` for the request path and how the modules fit together.

pub mod config;
pub mod policy;
pub mod server;
pub mod store;
pub mod time;
