//! XML text to a plain element tree with positions, on top of quick-xml.
//!
//! Owns well-formedness, entity references and the size and depth caps. It knows
//! nothing about dialog scripts: element and attribute names are checked by
//! `parse`, which walks this tree. Keeping the two apart lets the tree carry a
//! position for every element and attribute, so later errors can say where.

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use crate::diag::{Findings, LineIndex, Pos};

/// The largest script file accepted, in bytes. A dialog script this big is a
/// generated one gone wrong; the cap keeps a bad upload from costing memory.
pub const MAX_SOURCE_BYTES: usize = 4 * 1024 * 1024;

/// The deepest element nesting accepted. Real scripts nest a handful of levels
/// (`script > menu > option > if > ask > prompt`); the cap keeps the recursive
/// walks in `parse` far from the stack's limit.
pub const MAX_DEPTH: usize = 32;

/// The most elements one file may hold.
pub const MAX_ELEMENTS: usize = 50_000;

#[derive(Debug, Clone)]
pub(crate) struct Attr {
    pub name: String,
    pub value: String,
    pub pos: Pos,
}

#[derive(Debug, Clone)]
pub(crate) struct Element {
    pub name: String,
    pub pos: Pos,
    pub attrs: Vec<Attr>,
    pub children: Vec<Element>,
    /// The element's own character data, children's text excluded.
    pub text: String,
}

impl Element {
    pub(crate) fn attr(&self, name: &str) -> Option<&Attr> {
        self.attrs.iter().find(|a| a.name == name)
    }
}

/// Parses `source` into its root element, or records why it could not.
pub(crate) fn parse(source: &str, findings: &mut Findings) -> Option<Element> {
    let lines = LineIndex::new(source);
    if source.len() > MAX_SOURCE_BYTES {
        findings.error(
            Pos { line: 1, column: 1 },
            format!(
                "file is {} bytes, the limit is {MAX_SOURCE_BYTES}",
                source.len()
            ),
        );
        return None;
    }
    // A stack of open elements: the tree is built bottom-up as each closes, and
    // the stack depth is the nesting depth that `MAX_DEPTH` caps.
    let mut reader = Reader::from_str(source);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    loop {
        let start = offset(reader.buffer_position());
        let event = match reader.read_event() {
            Ok(event) => event,
            Err(e) => {
                let at = lines.pos(offset(reader.error_position()));
                findings.error(at, format!("malformed XML: {e}"));
                return None;
            }
        };
        let end = offset(reader.buffer_position());
        match event {
            Event::Start(tag) | Event::Empty(tag) if stack.len() >= MAX_DEPTH => {
                let _ = tag;
                findings.error(
                    lines.pos(start),
                    format!("elements nest deeper than {MAX_DEPTH} levels"),
                );
                return None;
            }
            Event::Start(tag) => {
                count += 1;
                stack.push(element(&tag, source, start, end, &lines, findings)?);
            }
            Event::Empty(tag) => {
                count += 1;
                let el = element(&tag, source, start, end, &lines, findings)?;
                attach(el, &mut stack, &mut root, &lines, start, findings)?;
            }
            Event::End(_) => {
                // quick-xml checks that end names match, so the stack is not empty.
                let el = stack.pop()?;
                attach(el, &mut stack, &mut root, &lines, start, findings)?;
            }
            Event::Text(text) => {
                add_text(&text.xml10_content(), &mut stack, &lines, start, findings)?
            }
            Event::CData(data) => {
                let data = data.xml10_content().into_owned();
                add_text(&data, &mut stack, &lines, start, findings)?;
            }
            // quick-xml reports `&name;` separately from the text around it. Only
            // the predefined entities are known: a DTD's own entities are not
            // expanded, which also rules out entity-expansion attacks.
            Event::GeneralRef(r) => {
                let ch = match r.resolve_char_ref() {
                    Ok(Some(ch)) => ch.to_string(),
                    Ok(None) => match &*r.xml10_content() {
                        "lt" => "<".into(),
                        "gt" => ">".into(),
                        "amp" => "&".into(),
                        "apos" => "'".into(),
                        "quot" => "\"".into(),
                        other => {
                            findings.error(lines.pos(start), format!("unknown entity `&{other};`"));
                            return None;
                        }
                    },
                    Err(e) => {
                        findings.error(lines.pos(start), format!("bad character reference: {e}"));
                        return None;
                    }
                };
                add_text(&ch, &mut stack, &lines, start, findings)?;
            }
            // The DOCTYPE names the DTD for editors; the loader checks more than it could.
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
            Event::Eof => break,
        }
        if count > MAX_ELEMENTS {
            findings.error(
                lines.pos(start),
                format!("more than {MAX_ELEMENTS} elements"),
            );
            return None;
        }
    }
    if let Some(open) = stack.last() {
        findings.error(open.pos, format!("<{}> is never closed", open.name));
        return None;
    }
    if root.is_none() {
        findings.error(
            lines.pos(source.len()),
            "no root element: expected <script>",
        );
    }
    root
}

