//! Prompts and questions: `<say>`, prompt content, `<ask>`, `<menu>`, `<record>`.
//!
//! Owns the checks on what is played and shown (audio names, say-as values,
//! screen text) and on what is asked (input kinds, choices, retries). The
//! compiler core in `parse` owns ids, blocks and jumps.

use std::collections::BTreeSet;
use std::time::Duration;

use super::{
    AudioFiles, Compiler, DEFAULT_RECORD_MAX, DEFAULT_TEXT_MAX, DEFAULT_TIMEOUT, DEFAULT_TRIES,
    MAX_TRIES, collapse, is_name, is_var_name,
};
use crate::diag::Pos;
use crate::model::{Ask, Channel, Choice, InputSpec, OpKind, Piece, Prompt};
use crate::speech;
use crate::xml::Element;

impl Compiler<'_> {
    // ---- prompts ----

    /// Reads the prompt content of `el`: its text and say-as children. Children
    /// named in `own` belong to the caller and are skipped here; others are errors.
    pub(super) fn prompt(&mut self, el: &Element, own: &[&str]) -> Prompt {
        let mut p = Prompt {
            barge_in: self.flag(el, "barge-in", true),
            ..Prompt::default()
        };
        if let Some(a) = el.attr("audio") {
            self.audio_ref(&a.value, a.pos);
            p.pieces.push(Piece::Audio(a.value.clone()));
        }
        let mut text = collapse(&el.text);
        for child in &el.children {
            match child.name.as_str() {
                n if own.contains(&n) => {}
                "audio" => {
                    self.leaf(child, &["src"], false);
                    if let Some(a) = self.required(child, "src") {
                        self.audio_ref(&a.value, a.pos);
                        p.pieces.push(Piece::Audio(a.value.clone()));
                    }
                }
                // Say-as values are expressions: the value usually comes from
                // the customer record or a webhook, not from the script.
                "digits" | "number" => {
                    self.leaf(child, &["value"], false);
                    if let Some(a) = self.required(child, "value")
                        && let Some(e) = self.expr(child, a, &[])
                    {
                        self.say_as(child.name.as_str(), "", child.pos);
                        p.pieces.push(if child.name == "digits" {
                            Piece::Digits(e)
                        } else {
                            Piece::Number(e)
                        });
                    }
                }
                // Currency codes become file names (`currency/eur.wav`), hence the
                // strict three-letter shape.
                "amount" => {
                    self.leaf(child, &["value", "currency"], false);
                    let currency = child
                        .attr("currency")
                        .map_or_else(|| "eur".to_string(), |a| a.value.to_ascii_lowercase());
                    if !currency.chars().all(|c| c.is_ascii_lowercase()) || currency.len() != 3 {
                        self.f.error(
                            child.pos,
                            "<amount> `currency` must be a 3-letter code like EUR",
                        );
                    }
                    if let Some(a) = self.required(child, "value")
                        && let Some(e) = self.expr(child, a, &[])
                    {
                        self.say_as("amount", &currency, child.pos);
                        p.pieces.push(Piece::Amount { value: e, currency });
                    }
                }
                "silence" => {
                    self.leaf(child, &["duration"], false);
                    let d = self.duration(child, "duration", Duration::from_millis(500));
                    p.pieces.push(Piece::Silence(d));
                }
                "text" => {
                    self.leaf(child, &[], true);
                    if !text.is_empty() {
                        self.f.error(
                            child.pos,
                            "text is given twice: use either <text> or plain text",
                        );
                    }
                    text = collapse(&child.text);
                }
                other => self.f.error(
                    child.pos,
                    format!("<{other}> is not allowed in <{}>", el.name),
                ),
            }
        }
        if !text.is_empty() {
            p.text = self.template(el.pos, &format!("<{}> text", el.name), &text, &[]);
        }
        p
    }

    /// Checks an audio name's shape now (no absolute paths or `..`, which would
    /// let a script reach outside the sound set) and queues it for `check_audio`.
    pub(super) fn audio_ref(&mut self, name: &str, pos: Pos) {
        let safe = !name.is_empty()
            && !name.starts_with('/')
            && !name
                .split('/')
                .any(|seg| seg.is_empty() || seg == "." || seg == "..")
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
        if !safe {
            self.f.error(
                pos,
                format!("audio file name `{name}` must be a relative path of letters, digits, `-`, `_`, `.`"),
            );
            return;
        }
        self.audio_refs.push((name.to_owned(), pos));
    }

    /// Queues every file a say-as kind may need.
    pub(super) fn say_as(&mut self, kind: &str, currency: &str, pos: Pos) {
        for name in speech::files_for(kind, currency) {
            self.audio_refs.push((name, pos));
        }
    }

    /// Asks the host's sound set about every queued name, reporting each missing
    /// file once, at its first use.
    pub(super) fn check_audio(&mut self, audio: &dyn AudioFiles) {
        let mut reported = BTreeSet::new();
        for (name, pos) in std::mem::take(&mut self.audio_refs) {
            if !audio.contains(&name) && reported.insert(name.clone()) {
                self.f.error(pos, format!("audio file `{name}` not found"));
            }
            self.audio_names.insert(name);
        }
    }

    /// `<say>`: information, which does not wait for the customer.
    pub(super) fn say(&mut self, el: &Element) {
        self.attrs(el, &["id", "audio", "barge-in"]);
        let p = self.prompt(el, &[]);
        if p.pieces.is_empty() && p.text.is_none() {
            self.f
                .error(el.pos, "<say> says nothing: give it `audio`, text, or both");
        }
        if p.text.is_none() && self.channels.iter().any(|c| *c != Channel::Voice) {
            self.f.warn(
                el.pos,
                "<say> has no text, so agent and web screens show nothing",
            );
        }
        self.emit(el.pos, Self::step_name(el), true, OpKind::Say(p));
    }

    // ---- questions ----

    /// The parts common to <ask>, <menu> and <record>: prompts and handlers.
    pub(super) fn question_parts(
        &mut self,
        el: &Element,
        own: &[&str],
    ) -> (Vec<Prompt>, Vec<Prompt>, Vec<Prompt>) {
        let (mut prompts, mut no_input, mut no_match) = (Vec::new(), Vec::new(), Vec::new());
        for child in &el.children {
            let list = match child.name.as_str() {
                "prompt" => &mut prompts,
                "no-input" => &mut no_input,
                "no-match" => &mut no_match,
                "on-failure" => continue,
                n if own.contains(&n) => continue,
                other => {
                    self.f.error(
                        child.pos,
                        format!("<{other}> is not allowed in <{}>", el.name),
                    );
                    continue;
                }
            };
            self.attrs(child, &["audio", "barge-in"]);
            let p = self.prompt(child, &[]);
            list.push(p);
        }
        if prompts.is_empty() {
            self.f
                .error(el.pos, format!("<{}> needs at least one <prompt>", el.name));
        }
        self.no_text(el);
        (prompts, no_input, no_match)
    }

    /// A question's id is also a CEL field name (`answers.<id>`), so no `-`.
    pub(super) fn question_id(&mut self, el: &Element) -> String {
        let Some(a) = self.required(el, "id") else {
            return String::new();
        };
        if is_name(&a.value) && !is_var_name(&a.value) {
            self.f.error(
                a.pos,
                format!(
                    "<{}> id `{}` is used as answers.{} in expressions, so it takes `_`, not `-`",
                    el.name, a.value, a.value
                ),
            );
        }
        a.value.clone()
    }

    /// `tries`, bounded: 0 would never ask, and dozens would trap a caller.
    pub(super) fn tries(&mut self, el: &Element) -> u32 {
        let tries = self.number(el, "tries").unwrap_or(DEFAULT_TRIES);
        if !(1..=MAX_TRIES).contains(&tries) {
            self.f.error(
                el.pos,
                format!("<{}> `tries` must be 1 to {MAX_TRIES}", el.name),
            );
        }
        tries.clamp(1, MAX_TRIES)
    }

    /// Emits the question, then its `<on-failure>` block (if any) behind a jump.
    pub(super) fn emit_question(&mut self, el: &Element, ask: Ask) {
        let id = ask.id.clone();
        let at = self.emit(el.pos, id, true, OpKind::Ask(Box::new(ask)));
        let failure: Vec<&Element> = el
            .children
            .iter()
            .filter(|c| c.name == "on-failure")
            .collect();
        if failure.len() > 1 {
            self.f
                .error(failure[1].pos, "only one <on-failure> per question");
        }
        if let Some(block) = failure.first() {
            self.attrs(block, &[]);
            let skip = self.jump_placeholder(block.pos);
            let start = self.ops.len();
            self.children_block(block);
            let end = self.ops.len();
            self.patch_jumps(&[skip], end);
            if let OpKind::Ask(a) = &mut self.ops[at].kind {
                a.on_failure = Some(start);
            }
        }
    }

    /// `<ask>`: the input kind decides which attributes apply; the others are
    /// errors rather than silently ignored.
    pub(super) fn ask(&mut self, el: &Element) {
        self.attrs(
            el,
            &[
                "id",
                "input",
                "min-length",
                "max-length",
                "terminator",
                "min",
                "max",
                "timeout",
                "inter-digit",
                "tries",
                "valid",
                "max-chars",
                "sensitive",
            ],
        );
        let id = self.question_id(el);
        let (prompts, no_input, no_match) = self.question_parts(el, &["choice"]);
        let kind = self.required(el, "input").map(|a| (a.value.clone(), a.pos));
        let input = match kind.as_ref().map(|(k, p)| (k.as_str(), *p)) {
            Some(("digits", _)) => {
                let min = self.number(el, "min-length").unwrap_or(1);
                let max = self.number(el, "max-length").unwrap_or(min.max(1));
                if min > max || max == 0 || max > 64 {
                    self.f
                        .error(el.pos, "<ask> needs 0 < min-length <= max-length <= 64");
                }
                let terminator = match el.attr("terminator").map(|a| (a.value.as_str(), a.pos)) {
                    None => None,
                    Some(("#", _)) => Some('#'),
                    Some(("*", _)) => Some('*'),
                    Some(("none", _)) => None,
                    Some((other, pos)) => {
                        self.f.error(
                            pos,
                            format!("`terminator` must be #, * or none, not `{other}`"),
                        );
                        None
                    }
                };
                InputSpec::Digits {
                    min,
                    max,
                    terminator,
                }
            }
            Some(("choice", _)) => InputSpec::Choice(self.choices(el, "choice")),
            Some(("yes-no", _)) => InputSpec::YesNo,
            Some(("number", _)) => InputSpec::Number {
                min: self.number(el, "min"),
                max: self.number(el, "max"),
            },
            Some(("date", _)) => InputSpec::Date,
            // A keypad cannot type words; catching it at load time beats a
            // caller stuck on a question they cannot answer.
            Some(("text", pos)) => {
                if self.channels.contains(&Channel::Voice) {
                    self.f.error(
                        pos,
                        "input=\"text\" cannot be answered on a phone keypad: set channels=\"agent web\" on <script>",
                    );
                }
                InputSpec::Text {
                    max: self.number(el, "max-chars").unwrap_or(DEFAULT_TEXT_MAX),
                }
            }
            Some((other, pos)) => {
                self.f.error(
                    pos,
                    format!(
                        "unknown input `{other}`: use digits, choice, yes-no, number, date or text"
                    ),
                );
                InputSpec::YesNo
            }
            None => InputSpec::YesNo,
        };
        // Attributes that only make sense for one input kind are errors elsewhere.
        let only: &[(&str, &str)] = &[
            ("min-length", "digits"),
            ("max-length", "digits"),
            ("terminator", "digits"),
            ("inter-digit", "digits"),
            ("min", "number"),
            ("max", "number"),
            ("max-chars", "text"),
        ];
        if let Some((k, _)) = &kind {
            for (attr, for_kind) in only {
                if let Some(a) = el.attr(attr)
                    && k != for_kind
                {
                    self.f.error(
                        a.pos,
                        format!("`{attr}` only applies to input=\"{for_kind}\""),
                    );
                }
            }
            if k != "choice"
                && let Some(c) = el.children.iter().find(|c| c.name == "choice")
            {
                self.f
                    .error(c.pos, "<choice> only applies to input=\"choice\"");
            }
        }
        let valid = el.attr("valid").and_then(|a| self.expr(el, a, &["answer"]));
        let ask = Ask {
            id,
            input,
            prompts,
            no_input,
            no_match,
            timeout: self.duration(el, "timeout", DEFAULT_TIMEOUT),
            inter_digit: el
                .attr("inter-digit")
                .map(|_| self.duration(el, "inter-digit", DEFAULT_TIMEOUT)),
            tries: self.tries(el),
            valid,
            sensitive: self.flag(el, "sensitive", false),
            on_failure: None,
        };
        self.emit_question(el, ask);
    }

    /// The `<choice>`s of an ask or the `<option>`s of a menu. Keys and values are
    /// unique, and voice scripts need a key on each, since a caller cannot say
    /// a label.
    pub(super) fn choices(&mut self, el: &Element, child_name: &str) -> Vec<Choice> {
        let mut out: Vec<Choice> = Vec::new();
        for c in el.children.iter().filter(|c| c.name == child_name) {
            let allowed: &[&str] = &["key", "value", "label"];
            if child_name == "choice" {
                self.leaf(c, allowed, true);
            } else {
                self.attrs(c, allowed); // an <option> holds steps
            }
            let key = match c.attr("key") {
                None => None,
                Some(a) => {
                    let mut chars = a.value.chars();
                    match (chars.next(), chars.next()) {
                        (Some(k), None) if k.is_ascii_digit() || k == '*' || k == '#' => Some(k),
                        _ => {
                            self.f.error(
                                a.pos,
                                format!(
                                    "`key` must be one keypad key (0-9, *, #), not `{}`",
                                    a.value
                                ),
                            );
                            None
                        }
                    }
                }
            };
            if key.is_none() && self.channels.contains(&Channel::Voice) && c.attr("key").is_none() {
                self.f.error(
                    c.pos,
                    format!("<{child_name}> needs a `key` for voice callers"),
                );
            }
            let Some(value) = self.required(c, "value").map(|a| a.value.clone()) else {
                continue;
            };
            let label = c
                .attr("label")
                .map(|a| a.value.clone())
                .unwrap_or_else(|| collapse(&c.text));
            if child_name == "option" && !c.text.trim().is_empty() {
                self.f.error(
                    c.pos,
                    "<option> holds steps, not text: put the words in `label`",
                );
            }
            if label.is_empty() {
                self.f
                    .error(c.pos, format!("<{child_name}> needs a label for screens"));
            }
            if let Some(k) = key
                && out.iter().any(|o| o.key == Some(k))
            {
                self.f.error(c.pos, format!("key `{k}` is used twice"));
            }
            if out.iter().any(|o| o.value == value) {
                self.f
                    .error(c.pos, format!("value `{value}` is used twice"));
            }
            out.push(Choice {
                key,
                value,
                label,
                target: None,
            });
        }
        if out.is_empty() {
            self.f.error(
                el.pos,
                format!("<{}> needs at least one <{child_name}>", el.name),
            );
        }
        out
    }

    /// `<menu>`: a choice question whose options hold steps.
    ///
    /// ```text
    /// Ask ; Jump(end) ; [on-failure…] ; option1… ; Jump(end) ; option2… ; Jump(end) ; end:
    /// ```
    pub(super) fn menu(&mut self, el: &Element) {
        self.attrs(el, &["id", "timeout", "tries"]);
        let id = self.question_id(el);
        let (prompts, no_input, no_match) = self.question_parts(el, &["option"]);
        let choices = self.choices(el, "option");
        let ask = Ask {
            id,
            input: InputSpec::Choice(choices),
            prompts,
            no_input,
            no_match,
            timeout: self.duration(el, "timeout", DEFAULT_TIMEOUT),
            inter_digit: None,
            tries: self.tries(el),
            valid: None,
            sensitive: false,
            on_failure: None,
        };
        let at = self.ops.len();
        self.emit_question(el, ask);
        // Each option's steps, each ending with a jump past the last option.
        let mut ends = vec![self.jump_placeholder(el.pos)];
        let mut targets = Vec::new();
        for option in el.children.iter().filter(|c| c.name == "option") {
            targets.push(self.ops.len());
            self.children_block(option);
            ends.push(self.jump_placeholder(option.pos));
        }
        let end = self.ops.len();
        self.patch_jumps(&ends, end);
        if let OpKind::Ask(a) = &mut self.ops[at].kind
            && let InputSpec::Choice(choices) = &mut a.input
        {
            for (choice, target) in choices.iter_mut().zip(targets) {
                choice.target = Some(target);
            }
        }
    }

    /// `<record>`: a question answered with a recording reference.
    pub(super) fn record(&mut self, el: &Element) {
        self.attrs(el, &["id", "max-duration", "beep", "timeout", "tries"]);
        let id = self.question_id(el);
        let (prompts, no_input, no_match) = self.question_parts(el, &[]);
        let ask = Ask {
            id,
            input: InputSpec::Record {
                max: self.duration(el, "max-duration", DEFAULT_RECORD_MAX),
                beep: self.flag(el, "beep", true),
            },
            prompts,
            no_input,
            no_match,
            timeout: self.duration(el, "timeout", DEFAULT_TIMEOUT),
            inter_digit: None,
            tries: self.tries(el),
            valid: None,
            sensitive: false,
            on_failure: None,
        };
        self.emit_question(el, ask);
    }
}
