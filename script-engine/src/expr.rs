//! CEL (Common Expression Language) conditions and `{{ … }}` text templates.
//!
//! Owns compiling an expression once at load time, checking every name it uses
//! against what the script declares, and evaluating it against a session's data.
//! It does not own that data: the interpreter builds a [`Bindings`] per evaluation.
//!
//! Names an expression may use: `customer`, `call`, `answers.<ask id>`, the
//! script's declared variables, and where the element says so `answer` (the raw
//! input under test) or `response` (a webhook's reply).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};

use cel::common::ast::{EntryExpr, Expr as Ast, IdedExpr};
use cel::{Context, Env, Program, Value};
use serde_json::Value as Json;

/// The longest expression accepted, in characters. Longer logic belongs in a
/// webhook, and the cap bounds the parser's recursion.
pub const MAX_EXPR_CHARS: usize = 500;

/// The deepest bracket or operator nesting accepted in one expression; CEL's parser
/// recurses once per level, and this keeps it far from the stack's end.
pub const MAX_EXPR_NESTING: usize = 16;

/// The roots every expression may name.
pub const ROOTS: [&str; 3] = ["customer", "call", "answers"];

/// A compiled CEL expression and the text it came from.
#[derive(Debug)]
pub struct Expr {
    source: String,
    program: Program,
    /// The top-level names the expression reads: only these are bound when it
    /// runs, so a session with many answers does not convert them all each time.
    roots: Vec<String>,
    /// The `answers.<id>` fields it reads, or `None` when it reads `answers` whole.
    answer_fields: Option<Vec<String>>,
}

impl Expr {
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// What a script declares, for checking the names an expression uses.
pub(crate) struct Names<'a> {
    pub vars: &'a BTreeSet<String>,
    pub asks: &'a BTreeSet<String>,
    /// Names this one element adds (`answer`, `response`).
    pub extra: &'a [&'a str],
}

/// Compiles `source` and checks its names; the error is a sentence for an author.
pub(crate) fn compile(source: &str, names: &Names<'_>) -> Result<Expr, String> {
    let trimmed = source.trim();
    if trimmed.is_empty() {
        return Err("empty expression".into());
    }
    let chars = trimmed.chars().count();
    if chars > MAX_EXPR_CHARS {
        return Err(format!(
            "expression is {chars} characters long, the limit is {MAX_EXPR_CHARS}"
        ));
    }
    let depth = nesting(trimmed);
    if depth > MAX_EXPR_NESTING {
        return Err(format!(
            "expression nests {depth} levels deep, the limit is {MAX_EXPR_NESTING}"
        ));
    }
    let program = env()
        .compile(trimmed)
        .map_err(|e| format!("CEL does not compile: {}", one_line(&e.to_string())))?;
    let mut scan = Scan::default();
    check_names(program.expression(), names, &mut scan)?;
    Ok(Expr {
        source: trimmed.to_owned(),
        program,
        roots: scan.roots.into_iter().collect(),
        answer_fields: (!scan.all_answers).then(|| scan.answer_fields.into_iter().collect()),
    })
}

/// CEL's parse errors span lines with a caret drawing; one line fits a diagnostic.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Counts nesting conservatively before the parser sees the text: brackets, and
/// runs of prefix and ternary operators, which also recurse in the grammar.
fn nesting(s: &str) -> usize {
    let (mut depth, mut max, mut ternary, mut quote) = (0usize, 0usize, 0usize, None);
    let mut unary_run = 0usize;
    for c in s.chars() {
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => quote = Some(c),
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            '?' => ternary += 1,
            '!' | '-' => unary_run += 1,
            c if c.is_whitespace() => {}
            _ => unary_run = 0,
        }
        max = max.max(depth + ternary + unary_run);
    }
    max
}

/// What a walk over an expression has found so far.
#[derive(Default)]
struct Scan {
    /// Names bound by enclosing comprehensions (`x` in `list.all(x, …)`).
    bound: Vec<String>,
    roots: BTreeSet<String>,
    answer_fields: BTreeSet<String>,
    all_answers: bool,
}

