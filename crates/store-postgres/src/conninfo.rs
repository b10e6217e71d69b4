//! Connection strings in PostgreSQL's two spellings, a URL (`postgres://user:pass@host/db?k=v`)
//! and key/value pairs (`host=db password='a b'`), read the way tokio-postgres reads them:
//! what the store takes out before tokio-postgres sees them (the TLS parameters it does not
//! know), and the form in which they may be printed, every password masked.

use percent_encoding::percent_decode_str;

const MASK: &str = "***";

/// `conninfo` with every password masked and the rest as written: the URL's `user:pass@`
/// and `password=` parameter, or the key/value `password` however it is spaced or quoted.
pub fn redact(conninfo: &str) -> String {
    match Conninfo::parse(conninfo) {
        Conninfo::Url(url) => url.redacted(),
        Conninfo::Pairs { pairs, malformed } => {
            let mut text =
                pairs.iter().map(|(key, value)| render_pair(key, value, *key == "password")).collect::<Vec<_>>();
            // What does not parse may hold a password nobody can find: none of it is shown.
            if malformed {
                text.push(MASK.to_owned());
            }
            text.join(" ")
        }
    }
}

fn render_pair(key: &str, value: &str, masked: bool) -> String {
    if masked {
        return format!("{key}={MASK}");
    }
    let plain = !value.is_empty() && !value.chars().any(|c| c.is_whitespace() || c == '\'' || c == '\\');
    if plain { format!("{key}={value}") } else { format!("{key}={}", quote(value)) }
}

fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[derive(Debug)]
pub(crate) enum Conninfo<'a> {
    Url(Url<'a>),
    /// Decoded pairs; `malformed` when the text stopped parsing after them.
    Pairs {
        pairs: Vec<(&'a str, String)>,
        malformed: bool,
    },
}

#[derive(Debug)]
pub(crate) struct Url<'a> {
    scheme: &'a str,
    /// Before the first `@`, as tokio-postgres splits it.
    credentials: Option<&'a str>,
    /// Hosts and database name.
    location: &'a str,
    /// Raw (percent-encoded) `key=value` parameters.
    params: Vec<(&'a str, &'a str)>,
}

impl<'a> Conninfo<'a> {
    pub(crate) fn parse(text: &'a str) -> Self {
        match ["postgres://", "postgresql://"].iter().find(|scheme| text.starts_with(**scheme)) {
            Some(scheme) => Self::Url(Url::parse(scheme.len(), text)),
            None => {
                let (pairs, malformed) = parse_pairs(text);
                Self::Pairs { pairs, malformed }
            }
        }
    }

    /// Whether key/value text stopped parsing before its end.
    pub(crate) fn is_malformed(&self) -> bool {
        matches!(self, Self::Pairs { malformed: true, .. })
    }

    /// Removes every `key` parameter and returns the last one's (decoded) value.
    pub(crate) fn take(&mut self, key: &str) -> Option<String> {
        let mut found = None;
        match self {
            Self::Url(url) => url.params.retain(|(name, value)| {
                let matches = decode(name) == key;
                if matches {
                    found = Some(decode(value));
                }
                !matches
            }),
            Self::Pairs { pairs, .. } => pairs.retain(|(name, value)| {
                let matches = *name == key;
                if matches {
                    found = Some(value.clone());
                }
                !matches
            }),
        }
        found
    }
}

/// The connection string again, as tokio-postgres reads it.
impl std::fmt::Display for Conninfo<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Url(url) => {
                f.write_str(url.scheme)?;
                if let Some(credentials) = url.credentials {
                    write!(f, "{credentials}@")?;
                }
                f.write_str(url.location)?;
                write_params(f, url.params.iter().map(|(key, value)| format!("{key}={value}")))
            }
            Self::Pairs { pairs, .. } => {
                let text = pairs.iter().map(|(key, value)| render_pair(key, value, false));
                f.write_str(&text.collect::<Vec<_>>().join(" "))
            }
        }
    }
}

fn write_params(f: &mut std::fmt::Formatter<'_>, params: impl Iterator<Item = String>) -> std::fmt::Result {
    let params: Vec<String> = params.collect();
    if params.is_empty() { Ok(()) } else { write!(f, "?{}", params.join("&")) }
}

impl<'a> Url<'a> {
    fn parse(scheme_len: usize, text: &'a str) -> Self {
        let (scheme, rest) = text.split_at(scheme_len);
        let (credentials, rest) = match rest.split_once('@') {
            Some((credentials, rest)) => (Some(credentials), rest),
            None => (None, rest),
        };
        let (location, query) = rest.split_once('?').map_or((rest, None), |(location, query)| (location, Some(query)));
        let params = query
            .into_iter()
            .flat_map(|query| query.split('&'))
            .filter(|param| !param.is_empty())
            .map(|param| param.split_once('=').unwrap_or((param, "")))
            .collect();
        Self { scheme, credentials, location, params }
    }

