//! Privacy by configuration: rules that pseudonymise, redact, generalise or encrypt personal data
//! at ingest, after validation and before the journal, so a `202` means the raw value is
//! already gone; detectors that find emails, IP addresses and card numbers in free text;
//! export profiles that transform what is stored on its way out.
//!
//! A hashed value is `hmac:` and the first 128 bits of HMAC-SHA-256 under the deployment's
//! key, base64url: stable across events and restarts, so it joins and can be searched for
//! (queries hash the raw values they name the same way), and not reversible without the key.
//! An unkeyed hash of a small space (document or phone numbers) is reversed by hashing every
//! candidate; the key is what prevents that. An encrypted value (`enc:<key id>:…`,
//! AES-256-GCM) can be read back by an admin, but not searched.

use crate::event::{Event, EventDraft};
use crate::filter::{Field, FieldTest, Filter, Test};
use crate::query::MetadataFilter;
use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use regex_automata::Input;
use regex_automata::meta::{Cache, Regex};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};

/// What a rule does to the values it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// A keyed pseudonym: `hmac:…`.
    Hash,
    /// The value replaced by [`REDACTED`].
    Redact,
    /// Coarser: an email's domain, an IPv4 /24, an IPv6 /48, a number's bucket, a
    /// timestamp's day. A value of none of these shapes is redacted.
    #[serde(alias = "generalize")]
    Generalise,
    /// AES-256-GCM under the current key, `enc:<key id>:…`: readable again, through the
    /// admin-keyed `POST /admin/decrypt` only, but not searchable (each value gets its own
    /// nonce, so equal values differ).
    Encrypt,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Self::Hash => "hash",
            Self::Redact => "redact",
            Self::Generalise => "generalise",
            Self::Encrypt => "encrypt",
        }
    }
}

/// Most rules in one set (ingest's, or one export profile's).
pub const MAX_RULES: usize = 64;
/// What a redacted value becomes.
pub const REDACTED: &str = "[redacted]";
/// The prefix of a pseudonym.
pub const PSEUDONYM_PREFIX: &str = "hmac:";
/// The prefix of an encrypted value, before its key id.
pub const ENCRYPTED_PREFIX: &str = "enc:";
/// AES-GCM's nonce.
const NONCE_BYTES: usize = 12;
/// The width of a number's bucket when a rule names none.
const DEFAULT_BUCKET: f64 = 10.0;

/// A rule as configured: `field` is `message` or `metadata.<path>` (`*` for any key at one
/// level); `services`, when not empty, limits it to those services.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub field: String,
    pub action: Action,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
    /// `generalise` on numbers: the width of a bucket (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<f64>,
}

/// Kinds of personal data the free-text scanner finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Detector {
    Email,
    Ip,
    /// Payment-card numbers: 13 to 19 digits (spaces or dashes between them) passing Luhn.
    Card,
}

impl Detector {
    pub fn name(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Ip => "ip",
            Self::Card => "card",
        }
    }

    const ALL: [Self; 3] = [Self::Email, Self::Ip, Self::Card];

    /// Emails are hashed (they join), addresses generalised, card numbers redacted.
    pub fn default_action(self) -> Action {
        match self {
            Self::Email => Action::Hash,
            Self::Ip => Action::Generalise,
            Self::Card => Action::Redact,
        }
    }
}

impl std::str::FromStr for Detector {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|kind| kind.name() == text).ok_or_else(|| "not one of email, ip, card".to_owned())
    }
}

/// The `[privacy]` section, secrets resolved by whoever loads it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrivacySpec {
    pub rules: Vec<RuleSpec>,
    /// Detectors run over `message` and every string in metadata that no rule names.
    pub scan_message: Vec<Detector>,
    /// Each detector's action, when not its default.
    pub detector_actions: BTreeMap<Detector, Action>,
    /// Named sets of rules `GET /events/export?profile=` applies on top of what is stored.
    pub export_profiles: BTreeMap<String, ExportProfileSpec>,
    /// Whether an export must name a profile.
    pub export_requires_profile: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExportProfileSpec {
    pub rules: Vec<RuleSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrivacyError {
    #[error("privacy rule {index}: field {field:?} must be `message` or `metadata.<key>[.<key>…]` with non-empty keys")]
    Field { index: usize, field: String },
    #[error("privacy rule {index}: bucket must be a positive number")]
    Bucket { index: usize },
    #[error("at most {MAX_RULES} privacy rules in one set, not {count}")]
    TooManyRules { count: usize },
    #[error("privacy rules hash values, so privacy.hmac_key (or privacy.hmac_key_file) must hold at least 32 bytes")]
    MissingKey,
    #[error("privacy rules encrypt values, so privacy.encryption_key_id must name a key of privacy.encryption_keys")]
    MissingEncryptionKey,
    #[error("privacy.encryption_keys.{id} must be 32 bytes, base64-encoded")]
    EncryptionKey { id: String },
    #[error("export profile {profile:?}: {source}")]
    Profile {
        profile: String,
        #[source]
        source: Box<PrivacyError>,
    },
}

/// One key of a rule's path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    Named(String),
    Any,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Message,
    Metadata(Vec<Key>),
}

