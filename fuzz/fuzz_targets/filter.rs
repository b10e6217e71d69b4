//! Any text as `q=`: the filter parser never panics, refuses with a position inside the
//! text on a character boundary, and what it accepts prints to a spelling that parses back
//! to the same filter.

#![no_main]

use aurore_domain::Filter;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Filter::parse(text) {
        Ok(None) => assert!(text.trim().is_empty()),
        Ok(Some(filter)) => {
            let printed = filter.to_string();
            assert_eq!(Filter::parse(&printed), Ok(Some(filter)), "{text:?} printed as {printed:?}");
        }
        Err(error) => assert!(error.position <= text.len() && text.is_char_boundary(error.position), "{error:?}"),
    }
});
