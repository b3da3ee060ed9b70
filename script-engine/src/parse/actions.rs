//! Steps that need the host: `<lookup>`, actions (`<webhook>`, `<email>`,
//! `<update-customer>`, `<log>`) and routes (`<enqueue>`, `<voicemail>`,
//! `<transfer>`).
//!
//! Owns their attribute rules and the shape checks that can be done before a
//! call ever runs, such as a webhook body being JSON once its holes are filled.

use super::{Compiler, DEFAULT_WEBHOOK_TIMEOUT, collapse, dedent};
use crate::expr::{self, Names, Template};
use crate::model::{ActionSpec, OpKind, Prompt, RouteSpec, TransferTo};
use crate::xml::{self, Element};

impl Compiler<'_> {
    /// Emits `op`, then an optional handler block (`<not-found>`, `<on-error>`) behind
    /// a jump, and returns the op's index and where the handler starts.
    pub(super) fn with_handler(
        &mut self,
        el: &Element,
        handler: &str,
        kind: OpKind,
    ) -> (usize, Option<usize>) {
        let at = self.emit(el.pos, Self::step_name(el), true, kind);
        let blocks: Vec<&Element> = el.children.iter().filter(|c| c.name == handler).collect();
        if blocks.len() > 1 {
            self.f.error(
                blocks[1].pos,
                format!("only one <{handler}> per <{}>", el.name),
            );
        }
        let Some(block) = blocks.first() else {
            return (at, None);
        };
        self.attrs(block, &[]);
        self.no_text(block);
        let skip = self.jump_placeholder(block.pos);
        let start = self.ops.len();
        self.children_block(block);
        let end = self.ops.len();
        self.patch_jumps(&[skip], end);
        (at, Some(start))
    }

    /// `<lookup>`: by caller id (the `phone` field), or by a field and a value.
    pub(super) fn lookup(&mut self, el: &Element) {
        self.attrs(el, &["id", "by", "field", "value"]);
        self.no_text(el);
        for c in el.children.iter().filter(|c| c.name != "not-found") {
            self.f.error(
                c.pos,
                format!("<lookup> holds only <not-found>, not <{}>", c.name),
            );
        }
        let by = el.attr("by").map(|a| (a.value.as_str(), a.pos));
        let (field, value) = match by {
            Some(("caller-id", pos)) => {
                if el.attr("field").is_some() || el.attr("value").is_some() {
                    self.f
                        .error(pos, "by=\"caller-id\" takes no `field` or `value`");
                }
                let names = Names {
                    vars: &self.vars,
                    asks: &self.asks,
                    extra: &[],
                };
                let value = expr::compile("call.caller_id", &names).ok();
                (Some("phone".to_owned()), value)
            }
            Some(("field", _)) | None => {
                let field = self.required(el, "field").map(|a| a.value.clone());
                let value = self
                    .required(el, "value")
                    .and_then(|a| self.expr(el, a, &[]));
                (field, value)
            }
            Some((other, pos)) => {
                self.f.error(
                    pos,
                    format!("`by` must be caller-id or field, not `{other}`"),
                );
                (None, None)
            }
        };
        if let (Some(field), Some(value)) = (field, value) {
            let (at, not_found) = self.with_handler(
                el,
                "not-found",
                OpKind::Lookup {
                    field,
                    value,
                    not_found: None,
                },
            );
            if let OpKind::Lookup { not_found: n, .. } = &mut self.ops[at].kind {
                *n = not_found;
            }
        }
    }

    /// The four actions. Each is checked as far as it can be without running it:
    /// templates compile, the webhook body is JSON, results go to declared variables.
    pub(super) fn action(&mut self, el: &Element) {
        let spec = match el.name.as_str() {
            // The body is checked by filling every hole with `null`: if that is not
            // JSON, no value could make it JSON either, short of a string that
            // smuggles in syntax, which `render_json` prevents by quoting.
            "webhook" => {
                self.attrs(el, &["id", "url", "method", "timeout"]);
                self.no_text(el);
                let url = self
                    .required(el, "url")
                    .map(|a| (a.value.clone(), a.pos))
                    .and_then(|(v, pos)| self.template(pos, "<webhook> `url`", &v, &[]));
                let method = el
                    .attr("method")
                    .map_or("POST", |a| a.value.as_str())
                    .to_owned();
                if !matches!(method.as_str(), "GET" | "POST" | "PUT" | "PATCH" | "DELETE") {
                    self.f.error(el.pos, format!("<webhook> `method` must be GET, POST, PUT, PATCH or DELETE, not `{method}`"));
                }
                let mut body = None;
                let mut results = Vec::new();
                for c in &el.children {
                    match c.name.as_str() {
                        "body" => {
                            self.leaf(c, &[], true);
                            let Some(t) = self.template(c.pos, "<body>", c.text.trim(), &[]) else {
                                continue;
                            };
                            if let Err(e) =
                                serde_json::from_str::<serde_json::Value>(&t.render_nulls())
                            {
                                self.f.error(c.pos, format!("<body> is not JSON once its {{{{ }}}} holes are filled: {e}"));
                            }
                            body = Some(t);
                        }
                        "result" => {
                            self.leaf(c, &["var", "value"], false);
                            let var = self.var_target(c, "var");
                            let value = self
                                .required(c, "value")
                                .and_then(|a| self.expr(c, a, &["response"]));
                            if let (Some(var), Some(value)) = (var, value) {
                                results.push((var, value));
                            }
                        }
                        "on-error" => {}
                        other => self
                            .f
                            .error(c.pos, format!("<{other}> is not allowed in <webhook>")),
                    }
                }
                url.map(|url| ActionSpec::Webhook {
                    url,
                    method,
                    body,
                    timeout: self.duration(el, "timeout", DEFAULT_WEBHOOK_TIMEOUT),
                    results,
                })
            }
            // The text is the body; the `on-error` child is the only element allowed.
            "email" => {
                self.attrs(el, &["id", "to", "subject"]);
                let to = self
                    .required(el, "to")
                    .map(|a| (a.value.clone(), a.pos))
                    .and_then(|(v, pos)| self.template(pos, "<email> `to`", &v, &[]));
                let subject = self
                    .required(el, "subject")
                    .map(|a| (a.value.clone(), a.pos))
                    .and_then(|(v, pos)| self.template(pos, "<email> `subject`", &v, &[]));
                self.handler_children_only(el, "on-error");
                let body = self.template(el.pos, "<email> text", &dedent(&el.text), &[]);
                match (to, subject, body) {
                    (Some(to), Some(subject), Some(body)) => {
                        Some(ActionSpec::Email { to, subject, body })
                    }
                    _ => None,
                }
            }
            // Field names are the CRM's, so they are not checked against anything.
            "update-customer" => {
                self.attrs(el, &["id"]);
                self.no_text(el);
                let mut fields = Vec::new();
                for c in &el.children {
                    match c.name.as_str() {
                        "field" => {
                            self.leaf(c, &["name", "value"], false);
                            let name = self.required(c, "name").map(|a| a.value.clone());
                            let value =
                                self.required(c, "value").and_then(|a| self.expr(c, a, &[]));
                            if let (Some(name), Some(value)) = (name, value) {
                                fields.push((name, value));
                            }
                        }
                        "on-error" => {}
                        other => self.f.error(
                            c.pos,
                            format!("<{other}> is not allowed in <update-customer>"),
                        ),
                    }
                }
                if fields.is_empty() {
                    self.f
                        .error(el.pos, "<update-customer> needs at least one <field>");
                }
                Some(ActionSpec::UpdateCustomer { fields })
            }
            _ => {
                self.attrs(el, &["id", "level"]);
                let level = el
                    .attr("level")
                    .map_or("info", |a| a.value.as_str())
                    .to_owned();
                if !matches!(level.as_str(), "info" | "warn" | "error") {
                    self.f.error(
                        el.pos,
                        format!("<log> `level` must be info, warn or error, not `{level}`"),
                    );
                }
                self.handler_children_only(el, "on-error");
                let message = self.template(el.pos, "<log> text", &collapse(&el.text), &[]);
                if message.as_ref().is_some_and(Template::is_empty) {
                    self.f.error(el.pos, "<log> needs a message");
                }
                message.map(|message| ActionSpec::Log { level, message })
            }
        };
        if let Some(action) = spec {
            let (at, on_error) = self.with_handler(
                el,
                "on-error",
                OpKind::Action {
                    action,
                    on_error: None,
                },
            );
            if let OpKind::Action { on_error: e, .. } = &mut self.ops[at].kind {
                *e = on_error;
            }
        }
    }

    /// Reports children other than the handler block `handler`.
    pub(super) fn handler_children_only(&mut self, el: &Element, handler: &str) {
        for c in el.children.iter().filter(|c| c.name != handler) {
            self.f.error(
                c.pos,
                format!("<{}> is not allowed in <{}>", c.name, el.name),
            );
        }
    }

    /// `<enqueue>`, `<voicemail>` and `<transfer>`. Success ends the session and
    /// failure carries on, so these compile to one operation with no handler.
    pub(super) fn route(&mut self, el: &Element) {
        let spec = match el.name.as_str() {
            // Priority is an expression so premium customers can jump the queue
            // without a second `<enqueue>` per segment.
            "enqueue" => {
                self.attrs(el, &["id", "queue", "priority", "audio", "barge-in"]);
                let queue = self.required(el, "queue").map(|a| a.value.clone());
                let priority = match el.attr("priority") {
                    Some(a) => self.expr(el, a, &[]),
                    None => expr::compile(
                        "0",
                        &Names {
                            vars: &self.vars,
                            asks: &self.asks,
                            extra: &[],
                        },
                    )
                    .ok(),
                };
                let mut skills = Vec::new();
                for c in el.children.iter().filter(|c| c.name == "skill") {
                    self.leaf(c, &["name", "min-level"], false);
                    let level: u8 = self.number(c, "min-level").unwrap_or(1);
                    if !(1..=10).contains(&level) {
                        self.f.error(c.pos, "<skill> `min-level` must be 1 to 10");
                    }
                    if let Some(name) = self.required(c, "name") {
                        skills.push((name.value.clone(), level));
                    }
                }
                let prompt = self.optional_prompt(el, &["skill"]);
                match (queue, priority) {
                    (Some(queue), Some(priority)) => Some(RouteSpec::Enqueue {
                        queue,
                        priority: Box::new(priority),
                        skills,
                        prompt,
                    }),
                    _ => None,
                }
            }
            "voicemail" => {
                self.attrs(el, &["id", "mailbox", "audio", "barge-in"]);
                let mailbox = self
                    .required(el, "mailbox")
                    .map(|a| (a.value.clone(), a.pos))
                    .and_then(|(v, pos)| self.template(pos, "<voicemail> `mailbox`", &v, &[]));
                let prompt = self.optional_prompt(el, &[]);
                mailbox.map(|mailbox| RouteSpec::Voicemail { mailbox, prompt })
            }
            _ => {
                self.attrs(el, &["id", "agent", "queue", "number", "audio", "barge-in"]);
                let given: Vec<(TransferTo, &xml::Attr)> = [
                    (TransferTo::Agent, el.attr("agent")),
                    (TransferTo::Queue, el.attr("queue")),
                    (TransferTo::Number, el.attr("number")),
                ]
                .into_iter()
                .filter_map(|(to, a)| a.map(|a| (to, a)))
                .collect();
                let prompt = self.optional_prompt(el, &[]);
                if given.len() != 1 {
                    self.f.error(
                        el.pos,
                        "<transfer> needs exactly one of `agent`, `queue` or `number`",
                    );
                    None
                } else {
                    let (to, a) = given[0];
                    let (v, pos) = (a.value.clone(), a.pos);
                    self.template(pos, "<transfer> target", &v, &[])
                        .map(|target| RouteSpec::Transfer { to, target, prompt })
                }
            }
        };
        if let Some(spec) = spec {
            self.emit(el.pos, Self::step_name(el), true, OpKind::Route(spec));
        }
    }

    /// The prompt of an element, when it has any content.
    pub(super) fn optional_prompt(&mut self, el: &Element, own: &[&str]) -> Option<Prompt> {
        let p = self.prompt(el, own);
        (!p.pieces.is_empty() || p.text.is_some()).then_some(p)
    }
}