impl Target {
    fn parse(field: &str) -> Option<Self> {
        if field == "message" {
            return Some(Self::Message);
        }
        let keys: Vec<Key> = field
            .strip_prefix(crate::query::METADATA_PREFIX)?
            .split('.')
            .map(|key| match key {
                "*" => Key::Any,
                key => Key::Named(key.to_owned()),
            })
            .collect();
        let empty = keys.iter().any(|key| matches!(key, Key::Named(name) if name.is_empty()));
        (!empty).then_some(Self::Metadata(keys))
    }

    fn names(&self, path: &[String]) -> bool {
        match self {
            Self::Message => false,
            Self::Metadata(keys) => {
                keys.len() == path.len()
                    && keys
                        .iter()
                        .zip(path)
                        .all(|(key, name)| matches!(key, Key::Any) || matches!(key, Key::Named(k) if k == name))
            }
        }
    }
}

#[derive(Debug)]
struct Rule {
    spec: RuleSpec,
    target: Target,
    transformed: AtomicU64,
}

impl Rule {
    fn applies_to(&self, service: &str) -> bool {
        self.spec.services.is_empty() || self.spec.services.iter().any(|name| name == service)
    }

    fn label(&self) -> String {
        format!("{}:{}", self.spec.field, self.spec.action.name())
    }
}

/// What a rule or detector did, for `GET /privacy` and the metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleReport {
    /// `metadata.user_id:hash`, `scan:email`.
    pub rule: String,
    pub field: String,
    pub action: Action,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
    /// Values transformed since start-up.
    pub transformed: u64,
}

/// The configured view, without secrets.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrivacyReport {
    pub rules: Vec<RuleReport>,
    pub detectors: Vec<RuleReport>,
    pub export_profiles: Vec<String>,
    pub export_requires_profile: bool,
    /// Whether a key is configured (never the key).
    pub keyed: bool,
    /// The id `encrypt` seals new values with, and every id it can open (never the keys).
    pub encryption_key_id: Option<String>,
    pub encryption_key_ids: Vec<String>,
}

/// A set of compiled rules: ingest's, or an export profile's.
#[derive(Debug)]
struct RuleSet {
    rules: Vec<Rule>,
    /// Rules for every service, rules for some, and rules on `message`.
    unscoped: Rules,
    scoped: Rules,
    on_message: Rules,
}

impl RuleSet {
    fn compile(specs: &[RuleSpec]) -> Result<Self, PrivacyError> {
        let rules = specs
            .iter()
            .enumerate()
            .map(|(index, spec)| {
                let target = Target::parse(&spec.field)
                    .ok_or_else(|| PrivacyError::Field { index, field: spec.field.clone() })?;
                if spec.bucket.is_some_and(|width| !(width.is_finite() && width > 0.0)) {
                    return Err(PrivacyError::Bucket { index });
                }
                Ok(Rule { spec: spec.clone(), target, transformed: AtomicU64::new(0) })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if rules.len() > MAX_RULES {
            return Err(PrivacyError::TooManyRules { count: rules.len() });
        }
        let set = |keep: &dyn Fn(&Rule) -> bool| {
            rules.iter().enumerate().filter(|(_, rule)| keep(rule)).fold(0, |set, (index, _)| set | 1 << index)
        };
        let (unscoped, scoped) =
            (set(&|rule| rule.spec.services.is_empty()), set(&|rule| !rule.spec.services.is_empty()));
        let on_message = set(&|rule| rule.target == Target::Message);
        Ok(Self { rules, unscoped, scoped, on_message })
    }

    fn uses(&self, action: Action) -> bool {
        self.rules.iter().any(|rule| rule.spec.action == action)
    }
}

/// Counts of transformed values, gathered over one request and added once.
#[derive(Debug)]
struct Tally(Vec<u64>);

/// The compiled `[privacy]` section. Cheap to share; counters are atomics.
pub struct Privacy {
    ingest: RuleSet,
    detectors: Vec<(Detector, Action, AtomicU64)>,
    scanner: Option<Scanner>,
    profiles: BTreeMap<String, RuleSet>,
    export_requires_profile: bool,
    key: Option<Hmac<Sha256>>,
    /// Every configured encryption key by id, and the id new values are sealed with.
    ciphers: BTreeMap<String, Aes256Gcm>,
    sealing: Option<String>,
}

/// Keys for `encrypt`: 32 bytes each, by id; `current` seals new values, and every key
/// opens what it sealed, so a key is rotated by adding a new one and making it current.
#[derive(Clone, Default)]
pub struct EncryptionKeys {
    pub current: Option<String>,
    pub keys: BTreeMap<String, Vec<u8>>,
}

impl std::fmt::Debug for EncryptionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The ids only: keys stay out of every debug line.
        f.debug_struct("EncryptionKeys").field("current", &self.current).field("ids", &self.keys.keys()).finish()
    }
}

