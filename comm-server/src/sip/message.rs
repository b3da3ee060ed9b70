//! SIP messages as this server sees them (RFC 3261 §7): framing, the start line, an
//! ordered list of raw header fields, and a body.
//!
//! Owns: turning bytes into a [`Message`] or a [`Rejection`] that says which status to
//! answer (RFC 4475 drives the choices), and turning messages back into bytes. Header
//! values stay raw; typed views (Via, name-addr, CSeq, ...) live in [`super::header`]
//! and are parsed on demand. Must not own: transactions, dialogs, or any I/O.
//!
//! We frame and split header fields ourselves rather than with rsipstack's
//! `parse_message` because it has no catch-all method (an unknown method must get a
//! 501, not a parse failure), guesses `Content-Length` (a negative or repeated value
//! must be rejected: RFC 4475 §3.1.2.3, §3.3.9) and strips `<>` from the Request-URI.

use std::fmt;

use super::header::{self, Uri};

/// Largest message we accept on any transport. RFC 4475's `longreq` is 3.5 KiB; a
/// registration with many contacts or a large SDP stays far below this.
pub const MAX_MESSAGE_LEN: usize = 64 * 1024;

/// A request method (RFC 3261 §7.1). Unknown methods are kept so they can get a 501.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Register,
    Info,
    Update,
    Prack,
    Message,
    Notify,
    Subscribe,
    Refer,
    Publish,
    Other(String),
}

impl Method {
    /// Parses a method token; `None` when it is not a token (RFC 3261 §25.1).
    pub fn parse(token: &str) -> Option<Method> {
        if token.is_empty() || !token.bytes().all(is_token_char) {
            return None;
        }
        Some(match token {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "REGISTER" => Method::Register,
            "INFO" => Method::Info,
            "UPDATE" => Method::Update,
            "PRACK" => Method::Prack,
            "MESSAGE" => Method::Message,
            "NOTIFY" => Method::Notify,
            "SUBSCRIBE" => Method::Subscribe,
            "REFER" => Method::Refer,
            "PUBLISH" => Method::Publish,
            other => Method::Other(other.to_string()),
        })
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Message => "MESSAGE",
            Method::Notify => "NOTIFY",
            Method::Subscribe => "SUBSCRIBE",
            Method::Refer => "REFER",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// RFC 3261 §25.1 `token` characters.
pub fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// Header fields in arrival order. Names keep their spelling; lookups are
/// case-insensitive and understand compact forms (RFC 3261 §7.3.3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    fields: Vec<(String, String)>,
}

/// The long name of a compact header form, or the name itself.
fn long_name(name: &str) -> &str {
    if name.len() != 1 {
        return name;
    }
    match name.as_bytes()[0].to_ascii_lowercase() {
        b'i' => "Call-ID",
        b'm' => "Contact",
        b'e' => "Content-Encoding",
        b'l' => "Content-Length",
        b'c' => "Content-Type",
        b'f' => "From",
        b's' => "Subject",
        b'k' => "Supported",
        b't' => "To",
        b'v' => "Via",
        b'o' => "Event",
        b'r' => "Refer-To",
        b'u' => "Allow-Events",
        _ => name,
    }
}

fn same_name(a: &str, b: &str) -> bool {
    long_name(a).eq_ignore_ascii_case(long_name(b))
}

impl Headers {
    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| same_name(n, name))
            .map(|(_, v)| v.as_str())
    }

    /// Every field line of `name`, in order (comma-joined values are not split).
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |(n, _)| same_name(n, name))
            .map(|(_, v)| v.as_str())
    }

    pub fn count(&self, name: &str) -> usize {
        self.all(name).count()
    }

    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.fields.push((name.into(), value.into()));
    }

    /// Replaces every `name` field with one field holding `value`.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self.fields.iter().position(|(n, _)| same_name(n, name)) {
            Some(i) => {
                self.fields[i].1 = value;
                let mut seen = 0;
                self.fields.retain(|(n, _)| {
                    if same_name(n, name) {
                        seen += 1;
                        seen == 1
                    } else {
                        true
                    }
                });
            }
            None => self.fields.push((name.to_string(), value)),
        }
    }

    /// Replaces the value of the first `name` field (or adds one at the end).
    pub fn replace_first(&mut self, name: &str, value: impl Into<String>) {
        match self.fields.iter_mut().find(|(n, _)| same_name(n, name)) {
            Some((_, v)) => *v = value.into(),
            None => self.fields.push((name.to_string(), value.into())),
        }
    }

    /// Puts a field before all others (our Via on top of a request).
    pub fn push_front(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.fields.insert(0, (name.into(), value.into()));
    }

    pub fn remove(&mut self, name: &str) {
        self.fields.retain(|(n, _)| !same_name(n, name));
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub uri: Uri,
    pub headers: Headers,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Headers,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    Response(Response),
}

