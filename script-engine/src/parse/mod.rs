//! Loader and validator: the element tree becomes a checked [`Script`].
//!
//! Owns every rule in `FORMAT.md`: which elements go where, which attributes each
//! takes, ids, jumps, CEL names, channels and audio files. It collects all the
//! errors it finds (each with line and column) rather than stopping at the first.
//! It does no I/O: audio files are checked through the caller's [`AudioFiles`],
//! and [`load_file`] is the only function that reads a file.
//!
//! Pipeline: `xml::parse` (well-formed?) → pre-pass (declared variables, ask ids)
//! → compile elements to operations, checking each → resolve jumps → reachability
//! (warnings) → audio files.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::diag::{Diagnostic, Findings, LoadError, Pos};
use crate::expr::{self, Expr, Names, Template};
use crate::model::{CallSite, Channel, InputSpec, Op, OpKind, Script, VarDecl};
use crate::xml::{self, Element};

mod actions;
mod questions;

/// The format version this crate reads.
pub const FORMAT_VERSION: &str = "1";

/// How long an `<ask>` waits for input when it does not say (`timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// How many times an `<ask>` asks before giving up when it does not say (`tries`).
pub const DEFAULT_TRIES: u32 = 3;
/// The most tries an author may ask for; more only frustrates callers.
pub const MAX_TRIES: u32 = 10;
/// The longest recording a `<record>` takes when it does not say (`max-duration`).
pub const DEFAULT_RECORD_MAX: Duration = Duration::from_secs(120);
/// The longest free-text answer when `max-chars` is not given.
pub const DEFAULT_TEXT_MAX: u32 = 2000;
/// How long a webhook may take when it does not say (`timeout`).
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);

/// Says which audio files exist. The loader asks about every file a script names,
/// so a missing prompt is found when the script is checked, not when a caller
/// hears silence. Any `Fn(&str) -> bool` is one.
pub trait AudioFiles {
    fn contains(&self, name: &str) -> bool;
}

impl<F: Fn(&str) -> bool> AudioFiles for F {
    fn contains(&self, name: &str) -> bool {
        self(name)
    }
}

/// Accepts every audio file name: for tools that have no sound set at hand.
/// Names are still checked for shape (relative, no `..`).
#[derive(Debug, Clone, Copy, Default)]
pub struct AnyAudio;

impl AudioFiles for AnyAudio {
    fn contains(&self, _: &str) -> bool {
        true
    }
}

/// A script that loaded, and the warnings found on the way (unreachable steps).
#[derive(Debug)]
pub struct Loaded {
    pub script: Script,
    pub warnings: Vec<Diagnostic>,
}

/// Loads and checks a script from text. `file` is only used in diagnostics.
pub fn load_str(file: &str, source: &str, audio: &dyn AudioFiles) -> Result<Loaded, LoadError> {
    let mut findings = Findings::new(file);
    let script = xml::parse(source, &mut findings)
        .and_then(|root| compile_root(&root, source, audio, &mut findings));
    match script {
        Some(script) if !findings.has_errors() => Ok(Loaded {
            script,
            warnings: findings.into_sorted(),
        }),
        _ => Err(LoadError {
            diagnostics: findings.into_sorted(),
        }),
    }
}

/// Reads `path` and loads it: the crate's only I/O, for tools and tests.
pub fn load_file(
    path: impl AsRef<std::path::Path>,
    audio: &dyn AudioFiles,
) -> Result<Loaded, LoadError> {
    let path = path.as_ref();
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(source) => load_str(&file, &source, audio),
        Err(e) => {
            let mut findings = Findings::new(&file);
            findings.error(
                Pos { line: 1, column: 1 },
                format!("cannot read the file: {e}"),
            );
            Err(LoadError {
                diagnostics: findings.into_sorted(),
            })
        }
    }
}