/// Why a value cannot be decrypted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecryptError {
    #[error("the value is not one this service encrypted (enc:<key id>:<base64>)")]
    NotEncrypted,
    #[error("no key {0:?} in privacy.encryption_keys")]
    UnknownKey(String),
    #[error("the value does not decrypt under key {0:?}: altered, or sealed by another key")]
    Altered(String),
}

impl std::fmt::Debug for Privacy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of every debug line.
        f.debug_struct("Privacy").field("report", &self.report()).finish()
    }
}

impl Default for Privacy {
    fn default() -> Self {
        Self::new(&PrivacySpec::default(), None).unwrap_or_else(|_| unreachable!("no rule needs a key"))
    }
}

/// One detector's pattern, and what a text must hold for the pattern to match in it: the
/// check skips the regex for most strings (metadata values, messages without an address).
#[derive(Debug)]
struct Pattern {
    kind: Detector,
    regex: Regex,
    may_match: fn(&[u8]) -> bool,
}

/// The detectors' patterns. Candidates are verified after matching (IPv4 and IPv6 by the
/// standard parsers, cards by Luhn), so each expression stays simple for the regex
/// engine's DFA.
#[derive(Debug)]
struct Scanner {
    patterns: Vec<Pattern>,
    /// Sets of search caches between requests: making one zeroes several tables, which
    /// cost more than a request's searches.
    spare: std::sync::Mutex<Vec<Vec<Cache>>>,
}

/// Where a detector found something in a text.
struct Finding {
    start: usize,
    end: usize,
    kind: Detector,
}

impl Scanner {
    fn new(kinds: &[Detector]) -> Self {
        let pattern = |kind, expression: &str, may_match| Pattern {
            kind,
            regex: Regex::new(expression).unwrap_or_else(|error| unreachable!("the patterns are fixed: {error}")),
            may_match,
        };
        let mut patterns = Vec::new();
        for kind in kinds {
            match kind {
                Detector::Email => patterns.push(pattern(
                    Detector::Email,
                    r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+",
                    |bytes| memchr::memchr(b'@', bytes).is_some(),
                )),
                Detector::Ip => {
                    patterns.push(pattern(Detector::Ip, r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}", |bytes| {
                        memchr::memchr(b'.', bytes).is_some()
                    }));
                    patterns.push(pattern(Detector::Ip, r"(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}", |bytes| {
                        memchr::memchr_iter(b':', bytes).nth(1).is_some()
                    }));
                }
                Detector::Card => {
                    patterns.push(pattern(Detector::Card, r"[0-9](?:[ \-]?[0-9]){12,18}", has_13_digits_in_a_row))
                }
            }
        }
        Self { patterns, spare: std::sync::Mutex::default() }
    }

    /// A set of caches, one per pattern: a spare one, or new.
    fn caches(&self) -> Vec<Cache> {
        let spare = self.spare.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop();
        spare.unwrap_or_else(|| self.patterns.iter().map(|pattern| pattern.regex.create_cache()).collect())
    }

    /// Keeps `caches` for another request; as many sets as requests ever ran at once.
    fn give_back(&self, caches: Vec<Cache>) {
        if caches.len() == self.patterns.len() {
            self.spare.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(caches);
        }
    }

    /// What the detectors find in `text`, in order and not overlapping (the earlier, then
    /// the longer, wins). Empty, without allocating, for most texts.
    /// `caches` are the patterns' search caches, one each ([`Scanner::caches`]): passed in,
    /// because a regex shared by threads hands out its own from a pool that two threads
    /// contend on, and then builds and drops a cache per search.
    fn findings(&self, text: &str, caches: &mut [Cache]) -> Vec<Finding> {
        let mut found = Vec::new();
        for (pattern, cache) in self.patterns.iter().zip(caches.iter_mut()) {
            if !(pattern.may_match)(text.as_bytes()) {
                continue;
            }
            let mut at = 0;
            while let Some(candidate) = pattern.regex.search_with(cache, &Input::new(text).range(at..)) {
                if verified(pattern.kind, text, candidate.start(), candidate.end()) {
                    found.push(Finding { start: candidate.start(), end: candidate.end(), kind: pattern.kind });
                }
                // No pattern matches empty text, so each search starts past the last.
                at = candidate.end().max(candidate.start() + 1);
                if at > text.len() {
                    break;
                }
            }
        }
        if self.patterns.len() > 1 {
            found.sort_by_key(|finding| (finding.start, std::cmp::Reverse(finding.end)));
            let mut reached = 0;
            found.retain(|finding| {
                let keep = finding.start >= reached;
                if keep {
                    reached = finding.end;
                }
                keep
            });
        }
        found
    }
}

