//! The examples in FORMAT.md use only elements and attributes the loader knows,
//! so the reference cannot drift from the code. Examples are fragments (they
//! name variables and steps defined elsewhere), so only shape errors count.

use script_engine::{AnyAudio, load_str};

#[test]
fn every_format_example_uses_known_elements_and_attributes() {
    let doc = include_str!("../FORMAT.md");
    let mut examples = 0;
    for (i, block) in doc.split("```xml").skip(1).enumerate() {
        let xml = block.split("```").next().unwrap_or_default();
        let source = if xml.contains("<script") {
            xml.to_owned()
        } else {
            format!("<script version=\"1\" id=\"doc\" channels=\"agent web\">{xml}</script>")
        };
        let shape_errors: Vec<String> = match load_str(&format!("example-{i}"), &source, &AnyAudio)
        {
            Ok(_) => Vec::new(),
            Err(e) => e
                .errors()
                .map(ToString::to_string)
                .filter(|m| {
                    [
                        "unknown element",
                        "has no attribute",
                        "malformed XML",
                        "is not allowed in",
                        "unknown input",
                        "must be",
                    ]
                    .iter()
                    .any(|shape| m.contains(shape))
                })
                .collect(),
        };
        assert!(
            shape_errors.is_empty(),
            "FORMAT.md example {i}:\n{xml}\n{shape_errors:#?}"
        );
        examples += 1;
    }
    assert!(examples >= 25, "found {examples} examples");
}
