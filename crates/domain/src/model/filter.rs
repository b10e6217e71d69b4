//! The `q=` filter language: bare words and `"phrases"` search the message (ignoring case,
//! anywhere in it, as a plain `q=word` always has), `field:value`, `field:"quoted value"`,
//! `metadata.status>=500`, `field:*` (the key exists), `field:prefix*`, `AND`, `OR`, `NOT`
//! or `-`, parentheses; adjacent terms mean AND. A query parses into a typed [`Filter`]
//! that stores compile to bound parameters and the live tail evaluates on each event.

use crate::event::Event;
use crate::query::{MAX_FILTER_DEPTH, spells, value_at};
use serde::Serialize;
use serde_json::Value;
use std::fmt;
use winnow::ascii::multispace0;
use winnow::error::{ContextError, ErrMode, StrContext, StrContextValue};
use winnow::prelude::*;
use winnow::token::{any, take_while};

/// A parsed query.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "op", content = "of")]
pub enum Filter {
    /// Every one holds; at least two.
    And(Vec<Filter>),
    /// At least one holds; at least two.
    Or(Vec<Filter>),
    Not(Box<Filter>),
    /// A bare word or phrase: the message contains it, ignoring case.
    Text(String),
    /// A test on a field.
    Field(FieldTest),
}

/// `field` `test`: `message:"disk full"`, `metadata.region:eu*`, `metadata.status>=500`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldTest {
    pub field: Field,
    pub test: Test,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    Message,
    /// `metadata.a.b`: the path of keys into the metadata object.
    Metadata(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum Test {
    /// `:value`: on the message, it contains the value, ignoring case; in metadata, the
    /// value at the path is that string, or the number, boolean or null it spells.
    Equals(String),
    /// `:value*` (or `:"value"*`): in metadata, the string at the path starts with the
    /// value; on the message, as `:value` (text matches anywhere already).
    Prefix(String),
    /// `:*`: the path exists (any value, null included).
    Exists,
    /// `>`, `>=`, `<`, `<=` a number: the value at the path is a number and compares so.
    Compare(Comparison, serde_json::Number),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
}

impl Comparison {
    pub fn symbol(self) -> &'static str {
        match self {
            Self::Less => "<",
            Self::LessOrEqual => "<=",
            Self::Greater => ">",
            Self::GreaterOrEqual => ">=",
        }
    }

    fn holds(self, ordering: std::cmp::Ordering) -> bool {
        match self {
            Self::Less => ordering.is_lt(),
            Self::LessOrEqual => ordering.is_le(),
            Self::Greater => ordering.is_gt(),
            Self::GreaterOrEqual => ordering.is_ge(),
        }
    }
}

/// Why a query does not parse: where, and what was expected there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at byte {position}: expected {expected}")]
pub struct FilterError {
    /// Byte offset into the query.
    pub position: usize,
    pub expected: String,
}

/// Most terms in one query, and deepest nesting of parentheses and `NOT`: a query is a
/// statement's WHERE clause, so its size is bounded before it reaches the store.
pub const MAX_TERMS: usize = 32;
pub const MAX_NESTING: usize = 16;

impl Filter {
    /// Parses a query. An empty or blank query is `None`: no filter.
    pub fn parse(text: &str) -> Result<Option<Self>, FilterError> {
        if text.trim().is_empty() {
            return Ok(None);
        }
        let mut terms = 0;
        let mut input = text;
        let parsed = (|input: &mut &str| {
            let filter = or(input, 0, &mut terms)?;
            let _ = multispace0.parse_next(input)?;
            if !input.is_empty() {
                return Err(expected(if input.starts_with(')') {
                    "an opening parenthesis before this one"
                } else {
                    "AND, OR or the end of the query"
                }));
            }
            Ok(filter)
        })(&mut input);
        match parsed {
            Ok(filter) => Ok(Some(filter)),
            Err(error) => {
                let expected = error
                    .into_inner()
                    .ok()
                    .and_then(|error| {
                        error.context().find_map(|context| match context {
                            StrContext::Expected(StrContextValue::Description(what)) => Some((*what).to_owned()),
                            _ => None,
                        })
                    })
                    .unwrap_or_else(|| "a term".to_owned());
                Err(FilterError { position: text.len() - input.len(), expected })
            }
        }
    }