/// Whether the candidate at `start..end` of `text` really is what its pattern looks for.
/// Addresses and cards stand alone: inside a word or a longer number (`v1.2.3.4`, a
/// 25-digit reference) they are not one. The patterns leave that test to here, because
/// word boundaries take the regex engine off its fastest path.
fn verified(kind: Detector, text: &str, start: usize, end: usize) -> bool {
    let span = &text[start..end];
    let word = |at: Option<usize>| {
        at.and_then(|at| text.as_bytes().get(at)).is_some_and(|byte| byte.is_ascii_alphanumeric() || *byte == b'_')
    };
    let digit = |at: Option<usize>| at.and_then(|at| text.as_bytes().get(at)).is_some_and(u8::is_ascii_digit);
    let dot = |at: usize| text.as_bytes().get(at) == Some(&b'.');
    // A dot that goes on with a digit continues a longer dotted number (`1.2.3.4.5`).
    let continued = start.checked_sub(1).is_some_and(|before| dot(before) && digit(before.checked_sub(1)))
        || (dot(end) && digit(Some(end + 1)));
    let alone = || !word(start.checked_sub(1)) && !word(Some(end)) && !continued;
    match kind {
        Detector::Email => true,
        Detector::Ip if span.contains(':') => span.parse::<Ipv6Addr>().is_ok(),
        Detector::Ip => alone() && span.parse::<Ipv4Addr>().is_ok(),
        Detector::Card => alone() && luhn(span),
    }
}

/// Whether `bytes` hold 13 digits with at most one space or dash between neighbours, as
/// every card number the pattern matches does; most texts with digits do not.
fn has_13_digits_in_a_row(bytes: &[u8]) -> bool {
    // Counting first is one pass the compiler vectorises; most texts stop here.
    if bytes.iter().filter(|byte| byte.is_ascii_digit()).count() < 13 {
        return false;
    }
    let (mut digits, mut separated) = (0, false);
    for byte in bytes {
        match byte {
            b'0'..=b'9' => {
                digits += 1;
                separated = false;
                if digits >= 13 {
                    return true;
                }
            }
            b' ' | b'-' if digits > 0 && !separated => separated = true,
            _ => (digits, separated) = (0, false),
        }
    }
    false
}

/// `text` with each finding replaced by what `replace` makes of it (`None`: kept).
fn rewrite(
    text: &str,
    findings: &[Finding],
    mut replace: impl FnMut(&Finding, &str) -> Option<String>,
) -> Option<String> {
    let mut out: Option<String> = None;
    let mut copied = 0;
    for finding in findings {
        let Some(replacement) = replace(finding, &text[finding.start..finding.end]) else { continue };
        let out = out.get_or_insert_with(|| String::with_capacity(text.len() + 32));
        out.push_str(&text[copied..finding.start]);
        out.push_str(&replacement);
        copied = finding.end;
    }
    out.map(|mut out| {
        out.push_str(&text[copied..]);
        out
    })
}

impl Privacy {
    /// Compiles the rules. `key` is the HMAC key's bytes; any hashing rule, detector or
    /// profile needs one of at least 32 bytes.
    pub fn new(spec: &PrivacySpec, key: Option<&[u8]>) -> Result<Self, PrivacyError> {
        Self::keyed(spec, key, &EncryptionKeys::default())
    }

