//! Typed views of the header fields this server reads (RFC 3261 §20, §25).
//!
//! Owns: the grammar decisions for From/To/Contact (name-addr vs addr-spec), Via,
//! CSeq, the Request-URI and digest credentials, including the strictness RFC 4475
//! asks for (unterminated quotes, unquoted commas in display names, spaces inside
//! `<>`, empty Via entries are 400s). SIP URIs themselves are parsed by rsipstack; this
//! is the only module besides `message` that names it.

use std::fmt;

use thiserror::Error;

/// A parsed `sip:`/`sips:` URI (rsipstack's type, re-exported behind our module).
pub type Uri = rsipstack::sip::Uri;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("unterminated quoted string")]
    UnterminatedQuote,
    #[error("display name must be a quoted string or tokens")]
    BadDisplayName,
    #[error("missing '>'")]
    MissingAngle,
    #[error("whitespace inside <>")]
    SpaceInAngle,
    #[error("a URI with headers or parameters must be enclosed in <>")]
    UnenclosedUri,
    #[error("empty parameter")]
    EmptyParam,
    #[error("empty list entry")]
    EmptyEntry,
    #[error("malformed URI")]
    BadUri,
    #[error("malformed value")]
    Malformed,
    #[error("number out of range")]
    OutOfRange,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum UriError {
    #[error("scheme not supported")]
    UnsupportedScheme,
    #[error("malformed URI")]
    Malformed,
    #[error("headers are not allowed in a Request-URI")]
    Headers,
}

/// `;name[=value]` parameters after a name-addr or a Via.
pub type Params = Vec<(String, Option<String>)>;

fn parse_params(s: &str) -> Result<Params, HeaderError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(vec![]);
    }
    let Some(s) = s.strip_prefix(';') else {
        return Err(HeaderError::Malformed);
    };
    let mut out = Vec::new();
    for part in split_outside_quotes(s, ';') {
        let part = part.trim();
        if part.is_empty() {
            return Err(HeaderError::EmptyParam);
        }
        let (name, value) = match part.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().to_string())),
            None => (part, None),
        };
        if name.is_empty() || !name.bytes().all(super::message::is_token_char) {
            return Err(HeaderError::EmptyParam);
        }
        out.push((name.to_string(), value));
    }
    Ok(out)
}

/// Splits on `sep` outside quoted strings and `<...>`.
fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut quoted, mut angle, mut escaped, mut start) = (false, false, false, 0);
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            c if c == sep && !quoted && !angle => {
                out.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// From, To, Contact, Route values: `[display] <uri> ;params` or `uri ;params`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    pub display: Option<String>,
    /// The URI text as written between `<>` (or the bare addr-spec).
    pub uri: String,
    pub params: Params,
}

impl NameAddr {
    pub fn parse(s: &str) -> Result<NameAddr, HeaderError> {
        let s = s.trim();
        let (display, rest) = if let Some(after) = s.strip_prefix('"') {
            let end = closing_quote(after).ok_or(HeaderError::UnterminatedQuote)?;
            (
                Some(after[..end].to_string()),
                after[end + 1..].trim_start(),
            )
        } else if let Some(lt) = s.find('<') {
            let name = s[..lt].trim();
            if !name
                .bytes()
                .all(|b| super::message::is_token_char(b) || b == b' ' || b == b'\t')
            {
                return Err(HeaderError::BadDisplayName);
            }
            ((!name.is_empty()).then(|| name.to_string()), &s[lt..])
        } else {
            // addr-spec: the URI ends at the first ';' (RFC 3261 §20.10).
            let (uri, params) = match s.find(';') {
                Some(i) => (s[..i].trim_end(), &s[i..]),
                None => (s, ""),
            };
            if uri.contains(['?', ',', ' ', '"']) || uri.is_empty() {
                return Err(HeaderError::UnenclosedUri);
            }
            return Ok(NameAddr {
                display: None,
                uri: uri.to_string(),
                params: parse_params(params)?,
            });
        };
        let inner = rest.strip_prefix('<').ok_or(HeaderError::MissingAngle)?;
        let gt = inner.find('>').ok_or(HeaderError::MissingAngle)?;
        let uri = &inner[..gt];
        if uri.is_empty() || uri.starts_with([' ', '\t']) || uri.ends_with([' ', '\t']) {
            return Err(HeaderError::SpaceInAngle);
        }
        Ok(NameAddr {
            display,
            uri: uri.to_string(),
            params: parse_params(&inner[gt + 1..])?,
        })
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref().unwrap_or(""))
    }

    pub fn tag(&self) -> Option<&str> {
        self.param("tag").filter(|t| !t.is_empty())
    }

    /// The URI when it is `sip:` or `sips:`.
    pub fn sip_uri(&self) -> Option<Uri> {
        let scheme = self.uri.split(':').next()?.to_ascii_lowercase();
        if scheme != "sip" && scheme != "sips" {
            return None;
        }
        rsipstack::sip::parse_uri(&self.uri).ok()
    }

    /// The unescaped user part of a SIP URI.
    pub fn user(&self) -> Option<String> {
        uri_user(&self.sip_uri()?)
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            write!(f, "\"{}\" ", d.replace('\\', "\\\\").replace('"', "\\\""))?;
        }
        write!(f, "<{}>", self.uri)?;
        for (n, v) in &self.params {
            match v {
                Some(v) => write!(f, ";{n}={v}")?,
                None => write!(f, ";{n}")?,
            }
        }
        Ok(())
    }
}

