//! SigV4 for S3 origins: credentials from the standard AWS environment variables or the
//! shared credentials file, the request URI put in the strict form S3 verifies, and the
//! final upstream request signed with `aws-sigv4` the way the AWS SDKs sign S3 requests
//! (no path normalisation, single encoding, `x-amz-content-sha256`).
//!
//! This module signs what the proxy built; it never decides what is forwarded. It reads
//! credentials once, when the origin's client is built (at start and on reload): a node
//! whose S3 origin has no credentials does not start.

use crate::config::{S3Addressing, S3Config};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use http::header::HOST;
use http::{HeaderValue, Request, Uri};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Where credentials came from, for messages (never the secret itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    Environment,
    File { path: PathBuf, profile: String },
}

impl std::fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CredentialSource::Environment => write!(f, "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"),
            CredentialSource::File { path, profile } => {
                write!(f, "profile [{profile}] of {}", path.display())
            }
        }
    }
}

/// Signs requests for one S3 origin.
pub struct S3Signer {
    region: String,
    service: String,
    addressing: S3Addressing,
    credentials: Credentials,
    pub source: CredentialSource,
}

impl std::fmt::Debug for S3Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Signer")
            .field("region", &self.region)
            .field("service", &self.service)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// A variable lookup, so tests need not touch the process environment.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl S3Signer {
    /// Builds a signer, loading credentials from the process environment.
    pub fn new(cfg: &S3Config) -> Result<S3Signer, String> {
        S3Signer::with_env(cfg, &process_env)
    }

    /// Builds a signer with credentials looked up through `env`: an explicit `profile` in
    /// the config reads the shared credentials file; otherwise `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`) when set; otherwise the profile
    /// named by `AWS_PROFILE` (or `default`) of the shared credentials file.
    pub fn with_env(cfg: &S3Config, env: Env<'_>) -> Result<S3Signer, String> {
        let (credentials, source) = load_credentials(cfg.profile.as_deref(), env)?;
        Ok(S3Signer {
            region: cfg.region.clone(),
            service: cfg.service.clone(),
            addressing: cfg.addressing,
            credentials,
            source,
        })
    }

    /// Puts the request in the form S3 verifies and signs it. `empty_body` says whether the
    /// request has no body (its payload hash is then the empty string's, as the SDKs send
    /// GETs); other bodies are sent as `UNSIGNED-PAYLOAD`.
    pub fn sign<B>(
        &self,
        req: &mut Request<B>,
        empty_body: bool,
        time: SystemTime,
    ) -> Result<(), String> {
        let uri = self.s3_uri(req.uri())?;
        let authority = uri
            .authority()
            .ok_or("the S3 origin URL has no host")?
            .as_str()
            .to_string();
        *req.uri_mut() = uri;
        let h = req.headers_mut();
        // S3's own fields come from this signer only: a viewer's Authorization or x-amz-*
        // fields would be signed as if the node meant them.
        h.remove(http::header::AUTHORIZATION);
        let amz: Vec<_> = h
            .keys()
            .filter(|n| n.as_str().starts_with("x-amz-"))
            .cloned()
            .collect();
        for n in amz {
            h.remove(n);
        }
        // Fields that are not text could not be signed; S3 would not read them anyway.
        let opaque: Vec<_> = h
            .iter()
            .filter(|(_, v)| v.to_str().is_err())
            .map(|(n, _)| n.clone())
            .collect();
        for n in opaque {
            h.remove(n);
        }
        // Whatever the origin request policy said, S3 must see its own host.
        h.insert(
            HOST,
            HeaderValue::from_str(&authority).map_err(|e| format!("bad S3 host: {e}"))?,
        );

        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let identity = self.credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(&self.service)
            .time(time)
            .settings(settings)
            .build()
            .map_err(|e| format!("SigV4 parameters: {e}"))?
            .into();
        let uri_string = req.uri().to_string();
        let method = req.method().as_str().to_string();
        let headers: Vec<(String, String)> = req
            .headers()
            .iter()
            .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let body = if empty_body {
            SignableBody::Bytes(&[])
        } else {
            SignableBody::UnsignedPayload
        };
        let signable = SignableRequest::new(
            &method,
            uri_string.as_str(),
            headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
            body,
        )
        .map_err(|e| format!("cannot sign {uri_string}: {e}"))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| format!("cannot sign {uri_string}: {e}"))?
            .into_parts();
        instructions.apply_to_request_http1x(req);
        Ok(())
    }

    /// The URI sent to S3: virtual-hosted addressing moves the bucket (the first path
    /// segment) into the host; the path and query are re-encoded strictly.
    fn s3_uri(&self, uri: &Uri) -> Result<Uri, String> {
        let scheme = uri.scheme_str().unwrap_or("http");
        let authority = uri.authority().ok_or("the S3 origin URL has no host")?;
        let raw_path = uri.path();
        let (authority, path) = match self.addressing {
            S3Addressing::Path => (authority.as_str().to_string(), raw_path),
            S3Addressing::Virtual => {
                let rest = raw_path.trim_start_matches('/');
                let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err("virtual-hosted addressing needs the bucket as the first path segment of the origin URL".into());
                }
                (
                    format!("{}.{}", bucket, authority.as_str()),
                    // The slash before the key stays.
                    &raw_path[raw_path.len() - key.len() - 1..],
                )
            }
        };
        let mut pq = strict_path(path);
        if let Some(q) = uri.query() {
            let q = strict_query(q);
            if !q.is_empty() {
                pq.push('?');
                pq.push_str(&q);
            }
        }
        Uri::builder()
            .scheme(scheme)
            .authority(authority.as_str())
            .path_and_query(pq)
            .build()
            .map_err(|e| format!("cannot build the S3 request URI: {e}"))
    }
}

