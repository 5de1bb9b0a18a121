//! Test support: the JSON schemas checked in under `docs/`, compiled by the `jsonschema` crate,
//! and the reports the binary writes checked against them.

use std::path::Path;

use serde_json::Value;

/// Draft every report schema declares.
pub const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

/// A checked-in schema and its validator.
#[derive(Debug)]
pub struct Schema {
    /// The schema as a JSON value, for the tests that read its documentation.
    pub json: Value,
    validator: jsonschema::Validator,
}

impl Schema {
    /// Loads `docs/<file>`, which must be a valid draft 2020-12 schema (checked against the
    /// draft's meta-schema before it is compiled).
    pub fn load(file: &str) -> Schema {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("docs")
            .join(file);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
        let json: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(json["$schema"], DRAFT_2020_12, "{file}: $schema");
        if let Err(e) = jsonschema::draft202012::meta::validate(&json) {
            panic!("{file} is not a valid draft 2020-12 schema: {e}");
        }
        let validator =
            jsonschema::draft202012::new(&json).unwrap_or_else(|e| panic!("{file}: {e}"));
        Schema { json, validator }
    }

    /// Every way `v` breaks the schema, each as `<JSON pointer>: <why>`.
    pub fn violations(&self, v: &Value) -> Vec<String> {
        self.validator
            .iter_errors(v)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect()
    }

    /// Fails the test, listing every violation, unless `v` fits the schema.
    pub fn assert_fits(&self, what: &str, v: &Value) {
        let errors = self.violations(v);
        assert!(errors.is_empty(), "{what}: {errors:#?}");
    }
}