fn closing_quote(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(i),
            _ => {}
        }
    }
    None
}

/// Whether a From/To value already carries a tag.
pub fn has_tag(value: &str) -> bool {
    NameAddr::parse(value).is_ok_and(|n| n.tag().is_some())
}

/// One Contact value (RFC 3261 §20.10); `*` only in REGISTER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contact {
    Wildcard,
    Address(NameAddr),
}

impl Contact {
    pub fn parse_list(s: &str) -> Result<Vec<Contact>, HeaderError> {
        if s.trim() == "*" {
            return Ok(vec![Contact::Wildcard]);
        }
        split_outside_quotes(s, ',')
            .into_iter()
            .map(|part| {
                if part.trim().is_empty() {
                    return Err(HeaderError::EmptyEntry);
                }
                NameAddr::parse(part).map(Contact::Address)
            })
            .collect()
    }
}

/// `CSeq: <number> <method>` (RFC 3261 §8.1.1.5: the number is below 2^31).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: super::Method,
}

impl CSeq {
    pub fn parse(s: &str) -> Result<CSeq, HeaderError> {
        let mut parts = s.split_whitespace();
        let (Some(num), Some(method), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(HeaderError::Malformed);
        };
        if !num.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HeaderError::Malformed);
        }
        let seq = num
            .parse::<u32>()
            .ok()
            .filter(|n| *n < 1 << 31)
            .ok_or(HeaderError::OutOfRange)?;
        let method = super::Method::parse(method).ok_or(HeaderError::Malformed)?;
        Ok(CSeq { seq, method })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

/// The RFC 3261 magic cookie that marks a branch as globally unique.
pub const BRANCH_COOKIE: &str = "z9hG4bK";

/// One Via entry (RFC 3261 §20.42).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    pub transport: String,
    /// `host[:port]` as written.
    pub sent_by: String,
    pub params: Params,
}

impl Via {
    pub fn parse(s: &str) -> Result<Via, HeaderError> {
        // LWS is allowed around the slashes (RFC 4475 §3.1.1.1).
        let mut parts = s.splitn(3, '/');
        let (Some(proto), Some(version), Some(rest)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(HeaderError::Malformed);
        };
        if !proto.trim().eq_ignore_ascii_case("SIP") || version.trim() != "2.0" {
            return Err(HeaderError::Malformed);
        }
        let rest = rest.trim_start();
        let t_end = rest
            .find(|c: char| c.is_whitespace())
            .ok_or(HeaderError::Malformed)?;
        let transport = &rest[..t_end];
        if !transport.bytes().all(super::message::is_token_char) {
            return Err(HeaderError::Malformed);
        }
        let rest = rest[t_end..].trim_start();
        let (sent_by, params) = match rest.find(';') {
            Some(i) => (rest[..i].trim(), &rest[i..]),
            None => (rest.trim(), ""),
        };
        check_host_port(sent_by)?;
        let via = Via {
            transport: transport.to_ascii_uppercase(),
            sent_by: sent_by.to_string(),
            params: parse_params(params)?,
        };
        if let Some(b) = via.branch()
            && (b.is_empty() || b == BRANCH_COOKIE)
        {
            return Err(HeaderError::Malformed);
        }
        Ok(via)
    }