/// Walks the compiled expression: every name must be declared, and every
/// `answers.<id>` must name a question of this script. `has(answers.x)` is a
/// select with `test` set, so it is checked the same way.
fn check_names(e: &IdedExpr, names: &Names<'_>, scan: &mut Scan) -> Result<(), String> {
    match &e.expr {
        Ast::Unspecified | Ast::Literal(_) => Ok(()),
        Ast::Ident(name) => check_root(name, names, scan),
        Ast::Select(select) => {
            if let Ast::Ident(root) = &select.operand.expr
                && root == "answers"
                && !scan.bound.iter().any(|b| b == "answers")
            {
                if !names.asks.contains(&select.field) {
                    return Err(format!(
                        "`answers.{}` names no <ask>, <menu> or <record> in this script{}",
                        select.field,
                        known(names.asks.iter().map(String::as_str))
                    ));
                }
                scan.roots.insert(root.clone());
                scan.answer_fields.insert(select.field.clone());
                return Ok(());
            }
            check_names(&select.operand, names, scan)
        }
        Ast::Call(call) => {
            if let Some(target) = &call.target {
                check_names(target, names, scan)?;
            }
            call.args
                .iter()
                .try_for_each(|a| check_names(a, names, scan))
        }
        Ast::List(list) => list
            .elements
            .iter()
            .try_for_each(|a| check_names(a, names, scan)),
        Ast::Map(map) => map.entries.iter().try_for_each(|entry| match &entry.expr {
            EntryExpr::StructField(f) => check_names(&f.value, names, scan),
            EntryExpr::MapEntry(m) => {
                check_names(&m.key, names, scan)?;
                check_names(&m.value, names, scan)
            }
        }),
        Ast::Struct(_) => Err("message literals are not supported in scripts".into()),
        Ast::Comprehension(c) => {
            check_names(&c.iter_range, names, scan)?;
            let before = scan.bound.len();
            scan.bound.push(c.iter_var.clone());
            scan.bound.extend(c.iter_var2.clone());
            scan.bound.push(c.accu_var.clone());
            let result = [&c.accu_init, &c.loop_cond, &c.loop_step, &c.result]
                .into_iter()
                .try_for_each(|part| check_names(part, names, scan));
            scan.bound.truncate(before);
            result
        }
    }
}

/// A top-level identifier: a root, a variable, an element's extra name, or a
/// comprehension variable in scope. `@`-names are CEL's own macro temporaries.
fn check_root(name: &str, names: &Names<'_>, scan: &mut Scan) -> Result<(), String> {
    if name.starts_with('@') || scan.bound.iter().any(|b| b == name) {
        return Ok(());
    }
    if ROOTS.contains(&name) || names.vars.contains(name) || names.extra.contains(&name) {
        scan.roots.insert(name.to_owned());
        scan.all_answers |= name == "answers";
        return Ok(());
    }
    let mut all: Vec<&str> = ROOTS.to_vec();
    all.extend(names.extra.iter().copied());
    all.extend(names.vars.iter().map(String::as_str));
    Err(format!(
        "unknown name `{name}`: declare it with <var name=\"{name}\"/>{}",
        known(all.into_iter())
    ))
}

/// " (known: a, b)" for error messages, or nothing when the list is empty.
fn known<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let list: Vec<&str> = names.collect();
    if list.is_empty() {
        String::new()
    } else {
        format!(" (known: {})", list.join(", "))
    }
}

/// The standard CEL environment, built once: building it costs more than most
/// evaluations do.
fn env() -> &'static Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| Arc::new(Env::stdlib()))
}

/// The data one evaluation sees.
pub(crate) struct Bindings<'a> {
    pub customer: &'a Json,
    pub call: &'a Json,
    pub answers: &'a BTreeMap<String, Json>,
    pub vars: &'a BTreeMap<String, Json>,
    pub extra: &'a [(&'a str, &'a Json)],
}