/// Percent-decodes `s` (invalid escapes stay as they are).
fn decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Encodes bytes with everything but RFC 3986's unreserved set (and `keep`) escaped, in
/// upper-case hex.
fn encode(bytes: &[u8], keep: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &c in bytes {
        if c.is_ascii_alphanumeric() || b"-._~".contains(&c) || keep.contains(&c) {
            out.push(c as char);
        } else {
            out.push('%');
            out.push(HEX[(c >> 4) as usize] as char);
            out.push(HEX[(c & 15) as usize] as char);
        }
    }
}

/// A path decoded and re-encoded strictly, segment by segment (`/` kept).
pub fn strict_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 8);
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        encode(&decode(seg), &[], &mut out);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// A query decoded and re-encoded strictly, pair by pair (`+` is a plus sign, as S3 reads
/// it in a key).
pub fn strict_query(q: &str) -> String {
    let mut out = String::with_capacity(q.len() + 8);
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        if !out.is_empty() {
            out.push('&');
        }
        let (name, value) = match pair.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (pair, None),
        };
        encode(&decode(name), &[], &mut out);
        out.push('=');
        if let Some(v) = value {
            encode(&decode(v), &[], &mut out);
        }
    }
    out
}

fn load_credentials(
    profile: Option<&str>,
    env: Env<'_>,
) -> Result<(Credentials, CredentialSource), String> {
    if profile.is_none() {
        match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
            (Some(id), Some(secret)) => {
                let token = env("AWS_SESSION_TOKEN");
                return Ok((
                    Credentials::new(id, secret, token, None, "environment"),
                    CredentialSource::Environment,
                ));
            }
            (Some(_), None) => {
                return Err(
                    "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not: set both".into(),
                )
            }
            _ => {}
        }
    }
    let profile = profile
        .map(str::to_string)
        .or_else(|| env("AWS_PROFILE"))
        .unwrap_or_else(|| "default".to_string());
    let path = match env("AWS_SHARED_CREDENTIALS_FILE") {
        Some(p) => PathBuf::from(p),
        None => match env("HOME") {
            Some(home) => Path::new(&home).join(".aws").join("credentials"),
            None => {
                return Err(no_credentials(&profile, None));
            }
        },
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(no_credentials(&profile, Some(&path)))
        }
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let section =
        ini_section(&text, &profile).ok_or_else(|| no_credentials(&profile, Some(&path)))?;
    let get = |k: &str| {
        section
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    let (Some(id), Some(secret)) = (get("aws_access_key_id"), get("aws_secret_access_key")) else {
        return Err(format!(
            "profile [{profile}] of {} lacks aws_access_key_id or aws_secret_access_key",
            path.display()
        ));
    };
    let token = get("aws_session_token");
    Ok((
        Credentials::new(id, secret, token, None, "shared-credentials-file"),
        CredentialSource::File { path, profile },
    ))
}

fn no_credentials(profile: &str, file: Option<&Path>) -> String {
    let file = file.map_or("~/.aws/credentials".to_string(), |p| {
        p.display().to_string()
    });
    format!(
        "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or add a \
         profile [{profile}] with aws_access_key_id and aws_secret_access_key to {file} \
         (AWS_SHARED_CREDENTIALS_FILE and AWS_PROFILE choose the file and the profile)"
    )
}

/// The `key = value` pairs of one `[name]` section of an INI file.
fn ini_section(text: &str, name: &str) -> Option<Vec<(String, String)>> {
    let mut found = None;
    let mut current: Option<Vec<(String, String)>> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(sec) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            if let Some(done) = current.take() {
                found = Some(done);
            }
            if sec.trim() == name {
                current = Some(Vec::new());
            }
            continue;
        }
        if let (Some(cur), Some((k, v))) = (current.as_mut(), line.split_once('=')) {
            cur.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    current.or(found)
}

