//! A broken script names the line, the column and what is wrong.
//! Each test wraps a body in `<script>` on line 1, so the body starts on line 2.

use script_engine::{AnyAudio, Library, LoadError, Severity, load_str};

fn script(body: &str) -> String {
    format!("<script version=\"1\" id=\"t\" channels=\"voice\">\n{body}\n</script>\n")
}

fn errors(source: &str) -> Vec<String> {
    match load_str("t.xml", source, &AnyAudio) {
        Ok(_) => panic!("expected errors for:\n{source}"),
        Err(e) => e.errors().map(ToString::to_string).collect(),
    }
}

/// Asserts that one error is at `at` (line:column) and mentions `what`.
fn assert_error(body: &str, at: &str, what: &str) {
    let errs = errors(&script(body));
    assert!(
        errs.iter()
            .any(|e| e.starts_with(&format!("t.xml:{at}: error: ")) && e.contains(what)),
        "wanted an error at {at} containing {what:?}, got {errs:#?}"
    );
}

#[test]
fn the_display_form_is_file_line_column_severity_message() {
    let errs = errors(&script("  <sya audio=\"x.wav\"/>"));
    assert_eq!(errs, ["t.xml:2:3: error: unknown element <sya>"]);
}

#[test]
fn unknown_elements_get_a_hint() {
    assert_error(
        "  <information/>",
        "2:3",
        "unknown element <information> (did you mean <say>?)",
    );
    assert_error(
        "  <option key=\"1\" value=\"x\"/>",
        "2:3",
        "belongs inside <menu>",
    );
}

#[test]
fn unknown_attributes_are_named_with_the_allowed_ones() {
    assert_error(
        "  <say audio=\"a.wav\" voice=\"x\">Hi</say>",
        "2:22",
        "<say> has no attribute `voice` (allowed: id, audio, barge-in)",
    );
}

#[test]
fn duplicate_ids_point_at_the_first_use() {
    assert_error(
        "  <say id=\"a\">One</say>\n  <say id=\"a\">Two</say>",
        "3:8",
        "duplicate id `a` (first used at 2:8)",
    );
}

#[test]
fn jumps_to_missing_steps() {
    assert_error(
        "  <goto target=\"nowhere\"/>",
        "2:9",
        "no element has id `nowhere`",
    );
    let src = "<script version=\"1\" id=\"t\" on-error=\"gone\">\n<say>Hi</say>\n</script>";
    assert!(
        errors(src)
            .iter()
            .any(|e| e.contains("no element has id `gone`"))
    );
}

#[test]
fn cel_that_does_not_compile() {
    assert_error(
        "  <if test=\"1 +\"><say>x</say></if>",
        "2:7",
        "CEL does not compile",
    );
}

#[test]
fn cel_names_must_be_declared() {
    assert_error(
        "  <if test=\"tries > 2\"><say>x</say></if>",
        "2:7",
        "unknown name `tries`: declare it with <var name=\"tries\"/>",
    );
    assert_error(
        "  <if test=\"answers.pin == '1'\"><say>x</say></if>",
        "2:7",
        "`answers.pin` names no <ask>, <menu> or <record>",
    );
}

#[test]
fn comprehension_variables_are_in_scope_only_inside() {
    let ok = script("  <if test=\"[1, 2].all(x, x > 0)\"><say>x</say></if>");
    assert!(load_str("t.xml", &ok, &AnyAudio).is_ok());
    assert_error(
        "  <if test=\"[1].all(x, x > 0) &amp;&amp; x\"><say>x</say></if>",
        "2:7",
        "unknown name `x`",
    );
}

#[test]
fn templates_are_checked_too() {
    assert_error(
        "  <say>Hello {{ customer.name </say>",
        "2:3",
        "without a closing `}}`",
    );
    assert_error(
        "  <say>Hello {{ nobody }}</say>",
        "2:3",
        "unknown name `nobody`",
    );
}

#[test]
fn expression_length_and_nesting_are_capped() {
    let long = format!(
        "  <if test=\"{}1 == 1\"><say>x</say></if>",
        "1 + ".repeat(200)
    );
    assert_error(&long, "2:7", "the limit is 500");
    let deep = format!(
        "  <if test=\"{}1{} == 1\"><say>x</say></if>",
        "(".repeat(40),
        ")".repeat(40)
    );
    assert_error(&deep, "2:7", "nests 40 levels deep");
    let nots = format!("  <if test=\"{}true\"><say>x</say></if>", "!".repeat(100));
    assert_error(&nots, "2:7", "levels deep");
}