/// FNV-1a: stable across Rust versions, unlike `DefaultHasher`, so saved
/// sessions keep matching their script after an upgrade.
fn fingerprint(source: &str) -> u64 {
    source.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Compiles the `<script>` element. Returns a script even when errors were
/// found, so later checks still run and report; `load_str` then refuses it.
fn compile_root(
    root: &Element,
    source: &str,
    audio: &dyn AudioFiles,
    f: &mut Findings,
) -> Option<Script> {
    if root.name != "script" {
        f.error(
            root.pos,
            format!("the root element must be <script>, not <{}>", root.name),
        );
        return None;
    }
    let mut c = Compiler::new(f);
    c.attrs(
        root,
        &[
            "version", "id", "title", "channels", "listed", "on-error", "xmlns",
        ],
    );
    match root.attr("version") {
        Some(v) if v.value == FORMAT_VERSION => {}
        Some(v) => c.f.error(
            v.pos,
            format!(
                "unsupported version \"{}\": this build reads version=\"{FORMAT_VERSION}\"",
                v.value
            ),
        ),
        None => c.f.error(
            root.pos,
            format!("<script> needs version=\"{FORMAT_VERSION}\""),
        ),
    }
    let id = c
        .required(root, "id")
        .map(|a| a.value.clone())
        .unwrap_or_default();
    if !id.is_empty() && !is_name(&id) {
        c.f.error(
            root.pos,
            format!("script id `{id}` must be letters, digits, `-` or `_`"),
        );
    }
    let title = root
        .attr("title")
        .map_or_else(|| id.clone(), |a| a.value.clone());
    c.channels = match root.attr("channels") {
        None => vec![Channel::Voice, Channel::Agent, Channel::Web],
        Some(a) => {
            let mut list = Vec::new();
            for word in a.value.split_whitespace() {
                match Channel::parse(word) {
                    Some(ch) if !list.contains(&ch) => list.push(ch),
                    Some(_) => {}
                    None => c.f.error(
                        a.pos,
                        format!("unknown channel `{word}`: use voice, agent and/or web"),
                    ),
                }
            }
            if list.is_empty() {
                c.f.error(a.pos, "`channels` names no channel");
            }
            list
        }
    };
    let listed = match root.attr("listed") {
        None => true,
        Some(a) if a.value == "yes" => true,
        Some(a) if a.value == "no" => false,
        Some(a) => {
            c.f.error(
                a.pos,
                format!("listed=\"{}\": use \"yes\" or \"no\"", a.value),
            );
            true
        }
    };

    c.no_text(root);
    // Pre-pass: names that expressions anywhere may use.
    let mut body = Vec::new();
    let mut var_elements = Vec::new();
    let mut description = String::new();
    for child in &root.children {
        match child.name.as_str() {
            "description" => {
                c.leaf(child, &[], true);
                description = collapse(&child.text);
            }
            "variables" => {
                c.attrs(child, &[]);
                c.no_text(child);
                var_elements.extend(child.children.iter());
            }
            _ => body.push(child),
        }
    }
    for v in &var_elements {
        if v.name != "var" {
            c.f.error(
                v.pos,
                format!("<variables> holds only <var>, not <{}>", v.name),
            );
            continue;
        }
        c.leaf(v, &["name", "value"], false);
        if let Some(name) = c.required(v, "name") {
            c.declare_var(&name.value, name.pos);
        }
    }
    collect_ask_ids(&body, &mut c.asks);

    let mut vars = Vec::new();
    for v in var_elements.iter().filter(|v| v.name == "var") {
        let Some(name) = v.attr("name") else { continue };
        let init = v.attr("value").and_then(|a| c.expr(v, a, &[]));
        vars.push(VarDecl {
            name: name.value.clone(),
            init,
        });
    }

    c.block(&body);
    c.emit(
        root.pos,
        "end".into(),
        false,
        OpKind::End {
            outcome: "completed".into(),
            prompt: None,
        },
    );
    c.resolve_gotos();
    let on_error = root.attr("on-error").and_then(|a| c.label(&a.value, a.pos));
    c.warn_unreachable(on_error);
    c.check_audio(audio);
    Some(Script {
        id,
        title,
        description,
        file: c.f.file.clone(),
        channels: c.channels,
        listed,
        vars,
        ops: c.ops,
        on_error,
        fingerprint: fingerprint(source),
        audio: c.audio_names,
        calls: c.calls,
    })
}

/// Every question id in the tree, so `answers.x` can be checked in an
/// expression that comes before the question `x` in the file.
fn collect_ask_ids(elements: &[&Element], out: &mut BTreeSet<String>) {
    for el in elements {
        if matches!(el.name.as_str(), "ask" | "menu" | "record")
            && let Some(id) = el.attr("id")
        {
            out.insert(id.value.clone());
        }
        let children: Vec<&Element> = el.children.iter().collect();
        collect_ask_ids(&children, out);
    }
}

/// Ids, variable names and mailbox-like names: `[A-Za-z_][A-Za-z0-9_-]*`.
fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Variable names must also be CEL identifiers (no `-`) and not shadow a root.
fn is_var_name(s: &str) -> bool {
    is_name(s) && !s.contains('-')
}

/// Durations are human strings: `500ms`, `5s`, `2m`, `1h`.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like \"500ms\", \"5s\" or \"2m\""))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n.saturating_mul(60))),
        "h" => Ok(Duration::from_secs(n.saturating_mul(3600))),
        _ => Err(format!("`{s}` has no unit: write \"{n}s\" or \"{n}ms\"")),
    }
}