    fn redacted(&self) -> String {
        let mut text = self.scheme.to_owned();
        let mut location = self.location;
        if let Some(credentials) = self.credentials {
            match credentials.split_once(':') {
                Some((user, _password)) => {
                    // A raw `@` in the password leaves the rest of it in front of the host (the
                    // split is at the first `@`); a host holds no `@`, so mask through its last.
                    let host_end = location.find('/').unwrap_or(location.len());
                    if let Some(at) = location[..host_end].rfind('@') {
                        location = &location[at + 1..];
                    }
                    text.push_str(&format!("{user}:{MASK}@"));
                }
                None => text.push_str(&format!("{credentials}@")),
            }
        }
        text.push_str(location);
        let params: Vec<String> = self
            .params
            .iter()
            .map(
                |(key, value)| {
                    if decode(key) == "password" { format!("{key}={MASK}") } else { format!("{key}={value}") }
                },
            )
            .collect();
        if !params.is_empty() {
            text.push('?');
            text.push_str(&params.join("&"));
        }
        text
    }
}

fn decode(text: &str) -> String {
    percent_decode_str(text).decode_utf8_lossy().into_owned()
}

/// libpq's key/value grammar as tokio-postgres implements it: `key = value` separated by
/// whitespace, a value either bare or single-quoted, `\` escaping the next character.
fn parse_pairs(text: &str) -> (Vec<(&str, String)>, bool) {
    let mut pairs = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return (pairs, false);
        }
        let key_end = rest.find(|c: char| c.is_whitespace() || c == '=').unwrap_or(rest.len());
        let key = &rest[..key_end];
        let Some(after_key) = rest[key_end..].trim_start().strip_prefix('=') else {
            return (pairs, true);
        };
        let after_equals = after_key.trim_start();
        let Some((value, after_value)) = value(after_equals) else {
            return (pairs, true);
        };
        if key.is_empty() {
            return (pairs, true);
        }
        pairs.push((key, value));
        rest = after_value;
    }
}

/// One value and the text after it, or `None` when it is empty or its quote never closes.
fn value(text: &str) -> Option<(String, &str)> {
    let (quoted, body) = match text.strip_prefix('\'') {
        Some(body) => (true, body),
        None => (false, text),
    };
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((index, c)) = chars.next() {
        match c {
            '\'' if quoted => return Some((value, &body[index + 1..])),
            c if c.is_whitespace() && !quoted => return (!value.is_empty()).then(|| (value, &body[index..])),
            '\\' => {
                if let Some((_, escaped)) = chars.next() {
                    value.push(escaped);
                }
            }
            c => value.push(c),
        }
    }
    (!quoted && !value.is_empty()).then_some((value, ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_passwords_are_masked_in_userinfo_and_parameters() {
        assert_eq!(redact("postgres://app:secret@db:5432/aurore"), "postgres://app:***@db:5432/aurore");
        assert_eq!(redact("postgresql://app:s%40cret@db/aurore"), "postgresql://app:***@db/aurore");
        assert_eq!(
            redact("postgres://app:se@cr@et@db/aurore?sslmode=require"),
            "postgres://app:***@db/aurore?sslmode=require"
        );
        assert_eq!(redact("postgres://app@db/aurore?password=secret"), "postgres://app@db/aurore?password=***");
        assert_eq!(
            redact("postgres://app@db/aurore?sslmode=require&passw%6Frd=secret&application_name=x"),
            "postgres://app@db/aurore?sslmode=require&passw%6Frd=***&application_name=x"
        );
        assert_eq!(redact("postgres://app@db/aurore"), "postgres://app@db/aurore");
        assert_eq!(redact("postgres://db/aurore"), "postgres://db/aurore");
    }

    #[test]
    fn key_value_passwords_are_masked_however_spaced_or_quoted() {
        for text in [
            "host=db password=secret user=app",
            "host=db password = secret user=app",
            "host=db password= 'secret' user=app",
            "host=db password ='se cret' user=app",
            "host=db password='se\\'cret' user=app",
            "  host = db\tpassword=se\\ cret   user=app ",
        ] {
            let redacted = redact(text);
            assert_eq!(redacted, "host=db password=*** user=app", "{text}");
        }
        assert_eq!(redact("host=db application_name='a b'"), "host=db application_name='a b'");
        // Unparseable text after the last good pair is hidden, password or not.
        assert_eq!(redact("host=db password='secret"), "host=db ***");
        assert_eq!(redact("host=db password"), "host=db ***");
        assert_eq!(redact("host=db password="), "host=db ***");
    }

    #[test]
    fn tls_parameters_come_out_and_the_rest_reads_the_same() {
        let mut url =
            Conninfo::parse("postgres://app:pw@db/aurore?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&x=1");
        assert_eq!(url.take("sslmode").as_deref(), Some("verify-full"));
        assert_eq!(url.take("sslrootcert").as_deref(), Some("/etc/ca.pem"));
        assert_eq!(url.take("sslmode"), None);
        assert_eq!(url.to_string(), "postgres://app:pw@db/aurore?x=1");

        let mut url = Conninfo::parse("postgres://db/aurore?sslmode=require");
        assert_eq!(url.take("sslmode").as_deref(), Some("require"));
        assert_eq!(url.to_string(), "postgres://db/aurore");

        let mut pairs = Conninfo::parse("host=db sslmode = verify-ca password='a \\' b' sslrootcert='/etc/my ca.pem'");
        assert_eq!(pairs.take("sslmode").as_deref(), Some("verify-ca"));
        assert_eq!(pairs.take("sslrootcert").as_deref(), Some("/etc/my ca.pem"));
        let rest = pairs.to_string();
        assert_eq!(rest, "host=db password='a \\' b'");
        let config: tokio_postgres::Config = rest.parse().unwrap_or_else(|error| panic!("{rest}: {error}"));
        assert_eq!(config.get_password(), Some(&b"a ' b"[..]));
    }
}
