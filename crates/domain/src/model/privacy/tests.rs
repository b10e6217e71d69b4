use super::*;
use chrono::Utc;
use serde_json::json;

const KEY: &[u8] = b"a key of thirty-two bytes or more!!";

fn rule(field: &str, action: Action) -> RuleSpec {
    RuleSpec { field: field.into(), action, services: Vec::new(), bucket: None }
}

fn privacy(rules: Vec<RuleSpec>, scan: &[Detector]) -> Privacy {
    Privacy::new(&PrivacySpec { rules, scan_message: scan.to_vec(), ..PrivacySpec::default() }, Some(KEY)).unwrap()
}

fn draft(service: &str, message: &str, metadata: Value) -> EventDraft {
    EventDraft {
        timestamp: Utc::now(),
        service: service.into(),
        message: message.into(),
        metadata: Some(metadata),
        idempotency_key: None,
    }
}

fn applied(privacy: &Privacy, mut event: EventDraft) -> EventDraft {
    let mut tally = PrivacyTally::default();
    privacy.apply(&mut event, &mut tally);
    privacy.record(tally);
    event
}

#[test]
fn hashing_is_keyed_stable_and_joins_numbers_with_their_text() {
    let rules = privacy(vec![rule("metadata.user_id", Action::Hash)], &[]);
    let one = applied(&rules, draft("a", "m", json!({"user_id": 12345})));
    let two = applied(&rules, draft("a", "m", json!({"user_id": "12345"})));
    let pseudonym = one.metadata.as_ref().unwrap()["user_id"].as_str().unwrap().to_owned();
    assert!(pseudonym.starts_with(PSEUDONYM_PREFIX) && pseudonym.len() == PSEUDONYM_PREFIX.len() + 22, "{pseudonym}");
    assert_eq!(two.metadata.unwrap()["user_id"], pseudonym.as_str());
    let other_key = Privacy::new(
        &PrivacySpec { rules: vec![rule("metadata.user_id", Action::Hash)], ..PrivacySpec::default() },
        Some(b"another key of thirty-two bytes or more"),
    )
    .unwrap();
    let three = applied(&other_key, draft("a", "m", json!({"user_id": 12345})));
    assert_ne!(three.metadata.unwrap()["user_id"], pseudonym.as_str());
    assert_eq!(rules.report().rules[0].transformed, 2);
    assert_eq!(rules.query_values(Some("a"), &["user_id".into()], "12345"), vec![pseudonym]);
}

#[test]
fn a_hash_rule_without_a_key_refuses_to_start() {
    let spec = PrivacySpec { rules: vec![rule("metadata.user_id", Action::Hash)], ..PrivacySpec::default() };
    assert_eq!(Privacy::new(&spec, None).unwrap_err(), PrivacyError::MissingKey);
    assert_eq!(Privacy::new(&spec, Some(b"short")).unwrap_err(), PrivacyError::MissingKey);
    let scan = PrivacySpec { scan_message: vec![Detector::Email], ..PrivacySpec::default() };
    assert_eq!(Privacy::new(&scan, None).unwrap_err(), PrivacyError::MissingKey, "emails are hashed by default");
    let bad = PrivacySpec { rules: vec![rule("metadata..x", Action::Redact)], ..PrivacySpec::default() };
    assert!(matches!(Privacy::new(&bad, None), Err(PrivacyError::Field { index: 0, .. })));
    assert!(matches!(
        Privacy::new(&PrivacySpec { rules: vec![rule("user_id", Action::Redact)], ..PrivacySpec::default() }, None),
        Err(PrivacyError::Field { .. })
    ));
}

#[test]
fn wildcards_services_redaction_and_generalisation() {
    let mut scoped = rule("metadata.user.*", Action::Redact);
    scoped.services = vec!["billing".into()];
    let mut age = rule("metadata.age", Action::Generalise);
    age.bucket = Some(5.0);
    let rules = privacy(
        vec![
            scoped,
            age,
            rule("metadata.ip", Action::Generalise),
            rule("metadata.ip6", Action::Generalise),
            rule("metadata.email", Action::Generalise),
            rule("metadata.seen", Action::Generalise),
            rule("metadata.shape", Action::Generalise),
        ],
        &[],
    );
    let metadata = json!({
        "user": {"name": "Ada", "id": 7},
        "age": 37,
        "ip": "203.0.113.77",
        "ip6": "2001:db8:abcd:12::1",
        "email": "Ada@Example.COM",
        "seen": "2026-12-08T10:11:12+02:00",
        "shape": "no shape",
        "other": "kept",
    });
    let billing = applied(&rules, draft("billing", "m", metadata.clone())).metadata.unwrap();
    assert_eq!(billing["user"], json!({"name": REDACTED, "id": REDACTED}));
    assert_eq!(billing["age"], "35..40");
    assert_eq!(billing["ip"], "203.0.113.0/24");
    assert_eq!(billing["ip6"], "2001:db8:abcd::/48");
    assert_eq!(billing["email"], "*@example.com");
    assert_eq!(billing["seen"], "2026-12-08");
    assert_eq!(billing["shape"], REDACTED, "a value that cannot be generalised is not kept");
    assert_eq!(billing["other"], "kept");
    let shipping = applied(&rules, draft("shipping", "m", metadata)).metadata.unwrap();
    assert_eq!(shipping["user"], json!({"name": "Ada", "id": 7}), "the rule names billing only");
}