    /// [`Privacy::new`], with the keys `encrypt` seals values with and opens them again.
    pub fn keyed(spec: &PrivacySpec, key: Option<&[u8]>, encryption: &EncryptionKeys) -> Result<Self, PrivacyError> {
        let ingest = RuleSet::compile(&spec.rules)?;
        let profiles = spec
            .export_profiles
            .iter()
            .map(|(name, profile)| {
                RuleSet::compile(&profile.rules)
                    .map(|rules| (name.clone(), rules))
                    .map_err(|source| PrivacyError::Profile { profile: name.clone(), source: Box::new(source) })
            })
            .collect::<Result<BTreeMap<_, _>, _>>()?;
        let mut kinds = spec.scan_message.clone();
        kinds.sort();
        kinds.dedup();
        let detectors: Vec<(Detector, Action, AtomicU64)> = kinds
            .into_iter()
            .map(|kind| {
                (kind, spec.detector_actions.get(&kind).copied().unwrap_or(kind.default_action()), AtomicU64::new(0))
            })
            .collect();
        let uses = |action| {
            ingest.uses(action)
                || profiles.values().any(|profile| profile.uses(action))
                || detectors.iter().any(|(_, used, _)| *used == action)
        };
        let needs_key = uses(Action::Hash);
        let ciphers = encryption
            .keys
            .iter()
            .map(|(id, key)| {
                Aes256Gcm::new_from_slice(key)
                    .map(|cipher| (id.clone(), cipher))
                    .map_err(|_| PrivacyError::EncryptionKey { id: id.clone() })
            })
            .collect::<Result<BTreeMap<_, _>, _>>()?;
        let sealing = encryption.current.clone().filter(|id| ciphers.contains_key(id));
        if uses(Action::Encrypt) && sealing.is_none() {
            return Err(PrivacyError::MissingEncryptionKey);
        }
        let key = match key {
            Some(key) if key.len() >= 32 => Some(
                <Hmac<Sha256> as Mac>::new_from_slice(key)
                    .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length")),
            ),
            _ if needs_key => return Err(PrivacyError::MissingKey),
            _ => None,
        };
        let enabled: Vec<Detector> = detectors.iter().map(|(kind, _, _)| *kind).collect();
        let scanner = (!enabled.is_empty()).then(|| Scanner::new(&enabled));
        Ok(Self {
            ingest,
            detectors,
            scanner,
            profiles,
            export_requires_profile: spec.export_requires_profile,
            key,
            ciphers,
            sealing,
        })
    }

    /// Whether ingest has anything to do.
    pub fn is_active(&self) -> bool {
        !self.ingest.rules.is_empty() || self.scanner.is_some()
    }