/// What an S3 error body says, as `(Code, Message)`.
pub fn error_code(body: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(body).ok()?;
    let tag = |t: &str| {
        let open = format!("<{t}>");
        let start = text.find(&open)? + open.len();
        let end = text[start..].find(&format!("</{t}>"))? + start;
        Some(text[start..end].trim().to_string())
    };
    Some((tag("Code")?, tag("Message").unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(addressing: S3Addressing, profile: Option<&str>) -> S3Config {
        S3Config {
            region: "us-east-1".into(),
            profile: profile.map(str::to_string),
            addressing,
            service: "s3".into(),
        }
    }

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn paths_are_reencoded_strictly() {
        assert_eq!(strict_path("/b/a%2fb"), "/b/a%2Fb");
        assert_eq!(
            strict_path("/b/it's (1)!*.txt"),
            "/b/it%27s%20%281%29%21%2A.txt"
        );
        assert_eq!(strict_path("/b/%7euser/x~y"), "/b/~user/x~y");
        assert_eq!(strict_path("/b/caf%C3%A9"), "/b/caf%C3%A9");
        assert_eq!(strict_path("/b/100%"), "/b/100%25");
        assert_eq!(strict_path(""), "/");
        assert_eq!(strict_query("a=1+2&b&c=x%2fy"), "a=1%2B2&b=&c=x%2Fy");
    }

    #[test]
    fn virtual_addressing_moves_the_bucket_into_the_host() {
        let env = env_of(&[("AWS_ACCESS_KEY_ID", "AK"), ("AWS_SECRET_ACCESS_KEY", "S")]);
        let s = S3Signer::with_env(&cfg(S3Addressing::Virtual, None), &env).unwrap();
        let u: Uri = "https://s3.eu-west-1.amazonaws.com/shop/img/a b.png"
            .replace(' ', "%20")
            .parse()
            .unwrap();
        let v = s.s3_uri(&u).unwrap();
        assert_eq!(
            v.to_string(),
            "https://shop.s3.eu-west-1.amazonaws.com/img/a%20b.png"
        );
        let p = S3Signer::with_env(&cfg(S3Addressing::Path, None), &env).unwrap();
        assert_eq!(p.s3_uri(&u).unwrap(), u);
    }

    #[test]
    fn credentials_from_env_then_file() {
        let env = env_of(&[
            ("AWS_ACCESS_KEY_ID", "AKENV"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
        ]);
        let (c, src) = load_credentials(None, &env).unwrap();
        assert_eq!(c.access_key_id(), "AKENV");
        assert_eq!(src, CredentialSource::Environment);

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("credentials");
        std::fs::write(
            &file,
            "[default]\naws_access_key_id = AKDEF\naws_secret_access_key = s1\n\n\
             [media]\n# comment\naws_access_key_id=AKMEDIA\naws_secret_access_key=s2\naws_session_token = tok\n",
        )
        .unwrap();
        let f = file.to_str().unwrap();
        let env = env_of(&[("AWS_SHARED_CREDENTIALS_FILE", f)]);
        let (c, _) = load_credentials(None, &env).unwrap();
        assert_eq!(c.access_key_id(), "AKDEF");
        let (c, src) = load_credentials(Some("media"), &env).unwrap();
        assert_eq!(c.access_key_id(), "AKMEDIA");
        assert_eq!(c.session_token(), Some("tok"));
        assert!(matches!(src, CredentialSource::File { .. }));
        let env = env_of(&[("AWS_SHARED_CREDENTIALS_FILE", f), ("AWS_PROFILE", "media")]);
        assert_eq!(
            load_credentials(None, &env).unwrap().0.access_key_id(),
            "AKMEDIA"
        );
        let err = load_credentials(Some("nope"), &env).unwrap_err();
        assert!(
            err.contains("no AWS credentials") && err.contains("[nope]"),
            "{err}"
        );
        let err = load_credentials(None, &env_of(&[("HOME", "/nonexistent")])).unwrap_err();
        assert!(err.contains("AWS_ACCESS_KEY_ID"), "{err}");
    }

    #[test]
    fn signs_host_date_and_payload_hash() {
        let env = env_of(&[("AWS_ACCESS_KEY_ID", "AK"), ("AWS_SECRET_ACCESS_KEY", "S")]);
        let s = S3Signer::with_env(&cfg(S3Addressing::Path, None), &env).unwrap();
        let mut req = Request::builder()
            .uri("http://127.0.0.1:9000/bucket/a(1).txt")
            .header("host", "viewer.example")
            .header("range", "bytes=0-9")
            .header("x-amz-security-token", "injected")
            .header("authorization", "Bearer viewer")
            .body(())
            .unwrap();
        s.sign(&mut req, true, SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(req.uri().path(), "/bucket/a%281%29.txt");
        assert_eq!(req.headers()["host"], "127.0.0.1:9000");
        assert!(req.headers().get("x-amz-security-token").is_none());
        let auth = req.headers()["authorization"].to_str().unwrap();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AK/19700101/us-east-1/s3/aws4_request")
        );
        assert!(
            auth.contains("SignedHeaders=host;range;x-amz-content-sha256;x-amz-date"),
            "{auth}"
        );
        assert_eq!(
            req.headers()["x-amz-content-sha256"],
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn reads_s3_error_codes() {
        let body = b"<?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match</Message></Error>";
        let (code, msg) = error_code(body).unwrap();
        assert_eq!(code, "SignatureDoesNotMatch");
        assert!(msg.starts_with("The request signature"));
    }
}