/// quick-xml counts in `u64`; sources are capped far below `usize::MAX`.
fn offset(position: u64) -> usize {
    usize::try_from(position).unwrap_or(usize::MAX)
}

/// Converts a start tag, with a position for each attribute.
fn element(
    tag: &BytesStart<'_>,
    source: &str,
    start: usize,
    end: usize,
    lines: &LineIndex<'_>,
    findings: &mut Findings,
) -> Option<Element> {
    let pos = lines.pos(start);
    let name = tag.name().as_ref().to_owned();
    let raw = source.get(start..end).unwrap_or("");
    let mut attrs = Vec::new();
    for attr in tag.attributes() {
        let attr = match attr {
            Ok(attr) => attr,
            Err(e) => {
                findings.error(pos, format!("<{name}>: bad attribute: {e}"));
                return None;
            }
        };
        let key = attr.key.as_ref().to_owned();
        let value = match attr.normalized_value(quick_xml::XmlVersion::Implicit1_0) {
            Ok(v) => v.into_owned(),
            Err(e) => {
                findings.error(pos, format!("<{name}> attribute `{key}`: {e}"));
                return None;
            }
        };
        let at = attr_offset(raw, &key).map_or(pos, |o| lines.pos(start + o));
        attrs.push(Attr {
            name: key,
            value,
            pos: at,
        });
    }
    Some(Element {
        name,
        pos,
        attrs,
        children: Vec::new(),
        text: String::new(),
    })
}

/// Where `key=` starts inside a raw start tag, so attribute errors point at it.
fn attr_offset(raw: &str, key: &str) -> Option<usize> {
    raw.match_indices(key).map(|(i, _)| i).find(|&i| {
        let before = raw[..i].chars().next_back();
        let after = raw[i + key.len()..].trim_start();
        before.is_some_and(char::is_whitespace) && after.starts_with('=')
    })
}

/// Adds a finished element to its parent, or makes it the root.
fn attach(
    el: Element,
    stack: &mut [Element],
    root: &mut Option<Element>,
    lines: &LineIndex<'_>,
    start: usize,
    findings: &mut Findings,
) -> Option<()> {
    match stack.last_mut() {
        Some(parent) => parent.children.push(el),
        None if root.is_none() => *root = Some(el),
        None => {
            findings.error(lines.pos(start), "only one root element is allowed");
            return None;
        }
    }
    Some(())
}

/// Adds character data to the open element; only white space may sit outside it.
fn add_text(
    text: &str,
    stack: &mut [Element],
    lines: &LineIndex<'_>,
    start: usize,
    findings: &mut Findings,
) -> Option<()> {
    match stack.last_mut() {
        Some(el) => el.text.push_str(text),
        None if text.trim().is_empty() => {}
        None => {
            findings.error(lines.pos(start), "text outside the root element");
            return None;
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(source: &str) -> Element {
        let mut f = Findings::new("t.xml");
        parse(source, &mut f).unwrap_or_else(|| panic!("{:?}", f.list))
    }

    #[test]
    fn positions_count_characters_not_bytes() {
        let root = tree("<a>\n  <b x=\"1\"/>\n  <ä/><c  y = \"2\"/></a>");
        assert_eq!(root.children[0].pos, Pos { line: 2, column: 3 });
        assert_eq!(root.children[0].attrs[0].pos, Pos { line: 2, column: 6 });
        // `<ä/>` is 5 bytes but 4 characters.
        assert_eq!(root.children[2].pos, Pos { line: 3, column: 7 });
        assert_eq!(
            root.children[2].attrs[0].pos,
            Pos {
                line: 3,
                column: 11
            }
        );
    }

    #[test]
    fn attribute_positions_skip_names_inside_values() {
        assert_eq!(attr_offset("<say text=\"id=1\" id=\"x\">", "id"), Some(17));
        assert_eq!(attr_offset("<say>", "id"), None);
    }

    #[test]
    fn text_cdata_and_references_join_in_order() {
        let root = tree("<a>x &amp; y <![CDATA[<z>]]> &#x41;&#66;</a>");
        assert_eq!(root.text, "x & y <z> AB");
    }

    #[test]
    fn structure_errors() {
        for (source, want) in [
            ("<a/><b/>", "only one root"),
            ("text<a/>", "text outside"),
            ("<a>", "never closed"),
            ("<a x='1' x='2'/>", "bad attribute"),
            ("<a>&bogus;</a>", "unknown entity"),
        ] {
            let mut f = Findings::new("t.xml");
            assert!(parse(source, &mut f).is_none(), "{source}");
            assert!(
                f.list.iter().any(|d| d.message.contains(want)),
                "{source}: {:?}",
                f.list
            );
        }
    }
}