#[test]
fn element_nesting_is_capped() {
    let body = format!(
        "{}<say>x</say>{}",
        "<if test=\"true\">".repeat(40),
        "</if>".repeat(40)
    );
    let errs = errors(&script(&body));
    assert!(errs[0].contains("nest deeper than 32 levels"), "{errs:?}");
}

#[test]
fn unreachable_steps_are_warnings_not_errors() {
    let src = script("  <hangup/>\n  <say>Never heard</say>\n  <say>Nor this</say>");
    let loaded = load_str("t.xml", &src, &AnyAudio).expect("warnings do not stop a load");
    let warnings: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(warnings, ["t.xml:3:3: warning: `say` can never be reached"]);
    assert!(
        loaded
            .warnings
            .iter()
            .all(|w| w.severity == Severity::Warning)
    );
}

#[test]
fn missing_audio_files_come_from_the_resolver() {
    let src =
        script("  <say audio=\"welcome.wav\">Hi</say>\n  <say><digits value=\"'12'\"/></say>");
    let only_welcome = |name: &str| name == "welcome.wav";
    let err: LoadError = load_str("t.xml", &src, &only_welcome).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("t.xml:3:8: error: audio file `digits/0.wav` not found"),
        "{text}"
    );
    assert!(!text.contains("welcome.wav"));
    assert_error(
        "  <say audio=\"../etc/passwd\">x</say>",
        "2:8",
        "must be a relative path",
    );
}

#[test]
fn free_text_cannot_be_asked_on_the_phone() {
    assert_error(
        "  <ask id=\"why\" input=\"text\"><prompt>Why?</prompt></ask>",
        "2:17",
        "cannot be answered on a phone keypad",
    );
}

#[test]
fn setting_an_undeclared_variable() {
    assert_error(
        "  <set var=\"count\" value=\"1\"/>",
        "2:8",
        "sets `count`, which is not declared: add <var name=\"count\"/>",
    );
}

#[test]
fn malformed_xml_has_a_position() {
    let errs = errors("<script version=\"1\" id=\"t\">\n  <say>Hi</sya>\n</script>");
    assert!(errs[0].starts_with("t.xml:2:"), "{errs:?}");
    assert!(errs[0].contains("malformed XML"), "{errs:?}");
    let errs = errors("<script version=\"1\" id=\"t\">\n  <say>&nbsp;</say>\n</script>");
    assert!(errs[0].contains("unknown entity `&nbsp;`"), "{errs:?}");
    let errs = errors("");
    assert!(errs[0].contains("no root element"), "{errs:?}");
}

#[test]
fn the_version_is_required_and_checked() {
    let errs = errors("<script version=\"2\" id=\"t\"><say>x</say></script>");
    assert_eq!(
        errs,
        ["t.xml:1:9: error: unsupported version \"2\": this build reads version=\"1\""]
    );
    let errs = errors("<script id=\"t\"><say>x</say></script>");
    assert!(errs[0].contains("needs version=\"1\""));
    let errs = errors("<dialog version=\"1\"/>");
    assert!(errs[0].contains("root element must be <script>"));
}

#[test]
fn webhook_bodies_must_be_json_once_filled() {
    assert_error(
        "  <webhook url=\"https://x\"><body>{ \"a\": {{ call.caller_id }}, }</body></webhook>",
        "2:28",
        "<body> is not JSON",
    );
}

#[test]
fn durations_need_a_unit() {
    assert_error(
        "  <ask id=\"a\" input=\"yes-no\" timeout=\"5\"><prompt>?</prompt></ask>",
        "2:30",
        "`5` has no unit: write \"5s\"",
    );
}

#[test]
fn else_must_follow_if() {
    assert_error(
        "  <say>x</say>\n  <else><say>y</say></else>",
        "3:3",
        "<else> must follow an <if>",
    );
}

#[test]
fn question_ids_are_cel_names() {
    assert_error(
        "  <ask id=\"enter-pin\" input=\"yes-no\"><prompt>?</prompt></ask>",
        "2:8",
        "takes `_`, not `-`",
    );
}