/// Why an incoming message was not accepted, and how to answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Status to answer with; `None` means drop silently (responses, unframeable input).
    pub status: Option<u16>,
    /// What is wrong, for the Reason phrase and the log. Never echoes secrets.
    pub reason: String,
    /// Header fields of the offending request, to build a stateless answer.
    pub echo: Headers,
    /// The request's method, when the start line got that far.
    pub method: Option<Method>,
    /// Extra header fields for the answer (e.g. `Allow`, `Unsupported`).
    pub extra: Vec<(String, String)>,
    /// On a stream transport the connection cannot be resynchronised.
    pub close_stream: bool,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(s) => write!(f, "{s} {}", self.reason),
            None => write!(f, "dropped: {}", self.reason),
        }
    }
}

impl std::error::Error for Rejection {}

/// How much of a stream buffer a complete message takes.
#[derive(Debug, PartialEq, Eq)]
pub enum Framing {
    /// The first `n` bytes hold one message (keep-alive CRLFs included).
    Complete(usize),
    /// Wait for more bytes.
    Incomplete,
}

fn header_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

/// Frames one message on a stream transport (RFC 3261 §18.3: Content-Length is
/// mandatory there). Leading CRLF keep-alives (RFC 5626 §3.5.1) count as a frame.
pub fn frame_stream(buf: &[u8]) -> Result<Framing, Rejection> {
    let keepalive = buf
        .iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count();
    if keepalive > 0 {
        return Ok(Framing::Complete(keepalive));
    }
    let Some(end) = header_end(buf) else {
        if buf.len() > MAX_MESSAGE_LEN {
            return Err(drop_stream("header section too large"));
        }
        return Ok(Framing::Incomplete);
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let fields = split_fields(&head).map_err(|_| drop_stream("malformed header section"))?;
    let Some(len) = content_length(&fields.1)? else {
        return Err(drop_stream(
            "Content-Length is required on a stream transport",
        ));
    };
    let total = end + 4 + len;
    if total > MAX_MESSAGE_LEN {
        return Err(drop_stream("message too large"));
    }
    if buf.len() < total {
        return Ok(Framing::Incomplete);
    }
    Ok(Framing::Complete(total))
}

fn drop_stream(reason: &str) -> Rejection {
    Rejection {
        status: None,
        reason: reason.into(),
        echo: Headers::default(),
        method: None,
        extra: vec![],
        close_stream: true,
    }
}

/// Splits the header section (start line excluded) into unfolded fields.
fn split_fields(head: &str) -> Result<(String, Vec<(String, String)>), String> {
    let mut lines = head.split("\r\n");
    let start = lines.next().unwrap_or_default().to_string();
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.starts_with([' ', '\t']) {
            match fields.last_mut() {
                Some((_, v)) => {
                    // Folded lines are one value (RFC 3261 §7.3.1): join with one space.
                    if !v.is_empty() {
                        v.push(' ');
                    }
                    v.push_str(line.trim());
                }
                None => return Err("continuation line before any header field".into()),
            }
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("header line without a colon: {:.40}", line));
        };
        let name = name.trim_end_matches([' ', '\t']);
        if name.is_empty() || !name.bytes().all(is_token_char) {
            return Err(format!("invalid header name {:.40}", name));
        }
        fields.push((name.to_string(), value.trim().to_string()));
    }
    Ok((start, fields))
}