/// The loader's state while one file compiles. Every check reports into
/// `f` and carries on, so one run finds every problem in the file.
struct Compiler<'f> {
    f: &'f mut Findings,
    ops: Vec<Op>,
    /// Element ids: the operation each one starts at, and where it was written.
    labels: BTreeMap<String, (usize, Pos)>,
    /// Jumps to ids that may be defined further down, resolved at the end.
    gotos: Vec<(usize, String, Pos)>,
    vars: BTreeSet<String>,
    asks: BTreeSet<String>,
    channels: Vec<Channel>,
    /// Every audio file named, with the first place that needs it.
    audio_refs: Vec<(String, Pos)>,
    audio_names: BTreeSet<String>,
    calls: Vec<CallSite>,
}

impl<'f> Compiler<'f> {
    fn new(f: &'f mut Findings) -> Self {
        Self {
            f,
            ops: Vec::new(),
            labels: BTreeMap::new(),
            gotos: Vec::new(),
            vars: BTreeSet::new(),
            asks: BTreeSet::new(),
            channels: Vec::new(),
            audio_refs: Vec::new(),
            audio_names: BTreeSet::new(),
            calls: Vec::new(),
        }
    }

    // ---- attribute helpers ----

    /// Reports every attribute of `el` that is not in `allowed`.
    fn attrs(&mut self, el: &Element, allowed: &[&str]) {
        for a in &el.attrs {
            if !allowed.contains(&a.name.as_str()) {
                let hint = if allowed.is_empty() {
                    "it takes none".to_string()
                } else {
                    format!("allowed: {}", allowed.join(", "))
                };
                self.f.error(
                    a.pos,
                    format!("<{}> has no attribute `{}` ({hint})", el.name, a.name),
                );
            }
        }
    }

    /// Checks an element that holds no elements: its attributes, no children,
    /// and no text unless `text` says it takes some.
    fn leaf(&mut self, el: &Element, allowed: &[&str], text: bool) {
        self.attrs(el, allowed);
        for c in &el.children {
            self.f.error(
                c.pos,
                format!(
                    "<{}> is not allowed in <{}>, which holds no elements",
                    c.name, el.name
                ),
            );
        }
        if !text {
            self.no_text(el);
        }
    }

