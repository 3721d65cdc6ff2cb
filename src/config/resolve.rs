//! Turns a parsed [`ConfigFile`] into the [`Resolved`] form the node runs on: names looked up,
//! managed policies filled in, path patterns compiled, and every cross-reference checked.

use super::{
    defaults, find_key_line, managed_cache_policy, managed_origin_request_policy, BehaviorConfig,
    ConfigError, ConfigFile, KeyRuleConfig, OriginConfig, ResponseHeadersConfig,
    ResponseHeadersRef, RuleKind,
};
use http::{HeaderName, HeaderValue, Method};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Which values of one kind of request input (query strings, headers or cookies) are taken.
/// Names are kept lower-case for headers and as written for query strings and cookies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRule {
    None,
    Whitelist(Vec<String>),
    AllExcept(Vec<String>),
    All,
}

/// Origin request policies use the same vocabulary as cache key inputs.
pub type ForwardRule = KeyRule;

impl KeyRule {
    fn from_config(c: &KeyRuleConfig, lowercase: bool) -> KeyRule {
        let names = || {
            c.names
                .iter()
                .map(|n| {
                    if lowercase {
                        n.to_ascii_lowercase()
                    } else {
                        n.clone()
                    }
                })
                .collect()
        };
        match c.behavior {
            RuleKind::None => KeyRule::None,
            RuleKind::Whitelist => KeyRule::Whitelist(names()),
            RuleKind::AllExcept => KeyRule::AllExcept(names()),
            RuleKind::All => KeyRule::All,
        }
    }

    /// Whether a name is taken by this rule. `name` must already be lower-case for headers.
    pub fn takes(&self, name: &str) -> bool {
        match self {
            KeyRule::None => false,
            KeyRule::All => true,
            KeyRule::Whitelist(names) => names.iter().any(|n| n == name),
            KeyRule::AllExcept(names) => !names.iter().any(|n| n == name),
        }
    }

    pub fn is_none(&self) -> bool {
        matches!(self, KeyRule::None)
    }
}

/// A content coding the cache key may distinguish (CloudFront's EnableAcceptEncoding*).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Encoding {
    Br,
    Gzip,
    Zstd,
}

impl Encoding {
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Br => "br",
            Encoding::Gzip => "gzip",
            Encoding::Zstd => "zstd",
        }
    }
}

/// A cache policy: TTL bounds and the request inputs that form the cache key.
#[derive(Debug, Clone)]
pub struct CachePolicy {
    pub name: String,
    pub min_ttl: Duration,
    pub default_ttl: Duration,
    pub max_ttl: Duration,
    pub query_strings: KeyRule,
    pub headers: KeyRule,
    pub cookies: KeyRule,
    /// Encodings normalised into the key, in preference order.
    pub accept_encoding: Vec<Encoding>,
    pub managed: bool,
}

impl CachePolicy {
    /// CachingDisabled and any policy whose max TTL is zero: nothing is stored.
    pub fn caching_disabled(&self) -> bool {
        self.max_ttl.is_zero()
    }
}

/// An origin request policy: what is forwarded to the origin beyond the cache key's inputs.
#[derive(Debug, Clone)]
pub struct OriginRequestPolicy {
    pub name: String,
    pub query_strings: ForwardRule,
    pub headers: ForwardRule,
    pub cookies: ForwardRule,
    /// Whether the viewer's Host header is forwarded (AllViewer) or replaced by the origin's.
    pub forward_host: bool,
}

/// Headers set, added or removed on the way to the viewer.
#[derive(Debug, Clone, Default)]
pub struct ResponseHeadersPolicy {
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub add: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
}

