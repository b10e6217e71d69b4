//! Any bytes as a request body: parsing, validation and markup handling never panic, an
//! invalid event always names at least one rule, stripped text holds nothing left to strip
//! and escaped text no `<`.

#![no_main]

use aurore_domain::Markup;
use aurore_domain::validation::{Limits, validate_event};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let limits = Limits::default();
    for markup in [Markup::Strip, Markup::Escape, Markup::Off] {
        match validate_event(value.clone(), &limits).and_then(|draft| markup.apply(draft)) {
            Ok(draft) => {
                assert!(!draft.service.is_empty() && !draft.message.is_empty());
                match markup {
                    Markup::Strip => assert!(
                        Markup::Strip.clean(&draft.message) == draft.message
                            && Markup::Strip.clean(&draft.service) == draft.service,
                        "{draft:?}"
                    ),
                    Markup::Escape => assert!(!draft.message.contains('<') && !draft.service.contains('<'), "{draft:?}"),
                    Markup::Off => {}
                }
            }
            Err(errors) => {
                assert!(!errors.is_empty());
                assert!(errors.iter().all(|error| !error.constraints.is_empty()));
            }
        }
    }
});
