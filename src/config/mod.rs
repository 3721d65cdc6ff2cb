//! The configuration file: its TOML schema, every default in one place, and the checks that
//! turn a file into a [`Resolved`] configuration the node runs on.
//!
//! The schema is SPEC.md's. Unknown keys are errors; a bad value names the file, the line and
//! the key. Nothing here opens sockets or files other than the config itself: turning a
//! resolved configuration into a running node is `server`'s job.

mod managed;
mod resolve;
pub mod units;

pub use managed::{managed_cache_policy, managed_origin_request_policy};
pub use resolve::{
    Behaviour, CachePolicy, Encoding, ForwardRule, KeyRule, MethodSet, OriginGroup,
    OriginRequestPolicy, OriginTarget, Resolved, ResponseHeadersPolicy, Upstream,
    ViewerProtocolPolicy,
};
pub use units::{ByteSize, Dur};

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Every default of the configuration, in one place.
pub mod defaults {
    use super::{ByteSize, Dur};
    pub const LISTEN: &str = "127.0.0.1:8080";
    pub const ADMIN_LISTEN: &str = "127.0.0.1:9090";
    pub const CACHE_DIR: &str = "./strata-cache";
    pub const STORE_SIZE: ByteSize = ByteSize::gib(1);
    pub const STORE_MEMORY: ByteSize = ByteSize::mib(256);
    pub const CONNECT_TIMEOUT: Dur = Dur::secs(10);
    pub const RESPONSE_TIMEOUT: Dur = Dur::secs(30);
    pub const CACHE_POLICY: &str = "UseOriginCacheControlHeaders-QueryStrings";
    pub const ORIGIN_REQUEST_POLICY: &str = "AllViewerExceptHostHeader";
    pub const ALLOWED_METHODS: &[&str] =
        &["GET", "HEAD", "OPTIONS", "PUT", "POST", "PATCH", "DELETE"];
    pub const FAILOVER_STATUS: &[u16] = &[500, 502, 503, 504];
    /// How long a waiter queues behind a fill before it goes to the origin itself.
    pub const COALESCE_TIMEOUT: Dur = Dur::secs(10);
    /// How many requests may wait on one fill.
    pub const COALESCE_MAX_WAITERS: usize = 4096;
    /// How long "this key is uncacheable" is remembered (Varnish's hit-for-miss).
    pub const HIT_FOR_MISS: Dur = Dur::secs(120);
    /// Serve stale to other requests while one refresh is in flight, up to this long.
    pub const STALE_WHILE_UPDATING: Dur = Dur::secs(10);
    pub const PEER_TIMEOUT: Dur = Dur::millis(1500);
    pub const DNS_REFRESH: Dur = Dur::secs(10);
    pub const CHECKPOINT_INTERVAL: Dur = Dur::secs(5);
    pub const DRAIN_TIMEOUT: Dur = Dur::secs(20);
    pub const MAX_HEADER_BYTES: usize = 64 * 1024;
}