    pub fn branch(&self) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("branch"))
            .map(|(_, v)| v.as_deref().unwrap_or(""))
    }
}

fn check_host_port(s: &str) -> Result<(), HeaderError> {
    let host = if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']').ok_or(HeaderError::Malformed)?;
        let port = &rest[end + 1..];
        if !port.is_empty()
            && port
                .strip_prefix(':')
                .is_none_or(|p| p.parse::<u16>().is_err())
        {
            return Err(HeaderError::Malformed);
        }
        return Ok(());
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => {
                p.parse::<u16>().map_err(|_| HeaderError::Malformed)?;
                h
            }
            None => s,
        }
    };
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    {
        return Err(HeaderError::Malformed);
    }
    Ok(())
}

/// Every Via entry, in order.
pub fn vias(headers: &super::Headers) -> Result<Vec<Via>, HeaderError> {
    let mut out = Vec::new();
    for field in headers.all("Via") {
        for part in split_outside_quotes(field, ',') {
            if part.trim().is_empty() {
                return Err(HeaderError::EmptyEntry);
            }
            out.push(Via::parse(part.trim())?);
        }
    }
    Ok(out)
}

/// Checks the Via entries of a request: the top one fully, lower ones for shape
/// only (an unknown transport further down is opaque, RFC 4475 §3.1.1.10).
pub fn check_vias(headers: &super::Headers) -> Result<(), HeaderError> {
    vias(headers).map(|_| ())
}

/// The top Via entry.
pub fn top_via(headers: &super::Headers) -> Option<Via> {
    let field = headers.get("Via")?;
    Via::parse(split_outside_quotes(field, ',').first()?.trim()).ok()
}

/// Parses a Request-URI. Only `sip:`/`sips:` are served (anything else is 416);
/// escaped headers are refused so they can never turn into real header fields
/// (RFC 4475 §3.1.2.11).
pub fn parse_request_uri(s: &str) -> Result<Uri, UriError> {
    let Some((scheme, rest)) = s.split_once(':') else {
        return Err(UriError::Malformed);
    };
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        return Err(UriError::Malformed);
    }
    if !scheme.eq_ignore_ascii_case("sip") && !scheme.eq_ignore_ascii_case("sips") {
        return Err(UriError::UnsupportedScheme);
    }
    let host_part = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    if host_part.contains('?') {
        return Err(UriError::Headers);
    }
    let host = host_part.split(';').next().unwrap_or_default();
    check_host_port(host).map_err(|_| UriError::Malformed)?;
    rsipstack::sip::parse_uri(s).map_err(|_| UriError::Malformed)
}

/// The user part of a URI with `%HH` escapes decoded (RFC 3261 §19.1.4: escaped and
/// unescaped forms are equivalent).
pub fn uri_user(uri: &Uri) -> Option<String> {
    uri.auth.as_ref().map(|a| percent_decode(&a.user))
}

/// The host of a URI as text (IPv6 without brackets).
pub fn uri_host(uri: &Uri) -> String {
    match &uri.host_with_port.host {
        rsipstack::sip::Host::Domain(d) => d.to_string(),
        rsipstack::sip::Host::IpAddr(ip) => ip.to_string(),
    }
}

/// The port of a URI, when it names one.
pub fn uri_port(uri: &Uri) -> Option<u16> {
    uri.host_with_port.port.as_ref().map(|p| p.value())
}

pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// `Digest k=v, k="v"` credentials or challenges (RFC 7616 §3.3-3.4), parsed here
/// rather than by rsipstack, whose nonce count is a `u8` and breaks after 255 uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthParams {
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

