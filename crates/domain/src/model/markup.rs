//! Markup in what clients send. Events end up in dashboards and log viewers that may render
//! them as HTML, so by default markup is stripped: tags go (their attributes, event handlers
//! included, with them), comments go, and `<script>`/`<style>` go with their content. Every
//! other character stays exactly as typed (but NUL, which PostgreSQL cannot store): logs
//! are evidence, and what people send is what they must find. `R&D`, `x < 5`, `<3` and a
//! literal `&amp;` are stored as sent; nothing is entity-encoded or decoded.
//!
//! A scanner follows the WHATWG tokenizer just far enough to know where a tag, comment or
//! raw-text element ends (quoted attribute values may hold `>`), and removes those spans
//! from the input; an HTML sanitiser would re-serialise the text, entity-encoded. A
//! construct that never closes (`a<b`, `<img src=x` at the end) is kept: an HTML parser
//! drops an unfinished tag, so it is inert in a string rendered on its own. Strings pasted
//! into a page's markup must still be escaped by whoever renders them, or use `escape`.

use crate::event::EventDraft;
use crate::validation::FieldError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Cow;

/// What happens to markup in `service`, `message` and metadata string values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Markup {
    /// Tags, comments and `<script>`/`<style>` content removed; every other character kept
    /// as sent (`a & b < c` stays `a & b < c`).
    #[default]
    Strip,
    /// Nothing removed, every markup character entity-encoded: `<b>` is stored as `&lt;b&gt;`.
    /// Query, tail and export parameters are encoded the same way, so they find what was sent.
    Escape,
    /// Stored as sent; whoever renders events must escape them.
    Off,
}

impl Markup {
    /// `text` as this policy stores it; borrowed when nothing changes (the common case).
    /// Query parameters that are compared with stored text go through it too.
    pub fn clean<'a>(self, text: &'a str) -> Cow<'a, str> {
        match self {
            Self::Off => Cow::Borrowed(text),
            Self::Escape => html_escape::encode_safe(text),
            Self::Strip => strip(text),
        }
    }

    fn clean_in_place(self, text: &mut String) {
        if let Cow::Owned(cleaned) = self.clean(text) {
            *text = cleaned;
        }
    }

    /// Cleans every string value, at any depth; keys are left as sent.
    fn clean_value(self, value: &mut Value) {
        match value {
            Value::String(text) => self.clean_in_place(text),
            Value::Array(items) => items.iter_mut().for_each(|item| self.clean_value(item)),
            Value::Object(map) => map.values_mut().for_each(|item| self.clean_value(item)),
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }

    /// Applies the policy to a validated draft. A `service` or `message` that held nothing
    /// but markup is refused rather than stored empty (the original stored it empty).
    pub fn apply(self, mut draft: EventDraft) -> Result<EventDraft, Vec<FieldError>> {
        if self == Self::Off {
            return Ok(draft);
        }
        self.clean_in_place(&mut draft.service);
        self.clean_in_place(&mut draft.message);
        if let Some(metadata) = draft.metadata.as_mut() {
            self.clean_value(metadata);
        }
        let emptied: Vec<FieldError> = [("service", &draft.service), ("message", &draft.message)]
            .into_iter()
            .filter(|(_, text)| text.trim().is_empty())
            .map(|(field, _)| {
                FieldError::new(field, "isNotEmpty", format!("{field} should not be empty once markup is removed"))
            })
            .collect();
        if emptied.is_empty() { Ok(draft) } else { Err(emptied) }
    }
}

/// `text` without the tags, comments and script/style elements an HTML parser would read
/// in it, nor NUL characters; every other byte as it was.
fn strip(text: &str) -> Cow<'_, str> {
    // A parser drops a NUL, and PostgreSQL stores one in neither text nor jsonb: kept, it
    // would send the event to dead letters. It goes before tags are looked for, so that
    // `<\0b>` cannot become a tag once it is gone.
    if text.contains('\0') {
        return Cow::Owned(strip_tags(&text.replace('\0', "")).into_owned());
    }
    strip_tags(text)
}