/// The whole file, as written.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub node: NodeConfig,
    #[serde(default)]
    pub store: StoreConfig,
    pub cluster: Option<ClusterConfig>,
    #[serde(default)]
    pub access_log: Option<AccessLogConfig>,
    #[serde(default)]
    pub origins: Vec<OriginConfig>,
    #[serde(default)]
    pub origin_groups: Vec<OriginGroupConfig>,
    #[serde(default)]
    pub cache_policies: BTreeMap<String, CachePolicyConfig>,
    #[serde(default)]
    pub origin_request_policies: BTreeMap<String, OriginRequestPolicyConfig>,
    #[serde(default)]
    pub response_headers_policies: BTreeMap<String, ResponseHeadersConfig>,
    #[serde(default)]
    pub behaviors: Vec<BehaviorConfig>,
    pub default_behavior: Option<BehaviorConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub id: Option<String>,
    #[serde(default = "d_listen")]
    pub listen: SocketAddr,
    pub listen_tls: Option<SocketAddr>,
    pub tls: Option<TlsConfig>,
    #[serde(default = "d_admin_listen")]
    pub admin_listen: SocketAddr,
    pub admin_token_env: Option<String>,
    #[serde(default = "d_drain")]
    pub drain_timeout: Dur,
    #[serde(default = "d_coalesce_timeout")]
    pub coalesce_timeout: Dur,
    /// How long past its freshness a stored response may still be served to other requests
    /// while one refresh of it is in flight (Varnish's grace, nginx's `use_stale updating`).
    /// `0s` keeps strictly to RFC 9111 §4.2.4.
    #[serde(default = "d_stale_while_updating")]
    pub stale_while_updating: Dur,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            id: None,
            listen: d_listen(),
            listen_tls: None,
            tls: None,
            admin_listen: d_admin_listen(),
            admin_token_env: None,
            drain_timeout: d_drain(),
            coalesce_timeout: d_coalesce_timeout(),
            stale_while_updating: d_stale_while_updating(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    #[serde(default = "d_cache_dir")]
    pub path: PathBuf,
    #[serde(default = "d_store_size")]
    pub size: ByteSize,
    #[serde(default = "d_store_memory")]
    pub memory: ByteSize,
    #[serde(default = "d_checkpoint")]
    pub checkpoint_interval: Dur,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: d_cache_dir(),
            size: defaults::STORE_SIZE,
            memory: defaults::STORE_MEMORY,
            checkpoint_interval: defaults::CHECKPOINT_INTERVAL,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    #[serde(default)]
    pub peers: Vec<String>,
    #[serde(rename = "self")]
    pub self_addr: Option<String>,
    pub peers_dns: Option<String>,
    /// Resolvers (`IP:PORT`) asked for `peers_dns` instead of the system's (resolv.conf).
    #[serde(default)]
    pub dns_servers: Vec<std::net::SocketAddr>,
    #[serde(default = "d_peer_timeout")]
    pub peer_timeout: Dur,
    #[serde(default = "d_dns_refresh")]
    pub dns_refresh: Dur,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogConfig {
    pub path: PathBuf,
    #[serde(default)]
    pub format: AccessLogFormat,
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogFormat {
    #[default]
    Cloudfront,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginConfig {
    pub id: String,
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default = "d_connect_timeout")]
    pub connect_timeout: Dur,
    #[serde(default = "d_response_timeout")]
    pub response_timeout: Dur,
    pub s3: Option<S3Config>,
    /// Extra CA certificates (PEM) trusted for this origin, beside the system roots.
    pub ca_file: Option<PathBuf>,
    /// Connect to this address instead of resolving the URL's host (like curl's
    /// `--connect-to`): `Host`, TLS SNI and the S3 signature keep the URL's (or the
    /// virtual-hosted bucket's) name.
    pub connect_to: Option<std::net::SocketAddr>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    pub region: String,
    /// Shared-credentials profile; default: `AWS_PROFILE`, then `default`.
    pub profile: Option<String>,
    /// `path` (http://host/bucket/key) or `virtual` (http://bucket.host/key).
    #[serde(default)]
    pub addressing: S3Addressing,
    #[serde(default = "d_s3_service")]
    pub service: String,
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum S3Addressing {
    #[default]
    Path,
    Virtual,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginGroupConfig {
    pub id: String,
    pub primary: String,
    pub secondary: String,
    #[serde(default = "d_failover_status")]
    pub failover_status: Vec<u16>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CachePolicyConfig {
    #[serde(default = "d_zero")]
    pub min_ttl: Dur,
    #[serde(default = "d_default_ttl")]
    pub default_ttl: Dur,
    #[serde(default = "d_max_ttl")]
    pub max_ttl: Dur,
    #[serde(default)]
    pub query_strings: KeyRuleConfig,
    #[serde(default)]
    pub headers: KeyRuleConfig,
    #[serde(default)]
    pub cookies: KeyRuleConfig,
    #[serde(default)]
    pub accept_encoding: Vec<String>,
}

/// `{ behavior = "whitelist", names = [...] }`, as CloudFront writes a cache key input.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct KeyRuleConfig {
    pub behavior: RuleKind,
    #[serde(default)]
    pub names: Vec<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
pub enum RuleKind {
    #[default]
    #[serde(rename = "none")]
    None,
    #[serde(rename = "whitelist")]
    Whitelist,
    #[serde(rename = "allExcept")]
    AllExcept,
    #[serde(rename = "all")]
    All,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct OriginRequestPolicyConfig {
    #[serde(default)]
    pub query_strings: KeyRuleConfig,
    #[serde(default)]
    pub headers: KeyRuleConfig,
    #[serde(default)]
    pub cookies: KeyRuleConfig,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ResponseHeadersConfig {
    /// Headers set on every response to the viewer (replacing the origin's).
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Headers added only when the response does not carry them already.
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    /// Headers removed before the response reaches the viewer.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// A response headers policy given by name or inline.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ResponseHeadersRef {
    Named(String),
    Inline(ResponseHeadersConfig),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BehaviorConfig {
    /// CloudFront path pattern; absent only on `default_behavior`.
    pub path: Option<String>,
    pub origin: String,
    pub cache_policy: Option<String>,
    pub origin_request_policy: Option<String>,
    pub response_headers: Option<ResponseHeadersRef>,
    pub allowed_methods: Option<Vec<String>>,
    pub cached_methods: Option<Vec<String>>,
    #[serde(default)]
    pub viewer_protocol_policy: ViewerProtocolPolicy,
}

fn d_listen() -> SocketAddr {
    defaults::LISTEN
        .parse()
        .expect("default listen address parses")
}
fn d_admin_listen() -> SocketAddr {
    defaults::ADMIN_LISTEN
        .parse()
        .expect("default admin address parses")
}
fn d_cache_dir() -> PathBuf {
    PathBuf::from(defaults::CACHE_DIR)
}
fn d_store_size() -> ByteSize {
    defaults::STORE_SIZE
}
fn d_store_memory() -> ByteSize {
    defaults::STORE_MEMORY
}
fn d_checkpoint() -> Dur {
    defaults::CHECKPOINT_INTERVAL
}
fn d_connect_timeout() -> Dur {
    defaults::CONNECT_TIMEOUT
}
fn d_response_timeout() -> Dur {
    defaults::RESPONSE_TIMEOUT
}
fn d_drain() -> Dur {
    defaults::DRAIN_TIMEOUT
}
fn d_coalesce_timeout() -> Dur {
    defaults::COALESCE_TIMEOUT
}
fn d_stale_while_updating() -> Dur {
    defaults::STALE_WHILE_UPDATING
}
fn d_peer_timeout() -> Dur {
    defaults::PEER_TIMEOUT
}
fn d_dns_refresh() -> Dur {
    defaults::DNS_REFRESH
}
fn d_failover_status() -> Vec<u16> {
    defaults::FAILOVER_STATUS.to_vec()
}
fn d_s3_service() -> String {
    "s3".to_string()
}
fn d_zero() -> Dur {
    Dur::secs(0)
}
fn d_default_ttl() -> Dur {
    Dur::secs(86_400)
}
fn d_max_ttl() -> Dur {
    Dur::secs(31_536_000)
}

/// A configuration error, naming the file, the line (when known), the key and the reason.
#[derive(Debug, thiserror::Error)]
#[error("{file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

impl ConfigFile {
    /// Parses a config document; `file` is only used in error messages.
    pub fn parse(text: &str, file: &str) -> Result<ConfigFile, ConfigError> {
        toml::from_str::<ConfigFile>(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            ConfigError {
                file: file.to_string(),
                line,
                message: e.message().trim().to_string(),
            }
        })
    }

    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<(ConfigFile, String), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: None,
            message: format!("cannot read the config file: {e}"),
        })?;
        let cfg = Self::parse(&text, &path.display().to_string())?;
        Ok((cfg, text))
    }

    /// The configuration of `strata serve --origin URL`: one default behaviour that honours the
    /// origin's caching headers, keyed on the path and every query string.
    pub fn quick(origin: &str) -> ConfigFile {
        ConfigFile {
            origins: vec![OriginConfig {
                id: "origin".into(),
                url: origin.to_string(),
                headers: BTreeMap::new(),
                connect_timeout: defaults::CONNECT_TIMEOUT,
                response_timeout: defaults::RESPONSE_TIMEOUT,
                s3: None,
                ca_file: None,
                connect_to: None,
            }],
            default_behavior: Some(BehaviorConfig {
                path: None,
                origin: "origin".into(),
                cache_policy: Some("UseOriginCacheControlHeaders-QueryStrings".into()),
                origin_request_policy: None,
                response_headers: None,
                allowed_methods: None,
                cached_methods: None,
                viewer_protocol_policy: ViewerProtocolPolicy::AllowAll,
            }),
            ..ConfigFile::default()
        }
    }
}

/// 1-based line number of a byte offset.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Finds the line on which `key = ` is written inside the table or array element that
/// `section` names (e.g. `behaviors`, element 2). Used to point semantic errors at a line.
pub(crate) fn find_key_line(
    text: &str,
    section: &str,
    index: Option<usize>,
    key: &str,
) -> Option<usize> {
    let mut current: Option<(String, usize)> = None;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(name) = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
            let name = name.trim().to_string();
            let n = counts.entry(name.clone()).or_insert(0);
            current = Some((name, *n));
            *n += 1;
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = Some((name.trim().to_string(), 0));
            continue;
        }
        if let Some((name, n)) = &current {
            let in_section = name == section && index.is_none_or(|want| want == *n);
            if in_section {
                if let Some(rest) = line.strip_prefix(key) {
                    if rest.trim_start().starts_with('=') {
                        return Some(i + 1);
                    }
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_name_the_line() {
        let text = "[node]\nid = \"a\"\nlisten = \"127.0.0.1:1\"\nlisen = \"x\"\n";
        let e = ConfigFile::parse(text, "x.toml").unwrap_err();
        assert_eq!(e.line, Some(4), "{e}");
        assert!(e.to_string().contains("x.toml:4"), "{e}");
        assert!(e.message.contains("lisen"), "{e}");
    }

    #[test]
    fn bad_units_are_errors() {
        let text = "[store]\nsize = \"ten gigs\"\n";
        let e = ConfigFile::parse(text, "x.toml").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.message.contains("not a size"), "{e}");
    }

    #[test]
    fn finds_key_lines_in_array_tables() {
        let text = "[[behaviors]]\npath = \"/a\"\norigin = \"x\"\n\n[[behaviors]]\npath = \"/b\"\norigin = \"y\"\n";
        assert_eq!(find_key_line(text, "behaviors", Some(1), "origin"), Some(7));
        assert_eq!(find_key_line(text, "behaviors", Some(0), "origin"), Some(3));
    }
}
