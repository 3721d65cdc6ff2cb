//! The rules of HTTP caching, kept apart from I/O: cache keys (`key`), Cache-Control and
//! CDN-Cache-Control parsing (`cache_control`), storability and freshness (`freshness`,
//! RFC 9111 / 5861 / 9213), and conditional and range requests (`conditional`, RFC 9110 §13
//! and §14). Nothing here touches a socket, a clock it was not given, or the store.

pub mod cache_control;
pub mod conditional;
pub mod freshness;
pub mod key;