#[test]
fn detectors_transform_just_their_spans_in_message_and_metadata_strings() {
    let rules = privacy(vec![rule("metadata.email", Action::Redact)], &[Detector::Email, Detector::Ip, Detector::Card]);
    let event = applied(
        &rules,
        draft(
            "a",
            "ada@example.com paid with 4111 1111 1111 1111 from 198.51.100.9 and 2001:db8::1 at 12:30:45, order 1234567890123",
            json!({"note": ["call ada@example.com"], "email": "ada@example.com", "n": 4111111111111111_u64}),
        ),
    );
    let pseudonym = rules.pseudonym("ada@example.com");
    assert_eq!(
        event.message,
        format!(
            "{pseudonym} paid with [redacted:card] from 198.51.100.0/24 and 2001:db8::/48 at 12:30:45, order 1234567890123"
        ),
        "a Luhn-invalid digit run and a time are left alone"
    );
    let metadata = event.metadata.unwrap();
    assert_eq!(metadata["note"][0], format!("call {pseudonym}"));
    assert_eq!(metadata["email"], REDACTED, "a rule wins over the detectors");
    assert_eq!(metadata["n"], 4111111111111111_u64, "numbers are not scanned");
    let report = rules.report();
    let counts: Vec<(String, u64)> = report.detectors.iter().map(|d| (d.rule.clone(), d.transformed)).collect();
    assert_eq!(counts, [("scan:email".into(), 2), ("scan:ip".into(), 2), ("scan:card".into(), 1)]);
    assert_eq!(rules.query_text("who is ada@example.com?"), format!("who is {pseudonym}?"));
}

#[test]
fn card_numbers_are_luhn_checked_and_stand_alone() {
    for valid in ["4111111111111111", "5500-0000-0000-0004", "378282246310005", "6011 1111 1111 1117"] {
        assert!(luhn(valid), "{valid}");
    }
    for invalid in ["4111111111111112", "1234567890123", "123456789012"] {
        assert!(!luhn(invalid), "{invalid}");
    }
    let rules = privacy(Vec::new(), &[Detector::Ip, Detector::Card]);
    let scanned = |text: &str| applied(&rules, draft("a", text, json!({}))).message;
    assert_eq!(scanned("card 4111-1111-1111-1111."), "card [redacted:card].");
    assert_eq!(scanned("(4111 1111 1111 1111)"), "([redacted:card])");
    // Inside a longer number or a word, or with two separators between digits: not a card.
    for kept in ["ref 941111111111111111", "id a4111111111111111", "4111  1111 1111 1111", "x4111111111111111"] {
        assert_eq!(scanned(kept), kept);
    }
    assert_eq!(scanned("v1.2.3.4 and 1.2.3.4"), "v1.2.3.4 and 1.2.3.0/24", "a version string is no address");
    assert_eq!(scanned("1.2.3.4.5 999.1.1.1"), "1.2.3.4.5 999.1.1.1");
}

#[test]
fn queries_name_the_stored_form() {
    let mut scoped = rule("metadata.user_id", Action::Hash);
    scoped.services = vec!["billing".into()];
    let rules = privacy(vec![scoped], &[Detector::Email]);
    let pseudonym = rules.pseudonym("42");
    let path = ["user_id".to_owned()];
    assert_eq!(rules.query_values(Some("billing"), &path, "42"), std::slice::from_ref(&pseudonym));
    assert_eq!(rules.query_values(Some("shipping"), &path, "42"), ["42"]);
    assert_eq!(rules.query_values(None, &path, "42"), [pseudonym.clone(), "42".into()]);
    let filter = Filter::parse("metadata.user_id:42 ada@example.com").unwrap().unwrap();
    let stored = rules.query_filter(filter, None);
    assert_eq!(
        stored.to_string(),
        format!(
            "(metadata.user_id:\"{pseudonym}\" OR metadata.user_id:\"42\") AND \"{}\"",
            rules.pseudonym("ada@example.com")
        )
    );
}

#[test]
fn export_profiles_apply_on_top_of_what_is_stored() {
    let spec = PrivacySpec {
        export_profiles: [(
            "partner".to_owned(),
            ExportProfileSpec {
                rules: vec![rule("metadata.user_id", Action::Redact), rule("metadata.email", Action::Generalise)],
            },
        )]
        .into(),
        ..PrivacySpec::default()
    };
    let privacy = Privacy::new(&spec, None).unwrap();
    assert!(!privacy.is_active(), "profiles change nothing at ingest");
    let mut event = draft("a", "m", json!({"user_id": 1, "email": "x@corp.io", "k": "v"}))
        .enrich(crate::EventId::generate(), Utc::now());
    privacy.export("partner", &mut event);
    assert_eq!(event.metadata.unwrap(), json!({"user_id": REDACTED, "email": "*@corp.io", "k": "v"}));
}