/// The header lines that do parse, to address a 400 for a message whose other
/// lines do not (best effort: folding is not undone).
fn lenient_fields(head: &str) -> Headers {
    let mut h = Headers::default();
    for line in head.split("\r\n").skip(1) {
        if let Some((n, v)) = line.split_once(':')
            && !n.is_empty()
            && n.trim_end().bytes().all(is_token_char)
        {
            h.push(n.trim_end(), v.trim());
        }
    }
    h
}

/// The one Content-Length of a message, if any. Several, negative or non-numeric
/// values make framing impossible (RFC 4475 §3.1.2.3, §3.3.9).
fn content_length(fields: &[(String, String)]) -> Result<Option<usize>, Rejection> {
    let mut found = None;
    for (name, value) in fields {
        if !same_name(name, "Content-Length") {
            continue;
        }
        if found.is_some() {
            return Err(Rejection {
                close_stream: true,
                ..reject(400, "Multiple Content-Length values", Headers::default())
            });
        }
        let len = value
            .parse::<usize>()
            .ok()
            .filter(|_| value.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| Rejection {
                close_stream: true,
                ..reject(400, "Invalid Content-Length", Headers::default())
            })?;
        found = Some(len);
    }
    Ok(found)
}

fn reject(status: u16, reason: &str, echo: Headers) -> Rejection {
    Rejection {
        status: Some(status),
        reason: reason.into(),
        echo,
        method: None,
        extra: vec![],
        close_stream: false,
    }
}

/// Parses one complete message. For a datagram, `bytes` is the whole datagram and
/// octets past Content-Length are noise (RFC 3261 §18.3, RFC 4475 §3.1.1.8); with no
/// Content-Length the body is the rest of the datagram (RFC 2543 peers).
pub fn parse(bytes: &[u8]) -> Result<Message, Rejection> {
    let Some(end) = header_end(bytes) else {
        return Err(drop_datagram("no empty line ends the header section"));
    };
    if bytes.len() > MAX_MESSAGE_LEN {
        return Err(drop_datagram("message too large"));
    }
    let head = String::from_utf8_lossy(&bytes[..end]);
    let (start, fields) = match split_fields(&head) {
        Ok(f) => f,
        Err(why) => {
            // Still answer when the start line says it is a request we can address.
            return Err(if head.starts_with("SIP/") {
                drop_datagram(&why)
            } else {
                reject(400, "Malformed header field", lenient_fields(&head))
            });
        }
    };
    let headers = Headers { fields };
    let rest = &bytes[end + 4..];
    let body = match content_length(&headers.fields) {
        Err(mut r) => {
            r.echo = headers;
            return Err(r);
        }
        Ok(Some(len)) if len > rest.len() => {
            return Err(reject(400, "Content-Length larger than message", headers));
        }
        Ok(Some(len)) => rest[..len].to_vec(),
        Ok(None) => rest.to_vec(),
    };
    if start.starts_with("SIP/") {
        parse_status_line(&start)
            .map(|(status, reason)| {
                Message::Response(Response {
                    status,
                    reason,
                    headers,
                    body,
                })
            })
            .map_err(|why| drop_datagram(&why))
    } else {
        parse_request(&start, headers, body).map(Message::Request)
    }
}

fn drop_datagram(reason: &str) -> Rejection {
    Rejection {
        close_stream: false,
        ..drop_stream(reason)
    }
}