    /// Whether `event` meets the filter: the same test the store runs in SQL.
    pub fn matches(&self, event: &Event) -> bool {
        match self {
            Self::And(all) => all.iter().all(|filter| filter.matches(event)),
            Self::Or(any) => any.iter().any(|filter| filter.matches(event)),
            Self::Not(filter) => !filter.matches(event),
            Self::Text(text) => contains_ignoring_case(&event.message, text),
            Self::Field(test) => test.matches(event),
        }
    }

    /// Applies `clean` to every value a client typed, as ingest cleaned what was stored.
    pub fn map_values(&mut self, clean: &impl Fn(&str) -> String) {
        match self {
            Self::And(all) | Self::Or(all) => all.iter_mut().for_each(|filter| filter.map_values(clean)),
            Self::Not(filter) => filter.map_values(clean),
            Self::Text(text) => *text = clean(text),
            Self::Field(FieldTest { test: Test::Equals(value) | Test::Prefix(value), .. }) => *value = clean(value),
            Self::Field(_) => {}
        }
    }
}

impl FieldTest {
    fn matches(&self, event: &Event) -> bool {
        let path = match (&self.field, &self.test) {
            (Field::Message, Test::Equals(value) | Test::Prefix(value)) => {
                return contains_ignoring_case(&event.message, value);
            }
            (Field::Message, _) => return true,
            (Field::Metadata(path), _) => path,
        };
        let Some(found) = value_at(event.metadata.as_ref(), path) else { return false };
        match &self.test {
            Test::Equals(value) => spells(found, value),
            Test::Prefix(prefix) => found.as_str().is_some_and(|text| text.starts_with(prefix.as_str())),
            Test::Exists => true,
            Test::Compare(comparison, number) => match (found, number.as_f64()) {
                (Value::Number(found), Some(wanted)) => found
                    .as_f64()
                    .and_then(|found| found.partial_cmp(&wanted))
                    .is_some_and(|ordering| comparison.holds(ordering)),
                _ => false,
            },
        }
    }
}

/// Whether `haystack` contains `needle`, ignoring case. Every stored event meets every
/// tail subscriber's filter: ASCII text, the common case, allocates nothing.
pub fn contains_ignoring_case(haystack: &str, needle: &str) -> bool {
    if haystack.is_ascii() && needle.is_ascii() {
        let needle = needle.as_bytes();
        needle.is_empty() || haystack.as_bytes().windows(needle.len()).any(|window| window.eq_ignore_ascii_case(needle))
    } else {
        haystack.to_lowercase().contains(&needle.to_lowercase())
    }
}

type Input<'a> = &'a str;

fn expected(what: &'static str) -> ErrMode<ContextError> {
    let mut error = ContextError::new();
    error.push(StrContext::Expected(StrContextValue::Description(what)));
    ErrMode::Cut(error)
}

/// `and (OR and)*`
fn or(input: &mut Input<'_>, depth: usize, terms: &mut usize) -> ModalResult<Filter> {
    let mut any = vec![and(input, depth, terms)?];
    while keyword(input, "OR") {
        any.push(and(input, depth, terms)?);
    }
    Ok(flatten(any, false))
}

/// `unary ((AND)? unary)*`: adjacent terms mean AND.
fn and(input: &mut Input<'_>, depth: usize, terms: &mut usize) -> ModalResult<Filter> {
    let mut all = vec![unary(input, depth, terms)?];
    loop {
        if keyword(input, "AND") {
            all.push(unary(input, depth, terms)?);
            continue;
        }
        let rest = input.trim_start();
        if rest.is_empty() || rest.starts_with(')') || starts_with_keyword(rest, "OR") {
            break;
        }
        all.push(unary(input, depth, terms)?);
    }
    Ok(flatten(all, true))
}

