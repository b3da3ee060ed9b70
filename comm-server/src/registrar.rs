//! The registrar (RFC 3261 §10.3) and digest authentication of our users.
//!
//! Owns: challenging and checking credentials for REGISTER (401) and for calls that
//! need an identity (407), the binding rules (expiry bounds, `*`, removal), and the
//! persisted bindings through the store, with absolute expiry so a restart keeps them.
//! Must not own: routing or call handling.
//!
//! An unknown user and a wrong password get the same fresh challenge (no user
//! enumeration); the unknown user's response is checked against a dummy HA1 so both
//! paths cost the same. A user may only register its own address-of-record.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::sip::digest::{self, Algorithm, Credentials, NonceCheck, Nonces};
use crate::sip::endpoint::Flow;
use crate::sip::header::{self, Contact, NameAddr};
use crate::sip::message::{self, Request, Response};
use crate::store::{Binding, SipAccount, Store, Transport};
use crate::time::Clock;

/// The RFC 3261 §10.2.1.1 default when a REGISTER names no expiry.
pub const DEFAULT_EXPIRES_S: u64 = 3600;

pub struct Registrar {
    pub realm: String,
    algorithms: Vec<Algorithm>,
    nonces: Nonces,
    min_expires: Duration,
    max_expires: Duration,
    store: Store,
    clock: Arc<dyn Clock>,
}

/// Who a request was authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
}

impl Registrar {
    pub fn new(
        realm: String,
        algorithms: Vec<Algorithm>,
        min_expires: Duration,
        max_expires: Duration,
        store: Store,
        clock: Arc<dyn Clock>,
    ) -> Registrar {
        Registrar {
            realm,
            algorithms,
            nonces: Nonces::random(),
            min_expires,
            max_expires,
            store,
            clock,
        }
    }

    fn now_s(&self) -> i64 {
        self.clock.unix_ms() / 1000
    }

    /// A challenge response with one challenge per configured algorithm, in order.
    fn challenge(&self, req: &Request, proxy: bool, stale: bool) -> Response {
        let (status, name) = if proxy {
            (407, "Proxy-Authenticate")
        } else {
            (401, "WWW-Authenticate")
        };
        let mut r = message::response_to(&req.headers, status, Some(&crate::sip::random_token()));
        let nonce = self.nonces.issue(self.now_s());
        for &alg in &self.algorithms {
            r.headers
                .push(name, digest::challenge(alg, &self.realm, &nonce, stale));
        }
        r
    }

    /// Checks the request's credentials. `proxy` selects 407/Proxy-Authorization
    /// (calls) over 401/Authorization (REGISTER).
    pub async fn authenticate(&self, req: &Request, proxy: bool) -> Result<Identity, Response> {
        let field = if proxy {
            "Proxy-Authorization"
        } else {
            "Authorization"
        };
        let Some(creds) = req
            .headers
            .all(field)
            .filter_map(Credentials::parse)
            .find(|c| c.realm == self.realm && self.algorithms.contains(&c.algorithm))
        else {
            return Err(self.challenge(req, proxy, false));
        };
        let nonce = self.nonces.check(&creds.nonce, self.now_s());
        let account = match self.store.sip_account(&creds.username).await {
            Ok(a) => a.filter(|a| a.enabled && a.realm == self.realm),
            Err(e) => {
                tracing::error!(error = %e, "account lookup failed");
                let mut r = message::response_to(&req.headers, 500, None);
                r.headers.push("Retry-After", "5");
                return Err(r);
            }
        };
        let ha1 = |a: &SipAccount| match creds.algorithm {
            Algorithm::Md5 => a.ha1_md5.clone(),
            Algorithm::Sha256 => a.ha1_sha256.clone(),
        };
        let dummy = digest::ha1(creds.algorithm, "\0", &self.realm, "\0");
        let valid = creds.verify(req.method.as_str(), &account.as_ref().map_or(dummy, ha1));
        match (valid && account.is_some(), nonce) {
            (true, NonceCheck::Fresh) => Ok(Identity {
                user: creds.username,
            }),
            (true, NonceCheck::Stale) => Err(self.challenge(req, proxy, true)),
            _ => {
                tracing::info!(method = %req.method, "authentication failed");
                Err(self.challenge(req, proxy, false))
            }
        }
    }

    /// Handles a REGISTER end to end; always returns the final answer.
    pub async fn register(&self, flow: Flow, req: &Request) -> Response {
        let to = req.headers.get("To").and_then(|t| NameAddr::parse(t).ok());
        let Some(aor) = to.as_ref().and_then(NameAddr::user) else {
            // RFC 4475 §3.3.4: the To of a REGISTER must be a SIP AOR.
            let mut r = message::response_to(&req.headers, 400, Some(&crate::sip::random_token()));
            r.reason = "To must be a SIP address-of-record".into();
            return r;
        };
        let identity = match self.authenticate(req, false).await {
            Ok(i) => i,
            Err(challenge) => return challenge,
        };
        let tag = crate::sip::random_token();
        if identity.user != aor {
            return message::response_to(&req.headers, 403, Some(&tag));
        }
        match self.update_bindings(flow, &aor, req).await {
            Ok(bindings) => {
                let mut ok = message::response_to(&req.headers, 200, Some(&tag));
                let now_ms = self.clock.unix_ms();
                for b in bindings {
                    // Rounded up: a binding just saved for 600 s still has 600 s, not 599.
                    let left = ((b.expires_at_ms - now_ms + 999) / 1000).max(0);
                    ok.headers
                        .push("Contact", format!("<{}>;expires={left}", b.contact));
                }
                ok
            }
            Err(BindError::TooBrief) => {
                let mut r = message::response_to(&req.headers, 423, Some(&tag));
                r.headers
                    .push("Min-Expires", self.min_expires.as_secs().to_string());
                r
            }
            Err(BindError::Bad(why)) => {
                let mut r = message::response_to(&req.headers, 400, Some(&tag));
                r.reason = why.into();
                r
            }
            Err(BindError::Store(e)) => {
                tracing::error!(error = %e, "binding update failed");
                let mut r = message::response_to(&req.headers, 500, Some(&tag));
                r.headers.push("Retry-After", "5");
                r
            }
        }
    }

