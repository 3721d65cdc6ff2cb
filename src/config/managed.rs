//! CloudFront's managed policies, by their names, as AWS documents them. A config may use
//! these names without defining them; defining a policy of the same name is an error.

use super::resolve::{CachePolicy, Encoding, ForwardRule, KeyRule, OriginRequestPolicy};
use std::time::Duration;

const YEAR: Duration = Duration::from_secs(31_536_000);
const DAY: Duration = Duration::from_secs(86_400);

/// A managed cache policy by its CloudFront name.
pub fn managed_cache_policy(name: &str) -> Option<CachePolicy> {
    let both = vec![Encoding::Gzip, Encoding::Br];
    let p = match name {
        "CachingOptimized" => CachePolicy {
            name: name.into(),
            min_ttl: Duration::from_secs(1),
            default_ttl: DAY,
            max_ttl: YEAR,
            query_strings: KeyRule::None,
            headers: KeyRule::None,
            cookies: KeyRule::None,
            accept_encoding: both,
            managed: true,
        },
        "CachingOptimizedForUncompressedObjects" => CachePolicy {
            name: name.into(),
            min_ttl: Duration::from_secs(1),
            default_ttl: DAY,
            max_ttl: YEAR,
            query_strings: KeyRule::None,
            headers: KeyRule::None,
            cookies: KeyRule::None,
            accept_encoding: vec![],
            managed: true,
        },
        "CachingDisabled" => CachePolicy {
            name: name.into(),
            min_ttl: Duration::ZERO,
            default_ttl: Duration::ZERO,
            max_ttl: Duration::ZERO,
            query_strings: KeyRule::None,
            headers: KeyRule::None,
            cookies: KeyRule::None,
            accept_encoding: vec![],
            managed: true,
        },
        // CloudFront keys these on Host, Origin and the method-override headers, and on all
        // cookies. strata keys on Host always (the key starts with it), so the remaining
        // header inputs are Origin and the overrides.
        "UseOriginCacheControlHeaders" | "UseOriginCacheControlHeaders-QueryStrings" => {
            CachePolicy {
                name: name.into(),
                min_ttl: Duration::ZERO,
                default_ttl: Duration::ZERO,
                max_ttl: YEAR,
                query_strings: if name.ends_with("QueryStrings") {
                    KeyRule::All
                } else {
                    KeyRule::None
                },
                headers: KeyRule::Whitelist(vec![
                    "origin".into(),
                    "x-http-method-override".into(),
                    "x-http-method".into(),
                    "x-method-override".into(),
                ]),
                cookies: KeyRule::All,
                accept_encoding: both,
                managed: true,
            }
        }
        _ => return None,
    };
    Some(p)
}

/// A managed origin request policy by its CloudFront name.
pub fn managed_origin_request_policy(name: &str) -> Option<OriginRequestPolicy> {
    let p = match name {
        "AllViewer" => OriginRequestPolicy {
            name: name.into(),
            query_strings: ForwardRule::All,
            headers: ForwardRule::All,
            cookies: ForwardRule::All,
            forward_host: true,
        },
        "AllViewerExceptHostHeader" => OriginRequestPolicy {
            name: name.into(),
            query_strings: ForwardRule::All,
            headers: ForwardRule::All,
            cookies: ForwardRule::All,
            forward_host: false,
        },
        "CORS-S3Origin" => OriginRequestPolicy {
            name: name.into(),
            query_strings: ForwardRule::None,
            headers: ForwardRule::Whitelist(vec![
                "origin".into(),
                "access-control-request-headers".into(),
                "access-control-request-method".into(),
            ]),
            cookies: ForwardRule::None,
            forward_host: false,
        },
        "CORS-CustomOrigin" => OriginRequestPolicy {
            name: name.into(),
            query_strings: ForwardRule::None,
            headers: ForwardRule::Whitelist(vec!["origin".into()]),
            cookies: ForwardRule::None,
            forward_host: false,
        },
        "UserAgentRefererHeaders" => OriginRequestPolicy {
            name: name.into(),
            query_strings: ForwardRule::All,
            headers: ForwardRule::Whitelist(vec!["user-agent".into(), "referer".into()]),
            cookies: ForwardRule::None,
            forward_host: false,
        },
        _ => return None,
    };
    Some(p)
}
