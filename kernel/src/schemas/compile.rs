//! Compiling a schema body into a validator, and checking a payload against it. Pure: no I/O.
//!
//! The compiler never fetches anything: a `$ref` to a resource outside the body (a URL, a
//! file) is refused when the schema is added. Patterns (`pattern`, `patternProperties`) run on
//! the linear-time `regex` engine, so no pattern can backtrack catastrophically; patterns that
//! need backtracking (look-around, back-references) are refused with the compiler's message.
//! A body is bounded in size ([`MAX_BODY_BYTES`]) and nesting ([`MAX_BODY_DEPTH`]).

use jsonschema::{PatternOptions, Retrieve, Uri, Validator};
use serde_json::Value;

/// Largest schema body, as compact JSON.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Deepest nesting of objects and arrays in a schema body.
pub const MAX_BODY_DEPTH: usize = 64;
/// Longest compiler or validation message kept in an answer or a dead letter.
const MAX_MESSAGE_CHARS: usize = 300;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CompileError {
    #[error("schema body is {0} bytes, more than the limit of {MAX_BODY_BYTES}")]
    TooLarge(usize),
    #[error("schema body nests objects and arrays deeper than {MAX_BODY_DEPTH} levels")]
    TooDeep,
    #[error("schema body is not a valid JSON Schema: {0}")]
    Invalid(String),
}

/// Refuses every fetch: schemas are self-contained.
struct NoFetch;

impl Retrieve for NoFetch {
    fn retrieve(
        &self,
        uri: &Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        Err(format!(
            "{uri} is outside the schema; the kernel fetches no schema from the network or \
             from files, so a $ref must point into the same body"
        )
        .into())
    }
}

/// Checks the bounds of `body` and compiles it (draft from its `$schema`; 2020-12 when absent;
/// drafts 4, 6, 7, 2019-09 and 2020-12 are known).
pub fn compile(body: &Value) -> Result<Validator, CompileError> {
    let text = serde_json::to_vec(body).expect("a JSON value serializes");
    if text.len() > MAX_BODY_BYTES {
        return Err(CompileError::TooLarge(text.len()));
    }
    if crate::protocol::deeper_than(&text, MAX_BODY_DEPTH) {
        return Err(CompileError::TooDeep);
    }
    jsonschema::options()
        .with_retriever(NoFetch)
        .with_pattern_options(PatternOptions::regex())
        .build(body)
        .map_err(|e| CompileError::Invalid(clip(e.to_string())))
}

/// The first way a payload fails its schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON pointer into the payload (`""`: the payload itself).
    pub pointer: String,
    /// The schema keyword that failed (`required`, `type`, `minimum`, …).
    pub keyword: String,
    pub message: String,
}

/// Checks `payload` (JSON text) against `validator`.
pub fn check(validator: &Validator, payload: &str) -> Result<(), Violation> {
    let value: Value = serde_json::from_str(payload).map_err(|e| Violation {
        pointer: String::new(),
        keyword: "json".into(),
        message: clip(e.to_string()),
    })?;
    match validator.validate(&value) {
        Ok(()) => Ok(()),
        Err(e) => Err(Violation {
            pointer: e.instance_path().to_string(),
            keyword: e.kind().keyword().to_string(),
            message: clip(e.to_string()),
        }),
    }
}

fn clip(mut s: String) -> String {
    if let Some((at, _)) = s.char_indices().nth(MAX_MESSAGE_CHARS) {
        s.truncate(at);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn violation(schema: Value, payload: &str) -> Option<Violation> {
        check(&compile(&schema).unwrap(), payload).err()
    }

    #[test]
    fn draft_7_and_2020_12_report_pointer_and_keyword() {
        for draft in [
            "http://json-schema.org/draft-07/schema#",
            "https://json-schema.org/draft/2020-12/schema",
        ] {
            let schema = json!({
                "$schema": draft,
                "type": "object",
                "required": ["id"],
                "properties": {"id": {"type": "integer"},
                               "lines": {"type": "array", "items": {"minimum": 0}}}
            });
            assert_eq!(violation(schema.clone(), r#"{"id":1,"lines":[3,0]}"#), None);
            let v = violation(schema.clone(), r#"{"id":1,"lines":[3,-1]}"#).unwrap();
            assert_eq!(
                (v.pointer.as_str(), v.keyword.as_str()),
                ("/lines/1", "minimum")
            );
            let v = violation(schema, r#"{"lines":[]}"#).unwrap();
            assert_eq!((v.pointer.as_str(), v.keyword.as_str()), ("", "required"));
        }
    }

    #[test]
    fn remote_and_file_refs_are_refused_local_refs_work() {
        for r in ["https://example.com/s.json", "file:///etc/passwd"] {
            let err = compile(&json!({"$ref": r})).unwrap_err().to_string();
            assert!(err.contains("fetches no schema"), "{err}");
        }
        let local = json!({"$defs": {"n": {"type": "integer"}}, "properties": {"a": {"$ref": "#/$defs/n"}}});
        assert!(check(&compile(&local).unwrap(), r#"{"a":"x"}"#).is_err());
    }

    #[test]
    fn invalid_bodies_get_the_compilers_message() {
        let err = compile(&json!({"type": "banana"})).unwrap_err();
        assert!(
            matches!(&err, CompileError::Invalid(m) if m.contains("banana")),
            "{err}"
        );
        // Look-around needs backtracking: refused, not run.
        assert!(compile(&json!({"pattern": "(?=a)a"})).is_err());
    }

    #[test]
    fn bounds_of_size_and_depth() {
        let mut deep = json!({"type": "integer"});
        for _ in 0..40 {
            deep = json!({"properties": {"a": deep}});
        }
        assert_eq!(compile(&deep).unwrap_err(), CompileError::TooDeep);
        let big: Vec<String> = (0..120_000).map(|i| format!("value-{i}")).collect();
        assert!(matches!(
            compile(&json!({"enum": big})).unwrap_err(),
            CompileError::TooLarge(_)
        ));
    }
}