/// One filter, or the group of them, nested groups of the same kind merged.
fn flatten(filters: Vec<Filter>, and: bool) -> Filter {
    let mut flat = Vec::with_capacity(filters.len());
    for filter in filters {
        match (filter, and) {
            (Filter::And(inner), true) | (Filter::Or(inner), false) => flat.extend(inner),
            (other, _) => flat.push(other),
        }
    }
    match (flat.len(), and) {
        (1, _) => flat.remove(0),
        (_, true) => Filter::And(flat),
        (_, false) => Filter::Or(flat),
    }
}

/// Consumes `word` (upper case, as a whole word) after any spaces.
fn keyword(input: &mut Input<'_>, word: &str) -> bool {
    let rest = input.trim_start();
    if starts_with_keyword(rest, word) {
        *input = &rest[word.len()..];
        true
    } else {
        false
    }
}

fn starts_with_keyword(text: &str, word: &str) -> bool {
    text.strip_prefix(word)
        .is_some_and(|after| after.is_empty() || after.starts_with(|c: char| c.is_whitespace() || c == '(' || c == '"'))
}

/// `NOT unary`, `-unary`, `( or )` or a term.
fn unary(input: &mut Input<'_>, depth: usize, terms: &mut usize) -> ModalResult<Filter> {
    let _ = multispace0.parse_next(input)?;
    if depth >= MAX_NESTING {
        return Err(expected("fewer nested parentheses and NOTs (at most 16)"));
    }
    if keyword(input, "NOT") {
        return Ok(Filter::Not(Box::new(unary(input, depth + 1, terms)?)));
    }
    if let Some(rest) = input.strip_prefix('-').filter(|rest| rest.starts_with(|c: char| !c.is_whitespace())) {
        *input = rest;
        return Ok(Filter::Not(Box::new(unary(input, depth + 1, terms)?)));
    }
    if let Some(rest) = input.strip_prefix('(') {
        *input = rest;
        let inner = or(input, depth + 1, terms)?;
        let _ = multispace0.parse_next(input)?;
        return match input.strip_prefix(')') {
            Some(rest) => {
                *input = rest;
                Ok(inner)
            }
            None => Err(expected("a closing parenthesis")),
        };
    }
    *terms += 1;
    if *terms > MAX_TERMS {
        return Err(expected("fewer terms (at most 32)"));
    }
    term(input)
}

/// A field test, a phrase or a word.
fn term(input: &mut Input<'_>) -> ModalResult<Filter> {
    if input.starts_with('"') {
        return quoted(input).map(Filter::Text);
    }
    if input.is_empty()
        || input.starts_with(')')
        || starts_with_keyword(input, "AND")
        || starts_with_keyword(input, "OR")
    {
        return Err(expected("a word, a \"phrase\", field:value or a parenthesis"));
    }
    let start = *input;
    if let Some(field) = field(input)? {
        let operator = [">=", "<=", ">", "<", ":"].into_iter().find(|operator| input.starts_with(operator));
        if let Some(operator) = operator {
            *input = &input[operator.len()..];
            return field_test(input, field, operator).map(Filter::Field);
        }
    }
    *input = start;
    let word = bare(input).map_err(|_| expected("a word"))?;
    // `time*` is a text search like `time`: text matches anywhere already.
    Ok(Filter::Text(word.strip_suffix('*').filter(|word| !word.is_empty()).unwrap_or(word).to_owned()))
}

fn bare<'a>(input: &mut Input<'a>) -> ModalResult<&'a str> {
    take_while(1.., |c: char| !c.is_whitespace() && !"()\"".contains(c)).parse_next(input)
}

/// Characters of a field name or metadata key that need no quotes.
fn plain_key_char(c: char) -> bool {
    c.is_alphanumeric() || "_-@".contains(c)
}