impl Bindings<'_> {
    /// A CEL context with only the names `expr` reads.
    fn context(&self, expr: &Expr) -> Context<'static, 'static> {
        let mut ctx = Context::with_env(Arc::clone(env()));
        for root in &expr.roots {
            let value = match root.as_str() {
                "customer" => to_cel(self.customer),
                "call" => to_cel(self.call),
                "answers" => match &expr.answer_fields {
                    None => map_to_cel(self.answers.iter()),
                    Some(fields) => {
                        map_to_cel(fields.iter().filter_map(|f| self.answers.get_key_value(f)))
                    }
                },
                name => match self.vars.get(name) {
                    Some(v) => to_cel(v),
                    None => match self.extra.iter().find(|(n, _)| *n == name) {
                        Some((_, v)) => to_cel(v),
                        None => continue,
                    },
                },
            };
            ctx.add_variable_from_value(root.clone(), value);
        }
        ctx
    }

    /// Evaluates `expr` to JSON; the error names the expression and what failed.
    pub(crate) fn eval(&self, expr: &Expr) -> Result<Json, String> {
        let ctx = self.context(expr);
        let value = expr
            .program
            .execute(&ctx)
            .map_err(|e| format!("`{}` failed: {e}", expr.source))?;
        to_json(&value).ok_or_else(|| format!("`{}` gave a value with no JSON form", expr.source))
    }

    pub(crate) fn eval_bool(&self, expr: &Expr) -> Result<bool, String> {
        match self.eval(expr)? {
            Json::Bool(b) => Ok(b),
            other => Err(format!("`{}` gave {other}, not true or false", expr.source)),
        }
    }
}

/// Converts JSON to a CEL value. Whole numbers become `int` (not `uint`, which
/// serde would pick for non-negative ones) so `attempts + 1` type-checks.
pub(crate) fn to_cel(v: &Json) -> Value {
    match v {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::Int(i),
            (None, Some(u)) => Value::UInt(u),
            _ => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::String(Arc::new(s.clone())),
        Json::Array(items) => Value::List(Arc::new(items.iter().map(to_cel).collect())),
        Json::Object(map) => map_to_cel(map.iter()),
    }
}

fn map_to_cel<'a>(entries: impl Iterator<Item = (&'a String, &'a Json)>) -> Value {
    let map: std::collections::HashMap<cel::objects::Key, Value> = entries
        .map(|(k, v)| (cel::objects::Key::String(Arc::new(k.clone())), to_cel(v)))
        .collect();
    Value::Map(cel::objects::Map { map: Arc::new(map) })
}

/// Converts a CEL result to JSON; functions and opaque values have no JSON form.
pub(crate) fn to_json(v: &Value) -> Option<Json> {
    Some(match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::from(*i),
        Value::UInt(u) => Json::from(*u),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Value::String(s) => Json::String(s.to_string()),
        Value::Bytes(b) => Json::String(String::from_utf8_lossy(b).into_owned()),
        Value::List(items) => Json::Array(items.iter().map(to_json).collect::<Option<_>>()?),
        Value::Map(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map.map.iter() {
                out.insert(key_string(k), to_json(v)?);
            }
            Json::Object(out)
        }
        Value::Timestamp(t) => Json::String(t.to_rfc3339()),
        Value::Duration(d) => Json::String(format!("{}s", d.num_milliseconds() as f64 / 1000.0)),
        _ => return None,
    })
}

fn key_string(k: &cel::objects::Key) -> String {
    use cel::objects::Key;
    match k {
        Key::Int(i) => i.to_string(),
        Key::Uint(u) => u.to_string(),
        Key::Bool(b) => b.to_string(),
        Key::String(s) => s.to_string(),
    }
}

/// Text with `{{ expression }}` holes, compiled at load time.
#[derive(Debug)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug)]
enum Part {
    Text(String),
    Hole(Expr),
}