fn parse_status_line(line: &str) -> Result<(u16, String), String> {
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    let reason = parts.next().unwrap_or_default().trim();
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        return Err("unsupported SIP version in status line".into());
    }
    let status: u16 = match code.parse() {
        Ok(s) if code.len() == 3 && (100..700).contains(&s) => s,
        _ => return Err(format!("invalid status code {:.12}", code)),
    };
    Ok((status, reason.to_string()))
}

/// The single-valued header fields of RFC 3261 §20 that requests must carry once.
const SINGLE: [&str; 4] = ["Call-ID", "CSeq", "From", "To"];

fn parse_request(start: &str, headers: Headers, body: Vec<u8>) -> Result<Request, Rejection> {
    let bad = |reason: &str| reject(400, reason, headers.clone());
    if headers.get("Via").is_none() {
        // Without a Via there is nowhere to send an answer (RFC 3261 §8.2.6).
        return Err(drop_datagram("request without Via"));
    }
    // RFC 3261 §7.1: Method SP Request-URI SP SIP-Version, single spaces.
    let parts: Vec<&str> = start.split(' ').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(bad("Malformed Request-Line"));
    }
    let (method, uri, version) = (parts[0], parts[1], parts[2]);
    if !version.starts_with("SIP/") {
        return Err(bad("Malformed Request-Line"));
    }
    if version != "SIP/2.0" {
        return Err(reject(505, "Version Not Supported", headers));
    }
    let Some(method) = Method::parse(method) else {
        return Err(bad("Malformed method"));
    };
    let with_method = |mut r: Rejection| {
        r.method = Some(method.clone());
        r
    };
    for name in SINGLE {
        match headers.count(name) {
            0 => return Err(with_method(bad(&format!("Missing {name}")))),
            1 => {}
            _ => return Err(with_method(bad(&format!("Multiple {name} values")))),
        }
    }
    if headers.count("Max-Forwards") > 1 {
        return Err(with_method(bad("Multiple Max-Forwards values")));
    }
    if let Method::Other(_) = method {
        return Err(with_method(Rejection {
            extra: vec![("Allow".into(), super::ALLOW.into())],
            ..reject(501, "Not Implemented", headers)
        }));
    }
    let cseq = header::CSeq::parse(headers.get("CSeq").unwrap_or_default())
        .map_err(|e| with_method(bad(&format!("Bad CSeq: {e}"))))?;
    if cseq.method != method && !(method == Method::Ack && cseq.method == Method::Invite) {
        return Err(with_method(bad(
            "CSeq method does not match the Request-Line",
        )));
    }
    if let Some(mf) = headers.get("Max-Forwards")
        && !(mf.bytes().all(|b| b.is_ascii_digit()) && mf.parse::<u32>().is_ok_and(|v| v <= 255))
    {
        return Err(with_method(bad("Bad Max-Forwards")));
    }
    header::check_vias(&headers).map_err(|e| with_method(bad(&format!("Bad Via: {e}"))))?;
    for name in ["From", "To"] {
        header::NameAddr::parse(headers.get(name).unwrap_or_default())
            .map_err(|e| with_method(bad(&format!("Bad {name}: {e}"))))?;
    }
    for contact in headers.all("Contact") {
        header::Contact::parse_list(contact)
            .map_err(|e| with_method(bad(&format!("Bad Contact: {e}"))))?;
    }
    let uri = match header::parse_request_uri(uri) {
        Ok(uri) => uri,
        Err(header::UriError::UnsupportedScheme) => {
            return Err(with_method(reject(416, "Unsupported URI Scheme", headers)));
        }
        Err(e) => return Err(with_method(bad(&format!("Bad Request-URI: {e}")))),
    };
    Ok(Request {
        method,
        uri,
        headers,
        body,
    })
}