    /// The attribute `name`, or an error at the element if it is missing.
    fn required<'e>(&mut self, el: &'e Element, name: &str) -> Option<&'e xml::Attr> {
        let a = el.attr(name);
        if a.is_none() {
            self.f
                .error(el.pos, format!("<{}> needs a `{name}` attribute", el.name));
        }
        a
    }

    /// Compiles an attribute as CEL. Errors point at the attribute and name it,
    /// because an element may carry several expressions.
    fn expr(&mut self, el: &Element, a: &xml::Attr, extra: &[&str]) -> Option<Expr> {
        let names = Names {
            vars: &self.vars,
            asks: &self.asks,
            extra,
        };
        match expr::compile(&a.value, &names) {
            Ok(e) => Some(e),
            Err(msg) => {
                self.f
                    .error(a.pos, format!("<{}> `{}`: {msg}", el.name, a.name));
                None
            }
        }
    }

    /// Compiles text with `{{ }}` holes; `what` says where it came from.
    fn template(&mut self, at: Pos, what: &str, text: &str, extra: &[&str]) -> Option<Template> {
        let names = Names {
            vars: &self.vars,
            asks: &self.asks,
            extra,
        };
        match Template::compile(text, &names) {
            Ok(t) => Some(t),
            Err(msg) => {
                self.f.error(at, format!("{what}: {msg}"));
                None
            }
        }
    }

    /// A duration attribute, or `default` (after reporting) when malformed, so the
    /// rest of the element is still checked.
    fn duration(&mut self, el: &Element, name: &str, default: Duration) -> Duration {
        match el.attr(name) {
            None => default,
            Some(a) => parse_duration(&a.value).unwrap_or_else(|msg| {
                self.f
                    .error(a.pos, format!("<{}> `{name}`: {msg}", el.name));
                default
            }),
        }
    }

    /// A numeric attribute; absent is `None`, malformed is reported and `None`.
    fn number<T: std::str::FromStr>(&mut self, el: &Element, name: &str) -> Option<T> {
        let a = el.attr(name)?;
        match a.value.trim().parse() {
            Ok(n) => Some(n),
            Err(_) => {
                self.f.error(
                    a.pos,
                    format!(
                        "<{}> `{name}`: `{}` is not a valid number",
                        el.name, a.value
                    ),
                );
                None
            }
        }
    }

    /// A `true`/`false` attribute. Other spellings (`yes`, `1`) are errors, not
    /// guesses.
    fn flag(&mut self, el: &Element, name: &str, default: bool) -> bool {
        match el.attr(name).map(|a| (a.value.as_str(), a.pos)) {
            None => default,
            Some(("true", _)) => true,
            Some(("false", _)) => false,
            Some((other, pos)) => {
                self.f.error(
                    pos,
                    format!(
                        "<{}> `{name}` must be true or false, not `{other}`",
                        el.name
                    ),
                );
                default
            }
        }
    }

    /// Declares a `<var>`; reserved and duplicate names are errors.
    fn declare_var(&mut self, name: &str, pos: Pos) {
        if !is_var_name(name) {
            self.f.error(
                pos,
                format!(
                    "variable name `{name}` must be letters, digits and `_`, starting with a letter"
                ),
            );
        } else if expr::ROOTS.contains(&name) || name == "answer" || name == "response" {
            self.f.error(pos, format!("`{name}` is a reserved name"));
        } else if !self.vars.insert(name.to_owned()) {
            self.f
                .error(pos, format!("variable `{name}` is declared twice"));
        }
    }

    /// The declared variable an element writes to (`set`, `result`, `call`).
    fn var_target(&mut self, el: &Element, attr: &str) -> Option<String> {
        let a = self.required(el, attr)?;
        if self.vars.contains(&a.value) {
            Some(a.value.clone())
        } else {
            self.f.error(
                a.pos,
                format!(
                    "<{}> sets `{}`, which is not declared: add <var name=\"{}\"/> to <variables>",
                    el.name, a.value, a.value
                ),
            );
            None
        }
    }

    // ---- emitting ----

    /// Appends an operation and returns its index, for later patching.
    fn emit(&mut self, pos: Pos, step: String, written: bool, kind: OpKind) -> usize {
        self.ops.push(Op {
            pos,
            step,
            written,
            kind,
        });
        self.ops.len() - 1
    }

    /// The name history records use: the id, else `element@line`, which is stable
    /// enough to find the step in the file and needs no id on every element.
    fn step_name(el: &Element) -> String {
        el.attr("id").map_or_else(
            || format!("{}@{}", el.name, el.pos.line),
            |a| a.value.clone(),
        )
    }

    /// A compiler-made jump whose target is patched once it is known.
    fn jump_placeholder(&mut self, pos: Pos) -> usize {
        self.emit(pos, "jump".into(), false, OpKind::Jump(usize::MAX))
    }

    fn patch_jumps(&mut self, jumps: &[usize], to: usize) {
        for &j in jumps {
            if let OpKind::Jump(t) = &mut self.ops[j].kind {
                *t = to;
            }
        }
    }

    /// Records that `el`'s id starts at the next operation.
    fn register_id(&mut self, el: &Element) {
        let Some(a) = el.attr("id") else { return };
        if !is_name(&a.value) {
            self.f.error(
                a.pos,
                format!(
                    "id `{}` must be letters, digits, `-` or `_`, starting with a letter",
                    a.value
                ),
            );
            return;
        }
        if let Some((_, first)) = self.labels.get(&a.value) {
            let first = *first;
            self.f.error(
                a.pos,
                format!("duplicate id `{}` (first used at {first})", a.value),
            );
            return;
        }
        self.labels.insert(a.value.clone(), (self.ops.len(), a.pos));
    }

    /// The operation an id starts at, or an error at `pos`.
    fn label(&mut self, name: &str, pos: Pos) -> Option<usize> {
        match self.labels.get(name) {
            Some((i, _)) => Some(*i),
            None => {
                self.f.error(pos, format!("no element has id `{name}`"));
                None
            }
        }
    }

    /// Points every `goto` at its target, now that every id is known.
    fn resolve_gotos(&mut self) {
        for (op, target, pos) in std::mem::take(&mut self.gotos) {
            if let Some(i) = self.label(&target, pos)
                && let OpKind::Jump(t) = &mut self.ops[op].kind
            {
                *t = i;
            }
        }
    }

    // ---- blocks ----

    /// Compiles a sequence of steps. `if` looks ahead to gather its `else-if`
    /// and `else` siblings into one chain; a stray one is an error.
    fn block(&mut self, elements: &[&Element]) {
        let mut i = 0;
        while i < elements.len() {
            let el = elements[i];
            if el.name == "if" {
                let mut chain = vec![el];
                while let Some(next) = elements.get(i + 1)
                    && matches!(next.name.as_str(), "else-if" | "else")
                {
                    chain.push(next);
                    i += 1;
                    if next.name == "else" {
                        break;
                    }
                }
                self.if_chain(&chain);
            } else if matches!(el.name.as_str(), "else-if" | "else") {
                self.f.error(
                    el.pos,
                    format!("<{}> must follow an <if> or <else-if>", el.name),
                );
            } else {
                self.element(el);
            }
            i += 1;
        }
    }

    /// Compiles the children of `el` as a block.
    fn children_block(&mut self, el: &Element) {
        let children: Vec<&Element> = el.children.iter().collect();
        self.block(&children);
    }

    /// Text where none belongs is usually a misplaced prompt: report it.
    fn no_text(&mut self, el: &Element) {
        if !el.text.trim().is_empty() {
            self.f.error(el.pos, format!("<{}> takes no text", el.name));
        }
    }

    /// Compiles one step element. Unknown names get a hint when they look like a
    /// word from another IVR format or belong inside another element.
    fn element(&mut self, el: &Element) {
        self.register_id(el);
        match el.name.as_str() {
            "say" => self.say(el),
            "ask" => self.ask(el),
            "menu" => self.menu(el),
            "record" => self.record(el),
            "switch" => self.switch(el),
            "set" => self.set(el),
            "lookup" => self.lookup(el),
            "webhook" | "email" | "update-customer" | "log" => self.action(el),
            "enqueue" | "voicemail" | "transfer" => self.route(el),
            "goto" => {
                self.leaf(el, &["target"], false);
                if let Some(t) = self.required(el, "target") {
                    let (target, pos) = (t.value.clone(), t.pos);
                    let op = self.emit(el.pos, "goto".into(), true, OpKind::Jump(usize::MAX));
                    self.gotos.push((op, target, pos));
                }
            }
            "call" => self.call(el),
            "return" => {
                self.leaf(el, &["value"], false);
                let value = el.attr("value").and_then(|a| self.expr(el, a, &[]));
                self.emit(el.pos, "return".into(), true, OpKind::Return { value });
            }
            "hangup" | "end" => {
                self.attrs(el, &["id", "outcome", "audio", "barge-in"]);
                let prompt = self.prompt(el, &[]);
                let default = if el.name == "hangup" {
                    "hangup"
                } else {
                    "completed"
                };
                let outcome = el
                    .attr("outcome")
                    .map_or(default, |a| a.value.as_str())
                    .to_owned();
                let prompt = (!prompt.pieces.is_empty() || prompt.text.is_some()).then_some(prompt);
                self.emit(
                    el.pos,
                    Self::step_name(el),
                    true,
                    OpKind::End { outcome, prompt },
                );
            }
            "description" | "variables" => {
                self.f.error(
                    el.pos,
                    format!("<{}> belongs directly under <script>", el.name),
                );
            }
            other => {
                let hint = match other {
                    "information" | "play" | "prompt" => " (did you mean <say>?)",
                    "case" | "default" => " (it belongs inside <switch>)",
                    "option" => " (it belongs inside <menu>)",
                    "choice" => " (it belongs inside <ask input=\"choice\">)",
                    _ => "",
                };
                self.f
                    .error(el.pos, format!("unknown element <{other}>{hint}"));
            }
        }
    }

    // ---- control flow ----

    /// `if`/`else-if`/`else` as branches: each test falls through into its steps
    /// or jumps to the next test; each block ends with a jump past the chain.
    ///
    /// ```text
    /// Branch(t1, else→L1) ; steps1 ; Jump(end) ; L1: Branch(t2, else→L2) ; … ; else-steps ; end:
    /// ```
    fn if_chain(&mut self, chain: &[&Element]) {
        let mut ends = Vec::new();
        for el in chain {
            self.register_id(el);
            if el.name == "else" {
                self.attrs(el, &["id"]);
                self.no_text(el);
                self.children_block(el);
                continue;
            }
            self.attrs(el, &["id", "test"]);
            self.no_text(el);
            let test = self
                .required(el, "test")
                .and_then(|a| self.expr(el, a, &[]));
            let branch = test.map(|test| {
                let kind = OpKind::Branch {
                    test,
                    otherwise: usize::MAX,
                };
                self.emit(el.pos, Self::step_name(el), true, kind)
            });
            self.children_block(el);
            ends.push(self.jump_placeholder(el.pos));
            let next = self.ops.len();
            if let Some(b) = branch
                && let OpKind::Branch { otherwise, .. } = &mut self.ops[b].kind
            {
                *otherwise = next;
            }
        }
        let end = self.ops.len();
        self.patch_jumps(&ends, end);
    }

    /// `switch` as one multi-way jump; each case block ends with a jump past the
    /// last. Case values are plain text so authors need not quote them.
    fn switch(&mut self, el: &Element) {
        self.attrs(el, &["id", "value"]);
        self.no_text(el);
        let value = self
            .required(el, "value")
            .and_then(|a| self.expr(el, a, &[]));
        let at = self.ops.len();
        if let Some(value) = value {
            self.emit(
                el.pos,
                Self::step_name(el),
                true,
                OpKind::Switch {
                    value,
                    cases: Vec::new(),
                    default: usize::MAX,
                },
            );
        }
        let mut cases: Vec<(Vec<String>, usize)> = Vec::new();
        let mut default = None;
        let mut ends = Vec::new();
        let mut seen = BTreeSet::new();
        for child in &el.children {
            match child.name.as_str() {
                "case" => {
                    self.attrs(child, &["is"]);
                    let Some(is) = self.required(child, "is") else {
                        continue;
                    };
                    let values: Vec<String> = is
                        .value
                        .split(',')
                        .map(|v| v.trim().to_owned())
                        .filter(|v| !v.is_empty())
                        .collect();
                    for v in &values {
                        if !seen.insert(v.clone()) {
                            self.f.error(is.pos, format!("case `{v}` is listed twice"));
                        }
                    }
                    cases.push((values, self.ops.len()));
                }
                "default" => {
                    self.attrs(child, &[]);
                    if default.is_some() {
                        self.f.error(child.pos, "only one <default> per <switch>");
                    }
                    default = Some(self.ops.len());
                }
                other => {
                    self.f.error(
                        child.pos,
                        format!("<switch> holds <case> and <default>, not <{other}>"),
                    );
                    continue;
                }
            }
            self.no_text(child);
            self.children_block(child);
            ends.push(self.jump_placeholder(child.pos));
        }
        if cases.is_empty() {
            self.f.error(el.pos, "<switch> needs at least one <case>");
        }
        let end = self.ops.len();
        self.patch_jumps(&ends, end);
        if let Some(op) = self.ops.get_mut(at)
            && let OpKind::Switch {
                cases: c,
                default: d,
                ..
            } = &mut op.kind
        {
            *c = cases;
            *d = default.unwrap_or(end);
        }
    }

    /// `<set var value>`: only declared variables, so a typo is an error.
    fn set(&mut self, el: &Element) {
        self.leaf(el, &["id", "var", "value"], false);
        let var = self.var_target(el, "var");
        let value = self
            .required(el, "value")
            .and_then(|a| self.expr(el, a, &[]));
        if let (Some(var), Some(value)) = (var, value) {
            self.emit(
                el.pos,
                Self::step_name(el),
                true,
                OpKind::Set { var, value },
            );
        }
    }

    /// `<call>`: the target and argument names are checked later, by `Library`,
    /// since the called script may be in another file.
    fn call(&mut self, el: &Element) {
        self.attrs(el, &["id", "script", "result"]);
        self.no_text(el);
        let script = self.required(el, "script").map(|a| a.value.clone());
        let result = el
            .attr("result")
            .and_then(|_| self.var_target(el, "result"));
        let mut args = Vec::new();
        for c in &el.children {
            if c.name != "arg" {
                self.f
                    .error(c.pos, format!("<call> holds only <arg>, not <{}>", c.name));
                continue;
            }
            self.leaf(c, &["name", "value"], false);
            let name = self.required(c, "name").map(|a| a.value.clone());
            let value = self.required(c, "value").and_then(|a| self.expr(c, a, &[]));
            if let (Some(name), Some(value)) = (name, value) {
                args.push((name, value));
            }
        }
        if let Some(script) = script {
            self.calls.push(CallSite {
                script: script.clone(),
                args: args.iter().map(|(n, _)| n.clone()).collect(),
                pos: el.pos,
            });
            self.emit(
                el.pos,
                Self::step_name(el),
                true,
                OpKind::Call {
                    script,
                    args,
                    result,
                },
            );
        }
    }

    // ---- reachability ----

    /// Warns once per run of unreachable steps: a walk from the start (and from
    /// `on-error`) over every way control can go. Warnings, not errors: a
    /// half-written script should still load for testing.
    fn warn_unreachable(&mut self, on_error: Option<usize>) {
        if self
            .ops
            .iter()
            .any(|op| matches!(op.kind, OpKind::Jump(usize::MAX)))
        {
            return; // unresolved jumps were already reported as errors
        }
        let mut seen = vec![false; self.ops.len()];
        let mut todo = vec![0usize];
        todo.extend(on_error);
        while let Some(i) = todo.pop() {
            if i >= self.ops.len() || seen[i] {
                continue;
            }
            seen[i] = true;
            todo.extend(successors(&self.ops, i));
        }
        let mut previous_reachable = true;
        for (i, op) in self.ops.iter().enumerate() {
            if !op.written {
                continue;
            }
            if !seen[i] && previous_reachable {
                let what = match &op.kind {
                    OpKind::End { .. } if op.step == "end" => continue,
                    _ => op.step.split('@').next().unwrap_or("step").to_owned(),
                };
                self.f
                    .warn(op.pos, format!("`{what}` can never be reached"));
            }
            previous_reachable = seen[i];
        }
    }
}