fn strip_tags(text: &str) -> Cow<'_, str> {
    if !text.contains('<') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    // `<`s kept as text, each followed by another `<`. Once the markup after the last one is
    // removed, it stands before new text and may open a tag there (`<<b>script>`), so they
    // are written only when that is settled.
    let mut held = 0;
    let mut rest = text;
    'scan: while let Some(at) = rest.find('<') {
        if at > 0 {
            release(&mut out, &mut held);
            out.push_str(&rest[..at]);
        }
        let after = &rest[at + 1..];
        match opening(after.as_bytes()) {
            Opening::Text if after.starts_with('<') => held += 1,
            Opening::Text => {
                release(&mut out, &mut held);
                out.push('<');
            }
            Opening::Unclosed => {
                rest = &rest[at..];
                break;
            }
            Opening::Markup(len) => {
                rest = &after[len..];
                // The last held `<` now stands before what followed the markup.
                while held > 0 && !rest.starts_with('<') {
                    match opening(rest.as_bytes()) {
                        Opening::Markup(len) => {
                            held -= 1;
                            rest = &rest[len..];
                        }
                        Opening::Text => break,
                        Opening::Unclosed => break 'scan,
                    }
                }
                continue;
            }
        }
        rest = after;
    }
    release(&mut out, &mut held);
    out.push_str(rest);
    // Only ever removed from: the same length means the same text.
    if out.len() == text.len() { Cow::Borrowed(text) } else { Cow::Owned(out) }
}

fn release(out: &mut String, held: &mut usize) {
    out.extend(std::iter::repeat_n('<', *held));
    *held = 0;
}

/// What a `<` starts, by what follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opening {
    /// Nothing: the `<` is text (`x < 5`, `<3`, `</` at the end).
    Text,
    /// A tag or comment that never ends. A parser drops or hides it to the end of the text,
    /// where it runs nothing, so it is kept as typed (`a<b`).
    Unclosed,
    /// Markup of this many bytes after the `<`, to remove with it.
    Markup(usize),
}

/// The tokenizer's tag open state: a letter starts a tag, `/` an end tag, `!` a comment or
/// declaration, `?` a processing instruction (a bogus comment in HTML).
fn opening(after: &[u8]) -> Opening {
    let ended = |end: Option<usize>| end.map_or(Opening::Unclosed, Opening::Markup);
    match after {
        [first, ..] if first.is_ascii_alphabetic() => ended(start_tag(after)),
        [b'/'] => Opening::Text,
        // `</>` is dropped by the parser.
        [b'/', b'>', ..] => Opening::Markup(2),
        [b'/', second, ..] if second.is_ascii_alphabetic() => ended(tag_end(after, 1)),
        [b'!', b'-', b'-', ..] => ended(comment_end(after)),
        [b'/' | b'!' | b'?', ..] => ended(after.iter().position(|&byte| byte == b'>').map(|at| at + 1)),
        _ => Opening::Text,
    }
}

/// Elements whose content is removed with them: a parser reads it as code, not text.
const EXECUTABLE: [&[u8]; 2] = [b"script", b"style"];

/// The end of a start tag whose name begins `after`, and of the content of a script or style
/// element it opens: up to its end tag, or the end of the text if it has none.
fn start_tag(after: &[u8]) -> Option<usize> {
    let end = tag_end(after, 0)?;
    let name = &after[..after.iter().position(|&byte| ends_name(byte)).unwrap_or(after.len())];
    if !EXECUTABLE.iter().any(|executable| name.eq_ignore_ascii_case(executable)) {
        return Some(end);
    }
    let mut from = end;
    while let Some(found) = after[from..].windows(2).position(|pair| pair == b"</") {
        let name_at = from + found + 2;
        let name_end = name_at + name.len();
        let names_it = after.get(name_at..name_end).is_some_and(|candidate| candidate.eq_ignore_ascii_case(name));
        if names_it && after.get(name_end).is_some_and(|&byte| ends_name(byte)) {
            return Some(tag_end(after, name_at).unwrap_or(after.len()));
        }
        from = name_at;
    }
    Some(after.len())
}

/// Whitespace as the tokenizer knows it (a CR is a newline by then).
fn is_space(byte: u8) -> bool {
    matches!(byte, b'\t' | b'\n' | b'\x0c' | b'\r' | b' ')
}

fn ends_name(byte: u8) -> bool {
    is_space(byte) || byte == b'/' || byte == b'>'
}