fn write_fields(out: &mut Vec<u8>, headers: &Headers, body: &[u8]) {
    for (name, value) in headers.iter() {
        if same_name(name, "Content-Length") {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
}

impl Request {
    /// Serializes with a Content-Length computed from the body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512 + self.body.len());
        out.extend_from_slice(format!("{} {} SIP/2.0\r\n", self.method, self.uri).as_bytes());
        write_fields(&mut out, &self.headers, &self.body);
        out
    }

    pub fn call_id(&self) -> &str {
        self.headers.get("Call-ID").unwrap_or_default()
    }

    /// The CSeq; requests are only built from parsed or locally made messages,
    /// both of which carry a valid one.
    pub fn cseq(&self) -> header::CSeq {
        header::CSeq::parse(self.headers.get("CSeq").unwrap_or_default()).unwrap_or(header::CSeq {
            seq: 0,
            method: self.method.clone(),
        })
    }
}

impl Response {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512 + self.body.len());
        out.extend_from_slice(format!("SIP/2.0 {} {}\r\n", self.status, self.reason).as_bytes());
        write_fields(&mut out, &self.headers, &self.body);
        out
    }

    pub fn call_id(&self) -> &str {
        self.headers.get("Call-ID").unwrap_or_default()
    }

    pub fn cseq(&self) -> Option<header::CSeq> {
        header::CSeq::parse(self.headers.get("CSeq")?).ok()
    }

    pub fn is_final(&self) -> bool {
        self.status >= 200
    }
}

/// The standard reason phrase for the statuses this server sends.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        600 => "Busy Everywhere",
        603 => "Decline",
        _ => "Unknown",
    }
}

/// Builds a response to a request per RFC 3261 §8.2.6: Via, From, To, Call-ID and
/// CSeq copied, a To tag added when given and none is present.
pub fn response_to(headers: &Headers, status: u16, to_tag: Option<&str>) -> Response {
    let mut out = Headers::default();
    for (name, value) in headers.iter() {
        if same_name(name, "Via") {
            out.push("Via", value);
        }
    }
    if let Some(from) = headers.get("From") {
        out.push("From", from);
    }
    if let Some(to) = headers.get("To") {
        match to_tag {
            Some(tag) if status > 100 && !header::has_tag(to) => {
                out.push("To", format!("{to};tag={tag}"))
            }
            _ => out.push("To", to),
        }
    }
    for name in ["Call-ID", "CSeq"] {
        if let Some(v) = headers.get(name) {
            out.push(name, v);
        }
    }
    Response {
        status,
        reason: reason_phrase(status).to_string(),
        headers: out,
        body: Vec::new(),
    }
}

