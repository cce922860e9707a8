//! Google's Wallet Objects discovery document (tests/data), and a check of JSON bodies against
//! its schemas: what the save-link tests and the REST stand-in both hold Google's payloads to.

use std::sync::OnceLock;

use serde_json::Value;

/// The fields Google requires of a class and of an object (wallet-spec C2, C3).
pub const LOYALTY_CLASS_REQUIRED: [&str; 5] = [
    "id",
    "issuerName",
    "reviewStatus",
    "programName",
    "programLogo",
];
/// See [`LOYALTY_CLASS_REQUIRED`].
pub const LOYALTY_OBJECT_REQUIRED: [&str; 3] = ["id", "classId", "state"];

/// The `schemas` of the discovery document, parsed once.
pub fn schemas() -> &'static Value {
    static SCHEMAS: OnceLock<Value> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        let discovery: Value = serde_json::from_str(include_str!(
            "../data/google-walletobjects-v1.discovery.json"
        ))
        .expect("discovery JSON");
        discovery["schemas"].clone()
    })
}

/// Checks `value` against the schema `name` (e.g. `LoyaltyObject`): every property is
/// documented, with the documented type and enum value. A partial body (a PATCH) passes when
/// the fields it has are right; see [`check_required`] for whole resources.
pub fn check_schema(name: &str, value: &Value) -> Result<(), String> {
    let schemas = schemas();
    let schema = &schemas[name];
    if schema.is_null() {
        return Err(format!("{name} is not a schema of the discovery document"));
    }
    check(schemas, schema, value, name)
}

/// Checks that `value` has every field of `required`.
pub fn check_required(name: &str, required: &[&str], value: &Value) -> Result<(), String> {
    match required.iter().find(|key| value[**key].is_null()) {
        Some(key) => Err(format!("{name}.{key} is required")),
        None => Ok(()),
    }
}

fn check(schemas: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    if let Some(name) = schema["$ref"].as_str() {
        return check(schemas, &schemas[name], value, at);
    }
    match schema["type"].as_str() {
        Some("object") => {
            let object = value
                .as_object()
                .ok_or_else(|| format!("{at}: not an object"))?;
            for (key, v) in object {
                let property = &schema["properties"][key];
                if property.is_null() {
                    return Err(format!("{at}.{key} is not a documented field"));
                }
                check(schemas, property, v, &format!("{at}.{key}"))?;
            }
        }
        Some("array") => {
            let items = value
                .as_array()
                .ok_or_else(|| format!("{at}: not an array"))?;
            for (i, v) in items.iter().enumerate() {
                check(schemas, &schema["items"], v, &format!("{at}[{i}]"))?;
            }
        }
        Some("string") => {
            let s = value
                .as_str()
                .ok_or_else(|| format!("{at}: not a string"))?;
            if let Some(values) = schema["enum"].as_array()
                && !values.iter().any(|v| v == s)
            {
                return Err(format!("{at}: {s} not in {values:?}"));
            }
        }
        Some("integer") if !value.is_i64() => return Err(format!("{at}: not an integer")),
        Some("boolean") if !value.is_boolean() => return Err(format!("{at}: not a boolean")),
        Some("integer" | "boolean") => {}
        other => return Err(format!("{at}: unexpected schema type {other:?}")),
    }
    Ok(())
}
