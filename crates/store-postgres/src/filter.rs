//! The `q=` filter compiled to SQL: fixed fragments for the tree's shape, every value a
//! client typed bound as a parameter. Each leaf is true or false, never NULL (an event
//! without metadata fails a metadata test), so `NOT` means what it says.

use aurore_domain::MetadataFilter;
use aurore_domain::filter::{Field, FieldTest, Filter, Test};
use serde_json::Value;

/// A value to bind, in placeholder order.
#[derive(Debug)]
pub(crate) enum Bound {
    Text(String),
    Jsonbs(Vec<Value>),
    Path(Vec<String>),
}

/// The WHERE fragment for `filter`, numbering placeholders from `*next` on and pushing
/// what they bind onto `bound`.
pub(crate) fn compile(filter: &Filter, next: &mut usize, bound: &mut Vec<Bound>) -> String {
    let mut bind = |value: Bound| {
        bound.push(value);
        *next += 1;
        format!("${}", *next - 1)
    };
    match filter {
        Filter::And(all) => group(all, " AND ", next, bound),
        Filter::Or(any) => group(any, " OR ", next, bound),
        Filter::Not(inner) => format!("NOT ({})", compile(inner, next, bound)),
        Filter::Text(text) => format!(r"message ILIKE {} ESCAPE '\'", bind(Bound::Text(contains_pattern(text)))),
        Filter::Field(FieldTest { field: Field::Message, test }) => match test {
            Test::Equals(text) | Test::Prefix(text) => {
                format!(r"message ILIKE {} ESCAPE '\'", bind(Bound::Text(contains_pattern(text))))
            }
            Test::Exists => "true".to_owned(),
            Test::Compare(..) => "false".to_owned(),
        },
        Filter::Field(FieldTest { field: Field::Metadata(path), test }) => match test {
            Test::Equals(value) => {
                let candidates =
                    MetadataFilter { path: path.clone(), value: value.clone(), excluded: false }.candidates();
                format!("coalesce(metadata @> ANY({}::jsonb[]), false)", bind(Bound::Jsonbs(candidates)))
            }
            Test::Prefix(prefix) => {
                let path = bind(Bound::Path(path.clone()));
                let pattern = bind(Bound::Text(format!("{}%", escape_like(prefix))));
                format!(
                    r"coalesce(jsonb_typeof(metadata #> {path}::text[]) = 'string' AND metadata #>> {path}::text[] LIKE {pattern} ESCAPE '\', false)"
                )
            }
            Test::Exists => format!("metadata #> {}::text[] IS NOT NULL", bind(Bound::Path(path.clone()))),
            Test::Compare(comparison, number) => {
                let path = bind(Bound::Path(path.clone()));
                let number = bind(Bound::Text(number.to_string()));
                format!(
                    "CASE WHEN jsonb_typeof(metadata #> {path}::text[]) = 'number' \
                     THEN (metadata #>> {path}::text[])::numeric {} {number}::numeric ELSE false END",
                    comparison.symbol()
                )
            }
        },
    }
}

fn group(filters: &[Filter], join: &str, next: &mut usize, bound: &mut Vec<Bound>) -> String {
    let parts: Vec<String> = filters.iter().map(|filter| compile(filter, next, bound)).collect();
    format!("({})", parts.join(join))
}

/// An ILIKE pattern matching `text` anywhere, its wildcards taken literally.
fn contains_pattern(text: &str) -> String {
    format!("%{}%", escape_like(text))
}

fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}