/// A field name before an operator: `message`, or `metadata.` and keys separated by dots,
/// each bare or quoted (`metadata.attributes."http.method"`). `None` when what follows
/// is no field name (the term is then a word); an error for a name that is not a field.
fn field(input: &mut Input<'_>) -> ModalResult<Option<Field>> {
    let start = *input;
    let operator_follows = |input: &str| [">=", "<=", ">", "<", ":"].iter().any(|operator| input.starts_with(operator));
    if let Some(rest) = input.strip_prefix("metadata.") {
        *input = rest;
        let mut path = Vec::new();
        loop {
            let key = if input.starts_with('"') {
                quoted(input)?
            } else {
                let key: &str = take_while(0.., plain_key_char).parse_next(input)?;
                key.to_owned()
            };
            if key.is_empty() {
                return Err(expected("a metadata key (quoted, if it holds other characters)"));
            }
            path.push(key);
            match input.strip_prefix('.') {
                Some(rest) => *input = rest,
                None => break,
            }
        }
        if !operator_follows(input) {
            *input = start;
            return Ok(None);
        }
        if path.len() > MAX_FILTER_DEPTH {
            *input = start;
            return Err(expected("at most 5 metadata keys in a path"));
        }
        return Ok(Some(Field::Metadata(path)));
    }
    let name: &str = take_while(0.., |c: char| plain_key_char(c) || c == '.').parse_next(input)?;
    if name.is_empty() || !operator_follows(input) {
        *input = start;
        return Ok(None);
    }
    // `level:error` is a field name mistyped; `a<b`, `12:30` and `x>5` are text.
    let looks_like_a_field = input.starts_with(':') && name.starts_with(char::is_alphabetic);
    match name {
        "message" => Ok(Some(Field::Message)),
        "service" => {
            *input = start;
            Err(expected("a field other than service, which is a parameter of its own"))
        }
        _ if looks_like_a_field => {
            *input = start;
            Err(expected("message or metadata.<key> before ':' (quote text that holds ':')"))
        }
        _ => {
            *input = start;
            Ok(None)
        }
    }
}

fn field_test(input: &mut Input<'_>, field: Field, operator: &str) -> ModalResult<FieldTest> {
    let comparison = match operator {
        ">=" => Some(Comparison::GreaterOrEqual),
        "<=" => Some(Comparison::LessOrEqual),
        ">" => Some(Comparison::Greater),
        "<" => Some(Comparison::Less),
        _ => None,
    };
    if let Some(comparison) = comparison {
        if field == Field::Message {
            return Err(expected("':' after message (comparisons apply to metadata numbers)"));
        }
        let at = *input;
        let digits: &str = take_while(1.., |c: char| c.is_ascii_digit() || "+-.eE".contains(c))
            .parse_next(input)
            .map_err(|_: ErrMode<ContextError>| expected("a number"))?;
        let number = serde_json::from_str::<serde_json::Number>(digits)
            .ok()
            .filter(crate::validation::is_storable_number)
            .ok_or_else(|| {
                *input = at;
                expected("a number")
            })?;
        return Ok(FieldTest { field, test: Test::Compare(comparison, number) });
    }
    if input.starts_with('"') {
        let value = quoted(input)?;
        if let Some(rest) = input.strip_prefix('*') {
            *input = rest;
            return Ok(FieldTest { field, test: Test::Prefix(value) });
        }
        return Ok(FieldTest { field, test: Test::Equals(value) });
    }
    let value = bare(input).map_err(|_| expected("a value after ':'"))?;
    let test = match value.strip_suffix('*') {
        Some("") => Test::Exists,
        Some(prefix) => Test::Prefix(prefix.to_owned()),
        None => Test::Equals(value.to_owned()),
    };
    Ok(FieldTest { field, test })
}

/// `"…"` with `\"` and `\\` escapes.
fn quoted(input: &mut Input<'_>) -> ModalResult<String> {
    let _ = any.parse_next(input)?;
    let mut value = String::new();
    loop {
        match any::<_, ErrMode<ContextError>>.parse_next(input) {
            Err(_) => return Err(expected("a closing quote")),
            Ok('"') => return Ok(value),
            Ok('\\') => {
                let at = *input;
                match any::<_, ErrMode<ContextError>>.parse_next(input) {
                    Ok(escaped @ ('"' | '\\')) => value.push(escaped),
                    _ => {
                        *input = at;
                        return Err(expected("\\\" or \\\\ after a backslash"));
                    }
                }
            }
            Ok(c) => value.push(c),
        }
    }
}

