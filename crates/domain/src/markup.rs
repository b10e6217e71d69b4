//! Markup in what clients send. Events end up in dashboards and log viewers that may render
//! them as HTML, so by default the text a client sends is stripped of tags the way the
//! original service did: tags go, the text of ordinary tags stays, the content of
//! `<script>`/`<style>` goes with them, and what remains is entity-encoded. An HTML parser
//! (ammonia, on html5ever) does the work: regular expressions do not parse HTML.

use crate::event::EventDraft;
use crate::validation::FieldError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::LazyLock;

/// What happens to markup in `service`, `message` and metadata string values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Markup {
    /// Tags removed, executable content dropped, the rest entity-encoded (`a & b` is
    /// stored as `a &amp; b`), as the original did.
    #[default]
    Strip,
    /// Nothing removed, every markup character entity-encoded: `<b>` is stored as `&lt;b&gt;`.
    Escape,
    /// Stored as sent; whoever renders events must escape them.
    Off,
}

/// No tag survives; `script`, `style` and the like lose their content too (ammonia's
/// default `clean_content_tags`).
static STRIPPER: LazyLock<ammonia::Builder<'static>> = LazyLock::new(|| {
    let mut builder = ammonia::Builder::default();
    builder.tags(HashSet::new()).generic_attributes(HashSet::new()).link_rel(None);
    builder
});

/// Characters that make the HTML parser change a string: markup and entities, the NUL and
/// CR it drops or normalises, a byte-order mark (dropped) and the no-break space (written
/// back as `&nbsp;`). Text without any of them comes out of [`Markup::Strip`] as it went in
/// (a property test checks this), so the parser runs only when it can matter.
fn may_change_when_stripped(text: &str) -> bool {
    text.chars().any(parser_changes)
}

fn parser_changes(c: char) -> bool {
    matches!(c, '<' | '>' | '&' | '\0' | '\r' | '\u{a0}' | '\u{feff}')
}

impl Markup {
    /// `text` as this policy stores it; borrowed when nothing changes (the common case).
    pub fn clean<'a>(self, text: &'a str) -> Cow<'a, str> {
        match self {
            Self::Off => Cow::Borrowed(text),
            Self::Escape => html_escape::encode_safe(text),
            Self::Strip if !may_change_when_stripped(text) => Cow::Borrowed(text),
            Self::Strip => Cow::Owned(STRIPPER.clean(text).to_string()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn strips_tags_and_executable_content_as_the_original_did() {
        let strip = Markup::Strip;
        assert_eq!(strip.clean("<b>Hello</b> <script>alert(1)</script>world"), "Hello world");
        assert_eq!(strip.clean("a & b < c"), "a &amp; b &lt; c");
        assert_eq!(strip.clean("<img src=x onerror=alert(1)>caption"), "caption");
        assert_eq!(strip.clean("<style>body{}</style>styled"), "styled");
        assert_eq!(strip.clean("<a href=\"javascript:alert(1)\">link</a>"), "link");
        assert_eq!(strip.clean("User login successful"), "User login successful");
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
                "<i>hi</i>",
                json!({"a": "<script>x</script>ok", "n": 1, "list": ["<b>b</b>", {"deep": "<u>u</u>"}], "t": true}),
            ))
            .unwrap();
        assert_eq!(cleaned.message, "hi");
        assert_eq!(cleaned.metadata, Some(json!({"a": "ok", "n": 1, "list": ["b", {"deep": "u"}], "t": true})));
    }

    #[test]
    fn a_message_of_nothing_but_markup_is_refused() {
        let errors = Markup::Strip.apply(draft("<script>alert(1)</script>", json!({}))).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "message");
        assert!(errors[0].constraints.contains_key("isNotEmpty"));
        assert!(Markup::Off.apply(draft("<script>alert(1)</script>", json!({}))).is_ok());
    }

    proptest! {
        /// The fast path is sound: text the parser would not touch is passed through.
        #[test]
        fn text_without_markup_characters_is_unchanged(
            text in proptest::collection::vec(any::<char>().prop_map(|c| if parser_changes(c) { '.' } else { c }), 0..64)
                .prop_map(String::from_iter)
        ) {
            prop_assert_eq!(STRIPPER.clean(&text).to_string(), text);
        }

        /// Whatever goes in, nothing that opens a tag comes out.
        #[test]
        fn stripped_text_never_holds_a_tag(text in ".*") {
            let cleaned = Markup::Strip.clean(&text);
            prop_assert!(!cleaned.contains('<'), "{cleaned}");
        }
    }
}