    /// The pseudonym of `text`: the same text always gives the same pseudonym under one key.
    fn pseudonym(&self, text: &str) -> String {
        let Some(key) = &self.key else { return REDACTED.to_owned() };
        let mut mac = key.clone();
        mac.update(text.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut out = String::with_capacity(PSEUDONYM_PREFIX.len() + 22);
        out.push_str(PSEUDONYM_PREFIX);
        URL_SAFE_NO_PAD.encode_string(&digest[..16], &mut out);
        out
    }

    /// Applies ingest's rules and detectors to a validated draft, before it is journaled.
    /// Returns the counts to add once per request through [`Privacy::record`].
    pub fn apply(&self, draft: &mut EventDraft, tally: &mut PrivacyTally) {
        if !self.is_active() {
            return;
        }
        let tally = tally.for_privacy(self);
        let scan = self.scanner.is_some();
        transform_event(
            &self.ingest,
            &draft.service,
            &mut draft.message,
            draft.metadata.as_mut(),
            &mut |rule, value| self.transform(rule, value),
            scan.then_some(&mut |text: &mut String| self.scan(text, &mut tally.caches, &mut tally.detectors)),
            &mut tally.rules,
        );
    }

    /// Adds a request's counts to the rules' totals; returns each nonzero count by label.
    pub fn record(&self, tally: PrivacyTally) -> Vec<(String, u64)> {
        let Some(tally) = tally.0 else { return Vec::new() };
        if let Some(scanner) = &self.scanner {
            scanner.give_back(tally.caches);
        }
        let mut recorded = Vec::new();
        for (rule, count) in self.ingest.rules.iter().zip(tally.rules.0) {
            if count > 0 {
                rule.transformed.fetch_add(count, Ordering::Relaxed);
                recorded.push((rule.label(), count));
            }
        }
        for ((kind, _, total), count) in self.detectors.iter().zip(tally.detectors.0) {
            if count > 0 {
                total.fetch_add(count, Ordering::Relaxed);
                recorded.push((format!("scan:{}", kind.name()), count));
            }
        }
        recorded
    }

    fn transform(&self, rule: &Rule, value: &mut Value) -> bool {
        match (rule.spec.action, &*value) {
            (_, Value::Null) => false,
            (Action::Hash, Value::String(text)) => {
                *value = Value::String(self.pseudonym(text));
                true
            }
            (Action::Hash, other) => {
                *value = Value::String(self.pseudonym(&other.to_string()));
                true
            }
            (Action::Redact, _) => {
                *value = Value::String(REDACTED.to_owned());
                true
            }
            (Action::Generalise, _) => {
                *value = generalise(value, rule.spec.bucket.unwrap_or(DEFAULT_BUCKET));
                true
            }
            (Action::Encrypt, _) => {
                // The JSON text, so a number or an object decrypts to what it was.
                *value = Value::String(self.seal(&value.to_string()));
                true
            }
        }
    }

    /// `plaintext` sealed with the current key under a fresh random nonce, the key id bound
    /// as associated data; redacted if it cannot be (no key: the constructor refuses that).
    fn seal(&self, plaintext: &str) -> String {
        let Some((id, cipher)) = self.sealing.as_ref().and_then(|id| Some((id, self.ciphers.get(id)?))) else {
            return REDACTED.to_owned();
        };
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let Ok(sealed) = cipher.encrypt(&nonce, Payload { msg: plaintext.as_bytes(), aad: id.as_bytes() }) else {
            return REDACTED.to_owned();
        };
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        format!("{ENCRYPTED_PREFIX}{id}:{}", URL_SAFE_NO_PAD.encode(bytes))
    }

    /// What an `encrypt` rule sealed, as the JSON value it was.
    pub fn decrypt(&self, text: &str) -> Result<Value, DecryptError> {
        let (id, sealed) = text
            .strip_prefix(ENCRYPTED_PREFIX)
            .and_then(|rest| rest.split_once(':'))
            .ok_or(DecryptError::NotEncrypted)?;
        let cipher = self.ciphers.get(id).ok_or_else(|| DecryptError::UnknownKey(id.to_owned()))?;
        let bytes = URL_SAFE_NO_PAD.decode(sealed).map_err(|_| DecryptError::NotEncrypted)?;
        if bytes.len() < NONCE_BYTES {
            return Err(DecryptError::NotEncrypted);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_BYTES);
        let altered = || DecryptError::Altered(id.to_owned());
        let plaintext = cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad: id.as_bytes() })
            .map_err(|_| altered())?;
        serde_json::from_slice(&plaintext).map_err(|_| altered())
    }

    /// Transforms what the detectors find in `text`; returns whether anything changed.
    fn scan(&self, text: &mut String, caches: &mut [Cache], counts: &mut Tally) -> bool {
        let Some(scanner) = &self.scanner else { return false };
        let findings = scanner.findings(text, caches);
        let rewritten = rewrite(text, &findings, |finding, span| {
            let slot = self.slot(finding.kind);
            counts.0[slot] += 1;
            Some(match self.detectors[slot].1 {
                Action::Hash => self.pseudonym(span),
                Action::Redact => format!("[redacted:{}]", finding.kind.name()),
                Action::Generalise => generalise_text(finding.kind, span),
                Action::Encrypt => self.seal(&Value::String(span.to_owned()).to_string()),
            })
        });
        rewritten.map(|rewritten| *text = rewritten).is_some()
    }

    /// The index of an enabled detector (the scanner has patterns for enabled ones only).
    fn slot(&self, kind: Detector) -> usize {
        self.detectors.iter().position(|(enabled, _, _)| *enabled == kind).unwrap_or_default()
    }

    /// The stored form of a value a query compares with `metadata.<path>` for `service`
    /// (every service when `None`): hashed when a hash rule names the path, otherwise with
    /// the hashing detectors' spans hashed, as ingest stored it. Several spellings when the
    /// rule holds for some services only and the query names none.
    pub fn query_values(&self, service: Option<&str>, path: &[String], value: &str) -> Vec<String> {
        let Some(rule) = self.ingest.rules.iter().find(|rule| rule.target.names(path)) else {
            return vec![self.query_text(value).into_owned()];
        };
        let hashed = (rule.spec.action == Action::Hash).then(|| self.pseudonym(value));
        match (service, hashed) {
            (_, None) => vec![value.to_owned()],
            (Some(service), Some(hashed)) => vec![if rule.applies_to(service) { hashed } else { value.to_owned() }],
            (None, Some(hashed)) if rule.spec.services.is_empty() => vec![hashed],
            (None, Some(hashed)) => vec![hashed, value.to_owned()],
        }
    }

    /// A `metadata.<path>=<value>` parameter of a query on `service`, in its stored form.
    pub fn metadata_filter(&self, service: &str, filter: MetadataFilter) -> MetadataFilter {
        let mut spellings = self.query_values(Some(service), &filter.path, &filter.value);
        MetadataFilter { value: spellings.swap_remove(0), ..filter }
    }

    /// Free text a query searches the message for, with what the hashing detectors find
    /// in it hashed as ingest hashed it; other detectors' output is not what was typed.
    pub fn query_text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let Some(scanner) = &self.scanner else { return Cow::Borrowed(text) };
        let mut caches = scanner.caches();
        let findings = scanner.findings(text, &mut caches);
        scanner.give_back(caches);
        let hashed = rewrite(text, &findings, |finding, span| {
            (self.detectors[self.slot(finding.kind)].1 == Action::Hash).then(|| self.pseudonym(span))
        });
        hashed.map_or(Cow::Borrowed(text), Cow::Owned)
    }

    /// `filter` with every value it compares with stored data in its stored form, for
    /// `service` (every service when `None`).
    pub fn query_filter(&self, filter: Filter, service: Option<&str>) -> Filter {
        if !self.is_active() {
            return filter;
        }
        match filter {
            Filter::And(all) => Filter::And(all.into_iter().map(|f| self.query_filter(f, service)).collect()),
            Filter::Or(any) => Filter::Or(any.into_iter().map(|f| self.query_filter(f, service)).collect()),
            Filter::Not(inner) => Filter::Not(Box::new(self.query_filter(*inner, service))),
            Filter::Text(text) => Filter::Text(self.query_text(&text).into_owned()),
            Filter::Field(FieldTest { field: Field::Message, test: Test::Equals(text) }) => Filter::Field(FieldTest {
                field: Field::Message,
                test: Test::Equals(self.query_text(&text).into_owned()),
            }),
            Filter::Field(FieldTest { field: Field::Metadata(path), test: Test::Equals(value) }) => {
                let mut spellings: Vec<Filter> = self
                    .query_values(service, &path, &value)
                    .into_iter()
                    .map(|value| {
                        Filter::Field(FieldTest { field: Field::Metadata(path.clone()), test: Test::Equals(value) })
                    })
                    .collect();
                if spellings.len() == 1 { spellings.remove(0) } else { Filter::Or(spellings) }
            }
            other => other,
        }
    }

    /// The names of the export profiles.
    pub fn profiles(&self) -> impl Iterator<Item = &str> {
        self.profiles.keys().map(String::as_str)
    }

    pub fn export_requires_profile(&self) -> bool {
        self.export_requires_profile
    }

    pub fn has_profile(&self, name: &str) -> bool {
        self.profiles.contains_key(name)
    }

    /// Applies export profile `name` to a stored event; nothing for an unknown name.
    pub fn export(&self, name: &str, event: &mut Event) {
        let Some(profile) = self.profiles.get(name) else { return };
        let mut counts = Tally(vec![0; profile.rules.len()]);
        transform_event(
            profile,
            &event.service,
            &mut event.message,
            event.metadata.as_mut(),
            &mut |rule, value| self.transform(rule, value),
            None::<&mut fn(&mut String) -> bool>,
            &mut counts,
        );
    }

    /// The active rules and detectors with their counts, and no secret.
    pub fn report(&self) -> PrivacyReport {
        let report = |rule: &Rule| RuleReport {
            rule: rule.label(),
            field: rule.spec.field.clone(),
            action: rule.spec.action,
            services: rule.spec.services.clone(),
            transformed: rule.transformed.load(Ordering::Relaxed),
        };
        PrivacyReport {
            rules: self.ingest.rules.iter().map(report).collect(),
            detectors: self
                .detectors
                .iter()
                .map(|(kind, action, total)| RuleReport {
                    rule: format!("scan:{}", kind.name()),
                    field: "message, metadata strings".to_owned(),
                    action: *action,
                    services: Vec::new(),
                    transformed: total.load(Ordering::Relaxed),
                })
                .collect(),
            export_profiles: self.profiles.keys().cloned().collect(),
            export_requires_profile: self.export_requires_profile,
            keyed: self.key.is_some(),
            encryption_key_id: self.sealing.clone(),
            encryption_key_ids: self.ciphers.keys().cloned().collect(),
        }
    }
}