impl Template {
    /// Compiles `source`; the error is a sentence for an author.
    pub(crate) fn compile(source: &str, names: &Names<'_>) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = source;
        while let Some(open) = rest.find("{{") {
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| "`{{` without a closing `}}`".to_string())?;
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            parts.push(Part::Hole(compile(&after[..close], names)?));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Template { parts })
    }

    /// The text, when it has no `{{ }}` holes (a name known at load time).
    pub(crate) fn literal(&self) -> Option<String> {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => Some(t.as_str()),
                Part::Hole(_) => None,
            })
            .collect()
    }

    /// Renders with each hole's value as plain text (strings without quotes).
    pub(crate) fn render_text(&self, b: &Bindings<'_>) -> Result<String, String> {
        self.render(|e| {
            Ok(match b.eval(e)? {
                Json::String(s) => s,
                Json::Null => String::new(),
                other => other.to_string(),
            })
        })
    }

    /// Renders with each hole's value as a JSON literal, for JSON bodies.
    pub(crate) fn render_json(&self, b: &Bindings<'_>) -> Result<String, String> {
        self.render(|e| Ok(b.eval(e)?.to_string()))
    }

    /// Renders with every hole as `null`, to check a JSON body's shape at load time.
    pub(crate) fn render_nulls(&self) -> String {
        self.render(|_| Ok("null".into())).unwrap_or_default()
    }

    fn render(
        &self,
        mut hole: impl FnMut(&Expr) -> Result<String, String>,
    ) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Hole(e) => out.push_str(&hole(e)?),
            }
        }
        Ok(out)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> (BTreeSet<String>, BTreeSet<String>) {
        (
            ["tries".to_string()].into_iter().collect(),
            ["pin".to_string(), "other".to_string()]
                .into_iter()
                .collect(),
        )
    }

    #[test]
    fn nesting_counts_brackets_ternaries_and_prefix_runs_outside_strings() {
        assert_eq!(nesting("a"), 0);
        assert_eq!(nesting("f((a))"), 2);
        assert_eq!(nesting("'((((('"), 0);
        assert_eq!(nesting("a ? b : c ? d : e"), 2);
        assert_eq!(nesting("!!!a"), 3);
    }

    #[test]
    fn expressions_record_only_the_names_they_read() {
        let (vars, asks) = names();
        let n = Names {
            vars: &vars,
            asks: &asks,
            extra: &[],
        };
        let e = compile("answers.pin == '1' && tries < 3 && customer.x", &n).unwrap();
        assert_eq!(e.roots, ["answers", "customer", "tries"]);
        assert_eq!(e.answer_fields.as_deref(), Some(&["pin".to_string()][..]));
        let whole = compile("size(answers) > 1", &n).unwrap();
        assert_eq!(whole.answer_fields, None);
    }

    #[test]
    fn evaluation_binds_json_as_cel() {
        let (vars, asks) = names();
        let n = Names {
            vars: &vars,
            asks: &asks,
            extra: &[],
        };
        let answers: BTreeMap<String, Json> = [("pin".to_string(), Json::from("1234"))].into();
        let vars: BTreeMap<String, Json> = [("tries".to_string(), Json::from(2))].into();
        let customer = serde_json::json!({"balance": 12.5, "tags": ["a", "b"], "big": u64::MAX});
        let b = Bindings {
            customer: &customer,
            call: &Json::Null,
            answers: &answers,
            vars: &vars,
            extra: &[],
        };
        let eval = |s: &str| b.eval(&compile(s, &n).unwrap());
        assert_eq!(eval("tries + 1"), Ok(Json::from(3)));
        assert_eq!(eval("customer.balance * 2.0"), Ok(Json::from(25.0)));
        assert_eq!(
            eval("customer.tags.exists(t, t == 'b')"),
            Ok(Json::Bool(true))
        );
        assert_eq!(eval("has(answers.other)"), Ok(Json::Bool(false)));
        assert_eq!(
            eval("{'k': [answers.pin]}"),
            Ok(serde_json::json!({"k": ["1234"]}))
        );
        assert!(
            eval("customer.missing")
                .unwrap_err()
                .contains("`customer.missing` failed")
        );
        assert!(
            b.eval_bool(&compile("1", &n).unwrap())
                .unwrap_err()
                .contains("not true or false")
        );
    }

    #[test]
    fn templates_render_text_and_json() {
        let (vars, asks) = names();
        let n = Names {
            vars: &vars,
            asks: &asks,
            extra: &[],
        };
        let t = Template::compile("a {{ customer.name }} b {{ customer.n }}", &n).unwrap();
        let customer = serde_json::json!({"name": "O'Neil \"x\"", "n": 3});
        let empty = BTreeMap::new();
        let b = Bindings {
            customer: &customer,
            call: &Json::Null,
            answers: &empty,
            vars: &empty,
            extra: &[],
        };
        assert_eq!(t.render_text(&b).unwrap(), "a O'Neil \"x\" b 3");
        assert_eq!(t.render_json(&b).unwrap(), "a \"O'Neil \\\"x\\\"\" b 3");
        assert_eq!(t.render_nulls(), "a null b null");
        assert!(Template::compile("{{ }}", &n).is_err());
    }
}