/// Where control can go after operation `i`.
pub(crate) fn successors(ops: &[Op], i: usize) -> Vec<usize> {
    let next = i + 1;
    match &ops[i].kind {
        OpKind::Say(_) | OpKind::Set { .. } | OpKind::Call { .. } | OpKind::Route(_) => vec![next],
        OpKind::Ask(a) => {
            let mut v = vec![next];
            v.extend(a.on_failure);
            if let InputSpec::Choice(choices) = &a.input {
                v.extend(choices.iter().filter_map(|c| c.target));
            }
            v
        }
        OpKind::Branch { otherwise, .. } => vec![next, *otherwise],
        OpKind::Switch { cases, default, .. } => {
            let mut v: Vec<usize> = cases.iter().map(|(_, t)| *t).collect();
            v.push(*default);
            v
        }
        OpKind::Jump(t) => vec![*t],
        OpKind::Lookup { not_found, .. } => {
            [Some(next), *not_found].into_iter().flatten().collect()
        }
        OpKind::Action { on_error, .. } => [Some(next), *on_error].into_iter().flatten().collect(),
        OpKind::Return { .. } | OpKind::End { .. } => vec![],
    }
}

/// Screen text: runs of white space become one space.
fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// E-mail bodies keep their lines but lose the indentation the XML gave them.
fn dedent(s: &str) -> String {
    let lines: Vec<&str> = s.lines().map(str::trim).collect();
    lines.join("\n").trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_a_number_and_a_unit() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration(" 5s "), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("5").unwrap_err().contains("no unit"));
        assert!(parse_duration("1.5s").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("99999999999999999999s").is_err());
    }

    #[test]
    fn names() {
        assert!(is_name("to-agent") && is_name("_x1"));
        assert!(!is_name("1st") && !is_name("") && !is_name("a b"));
        assert!(is_var_name("pin_tries") && !is_var_name("pin-tries"));
    }

    #[test]
    fn fingerprints_are_stable_across_builds() {
        // FNV-1a of "abc": a saved session must keep matching after an upgrade.
        assert_eq!(fingerprint("abc"), 0xe71f_a219_0541_574b);
    }
}
