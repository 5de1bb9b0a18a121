//! Test support: the JSON schemas checked in under `docs/`, which must be what `schemars`
//! generates from the report types, compiled by the `jsonschema` crate to check the reports the
//! binary writes.

use std::path::Path;

use serde_json::Value;

/// Set to rewrite the checked-in schemas from the report types instead of comparing them.
pub const BLESS_ENV: &str = "KMSHARNESS_BLESS";

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

/// Asserts that `docs/<file>` is what `schemars` generates from `T` (its descriptions and
/// constraints are attributes on the report types), or rewrites it when [`BLESS_ENV`] is set: a
/// field added, renamed or retyped fails here until the schema is regenerated with
/// `KMSHARNESS_BLESS=1 cargo test --test tests schema` and the diff reviewed.
pub fn assert_generated<T: schemars::JsonSchema>(file: &str) {
    let settings = schemars::generate::SchemaSettings::draft2020_12();
    compare_or_bless(
        file,
        settings
            .with_transform(require_every_property)
            .into_generator()
            .into_root_schema_for::<T>(),
    );
}

/// [`assert_generated`] for a file the tool reads (a catalog), whose optional fields may be
/// left out: `Option` fields stay out of `required`.
pub fn assert_generated_input<T: schemars::JsonSchema>(file: &str) {
    let settings = schemars::generate::SchemaSettings::draft2020_12();
    compare_or_bless(file, settings.into_generator().into_root_schema_for::<T>());
}

fn compare_or_bless(file: &str, generated: schemars::Schema) {
    let generated = serde_json::to_value(&generated).unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join(file);
    if std::env::var_os(BLESS_ENV).is_some() {
        let text = serde_json::to_string_pretty(&generated).unwrap() + "\n";
        std::fs::write(&path, text).unwrap();
        return;
    }
    assert!(
        Schema::load(file).json == generated,
        "docs/{file} is not what the report types generate; regenerate it with {BLESS_ENV}=1 \
         and review the diff"
    );
}

/// Marks every property of every object schema required: the reports write every field, an
/// absent value as null, while `schemars` leaves `Option` fields out of `required`.
fn require_every_property(schema: &mut schemars::Schema) {
    if let Some(obj) = schema.as_object_mut()
        && let Some(props) = obj.get("properties").and_then(Value::as_object)
    {
        let names = props.keys().cloned().map(Value::from).collect();
        obj.insert("required".into(), Value::Array(names));
    }
    schemars::transform::transform_subschemas(&mut require_every_property, schema);
}