impl AuthParams {
    pub fn parse(s: &str) -> Result<AuthParams, HeaderError> {
        let s = s.trim();
        let (scheme, rest) = s.split_once([' ', '\t']).unwrap_or((s, ""));
        if scheme.is_empty() || !scheme.bytes().all(super::message::is_token_char) {
            return Err(HeaderError::Malformed);
        }
        let mut params = Vec::new();
        for part in split_outside_quotes(rest, ',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (k, v) = part.split_once('=').ok_or(HeaderError::Malformed)?;
            let v = v.trim();
            let v = match v.strip_prefix('"') {
                Some(inner) => {
                    let end = closing_quote(inner).ok_or(HeaderError::UnterminatedQuote)?;
                    inner[..end].replace("\\\"", "\"").replace("\\\\", "\\")
                }
                None => v.to_string(),
            };
            params.push((k.trim().to_ascii_lowercase(), v));
        }
        Ok(AuthParams {
            scheme: scheme.to_string(),
            params,
        })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_addr_forms() {
        let n = NameAddr::parse("\"A \\\"q\\\"\" <sip:a@h>;tag=x").unwrap();
        assert_eq!(n.display.as_deref(), Some("A \\\"q\\\""));
        assert_eq!(n.tag(), Some("x"));
        assert_eq!(n.user().as_deref(), Some("a"));
        let n = NameAddr::parse("caller<sip:caller@example.com>;tag=1").unwrap();
        assert_eq!(n.display.as_deref(), Some("caller"));
        let n = NameAddr::parse("sip:+1972@gw;unknownparam").unwrap();
        assert_eq!(n.uri, "sip:+1972@gw");
        assert_eq!(n.param("unknownparam"), Some(""));
        assert_eq!(
            NameAddr::parse("\"Bell <sip:a@h>"),
            Err(HeaderError::UnterminatedQuote)
        );
        assert_eq!(
            NameAddr::parse("Bell, Alexander <sip:a@h>"),
            Err(HeaderError::BadDisplayName)
        );
        assert_eq!(
            NameAddr::parse("\"W\" < sip:a@h >"),
            Err(HeaderError::SpaceInAngle)
        );
        assert_eq!(
            NameAddr::parse("sip:a@h?Route=x"),
            Err(HeaderError::UnenclosedUri)
        );
    }

    #[test]
    fn contacts_and_vias() {
        assert_eq!(Contact::parse_list("*").unwrap(), vec![Contact::Wildcard]);
        assert_eq!(
            Contact::parse_list("<sip:a@h>, \"x,y\" <sip:b@h>")
                .unwrap()
                .len(),
            2
        );
        assert!(Contact::parse_list("<sip:a@h>;;,;,,").is_err());
        let v = Via::parse("SIP  /   2.0 /UDP 192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(v.sent_by, "192.0.2.2");
        assert_eq!(v.branch(), Some("390skdjuw"));
        assert!(Via::parse("SIP/2.0/UDP h;branch=z9hG4bK").is_err());
        assert!(Via::parse("SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKx").is_ok());
    }

    #[test]
    fn cseq_and_uris() {
        assert_eq!(CSeq::parse("0009 INVITE").unwrap().seq, 9);
        assert_eq!(
            CSeq::parse("36893488147419103232 INVITE"),
            Err(HeaderError::OutOfRange)
        );
        assert_eq!(
            parse_request_uri("nobody:x"),
            Err(UriError::UnsupportedScheme)
        );
        assert_eq!(
            parse_request_uri("sip:u@h?Route=%3Csip:x%3E"),
            Err(UriError::Headers)
        );
        assert!(parse_request_uri("sip:2001:db8::10").is_err());
        let u = parse_request_uri("sip:[2001:db8::10]:5070").unwrap();
        assert_eq!(uri_port(&u), Some(5070));
        let u = parse_request_uri("sip:sips%3Auser%40example.com@example.net").unwrap();
        assert_eq!(uri_user(&u).as_deref(), Some("sips:user@example.com"));
    }

    #[test]
    fn digest_params() {
        let a = AuthParams::parse("Digest username=\"bob\", realm=\"r\", nc=0000012a, qop=auth")
            .unwrap();
        assert_eq!(a.scheme, "Digest");
        assert_eq!(a.get("username"), Some("bob"));
        assert_eq!(a.get("nc"), Some("0000012a"));
    }
}