/// Just past the `>` that ends a tag whose name starts at `from`, following the tokenizer's
/// tag and attribute states: a `>` ends the tag anywhere but in a quoted attribute value.
fn tag_end(bytes: &[u8], from: usize) -> Option<usize> {
    #[derive(Clone, Copy)]
    enum State {
        Name,
        BeforeAttribute,
        Attribute,
        AfterAttribute,
        BeforeValue,
        Quoted(u8),
        Unquoted,
        AfterQuoted,
        SelfClosing,
    }
    let mut state = State::Name;
    for (at, &byte) in bytes.iter().enumerate().skip(from) {
        state = match (state, byte) {
            (State::Quoted(quote), _) if byte == quote => State::AfterQuoted,
            (State::Quoted(_), _) => state,
            (_, b'>') => return Some(at + 1),
            (State::BeforeValue, b'"' | b'\'') => State::Quoted(byte),
            (State::BeforeValue, _) if is_space(byte) => state,
            (State::BeforeValue | State::Unquoted, _) if !is_space(byte) => State::Unquoted,
            (State::Name, b'/') => State::SelfClosing,
            (State::Name, _) if !is_space(byte) => state,
            (State::Attribute | State::AfterAttribute, b'=') => State::BeforeValue,
            (_, b'/') => State::SelfClosing,
            (State::Attribute, _) if is_space(byte) => State::AfterAttribute,
            (State::BeforeAttribute | State::AfterAttribute, _) if is_space(byte) => state,
            (_, _) if is_space(byte) => State::BeforeAttribute,
            (_, _) => State::Attribute,
        };
    }
    None
}