/// A request's counts: empty until the first event that privacy touches.
#[derive(Debug, Default)]
pub struct PrivacyTally(Option<Counts>);

#[derive(Debug)]
struct Counts {
    rules: Tally,
    detectors: Tally,
    /// The scanner's search caches, made once per request.
    caches: Vec<Cache>,
}

impl PrivacyTally {
    fn for_privacy(&mut self, privacy: &Privacy) -> &mut Counts {
        self.0.get_or_insert_with(|| Counts {
            rules: Tally(vec![0; privacy.ingest.rules.len()]),
            detectors: Tally(vec![0; privacy.detectors.len()]),
            caches: privacy.scanner.as_ref().map(Scanner::caches).unwrap_or_default(),
        })
    }
}

/// The indices of a set's rules, one bit each: walking an event allocates nothing.
type Rules = u64;

/// Each index in `rules`, lowest first.
fn each(mut rules: Rules) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        (rules != 0).then(|| {
            let index = rules.trailing_zeros() as usize;
            rules &= rules - 1;
            index
        })
    })
}

/// Walks one event: a rule that names a value transforms it whole; every other string is
/// scanned, when `scan` is given.
fn transform_event(
    rules: &RuleSet,
    service: &str,
    message: &mut String,
    metadata: Option<&mut Value>,
    transform: &mut impl FnMut(&Rule, &mut Value) -> bool,
    mut scan: Option<&mut impl FnMut(&mut String) -> bool>,
    counts: &mut Tally,
) {
    let scoped = each(rules.scoped)
        .filter(|&index| rules.rules[index].applies_to(service))
        .fold(0, |set, index| set | 1 << index);
    let applicable = rules.unscoped | scoped;
    match each(applicable & rules.on_message).next() {
        Some(index) => {
            let mut value = Value::String(std::mem::take(message));
            if transform(&rules.rules[index], &mut value) {
                counts.0[index] += 1;
            }
            *message = match value {
                Value::String(text) => text,
                other => other.to_string(),
            };
        }
        None => {
            if let Some(scan) = scan.as_mut() {
                scan(message);
            }
        }
    }
    let on_metadata = applicable & !rules.on_message;
    if let Some(metadata) = metadata
        && (on_metadata != 0 || scan.is_some())
    {
        walk(rules, on_metadata, 0, metadata, transform, &mut scan, counts);
    }
}

