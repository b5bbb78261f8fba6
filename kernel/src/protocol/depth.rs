//! The nesting depth of JSON text, measured without parsing it.
//!
//! A single pass over the bytes counts `{`/`[` against `}`/`]` outside strings and stops as
//! soon as the bound is passed: deep input costs no recursion and no more work than its
//! length. It does not validate; the parser that runs afterwards does.

/// Whether `json` nests objects and arrays deeper than `max` levels (the outermost object or
/// array is level 1). Malformed text is measured as far as it goes.
pub fn deeper_than(json: &[u8], max: usize) -> bool {
    too_deep_under(json, max).is_some()
}

/// When `json` nests deeper than `max` levels: the key of the outermost object under which it
/// first does, as written (escapes not decoded), or empty when that is not within a key of an
/// outermost object. `None` when it stays within `max`.
pub fn too_deep_under(json: &[u8], max: usize) -> Option<Vec<u8>> {
    // Fast path: the depth never exceeds the number of `{` and `[` bytes, counted in a
    // branch-free (vectorised) pass; nearly every entry has far fewer than `max` of them.
    if openers(json) <= max {
        return None;
    }
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    // At level 1 of an object, the next string is a key.
    let mut expect_key = false;
    let mut in_key = false;
    let mut key: Vec<u8> = Vec::new();
    let mut outer_object = false;
    for &b in json {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
                in_key = false;
                continue;
            }
            if in_key {
                key.push(b);
            }
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                if expect_key {
                    expect_key = false;
                    in_key = true;
                    key.clear();
                }
            }
            b'{' | b'[' => {
                depth += 1;
                if depth == 1 {
                    outer_object = b == b'{';
                    expect_key = outer_object;
                    key.clear();
                }
                if depth > max {
                    return Some(if outer_object && depth > 1 {
                        key
                    } else {
                        Vec::new()
                    });
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b',' if depth == 1 && outer_object => expect_key = true,
            _ => {}
        }
    }
    None
}

/// How many `{` and `[` bytes `json` holds, strings included (an upper bound of its depth).
fn openers(json: &[u8]) -> usize {
    // Byte-wide counters over chunks of at most 255 bytes (they cannot overflow): the
    // compiler keeps 32 of them to a vector register.
    json.chunks(255)
        .map(|chunk| {
            let n = chunk
                .iter()
                .fold(0u8, |n, &b| n + u8::from(b == b'{' || b == b'['));
            usize::from(n)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_objects_and_arrays_outside_strings() {
        assert!(!deeper_than(b"1", 0));
        assert!(deeper_than(b"{}", 0));
        assert!(!deeper_than(b"{}", 1));
        assert!(!deeper_than(br#"{"a":[1,{"b":2}],"c":{}}"#, 3));
        assert!(deeper_than(br#"{"a":[1,{"b":2}],"c":{}}"#, 2));
        assert!(!deeper_than(br#"{"a":"[[[[{{{{"}"#, 1));
        assert!(!deeper_than(br#"{"a":"\"[[[["}"#, 1));
        assert!(!deeper_than(br#"{"a":"\\"}"#, 1));
        assert!(deeper_than(br#"{"a":"\\",  "b":[[]]}"#, 2));
    }

    #[test]
    fn names_the_outermost_key_that_goes_too_deep() {
        let data = br#"{"subject":"{[","tags":{"a":"b"},"payload":{"x":[[1]]}}"#;
        assert_eq!(too_deep_under(data, 4), None);
        assert_eq!(too_deep_under(data, 3), Some(b"payload".to_vec()));
        let data = br#"{"payload":{},"tags":[[[]]]}"#;
        assert_eq!(too_deep_under(data, 3), Some(b"tags".to_vec()));
        assert_eq!(
            too_deep_under(br#"{"a\"b":[[]]}"#, 2),
            Some(br#"a\"b"#.to_vec())
        );
        assert_eq!(too_deep_under(b"[[[]]]", 2), Some(Vec::new()));
        assert_eq!(too_deep_under(b"{}", 0), Some(Vec::new()));
    }

    #[test]
    fn very_deep_input_is_measured_without_recursion() {
        let deep = "[".repeat(1_000_000);
        assert!(deeper_than(deep.as_bytes(), 64));
        assert!(!deeper_than(deep.as_bytes(), 1_000_000));
    }

    #[test]
    fn openers_are_counted_across_chunks() {
        let text: Vec<u8> = (0..1000).map(|i| b"{[x]}\"a"[i % 7]).collect();
        let want = text.iter().filter(|&&b| b == b'{' || b == b'[').count();
        assert_eq!(openers(&text), want);
        assert_eq!(openers(&[b'['; 255]), 255);
        assert_eq!(openers(&[b'{'; 511]), 511);
        assert_eq!(openers(b""), 0);
    }

    /// Depth of a parsed value, the reference the scanner must agree with.
    fn value_depth(v: &serde_json::Value) -> usize {
        match v {
            serde_json::Value::Array(items) => 1 + items.iter().map(value_depth).max().unwrap_or(0),
            serde_json::Value::Object(map) => 1 + map.values().map(value_depth).max().unwrap_or(0),
            _ => 0,
        }
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<i64>().prop_map(serde_json::Value::from),
            // Strings full of brackets, quotes and backslashes.
            "[\\[\\]{}\"\\\\a-z ]{0,8}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(8, 64, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                proptest::collection::btree_map("[a-z\\[{\"]{0,3}", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512), max in 0usize..8) {
            let _ = deeper_than(&bytes, max);
        }

        #[test]
        fn agrees_with_the_depth_of_parsed_json(value in json_value()) {
            let text = serde_json::to_vec(&value).unwrap();
            let depth = value_depth(&value);
            proptest::prop_assert!(!deeper_than(&text, depth));
            if depth > 0 {
                proptest::prop_assert!(deeper_than(&text, depth - 1));
            }
        }
    }
}