/// Just past the end of a comment (`after` starts `!--`): `-->` or `--!>`, or the abrupt
/// `<!-->` and `<!--->`.
fn comment_end(after: &[u8]) -> Option<usize> {
    let body = &after[3..];
    if body.starts_with(b">") {
        return Some(4);
    }
    if body.starts_with(b"->") {
        return Some(5);
    }
    (0..body.len()).find_map(|at| {
        let rest = &body[at..];
        if rest.starts_with(b"-->") {
            Some(3 + at + 3)
        } else if rest.starts_with(b"--!>") {
            Some(3 + at + 4)
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn strip_removes_tags_comments_and_executable_content() {
        let strip = |text| Markup::Strip.clean(text).into_owned();
        assert_eq!(strip("<b>Hello</b> <script>alert(1)</script>world"), "Hello world");
        assert_eq!(strip("<img src=x onerror=alert(1)>caption"), "caption");
        assert_eq!(strip("<style>body{}</style>styled"), "styled");
        assert_eq!(strip("<a href=\"javascript:alert(1)\">link</a>"), "link");
        assert_eq!(
            strip("<div title='a > b' onclick=\"x()\">quoted</div>"),
            "quoted",
            "a quoted `>` is inside the tag"
        );
        assert_eq!(strip("a<!-- note -->b<!---->c<!-->d<!--->e<!-- x --!>f"), "abcdef");
        assert_eq!(strip("<!DOCTYPE html><?xml version=\"1.0\"?></ bogus>text</>"), "text");
        assert_eq!(strip("<SCRIPT type=module>x = '</b>'</SCRIPT >after"), "after", "case and attributes");
        assert_eq!(strip("<script>never closed"), "", "script content runs to the end of the text");
        assert_eq!(strip("<svg/onload=alert(1)>"), "");
        // Removing a tag must not join what is left into a new one.
        assert_eq!(strip("<<b>script>alert(1)<</b>/script>"), "");
        assert_eq!(strip("<<<b>b>i>x"), "x");
        assert_eq!(strip("<<b>3"), "<3");
    }

    #[test]
    fn strip_keeps_every_other_character_as_typed() {
        for text in [
            "User login successful",
            "R&D",
            "a & b",
            "x < 5",
            "a<b",
            "<3",
            "5 > 3 && 2 < 4",
            "&amp; &lt;tag&gt; &#x27;",
            "\"double\" and 'single'",
            "emoji 🎉🚀",
            "漢字とかな",
            "</",
            "<",
            "if a<b then c",
            "<img src=x onerror=alert(1)",
            "\r\n\u{a0}\u{feff}",
        ] {
            assert_eq!(Markup::Strip.clean(text), text);
            assert!(matches!(Markup::Strip.clean(text), Cow::Borrowed(_)), "{text} is not copied");
        }
        assert_eq!(Markup::Strip.clean("R&D <b>team</b> & x < 5"), "R&D team & x < 5");
        assert_eq!(Markup::Strip.clean("nul \0 byte"), "nul  byte", "PostgreSQL stores no NUL");
        assert_eq!(Markup::Strip.clean("<\0script>alert(1)</script>x"), "x");
    }

    #[test]
    fn escape_keeps_every_character_visible() {
        assert_eq!(Markup::Escape.clean("<b>x</b> & 'y'"), "&lt;b&gt;x&lt;&#x2F;b&gt; &amp; &#x27;y&#x27;");
        assert_eq!(Markup::Off.clean("<b>x</b>"), "<b>x</b>");
    }

    fn draft(message: &str, metadata: Value) -> EventDraft {
        EventDraft {
            timestamp: chrono::DateTime::UNIX_EPOCH,
            service: "web".into(),
            message: message.into(),
            metadata: Some(metadata),
            idempotency_key: None,
        }
    }

    #[test]
    fn cleans_metadata_string_values_at_any_depth_and_leaves_other_values() {
        let cleaned = Markup::Strip
            .apply(draft(
                "<i>hi</i> & bye",
                json!({"a": "<script>x</script>ok", "n": 1, "list": ["<b>b</b>", {"deep": "<u>u</u> <3"}], "t": true}),
            ))
            .unwrap();
        assert_eq!(cleaned.message, "hi & bye");
        assert_eq!(cleaned.metadata, Some(json!({"a": "ok", "n": 1, "list": ["b", {"deep": "u <3"}], "t": true})));
    }

    #[test]
    fn a_message_of_nothing_but_markup_is_refused() {
        let errors = Markup::Strip.apply(draft("<script>alert(1)</script>", json!({}))).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "message");
        assert!(errors[0].constraints.contains_key("isNotEmpty"));
        assert!(Markup::Off.apply(draft("<script>alert(1)</script>", json!({}))).is_ok());
    }

    /// Any text in which no `<` opens a tag: one followed by a letter, `/`, `!` or `?`
    /// becomes a `.`, and so does a NUL (which strip drops).
    fn plain_text() -> impl Strategy<Value = String> {
        let char = any::<char>().prop_map(|c| if c == '\0' { '.' } else { c });
        proptest::collection::vec(char, 0..64).prop_map(|chars| {
            let opens = |next: Option<&char>| next.is_some_and(|c| c.is_ascii_alphabetic() || "/!?".contains(*c));
            chars
                .iter()
                .enumerate()
                .map(|(at, &c)| if c == '<' && opens(chars.get(at + 1)) { '.' } else { c })
                .collect()
        })
    }

    /// Markup an attacker might send, each closed.
    const HOSTILE: [&str; 10] = [
        "<script>alert(1)</script>",
        "<script src=\"https://evil.example/x.js\"></script>",
        "<img src=x onerror=alert(1)>",
        "<a href=\"javascript:alert(1)\">",
        "</a>",
        "<style>body{background:url(javascript:alert(1))}</style>",
        "<div title='>' onmouseover=\"alert(1)\">",
        "<svg/onload=alert(1)>",
        "<!-- <script>alert(1)</script> -->",
        "<IMG SRC=javascript:alert('XSS') onerror=alert(1)/>",
    ];

    proptest! {
        /// Text with no tag in it comes out byte for byte.
        #[test]
        fn text_without_a_tag_is_unchanged(text in plain_text()) {
            prop_assert_eq!(Markup::Strip.clean(&text), text.as_str());
        }

        /// Markup between ordinary texts is removed, and only it: the texts come out joined,
        /// with no script, event handler or `javascript:` left.
        #[test]
        fn markup_is_removed_and_only_markup(
            pieces in proptest::collection::vec(
                (plain_text().prop_filter("ends before the markup", |text| !text.ends_with('<')),
                 proptest::sample::select(HOSTILE.as_slice())),
                0..6,
            ),
            last in plain_text(),
        ) {
            let sent: String = pieces.iter().flat_map(|(text, markup)| [text.as_str(), markup]).chain([last.as_str()]).collect();
            let texts: String = pieces.iter().map(|(text, _)| text.as_str()).chain([last.as_str()]).collect();
            let cleaned = Markup::Strip.clean(&sent);
            prop_assert_eq!(&cleaned, &texts);
            for trace in ["<script", "onerror", "javascript:", "<!--"] {
                prop_assert!(!cleaned.contains(trace) || texts.contains(trace), "{trace} in {cleaned}");
            }
        }

        /// Stripping what was stripped changes nothing, whatever the input, even markup
        /// built to reassemble once a tag inside it is removed.
        #[test]
        fn strip_is_idempotent(
            text in proptest::collection::vec(
                prop_oneof![
                    proptest::sample::select(vec!["<", ">", "/", "!", "-", "\"", "'", "=", " ", "a", "b", "script", "--"])
                        .prop_map(str::to_owned),
                    proptest::sample::select(HOSTILE.as_slice()).prop_map(str::to_owned),
                    ".{0,4}",
                ],
                0..24,
            ).prop_map(|parts| parts.concat())
        ) {
            let once = Markup::Strip.clean(&text).into_owned();
            prop_assert_eq!(Markup::Strip.clean(&once), once.as_str());
        }
    }
}