/// `value` sits at `depth`; `candidates` are the rules whose paths it is on so far.
fn walk(
    rules: &RuleSet,
    candidates: Rules,
    depth: usize,
    value: &mut Value,
    transform: &mut impl FnMut(&Rule, &mut Value) -> bool,
    scan: &mut Option<&mut impl FnMut(&mut String) -> bool>,
    counts: &mut Tally,
) {
    let keys = |index: usize| match &rules.rules[index].target {
        Target::Metadata(keys) => keys.as_slice(),
        Target::Message => &[],
    };
    if let Some(index) = each(candidates).find(|&index| keys(index).len() == depth) {
        if transform(&rules.rules[index], value) {
            counts.0[index] += 1;
        }
        return;
    }
    match value {
        Value::Object(map) => {
            for (name, child) in map.iter_mut() {
                let next = each(candidates)
                    .filter(|&index| match &keys(index)[depth] {
                        Key::Any => true,
                        Key::Named(key) => key == name,
                    })
                    .fold(0, |set, index| set | 1 << index);
                walk(rules, next, depth + 1, child, transform, scan, counts);
            }
        }
        // A rule's path goes through objects only; strings in arrays are still scanned.
        Value::Array(items) => {
            items.iter_mut().for_each(|item| walk(rules, 0, depth + 1, item, transform, scan, counts))
        }
        Value::String(text) => {
            if let Some(scan) = scan.as_mut() {
                scan(text);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// A value made coarser, or redacted when it has no shape to generalise.
fn generalise(value: &Value, bucket: f64) -> Value {
    let generalised = match value {
        Value::Number(number) => number.as_f64().map(|number| number_bucket(number, bucket)),
        Value::String(text) => generalise_string(text.trim(), bucket),
        _ => None,
    };
    Value::String(generalised.unwrap_or_else(|| REDACTED.to_owned()))
}

fn generalise_string(text: &str, bucket: f64) -> Option<String> {
    if let Some((_, domain)) = text.rsplit_once('@') {
        return (!domain.is_empty()).then(|| format!("*@{}", domain.to_ascii_lowercase()));
    }
    if let Ok(address) = text.parse::<Ipv4Addr>() {
        return Some(ipv4_prefix(address));
    }
    if let Ok(address) = text.parse::<Ipv6Addr>() {
        return Some(ipv6_prefix(address));
    }
    if let Ok(number) = text.parse::<f64>()
        && number.is_finite()
    {
        return Some(number_bucket(number, bucket));
    }
    if let Ok(instant) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(instant.with_timezone(&chrono::Utc).date_naive().to_string());
    }
    chrono::NaiveDate::parse_from_str(text.get(..10)?, "%Y-%m-%d").ok().map(|day| day.to_string())
}

fn generalise_text(kind: Detector, span: &str) -> String {
    match kind {
        Detector::Card => format!("[redacted:{}]", kind.name()),
        _ => generalise_string(span, DEFAULT_BUCKET).unwrap_or_else(|| REDACTED.to_owned()),
    }
}

fn ipv4_prefix(address: Ipv4Addr) -> String {
    let [a, b, c, _] = address.octets();
    format!("{a}.{b}.{c}.0/24")
}

fn ipv6_prefix(address: Ipv6Addr) -> String {
    let segments = address.segments();
    let network = Ipv6Addr::new(segments[0], segments[1], segments[2], 0, 0, 0, 0, 0);
    format!("{network}/48")
}

/// `[lower, upper)` of the bucket holding `number`.
fn number_bucket(number: f64, width: f64) -> String {
    let lower = (number / width).floor() * width;
    format!("{lower}..{}", lower + width)
}

/// Whether the digits of `span` (spaces and dashes aside) are 13 to 19 long and pass Luhn.
fn luhn(span: &str) -> bool {
    let digits: Vec<u32> = span.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &digit)| if i % 2 == 1 { if digit * 2 > 9 { digit * 2 - 9 } else { digit * 2 } } else { digit })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests;