#[test]
fn the_debug_form_holds_no_key() {
    let rules = privacy(vec![rule("metadata.user_id", Action::Hash)], &[]);
    let debug = format!("{rules:?}");
    assert!(!debug.contains("thirty-two"), "{debug}");
    assert!(debug.contains("metadata.user_id:hash"));
}

fn encryption(current: &str, ids: &[&str]) -> EncryptionKeys {
    EncryptionKeys {
        current: Some(current.into()),
        keys: ids.iter().map(|id| ((*id).to_owned(), vec![id.as_bytes()[0]; 32])).collect(),
    }
}

#[test]
fn encryption_seals_each_value_apart_opens_it_again_and_survives_rotation() {
    let spec = PrivacySpec { rules: vec![rule("metadata.passport", Action::Encrypt)], ..PrivacySpec::default() };
    assert_eq!(Privacy::new(&spec, None).unwrap_err(), PrivacyError::MissingEncryptionKey);
    let short = EncryptionKeys { current: Some("k1".into()), keys: [("k1".to_owned(), vec![1; 16])].into() };
    assert!(matches!(Privacy::keyed(&spec, None, &short), Err(PrivacyError::EncryptionKey { .. })));
    let old = Privacy::keyed(&spec, None, &encryption("k1", &["k1"])).unwrap();
    let sealed = |privacy: &Privacy, value: Value| {
        applied(privacy, draft("a", "m", json!({ "passport": value }))).metadata.unwrap()["passport"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let one = sealed(&old, json!("P1234567"));
    let two = sealed(&old, json!("P1234567"));
    assert!(one.starts_with("enc:k1:") && !one.contains("P1234567"), "{one}");
    assert_ne!(one, two, "a fresh nonce each time: equal values do not show as equal");
    assert_eq!(old.decrypt(&one).unwrap(), json!("P1234567"));
    assert_eq!(old.decrypt(&sealed(&old, json!(42))).unwrap(), json!(42), "a number comes back a number");
    // Rotated: new values under k2, old ones still open.
    let rotated = Privacy::keyed(&spec, None, &encryption("k2", &["k1", "k2"])).unwrap();
    assert!(sealed(&rotated, json!("x")).starts_with("enc:k2:"));
    assert_eq!(rotated.decrypt(&one).unwrap(), json!("P1234567"));
    let without_k1 = Privacy::keyed(&spec, None, &encryption("k2", &["k2"])).unwrap();
    assert_eq!(without_k1.decrypt(&one).unwrap_err(), DecryptError::UnknownKey("k1".into()));
    // Altered bytes, another key under the same id, or no envelope at all: refused.
    let mut altered = one.clone().into_bytes();
    let last = altered.len() - 1;
    altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    assert_eq!(old.decrypt(&altered).unwrap_err(), DecryptError::Altered("k1".into()));
    let impostor = EncryptionKeys { current: Some("k1".into()), keys: [("k1".to_owned(), vec![9; 32])].into() };
    let impostor = Privacy::keyed(&spec, None, &impostor).unwrap();
    assert_eq!(impostor.decrypt(&one).unwrap_err(), DecryptError::Altered("k1".into()));
    for text in ["P1234567", "enc:k1", "enc:k1:!!!", "enc:k1:AAAA"] {
        assert!(old.decrypt(text).is_err(), "{text}");
    }
    let debug = format!("{:?}{:?}", encryption("k1", &["k1"]), old);
    assert!(!debug.contains("107, 107"), "no key bytes in debug lines: {debug}");
}

#[test]
fn a_message_packed_with_findings_grows_by_a_bounded_factor_and_stays_linear() {
    let rules = privacy(Vec::new(), &[Detector::Email, Detector::Ip, Detector::Card]);
    // The densest text of emails the pattern takes: each 6 bytes become a 27-byte pseudonym.
    let emails = "a@b.cc ".repeat(2000 / 7);
    let scanned = applied(&rules, draft("a", &emails, json!({}))).message;
    assert_eq!(scanned.matches(PSEUDONYM_PREFIX).count(), 2000 / 7);
    assert!(scanned.len() <= emails.len() * 5, "{} from {}", scanned.len(), emails.len());
    // Runs that look like addresses or cards but are none: nothing changes.
    for hostile in [":".repeat(2000), "1.".repeat(1000), "4".repeat(2000), "1-".repeat(1000), "@.".repeat(1000)] {
        assert_eq!(applied(&rules, draft("a", &hostile, json!({}))).message, hostile);
    }
}