impl Rejection {
    /// The stateless answer, when there is one to send.
    pub fn answer(&self, to_tag: &str) -> Option<Response> {
        let status = self.status?;
        self.echo.get("Via")?;
        let mut resp = response_to(&self.echo, status, Some(to_tag));
        if status == 400 {
            // The phrase says what was wrong; it is built only from our own words.
            resp.reason = self.reason.clone();
        }
        for (n, v) in &self.extra {
            resp.headers.push(n.clone(), v.clone());
        }
        Some(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(s: &str) -> Result<Message, Rejection> {
        parse(s.as_bytes())
    }

    const OPTIONS: &str = "OPTIONS sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:100@h>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn parses_and_reserializes_a_request() {
        let Message::Request(r) = req(OPTIONS).unwrap() else {
            panic!("not a request")
        };
        assert_eq!(r.method, Method::Options);
        assert_eq!(r.cseq().seq, 1);
        let again = parse(&r.to_bytes()).unwrap();
        assert_eq!(again, Message::Request(r));
    }

    #[test]
    fn content_length_rules() {
        let twice = OPTIONS.replace("Content-Length: 0\r\n", "Content-Length: 0\r\nl: 0\r\n");
        assert_eq!(req(&twice).unwrap_err().status, Some(400));
        let neg = OPTIONS.replace("Content-Length: 0", "Content-Length: -1");
        assert_eq!(req(&neg).unwrap_err().status, Some(400));
        let long = OPTIONS.replace("Content-Length: 0", "Content-Length: 99");
        assert_eq!(req(&long).unwrap_err().status, Some(400));
        let noise = format!("{OPTIONS}INVITE sip:x SIP/2.0\r\n\r\n");
        let Message::Request(r) = req(&noise).unwrap() else {
            panic!()
        };
        assert!(r.body.is_empty());
    }

    #[test]
    fn stream_framing_waits_for_the_body() {
        let msg = OPTIONS.replace("Content-Length: 0", "Content-Length: 4");
        assert_eq!(frame_stream(msg.as_bytes()).unwrap(), Framing::Incomplete);
        let full = format!("{msg}abcdNEXT");
        assert_eq!(
            frame_stream(full.as_bytes()).unwrap(),
            Framing::Complete(msg.len() + 4)
        );
        assert_eq!(frame_stream(b"\r\n\r\nOPT").unwrap(), Framing::Complete(4));
        let nocl = OPTIONS.replace("Content-Length: 0\r\n", "");
        assert!(frame_stream(nocl.as_bytes()).unwrap_err().close_stream);
    }

    #[test]
    fn unknown_method_gets_501_with_allow() {
        let m = OPTIONS.replace("OPTIONS", "FOO");
        let r = req(&m).unwrap_err();
        assert_eq!(r.status, Some(501));
        let answer = r.answer("t").unwrap();
        assert!(answer.headers.get("Allow").unwrap().contains("INVITE"));
    }

    #[test]
    fn version_and_request_line() {
        assert_eq!(
            req(&OPTIONS.replace("SIP/2.0\r\nVia", "SIP/7.0\r\nVia"))
                .unwrap_err()
                .status,
            Some(505)
        );
        assert_eq!(
            req(&OPTIONS.replace("OPTIONS sip", "OPTIONS  sip"))
                .unwrap_err()
                .status,
            Some(400)
        );
        assert_eq!(
            req(&OPTIONS.replace("sip:100@127.0.0.1", "<sip:100@127.0.0.1>"))
                .unwrap_err()
                .status,
            Some(400)
        );
        assert_eq!(
            req(&OPTIONS.replace("sip:100@127.0.0.1", "foo:bar"))
                .unwrap_err()
                .status,
            Some(416)
        );
    }

    #[test]
    fn responses_parse_and_bad_codes_drop() {
        let resp = "SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\r\n";
        let Message::Response(r) = req(resp).unwrap() else {
            panic!()
        };
        assert_eq!(r.status, 180);
        let big = resp.replace("180", "4294967301");
        assert_eq!(req(&big).unwrap_err().status, None);
    }

    mod never_panics {
        use super::*;
        use proptest::prelude::*;

        const INVITE: &str = "INVITE sip:bob@h SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4:5;branch=z9hG4bKx\r\nFrom: \"A\" <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContact: <sip:a@1.2.3.4:5>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n";

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..1500)) {
                let _ = parse(&bytes);
                let _ = frame_stream(&bytes);
            }

            #[test]
            fn on_mutated_messages(edits in proptest::collection::vec((0usize..320, any::<u8>()), 1..8), cut in 0usize..340) {
                let mut bytes = INVITE.as_bytes().to_vec();
                for (pos, b) in edits {
                    let i = pos % bytes.len();
                    bytes[i] = b;
                }
                bytes.truncate(cut.max(1));
                if let Ok(Message::Request(r)) = parse(&bytes) {
                    // Whatever parses must serialize and parse again.
                    let again = parse(&r.to_bytes());
                    prop_assert!(again.is_ok(), "re-parse failed");
                }
                if let Err(r) = parse(&bytes) {
                    let _ = r.answer("t");
                }
                let _ = frame_stream(&bytes);
            }
        }
    }
}
