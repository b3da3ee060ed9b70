//! A CRM asked over HTTP: one GET per caller to the configured URL template, the
//! record read from the JSON reply with the configured JSON pointers.
//!
//! A 404, or a reply without a non-empty name, means the CRM does not know the caller
//! (not an error). Any other status, a reply that is not a JSON object or array, a
//! transport error or the timeout is an error for the directory to log.

use std::time::Duration;

use serde_json::Value as Json;

use super::{CrmError, CrmRecord};
use crate::config::crm::{HttpCrmSection, HttpFields, JsonPointer, UrlTemplate};
use crate::http_client::{HttpClient, HttpError};
use crate::phone::E164;

/// The configured CRM endpoint and mapping.
pub struct HttpCrm {
    client: HttpClient,
    url: UrlTemplate,
    headers: Vec<(String, String)>,
    fields: HttpFields,
    timeout: Duration,
}

impl HttpCrm {
    pub fn new(config: &HttpCrmSection) -> HttpCrm {
        HttpCrm {
            client: HttpClient::new(),
            url: config.url.clone(),
            headers: config
                .headers
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
                .collect(),
            fields: config.fields.clone(),
            timeout: config.timeout.0,
        }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub async fn find(&self, e164: &E164) -> Result<Option<CrmRecord>, CrmError> {
        let url = self.url.fill(e164.as_str());
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let reply = match self.client.get_json(&url, &headers, self.timeout).await {
            Err(HttpError::Status(404)) => return Ok(None),
            other => other?,
        };
        match reply.body {
            body @ (Json::Object(_) | Json::Array(_)) => Ok(record(&body, &self.fields)),
            other => {
                let mut text = other.to_string();
                text.truncate(80);
                Err(CrmError::NotJson(text))
            }
        }
    }
}

/// The record the mapping finds in `body`; `None` without a name.
pub fn record(body: &Json, fields: &HttpFields) -> Option<CrmRecord> {
    let text = |p: &JsonPointer| -> Option<String> {
        match body.pointer(p.as_str())? {
            Json::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            Json::Number(n) => Some(n.to_string()),
            Json::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    };
    let name = text(&fields.name)?;
    let attributes = fields
        .attributes
        .iter()
        .filter_map(|(key, p)| Some((key.clone(), body.pointer(p.as_str())?.clone())))
        .filter(|(_, v)| !v.is_null())
        .collect();
    Some(CrmRecord {
        id: fields.id.as_ref().and_then(text),
        name,
        account: fields.account.as_ref().and_then(text),
        email: fields.email.as_ref().and_then(text),
        attributes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields() -> HttpFields {
        toml::from_str(
            r#"
name = "/results/0/full_name"
id = "/results/0/id"
account = "/results/0/acct"
attributes = { tier = "/results/0/tier", missing = "/nope" }
"#,
        )
        .unwrap()
    }

    #[test]
    fn pointers_pick_the_fields_and_numbers_become_text() {
        let body = json!({"results": [{"full_name": " Grace Hopper ", "id": 17, "acct": "A-1", "tier": "gold"}]});
        let r = record(&body, &fields()).unwrap();
        assert_eq!(r.name, "Grace Hopper");
        assert_eq!(r.id.as_deref(), Some("17"));
        assert_eq!(r.account.as_deref(), Some("A-1"));
        assert_eq!(r.email, None);
        assert_eq!(r.attributes.len(), 1);
        assert_eq!(r.attributes["tier"], "gold");
    }

    #[test]
    fn no_name_is_nobody() {
        assert_eq!(record(&json!({"results": []}), &fields()), None);
        let blank = json!({"results": [{"full_name": "  "}]});
        assert_eq!(record(&blank, &fields()), None);
    }
}