#[test]
fn voice_choices_need_keys_and_unique_values() {
    let body = "  <ask id=\"c\" input=\"choice\"><prompt>?</prompt>\n    <choice value=\"a\" label=\"A\"/>\n    <choice key=\"1\" value=\"b\" label=\"B\"/>\n    <choice key=\"1\" value=\"b\" label=\"C\"/>\n  </ask>";
    assert_error(body, "3:5", "needs a `key` for voice callers");
    assert_error(body, "5:5", "key `1` is used twice");
    assert_error(body, "5:5", "value `b` is used twice");
}

#[test]
fn tries_are_bounded() {
    assert_error(
        "  <ask id=\"a\" input=\"yes-no\" tries=\"50\"><prompt>?</prompt></ask>",
        "2:3",
        "`tries` must be 1 to 10",
    );
}

#[test]
fn attributes_for_another_input_kind() {
    assert_error(
        "  <ask id=\"a\" input=\"yes-no\" min-length=\"3\"><prompt>?</prompt></ask>",
        "2:30",
        "`min-length` only applies to input=\"digits\"",
    );
}

#[test]
fn questions_need_a_prompt() {
    assert_error(
        "  <ask id=\"a\" input=\"yes-no\"/>",
        "2:3",
        "<ask> needs at least one <prompt>",
    );
}

#[test]
fn transfer_needs_exactly_one_target() {
    assert_error(
        "  <transfer agent=\"1\" number=\"2\"/>",
        "2:3",
        "exactly one of `agent`, `queue` or `number`",
    );
}

#[test]
fn many_errors_are_reported_at_once() {
    let errs = errors(&script(
        "  <sya/>\n  <goto target=\"x\"/>\n  <set var=\"v\" value=\"1\"/>",
    ));
    assert_eq!(errs.len(), 3, "{errs:#?}");
}

#[test]
fn library_checks_calls_across_files() {
    let caller = "<script version=\"1\" id=\"a\">\n  <call script=\"b\"><arg name=\"nope\" value=\"1\"/></call>\n  <call script=\"zzz\"/>\n</script>";
    let callee = "<script version=\"1\" id=\"b\"><say>x</say></script>";
    let a = load_str("a.xml", caller, &AnyAudio).unwrap().script;
    let b = load_str("b.xml", callee, &AnyAudio).unwrap().script;
    let err = Library::new([a, b]).unwrap_err().to_string();
    assert!(
        err.contains(
            "a.xml:2:3: error: <arg name=\"nope\">: script `b` declares no variable `nope`"
        ),
        "{err}"
    );
    assert!(
        err.contains("a.xml:3:3: error: <call> names script `zzz`, which is not loaded"),
        "{err}"
    );

    let b1 = load_str("b1.xml", callee, &AnyAudio).unwrap().script;
    let b2 = load_str("b2.xml", callee, &AnyAudio).unwrap().script;
    let err = Library::new([b1, b2]).unwrap_err().to_string();
    assert!(
        err.contains("b2.xml:1:1: error: script id `b` is also used by b1.xml"),
        "{err}"
    );
}

#[test]
fn elements_that_hold_nothing_reject_children_and_text() {
    assert_error(
        "  <goto target=\"a\"><say>x</say></goto>\n  <say id=\"a\">y</say>",
        "2:20",
        "<say> is not allowed in <goto>, which holds no elements",
    );
    assert_error(
        "  <say><digits value=\"1\">12</digits></say>",
        "2:8",
        "<digits> takes no text",
    );
    let errs = errors("<script version=\"1\" id=\"t\">stray<say>x</say></script>");
    assert!(errs[0].contains("<script> takes no text"), "{errs:?}");
}

#[test]
fn listed_is_yes_or_no() {
    let errs =
        errors("<script version=\"1\" id=\"t\" listed=\"maybe\">\n  <say>Hi</say>\n</script>\n");
    assert!(
        errs.iter()
            .any(|e| e.starts_with("t.xml:1:")
                && e.contains("listed=\"maybe\": use \"yes\" or \"no\"")),
        "{errs:#?}"
    );
    let part = "<script version=\"1\" id=\"t\" listed=\"no\">\n  <say>Hi</say>\n</script>\n";
    assert!(!load_str("t.xml", part, &AnyAudio).unwrap().script.listed());
    let whole = "<script version=\"1\" id=\"t\">\n  <say>Hi</say>\n</script>\n";
    assert!(load_str("t.xml", whole, &AnyAudio).unwrap().script.listed());
}