/// The canonical spelling, which parses back to the same filter: values always quoted,
/// every AND and OR spelled out, parentheses only where AND's precedence needs them.
impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let group = |f: &mut fmt::Formatter<'_>, filters: &[Filter], join: &str| {
            for (index, filter) in filters.iter().enumerate() {
                if index > 0 {
                    write!(f, " {join} ")?;
                }
                // AND binds tighter than OR: only an OR inside an AND needs parentheses, so
                // the spelling nests no deeper than any query that parses to the same tree.
                match filter {
                    Self::Or(_) if join == "AND" => write!(f, "({filter})")?,
                    _ => write!(f, "{filter}")?,
                }
            }
            Ok(())
        };
        match self {
            Self::And(all) => group(f, all, "AND"),
            Self::Or(any) => group(f, any, "OR"),
            Self::Not(inner) => match **inner {
                Self::And(_) | Self::Or(_) => write!(f, "NOT ({inner})"),
                _ => write!(f, "NOT {inner}"),
            },
            Self::Text(text) => write_quoted(f, text),
            Self::Field(FieldTest { field, test }) => {
                match field {
                    Field::Message => f.write_str("message")?,
                    Field::Metadata(path) => {
                        f.write_str("metadata")?;
                        for key in path {
                            f.write_str(".")?;
                            if !key.is_empty() && key.chars().all(plain_key_char) {
                                f.write_str(key)?;
                            } else {
                                write_quoted(f, key)?;
                            }
                        }
                    }
                }
                match test {
                    Test::Equals(value) => {
                        f.write_str(":")?;
                        write_quoted(f, value)
                    }
                    Test::Prefix(prefix) => {
                        f.write_str(":")?;
                        write_quoted(f, prefix)?;
                        f.write_str("*")
                    }
                    Test::Exists => f.write_str(":*"),
                    Test::Compare(comparison, number) => write!(f, "{}{number}", comparison.symbol()),
                }
            }
        }
    }
}

