//! JSON string escapes that Postgres `jsonb` refuses, found without parsing.
//!
//! `jsonb` cannot hold U+0000 (`\u0000`) nor a UTF-16 surrogate escape that is not one half of
//! a pair (`\ud800` alone): it rejects the whole statement, so such a payload would fail its
//! batch and be found only by splitting the batch. One pass over the bytes, inside strings
//! only; it does not validate (the parser that ran before did).

/// What in `json` Postgres `jsonb` would refuse, if anything: `"\\u0000"` or
/// `"a lone UTF-16 surrogate escape"`.
pub fn unstorable_escape(json: &[u8]) -> Option<&'static str> {
    // Fast path: every finding starts at a backslash, and most payloads have none (a
    // memchr-speed search).
    if !json.contains(&b'\\') {
        return None;
    }
    let mut i = 0;
    let mut in_string = false;
    while i < json.len() {
        let b = json[i];
        if !in_string {
            in_string = b == b'"';
            i += 1;
            continue;
        }
        match b {
            b'"' => {
                in_string = false;
                i += 1;
            }
            b'\\' if json.get(i + 1) == Some(&b'u') => {
                let code = hex4(json, i + 2);
                i += 6;
                match code {
                    Some(0) => return Some("\\u0000"),
                    Some(0xD800..=0xDBFF) => {
                        let low = (json.get(i) == Some(&b'\\') && json.get(i + 1) == Some(&b'u'))
                            .then(|| hex4(json, i + 2))
                            .flatten();
                        match low {
                            Some(0xDC00..=0xDFFF) => i += 6,
                            _ => return Some("a lone UTF-16 surrogate escape"),
                        }
                    }
                    Some(0xDC00..=0xDFFF) => return Some("a lone UTF-16 surrogate escape"),
                    _ => {}
                }
            }
            // Any other escape is two bytes (`\"`, `\\`, `\n`, ...).
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    None
}

/// The four hex digits at `at`, as a number.
fn hex4(json: &[u8], at: usize) -> Option<u32> {
    let digits = std::str::from_utf8(json.get(at..at + 4)?).ok()?;
    u32::from_str_radix(digits, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn finds_nul_and_lone_surrogates_in_strings_only() {
        assert_eq!(unstorable_escape(br#"{"a":"\u0000"}"#), Some("\\u0000"));
        assert_eq!(unstorable_escape(br#"{"\u0000":1}"#), Some("\\u0000"));
        let lone = Some("a lone UTF-16 surrogate escape");
        assert_eq!(unstorable_escape(br#"{"a":"\ud800"}"#), lone);
        assert_eq!(unstorable_escape(br#"{"a":"\uD800x"}"#), lone);
        assert_eq!(unstorable_escape(br#"{"a":"\udc00"}"#), lone);
        assert_eq!(unstorable_escape(br#"{"a":"\ud800\u0041"}"#), lone);
        assert_eq!(unstorable_escape(br#"{"a":"\ud800\ud800"}"#), lone);
        assert_eq!(unstorable_escape(br#"{"a":"\ud83d\ude00"}"#), None);
        assert_eq!(unstorable_escape(br#"{"a":"\\u0000"}"#), None);
        assert_eq!(unstorable_escape(br#"{"a":"\\\u0000"}"#), Some("\\u0000"));
        assert_eq!(unstorable_escape(br#"{"a":"\"\u0041","b":1e999}"#), None);
        assert_eq!(unstorable_escape(b"{\"a\":\"\\u00"), None);
    }

    /// Whether Postgres would refuse it, by the parsed strings: a NUL or, where serde_json
    /// refuses to parse, a lone surrogate.
    fn reference(json: &str) -> Option<bool> {
        match serde_json::from_str::<serde_json::Value>(json) {
            Ok(v) => Some(has_nul(&v)),
            Err(e) if e.to_string().contains("surrogate") => Some(true),
            Err(_) => None,
        }
    }

    fn has_nul(v: &serde_json::Value) -> bool {
        match v {
            serde_json::Value::String(s) => s.contains('\0'),
            serde_json::Value::Array(items) => items.iter().any(has_nul),
            serde_json::Value::Object(map) => {
                map.iter().any(|(k, v)| k.contains('\0') || has_nul(v))
            }
            _ => false,
        }
    }

    proptest! {
        #[test]
        fn agrees_with_serde_json(parts in proptest::collection::vec(prop_oneof![
            Just("\\u0000"), Just("\\ud800"), Just("\\udc00"), Just("\\ud83d\\ude00"),
            Just("\\\\"), Just("\\\""), Just("u0000"), Just("a"), Just("\\n"), Just("\\u0041"),
        ], 0..8)) {
            let json = format!("{{\"k\":\"{}\"}}", parts.concat());
            if let Some(bad) = reference(&json) {
                prop_assert_eq!(unstorable_escape(json.as_bytes()).is_some(), bad, "{}", json);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = unstorable_escape(&bytes);
        }
    }
}