impl ResponseHeadersPolicy {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }

    pub fn apply(&self, headers: &mut http::HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            if !headers.contains_key(name) {
                headers.insert(name.clone(), value.clone());
            }
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ViewerProtocolPolicy {
    #[default]
    AllowAll,
    RedirectToHttps,
    HttpsOnly,
}

/// The set of methods a behaviour allows, as a bit set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodSet(u16);

const METHODS: &[&str] = &["GET", "HEAD", "OPTIONS", "PUT", "POST", "PATCH", "DELETE"];

impl MethodSet {
    pub fn parse(names: &[String]) -> Result<MethodSet, String> {
        let mut bits = 0;
        for n in names {
            let up = n.to_ascii_uppercase();
            let i = METHODS
                .iter()
                .position(|m| *m == up)
                .ok_or_else(|| format!("unknown method `{n}` (allowed: {})", METHODS.join(", ")))?;
            bits |= 1 << i;
        }
        Ok(MethodSet(bits))
    }

    pub fn contains(&self, m: &Method) -> bool {
        match METHODS.iter().position(|x| *x == m.as_str()) {
            Some(i) => self.0 & (1 << i) != 0,
            None => false,
        }
    }
}

/// One origin, as the node reaches it.
#[derive(Debug, Clone)]
pub struct OriginTarget {
    pub config: OriginConfig,
    pub url: http::Uri,
}

/// A primary and a secondary origin with the statuses that fail over.
#[derive(Debug, Clone)]
pub struct OriginGroup {
    pub id: String,
    pub primary: Arc<OriginTarget>,
    pub secondary: Arc<OriginTarget>,
    pub failover_status: Vec<u16>,
}

/// Where a behaviour sends its misses.
#[derive(Debug, Clone)]
pub enum Upstream {
    Origin(Arc<OriginTarget>),
    Group(Arc<OriginGroup>),
}

impl Upstream {
    pub fn id(&self) -> &str {
        match self {
            Upstream::Origin(o) => &o.config.id,
            Upstream::Group(g) => &g.id,
        }
    }
}

/// A cache behaviour: a path pattern and what happens to requests that match it.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// The pattern as written; `None` for the default behaviour.
    pub path: Option<String>,
    pub matcher: Option<wildmatch::WildMatch>,
    pub upstream: Upstream,
    pub cache_policy: Arc<CachePolicy>,
    pub origin_request_policy: Arc<OriginRequestPolicy>,
    pub response_headers: Arc<ResponseHeadersPolicy>,
    pub allowed_methods: MethodSet,
    pub cached_methods: MethodSet,
    pub viewer_protocol_policy: ViewerProtocolPolicy,
    /// Position in the file (0-based); the default behaviour is last.
    pub index: usize,
}

impl Behaviour {
    pub fn matches(&self, path: &str) -> bool {
        match &self.matcher {
            Some(m) => m.matches(path),
            None => true,
        }
    }

    pub fn name(&self) -> &str {
        self.path.as_deref().unwrap_or("default")
    }
}

/// A configuration ready to run.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub file: ConfigFile,
    pub node_id: String,
    pub behaviours: Vec<Arc<Behaviour>>,
    pub origins: BTreeMap<String, Arc<OriginTarget>>,
}

