//! The nesting depth of JSON text, measured without parsing it.
//!
//! A single pass over the bytes counts `{`/`[` against `}`/`]` outside strings and stops as
//! soon as the bound is passed: deep input costs no recursion and no more work than its
//! length. It does not validate; the parser that runs afterwards does.

/// Whether `json` nests objects and arrays deeper than `max` levels (the outermost object or
/// array is level 1). Malformed text is measured as far as it goes.
pub fn deeper_than(json: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in json {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
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
    fn very_deep_input_is_measured_without_recursion() {
        let deep = "[".repeat(1_000_000);
        assert!(deeper_than(deep.as_bytes(), 64));
        assert!(!deeper_than(deep.as_bytes(), 1_000_000));
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