fn write_quoted(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    write!(f, "\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn text(word: &str) -> Filter {
        Filter::Text(word.to_owned())
    }

    fn metadata(path: &[&str], test: Test) -> Filter {
        Filter::Field(FieldTest { field: Field::Metadata(path.iter().map(|key| (*key).to_owned()).collect()), test })
    }

    fn number(text: &str) -> serde_json::Number {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn queries_parse_into_their_trees() {
        let equals = |value: &str| Test::Equals(value.to_owned());
        let cases: Vec<(&str, Filter)> = vec![
            ("timeout", text("timeout")),
            ("  timeout  ", text("timeout")),
            ("\"connection refused\"", text("connection refused")),
            ("time*", text("time")),
            ("disk full", Filter::And(vec![text("disk"), text("full")])),
            ("a AND b OR c", Filter::Or(vec![Filter::And(vec![text("a"), text("b")]), text("c")])),
            ("a OR b c", Filter::Or(vec![text("a"), Filter::And(vec![text("b"), text("c")])])),
            ("(a OR b) c", Filter::And(vec![Filter::Or(vec![text("a"), text("b")]), text("c")])),
            ("a (b c)", Filter::And(vec![text("a"), text("b"), text("c")])),
            ("NOT a", Filter::Not(Box::new(text("a")))),
            ("-a b", Filter::And(vec![Filter::Not(Box::new(text("a"))), text("b")])),
            ("- a", Filter::And(vec![text("-"), text("a")])),
            ("metadata.region:eu", metadata(&["region"], equals("eu"))),
            ("metadata.user.id:\"42\"", metadata(&["user", "id"], equals("42"))),
            ("metadata.region:\"eu west\"", metadata(&["region"], equals("eu west"))),
            ("metadata.attributes.\"http.method\":GET", metadata(&["attributes", "http.method"], equals("GET"))),
            ("metadata.status>=500", metadata(&["status"], Test::Compare(Comparison::GreaterOrEqual, number("500")))),
            ("metadata.latency<0.25", metadata(&["latency"], Test::Compare(Comparison::Less, number("0.25")))),
            ("metadata.delta>-1e3", metadata(&["delta"], Test::Compare(Comparison::Greater, number("-1e3")))),
            ("metadata.trace_id:*", metadata(&["trace_id"], Test::Exists)),
            ("metadata.host:web-*", metadata(&["host"], Test::Prefix("web-".into()))),
            ("metadata.host:\"web 1\"*", metadata(&["host"], Test::Prefix("web 1".into()))),
            ("message:\"disk full\"", Filter::Field(FieldTest { field: Field::Message, test: equals("disk full") })),
            ("say \"\\\"hi\\\"\"", Filter::And(vec![text("say"), text("\"hi\"")])),
            ("ORANGE ANDROID NOTE", Filter::And(vec![text("ORANGE"), text("ANDROID"), text("NOTE")])),
            ("user@example.com", text("user@example.com")),
            ("metadata.region", text("metadata.region")),
            ("a<b", text("a<b")),
            ("12:30:01", text("12:30:01")),
            ("x>5", text("x>5")),
        ];
        for (query, expected) in cases {
            assert_eq!(Filter::parse(query), Ok(Some(expected)), "{query}");
        }
        assert_eq!(Filter::parse("   "), Ok(None));
    }

    #[test]
    fn bad_queries_name_the_byte_and_what_was_expected() {
        let cases: [(&str, usize, &str); 14] = [
            ("(a OR b", 7, "a closing parenthesis"),
            ("a)", 1, "an opening parenthesis"),
            ("a AND", 5, "a word"),
            ("OR a", 0, "a word"),
            ("\"open", 5, "a closing quote"),
            ("metadata.status>=high", 17, "a number"),
            ("metadata.status>1e99999", 16, "a number"),
            ("message>5", 8, "':' after message"),
            ("level:error", 0, "message or metadata.<key>"),
            ("service:api", 0, "a field other than service"),
            ("metadata..a:x", 9, "a metadata key"),
            ("metadata.a.b.c.d.e.f:x", 0, "at most 5 metadata keys"),
            ("metadata.a:", 11, "a value after ':'"),
            ("\"a\\q\"", 3, "after a backslash"),
        ];
        for (query, position, expected) in cases {
            let error = Filter::parse(query).expect_err(query);
            assert_eq!(error.position, position, "{query}: {error}");
            assert!(error.expected.contains(expected), "{query}: {error}");
        }
        let deep = format!("{}a{}", "(".repeat(20), ")".repeat(20));
        assert!(Filter::parse(&deep).unwrap_err().expected.contains("nested"));
        let many = vec!["a"; 33].join(" ");
        assert!(Filter::parse(&many).unwrap_err().expected.contains("fewer terms"));
        assert!(Filter::parse(&vec!["a"; 32].join(" ")).is_ok());
    }

    #[test]
    fn a_query_at_the_nesting_limit_prints_to_one_that_parses() {
        // AND inside OR needs no parentheses: printing them would nest past the limit.
        let query = format!("(a {}b OR c) d", "-".repeat(MAX_NESTING - 2));
        let filter = Filter::parse(&query).unwrap().unwrap();
        let printed = filter.to_string();
        assert_eq!(Filter::parse(&printed), Ok(Some(filter)), "{printed}");
        assert_eq!(Filter::parse("a b OR c").unwrap().unwrap().to_string(), "\"a\" AND \"b\" OR \"c\"");
        assert_eq!(Filter::parse("(a OR b) c").unwrap().unwrap().to_string(), "(\"a\" OR \"b\") AND \"c\"");
    }

    fn any_filter() -> impl Strategy<Value = Filter> {
        let value = "\\PC{0,8}";
        let key = prop_oneof!["[a-z_]{1,6}", "\\PC{1,6}"];
        let path = proptest::collection::vec(key, 1..=MAX_FILTER_DEPTH);
        let number = prop_oneof![
            proptest::arbitrary::any::<i64>().prop_map(|n| n.to_string()),
            Just("0.5".to_owned()),
            Just("-1e3".to_owned())
        ]
        .prop_map(|text| serde_json::from_str::<serde_json::Number>(&text).unwrap());
        let comparison = prop_oneof![
            Just(Comparison::Less),
            Just(Comparison::LessOrEqual),
            Just(Comparison::Greater),
            Just(Comparison::GreaterOrEqual)
        ];
        let test = prop_oneof![
            value.prop_map(Test::Equals),
            value.prop_map(Test::Prefix),
            Just(Test::Exists),
            (comparison, number).prop_map(|(comparison, number)| Test::Compare(comparison, number)),
        ];
        let leaf = prop_oneof![
            value.prop_map(Filter::Text),
            (path, test).prop_map(|(path, test)| Filter::Field(FieldTest { field: Field::Metadata(path), test })),
            value.prop_map(|value| Filter::Field(FieldTest { field: Field::Message, test: Test::Equals(value) })),
        ];
        leaf.prop_recursive(4, 24, 3, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 2..4).prop_map(|all| flatten(all, true)),
                proptest::collection::vec(inner.clone(), 2..4).prop_map(|group| flatten(group, false)),
                inner.prop_map(|filter| Filter::Not(Box::new(filter))),
            ]
        })
    }

    proptest! {
        /// What is printed parses back to the same filter.
        #[test]
        fn printing_then_parsing_gives_the_same_filter(filter in any_filter()) {
            let printed = filter.to_string();
            prop_assume!(printed.len() < 2000);
            prop_assert_eq!(Filter::parse(&printed), Ok(Some(filter)), "{}", printed);
        }

        /// Any text at all parses or is refused with a position inside it.
        #[test]
        fn any_text_parses_or_names_a_position_inside_it(text in "\\PC{0,60}|[()\"a:*<>=.\\- ORNDTme]{0,40}") {
            if let Err(error) = Filter::parse(&text) {
                prop_assert!(error.position <= text.len() && text.is_char_boundary(error.position), "{error:?} in {text:?}");
            }
        }
    }

    #[test]
    fn text_matches_ignoring_case_in_ascii_and_beyond() {
        assert!(contains_ignoring_case("Upstream TIMEOUT", "timeout"));
        assert!(contains_ignoring_case("Upstream timeout", "TIMEOUT"));
        assert!(contains_ignoring_case("anything", ""));
        assert!(!contains_ignoring_case("time", "timeout"));
        assert!(contains_ignoring_case("ÉCHEC de connexion", "échec"));
        assert!(!contains_ignoring_case("Échec", "echec"));
    }

    #[test]
    fn the_filter_evaluates_like_the_store() {
        let event = Event {
            id: crate::EventId::from_uuid(uuid::Uuid::nil()),
            timestamp: chrono::Utc::now(),
            service: "api".into(),
            message: "Disk FULL on /var".into(),
            metadata: Some(serde_json::json!({"status": 507, "host": "web-3", "nested": {"k": null}, "tags": ["a"]})),
            ingested_at: chrono::Utc::now(),
        };
        let holds = |query: &str| Filter::parse(query).unwrap().unwrap().matches(&event);
        for query in [
            "disk",
            "full /var",
            "message:\"disk full\"",
            "metadata.status>=500",
            "metadata.status<=507",
            "metadata.status:507",
            "metadata.status:\"507\"",
            "metadata.host:web-*",
            "metadata.nested.k:*",
            "metadata.nested.k:null",
            "NOT metadata.missing:*",
            "-timeout",
            "timeout OR disk",
            "metadata.status>1e2",
        ] {
            assert!(holds(query), "{query}");
        }
        for query in [
            "timeout",
            "metadata.status>507",
            "metadata.status<100",
            "metadata.host:web-4*",
            "metadata.missing:*",
            "metadata.host>1",
            "metadata.tags:a",
            "metadata.status:*x",
            "NOT disk",
            "disk AND timeout",
            "metadata.host:WEB-*",
        ] {
            assert!(!holds(query), "{query}");
        }
    }
}