impl Resolved {
    /// Resolves a parsed file. `text` (the file's contents, when there is a file) is used to
    /// point errors at their line.
    pub fn new(
        file: ConfigFile,
        file_name: &str,
        text: Option<&str>,
    ) -> Result<Resolved, ConfigError> {
        let err = |section: &str, index: Option<usize>, key: &str, message: String| ConfigError {
            file: file_name.to_string(),
            line: text.and_then(|t| find_key_line(t, section, index, key)),
            message,
        };

        // Origins.
        let mut origins = BTreeMap::new();
        for (i, o) in file.origins.iter().enumerate() {
            let url: http::Uri = o.url.parse().map_err(|e| {
                err(
                    "origins",
                    Some(i),
                    "url",
                    format!("origins[{i}].url `{}` is not a URL: {e}", o.url),
                )
            })?;
            match url.scheme_str() {
                Some("http") | Some("https") => {}
                _ => {
                    return Err(err(
                        "origins",
                        Some(i),
                        "url",
                        format!(
                            "origins[{i}].url `{}` must start with http:// or https://",
                            o.url
                        ),
                    ))
                }
            }
            if url.host().is_none() {
                return Err(err(
                    "origins",
                    Some(i),
                    "url",
                    format!("origins[{i}].url `{}` has no host", o.url),
                ));
            }
            for (name, value) in &o.headers {
                if HeaderName::from_bytes(name.as_bytes()).is_err()
                    || HeaderValue::from_str(value).is_err()
                {
                    return Err(err(
                        "origins",
                        Some(i),
                        "headers",
                        format!("origins[{i}].headers: `{name}` is not a valid header"),
                    ));
                }
            }
            let target = Arc::new(OriginTarget {
                config: o.clone(),
                url,
            });
            if origins.insert(o.id.clone(), target).is_some() {
                return Err(err(
                    "origins",
                    Some(i),
                    "id",
                    format!("origin id `{}` is defined twice", o.id),
                ));
            }
        }
        let mut groups = BTreeMap::new();
        for (i, g) in file.origin_groups.iter().enumerate() {
            let find = |id: &str, key: &str| {
                origins.get(id).cloned().ok_or_else(|| {
                    err(
                        "origin_groups",
                        Some(i),
                        key,
                        format!("origin_groups[{i}].{key}: no origin with id `{id}`"),
                    )
                })
            };
            let group = OriginGroup {
                id: g.id.clone(),
                primary: find(&g.primary, "primary")?,
                secondary: find(&g.secondary, "secondary")?,
                failover_status: g.failover_status.clone(),
            };
            if origins.contains_key(&g.id) || groups.insert(g.id.clone(), Arc::new(group)).is_some()
            {
                return Err(err(
                    "origin_groups",
                    Some(i),
                    "id",
                    format!("id `{}` is already taken", g.id),
                ));
            }
        }

        // Policies.
        let mut cache_policies: BTreeMap<String, Arc<CachePolicy>> = BTreeMap::new();
        for (name, c) in &file.cache_policies {
            let section = format!("cache_policies.{name}");
            if managed_cache_policy(name).is_some() {
                return Err(err(
                    &section,
                    None,
                    "min_ttl",
                    format!("cache policy `{name}` is a managed policy's name; choose another"),
                ));
            }
            if !(c.min_ttl <= c.default_ttl && c.default_ttl <= c.max_ttl) {
                return Err(err(
                    &section,
                    None,
                    "default_ttl",
                    format!("cache policy `{name}`: need min_ttl <= default_ttl <= max_ttl (have {}, {}, {})", c.min_ttl, c.default_ttl, c.max_ttl),
                ));
            }
            let mut enc = Vec::new();
            for e in &c.accept_encoding {
                enc.push(match e.to_ascii_lowercase().as_str() {
                    "gzip" => Encoding::Gzip,
                    "br" => Encoding::Br,
                    "zstd" => Encoding::Zstd,
                    other => {
                        return Err(err(
                            &section,
                            None,
                            "accept_encoding",
                            format!(
                            "cache policy `{name}`: unknown encoding `{other}` (gzip, br, zstd)"
                        ),
                        ))
                    }
                });
            }
            let headers = KeyRule::from_config(&c.headers, true);
            if headers.takes("authorization")
                && !matches!(headers, KeyRule::AllExcept(_) | KeyRule::All)
            {
                return Err(err(
                    &section,
                    None,
                    "headers",
                    format!("cache policy `{name}`: Authorization is never a cache key input"),
                ));
            }
            if matches!(headers, KeyRule::All) {
                return Err(err(&section, None, "headers", format!("cache policy `{name}`: headers behavior `all` is not allowed in a cache key (CloudFront neither); use whitelist")));
            }
            cache_policies.insert(
                name.clone(),
                Arc::new(CachePolicy {
                    name: name.clone(),
                    min_ttl: c.min_ttl.get(),
                    default_ttl: c.default_ttl.get(),
                    max_ttl: c.max_ttl.get(),
                    query_strings: KeyRule::from_config(&c.query_strings, false),
                    headers,
                    cookies: KeyRule::from_config(&c.cookies, false),
                    accept_encoding: enc,
                    managed: false,
                }),
            );
        }
        let mut orps: BTreeMap<String, Arc<OriginRequestPolicy>> = BTreeMap::new();
        for (name, c) in &file.origin_request_policies {
            if managed_origin_request_policy(name).is_some() {
                return Err(err(
                    &format!("origin_request_policies.{name}"),
                    None,
                    "headers",
                    format!(
                        "origin request policy `{name}` is a managed policy's name; choose another"
                    ),
                ));
            }
            let headers = KeyRule::from_config(&c.headers, true);
            orps.insert(
                name.clone(),
                Arc::new(OriginRequestPolicy {
                    name: name.clone(),
                    query_strings: KeyRule::from_config(&c.query_strings, false),
                    forward_host: headers.takes("host"),
                    headers,
                    cookies: KeyRule::from_config(&c.cookies, false),
                }),
            );
        }
        let mut rhps: BTreeMap<String, Arc<ResponseHeadersPolicy>> = BTreeMap::new();
        for (name, c) in &file.response_headers_policies {
            let p = response_headers_policy(c).map_err(|m| {
                err(
                    &format!("response_headers_policies.{name}"),
                    None,
                    "set",
                    format!("response headers policy `{name}`: {m}"),
                )
            })?;
            rhps.insert(name.clone(), Arc::new(p));
        }

        // Behaviours.
        let default = file.default_behavior.clone().ok_or_else(|| ConfigError {
            file: file_name.to_string(),
            line: None,
            message: "missing [default_behavior] (every distribution needs one: origin = \"...\")"
                .into(),
        })?;
        if default.path.is_some() {
            return Err(err(
                "default_behavior",
                None,
                "path",
                "default_behavior takes no path: it matches whatever the others do not".into(),
            ));
        }
        let mut behaviours = Vec::new();
        let all: Vec<(Option<usize>, &BehaviorConfig)> = file
            .behaviors
            .iter()
            .enumerate()
            .map(|(i, b)| (Some(i), b))
            .chain(std::iter::once((None, &default)))
            .collect();
        for (pos, (i, b)) in all.iter().enumerate() {
            let section = if i.is_some() {
                "behaviors"
            } else {
                "default_behavior"
            };
            let what = match i {
                Some(i) => format!("behaviors[{i}]"),
                None => "default_behavior".to_string(),
            };
            let matcher = match (&b.path, i) {
                (Some(p), Some(_)) => {
                    if p.is_empty() {
                        return Err(err(section, *i, "path", format!("{what}.path is empty")));
                    }
                    Some(wildmatch::WildMatch::new(&normalise_pattern(p)))
                }
                (None, Some(_)) => {
                    return Err(err(section, *i, "origin", format!("{what} needs a path")))
                }
                _ => None,
            };
            let upstream = if let Some(o) = origins.get(&b.origin) {
                Upstream::Origin(o.clone())
            } else if let Some(g) = groups.get(&b.origin) {
                Upstream::Group(g.clone())
            } else {
                let known: Vec<_> = origins.keys().chain(groups.keys()).cloned().collect();
                return Err(err(
                    section,
                    *i,
                    "origin",
                    format!(
                        "{what}.origin: no origin or origin group with id `{}` (known: {})",
                        b.origin,
                        if known.is_empty() {
                            "none".into()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            };
            let cp_name = b
                .cache_policy
                .clone()
                .unwrap_or_else(|| defaults::CACHE_POLICY.to_string());
            let cache_policy = match cache_policies.get(&cp_name) {
                Some(p) => p.clone(),
                None => Arc::new(managed_cache_policy(&cp_name).ok_or_else(|| {
                    err(section, *i, "cache_policy", format!("{what}.cache_policy: no cache policy `{cp_name}` (define it under [cache_policies.{cp_name}] or use a managed one: CachingOptimized, CachingDisabled, UseOriginCacheControlHeaders, UseOriginCacheControlHeaders-QueryStrings)"))
                })?),
            };
            let orp_name = b
                .origin_request_policy
                .clone()
                .unwrap_or_else(|| defaults::ORIGIN_REQUEST_POLICY.to_string());
            let origin_request_policy = match orps.get(&orp_name) {
                Some(p) => p.clone(),
                None => Arc::new(managed_origin_request_policy(&orp_name).ok_or_else(|| {
                    err(section, *i, "origin_request_policy", format!("{what}.origin_request_policy: no origin request policy `{orp_name}` (define it or use a managed one: AllViewer, AllViewerExceptHostHeader, CORS-S3Origin, UserAgentRefererHeaders)"))
                })?),
            };
            let response_headers = match &b.response_headers {
                None => Arc::new(ResponseHeadersPolicy::default()),
                Some(ResponseHeadersRef::Named(n)) => rhps.get(n).cloned().ok_or_else(|| {
                    err(
                        section,
                        *i,
                        "response_headers",
                        format!("{what}.response_headers: no response headers policy `{n}`"),
                    )
                })?,
                Some(ResponseHeadersRef::Inline(c)) => {
                    Arc::new(response_headers_policy(c).map_err(|m| {
                        err(
                            section,
                            *i,
                            "response_headers",
                            format!("{what}.response_headers: {m}"),
                        )
                    })?)
                }
            };
            let default_methods: Vec<String> = defaults::ALLOWED_METHODS
                .iter()
                .map(|s| s.to_string())
                .collect();
            let allowed_methods = MethodSet::parse(
                b.allowed_methods.as_ref().unwrap_or(&default_methods),
            )
            .map_err(|m| {
                err(
                    section,
                    *i,
                    "allowed_methods",
                    format!("{what}.allowed_methods: {m}"),
                )
            })?;
            let cached_default = vec!["GET".to_string(), "HEAD".to_string()];
            let cached_methods = MethodSet::parse(
                b.cached_methods.as_ref().unwrap_or(&cached_default),
            )
            .map_err(|m| {
                err(
                    section,
                    *i,
                    "cached_methods",
                    format!("{what}.cached_methods: {m}"),
                )
            })?;
            for m in b.cached_methods.iter().flatten() {
                if !matches!(m.to_ascii_uppercase().as_str(), "GET" | "HEAD" | "OPTIONS") {
                    return Err(err(section, *i, "cached_methods", format!("{what}.cached_methods: only GET, HEAD and OPTIONS can be cached, not `{m}`")));
                }
            }
            behaviours.push(Arc::new(Behaviour {
                path: b.path.clone(),
                matcher,
                upstream,
                cache_policy,
                origin_request_policy,
                response_headers,
                allowed_methods,
                cached_methods,
                viewer_protocol_policy: b.viewer_protocol_policy,
                index: pos,
            }));
        }

        if file.node.listen_tls.is_some() && file.node.tls.is_none() {
            return Err(err(
                "node",
                None,
                "listen_tls",
                "node.listen_tls needs node.tls = { cert = \"...\", key = \"...\" }".into(),
            ));
        }
        if let Some(id) = &file.node.id {
            if id.is_empty()
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                return Err(err("node", None, "id", format!("node.id `{id}` may use only letters, digits, '-', '_' and '.' (it appears in Via and Cache-Status)")));
            }
        }
        if file.store.memory > file.store.size {
            return Err(err(
                "store",
                None,
                "memory",
                format!(
                    "store.memory ({}) is larger than store.size ({})",
                    file.store.memory, file.store.size
                ),
            ));
        }
        if let Some(c) = &file.cluster {
            if let Some(name) = &c.peers_dns {
                let port_ok = name
                    .rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
                if !port_ok {
                    return Err(err(
                        "cluster",
                        None,
                        "peers_dns",
                        format!("cluster.peers_dns `{name}` is not NAME:PORT"),
                    ));
                }
            }
            if !c.dns_servers.is_empty() && c.peers_dns.is_none() {
                return Err(err(
                    "cluster",
                    None,
                    "dns_servers",
                    "cluster.dns_servers is set but cluster.peers_dns is not: nothing to resolve"
                        .into(),
                ));
            }
            for (i, p) in c.peers.iter().enumerate() {
                if p.parse::<std::net::SocketAddr>().is_err() && !p.contains(':') {
                    return Err(err(
                        "cluster",
                        None,
                        "peers",
                        format!("cluster.peers[{i}] `{p}` is not HOST:PORT"),
                    ));
                }
            }
        }
        if let Some(env) = &file.node.admin_token_env {
            if env.is_empty() {
                return Err(err(
                    "node",
                    None,
                    "admin_token_env",
                    "node.admin_token_env is empty".into(),
                ));
            }
        }

        let node_id = file.node.id.clone().unwrap_or_else(default_node_id);
        Ok(Resolved {
            file,
            node_id,
            behaviours,
            origins,
        })
    }

    /// Parses and resolves a config document given as text (tests, `strata demo`).
    pub fn from_toml(text: &str, file_name: &str) -> Result<Resolved, ConfigError> {
        let file = ConfigFile::parse(text, file_name)?;
        Resolved::new(file, file_name, Some(text))
    }

    /// The behaviour for a request path: the first that matches, the default one last.
    pub fn route(&self, path: &str) -> &Arc<Behaviour> {
        self.behaviours
            .iter()
            .find(|b| b.matches(path))
            .unwrap_or_else(|| {
                self.behaviours
                    .last()
                    .expect("the default behaviour is always present")
            })
    }

    /// A listing of the resolved behaviours, for `strata check-config`.
    pub fn describe(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "node {} listening on {} (admin {})",
            self.node_id, self.file.node.listen, self.file.node.admin_listen
        );
        let _ = writeln!(
            s,
            "store {} size {} memory {}",
            self.file.store.path.display(),
            self.file.store.size,
            self.file.store.memory
        );
        for (id, o) in &self.origins {
            let _ = writeln!(
                s,
                "origin {id}: {}{}",
                o.config.url,
                if o.config.s3.is_some() {
                    " (S3, SigV4)"
                } else {
                    ""
                }
            );
        }
        for b in &self.behaviours {
            let cp = &b.cache_policy;
            let _ = writeln!(
                s,
                "{:>2}. {:<24} -> {:<12} cache_policy={} (ttl {}s/{}s/{}s) origin_request_policy={}{}",
                b.index + 1,
                b.path.as_deref().unwrap_or("(default)"),
                b.upstream.id(),
                cp.name,
                cp.min_ttl.as_secs(),
                cp.default_ttl.as_secs(),
                cp.max_ttl.as_secs(),
                b.origin_request_policy.name,
                if b.response_headers.is_empty() { "" } else { " +response_headers" },
            );
        }
        s
    }
}

/// CloudFront treats a pattern without a leading `/` as if it had one.
fn normalise_pattern(p: &str) -> String {
    if p.starts_with('/') || p.starts_with('*') {
        p.to_string()
    } else {
        format!("/{p}")
    }
}

fn response_headers_policy(c: &ResponseHeadersConfig) -> Result<ResponseHeadersPolicy, String> {
    let pair = |n: &String, v: &String| -> Result<(HeaderName, HeaderValue), String> {
        Ok((
            HeaderName::from_bytes(n.as_bytes())
                .map_err(|_| format!("`{n}` is not a header name"))?,
            HeaderValue::from_str(v)
                .map_err(|_| format!("the value of `{n}` is not a valid header value"))?,
        ))
    };
    Ok(ResponseHeadersPolicy {
        set: c
            .set
            .iter()
            .map(|(n, v)| pair(n, v))
            .collect::<Result<_, _>>()?,
        add: c
            .add
            .iter()
            .map(|(n, v)| pair(n, v))
            .collect::<Result<_, _>>()?,
        remove: c
            .remove
            .iter()
            .map(|n| {
                HeaderName::from_bytes(n.as_bytes())
                    .map_err(|_| format!("`{n}` is not a header name"))
            })
            .collect::<Result<_, _>>()?,
    })
}

fn default_node_id() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let id: String = raw
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .collect();
    if id.is_empty() {
        "strata".into()
    } else {
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(text: &str) -> Result<Resolved, ConfigError> {
        let f = ConfigFile::parse(text, "t.toml")?;
        Resolved::new(f, "t.toml", Some(text))
    }

    const BASE: &str = r#"
[[origins]]
id = "alb"
url = "http://127.0.0.1:1"

[[behaviors]]
path = "/api/*"
origin = "alb"
cache_policy = "CachingDisabled"

[[behaviors]]
path = "/img/?.png"
origin = "alb"

[default_behavior]
origin = "alb"
cache_policy = "CachingOptimized"
"#;

    #[test]
    fn routes_first_match_then_default() {
        let r = resolve(BASE).unwrap();
        assert_eq!(r.route("/api/v1/items").name(), "/api/*");
        assert_eq!(r.route("/api/").name(), "/api/*");
        assert_eq!(
            r.route("/API/x").name(),
            "default",
            "patterns are case-sensitive"
        );
        assert_eq!(r.route("/img/a.png").name(), "/img/?.png");
        assert_eq!(
            r.route("/img/ab.png").name(),
            "default",
            "? is one character"
        );
        assert_eq!(r.route("/other").name(), "default");
    }

    #[test]
    fn unknown_origin_names_the_line() {
        let text = BASE.replace(
            "origin = \"alb\"\ncache_policy = \"CachingDisabled\"",
            "origin = \"nope\"\ncache_policy = \"CachingDisabled\"",
        );
        let e = resolve(&text).unwrap_err();
        assert_eq!(e.line, Some(8), "{e}");
        assert!(e.message.contains("nope"), "{e}");
    }

    #[test]
    fn unknown_policy_is_an_error() {
        let text = BASE.replace("CachingOptimized", "CachingMaybe");
        let e = resolve(&text).unwrap_err();
        assert!(e.message.contains("CachingMaybe"), "{e}");
    }

    #[test]
    fn missing_default_behaviour_is_an_error() {
        let e = resolve("[[origins]]\nid=\"a\"\nurl=\"http://x\"\n").unwrap_err();
        assert!(e.message.contains("default_behavior"), "{e}");
    }

    #[test]
    fn ttl_order_is_checked() {
        let text = format!("{BASE}\n[cache_policies.Bad]\nmin_ttl = \"1h\"\ndefault_ttl = \"1m\"\nmax_ttl = \"1d\"\n");
        let e = resolve(&text).unwrap_err();
        assert!(e.message.contains("min_ttl <= default_ttl"), "{e}");
    }

    #[test]
    fn authorization_is_never_a_key_input() {
        let text = format!("{BASE}\n[cache_policies.Auth]\nheaders = {{ behavior = \"whitelist\", names = [\"Authorization\"] }}\n");
        let e = resolve(&text).unwrap_err();
        assert!(e.message.contains("Authorization"), "{e}");
    }

    #[test]
    fn methods_are_checked() {
        let r = resolve(BASE).unwrap();
        assert!(r.route("/x").allowed_methods.contains(&Method::DELETE));
        let text = BASE.replace(
            "cache_policy = \"CachingOptimized\"",
            "cache_policy = \"CachingOptimized\"\nallowed_methods = [\"GET\", \"HEAD\"]",
        );
        let r = resolve(&text).unwrap();
        assert!(!r.route("/x").allowed_methods.contains(&Method::POST));
        let text = BASE.replace(
            "cache_policy = \"CachingOptimized\"",
            "cache_policy = \"CachingOptimized\"\nallowed_methods = [\"GET\", \"BREW\"]",
        );
        assert!(resolve(&text).is_err());
    }
}