    async fn update_bindings(
        &self,
        flow: Flow,
        aor: &str,
        req: &Request,
    ) -> Result<Vec<Binding>, BindError> {
        let now_ms = self.clock.unix_ms();
        let default_expires = match req.headers.get("Expires") {
            Some(v) => parse_expires(v).ok_or(BindError::Bad("Bad Expires"))?,
            None => DEFAULT_EXPIRES_S,
        };
        let mut contacts = Vec::new();
        for field in req.headers.all("Contact") {
            contacts.extend(Contact::parse_list(field).map_err(|_| BindError::Bad("Bad Contact"))?);
        }
        let cseq = req.cseq().seq;
        let call_id = req.call_id().to_string();
        if contacts.contains(&Contact::Wildcard) {
            // §10.3 step 6: `*` only alone and with Expires: 0.
            if contacts.len() != 1 || default_expires != 0 {
                return Err(BindError::Bad("Contact * needs Expires: 0"));
            }
            self.store
                .remove_all_bindings(aor)
                .await
                .map_err(BindError::Store)?;
            return Ok(Vec::new());
        }
        for c in contacts {
            let Contact::Address(addr) = c else { continue };
            let expires = match addr.param("expires") {
                Some(v) => parse_expires(v).unwrap_or(DEFAULT_EXPIRES_S),
                None => default_expires,
            };
            if expires == 0 {
                self.store
                    .remove_binding(aor, &addr.uri)
                    .await
                    .map_err(BindError::Store)?;
                continue;
            }
            if expires < self.min_expires.as_secs() {
                return Err(BindError::TooBrief);
            }
            let expires = expires.min(self.max_expires.as_secs());
            let (source, transport) = flow_parts(flow);
            let binding = Binding {
                aor: aor.to_string(),
                contact: addr.uri.clone(),
                source,
                transport,
                call_id: call_id.clone(),
                cseq,
                expires_at_ms: now_ms + expires as i64 * 1000,
                q: None,
                instance_id: addr
                    .param("+sip.instance")
                    .map(|s| s.trim_matches('"').to_string()),
            };
            self.store
                .save_binding(&binding)
                .await
                .map_err(BindError::Store)?;
        }
        self.store
            .bindings(aor, now_ms)
            .await
            .map_err(BindError::Store)
    }

    /// The flow and URI to reach a user: the most recently refreshed binding, over the
    /// connection or NAT mapping its REGISTER came from.
    pub async fn locate(
        &self,
        user: &str,
    ) -> Result<Option<(Flow, String)>, crate::store::StoreError> {
        let now_ms = self.clock.unix_ms();
        let bindings = self.store.bindings(user, now_ms).await?;
        Ok(bindings
            .into_iter()
            .max_by_key(|b| b.expires_at_ms)
            .map(|b| {
                let flow = match b.transport {
                    Transport::Udp => Flow::Udp(b.source),
                    Transport::Tcp => Flow::Tcp(b.source),
                };
                (flow, b.contact)
            }))
    }
}

enum BindError {
    TooBrief,
    Bad(&'static str),
    Store(crate::store::StoreError),
}

fn flow_parts(flow: Flow) -> (SocketAddr, Transport) {
    match flow {
        Flow::Udp(a) => (a, Transport::Udp),
        Flow::Tcp(a) => (a, Transport::Tcp),
    }
}

/// Expiry in seconds; values past 2^32-1 are clamped (RFC 3261 §20.19), garbage is
/// `None`.
fn parse_expires(v: &str) -> Option<u64> {
    let v = v.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(
        v.parse::<u64>()
            .unwrap_or(u64::from(u32::MAX))
            .min(u64::from(u32::MAX)),
    )
}

/// The HA1 pair to store for a user's password.
pub fn account(
    user: &str,
    realm: &str,
    password: &str,
    display_name: Option<String>,
) -> SipAccount {
    SipAccount {
        username: user.to_string(),
        realm: realm.to_string(),
        ha1_md5: digest::ha1(Algorithm::Md5, user, realm, password),
        ha1_sha256: digest::ha1(Algorithm::Sha256, user, realm, password),
        display_name,
        enabled: true,
    }
}

/// Whether a user part is one of ours (for `header` users in From etc.).
pub fn user_of(value: &str) -> Option<String> {
    header::NameAddr::parse(value).ok()?.user()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_values() {
        assert_eq!(parse_expires("3600"), Some(3600));
        assert_eq!(
            parse_expires("10000000000000000000000"),
            Some(u64::from(u32::MAX))
        );
        assert_eq!(parse_expires("-1"), None);
        assert_eq!(parse_expires(""), None);
    }
}
