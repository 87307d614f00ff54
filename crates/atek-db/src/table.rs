//! Tables: a JSON Schema, a revision, a key template and indexes for the records under one
//! path, stored in the database itself (reference 5.5 describes the original's).
//!
//! A record at `/example.com/notes/n1` belongs to the table `example.com/notes`: a table's
//! records are the children of its path.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::path::RecordPath;

/// The most indexes one table may declare.
pub const MAX_INDEXES: usize = 16;
/// Index values longer than this many bytes are not indexed (a lookup could not find them).
pub const MAX_INDEXED_BYTES: usize = 512;

/// A table definition, as written to the log and returned to clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TableDef {
    /// The table's id and path, like `example.com/notes`.
    pub id: String,
    /// A definition replaces another only with a greater revision.
    pub revision: u32,
    /// The JSON Schema every record must satisfy (none: any JSON object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_schema: Option<Value>,
    /// How a record's key follows from its value, like `{{/author}}-{{/slug}}`: every
    /// `{{/pointer}}` is replaced by the string, number or boolean at that JSON pointer.
    /// With a template, a record's key must be the template applied to its value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_template: Option<String>,
    /// Indexes kept for the table's records.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub indexes: Vec<IndexDef>,
}

/// An index: one value per record (or one per element, if the pointer finds an array).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexDef {
    /// Its name, unique within the table.
    pub name: String,
    /// A JSON pointer into the record, like `/title`.
    pub path: String,
}

/// Why a definition, a record or a key was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TableError {
    /// The definition itself is wrong.
    #[error("table definition {id:?} is invalid: {reason}")]
    Definition {
        /// The table.
        id: String,
        /// What is wrong, and what to do.
        reason: String,
    },
    /// A record does not satisfy the table's schema.
    #[error("the record does not match table {table} (revision {revision}) at {at:?}: {message}")]
    Schema {
        /// The table.
        table: String,
        /// The revision checked against.
        revision: u32,
        /// JSON pointer of the failing part of the record ("" for the whole record).
        at: String,
        /// What the schema wanted.
        message: String,
    },
    /// A record's key is not what the table's key template makes of its value.
    #[error(
        "table {table} derives record keys from {template:?}: expected key {expected:?}, got {got:?}"
    )]
    Key {
        /// The table.
        table: String,
        /// Its template.
        template: String,
        /// What the template gives for the value.
        expected: String,
        /// The key written.
        got: String,
    },
    /// The key template cannot be applied to the value.
    #[error("table {table}: cannot make a key from {template:?} for this record: {reason}")]
    KeyTemplate {
        /// The table.
        table: String,
        /// Its template.
        template: String,
        /// Why.
        reason: String,
    },
}

/// A definition checked and its schema compiled.
#[derive(Debug)]
pub struct Table {
    def: TableDef,
    validator: Option<jsonschema::Validator>,
}

impl Table {
    /// Checks a definition and compiles its schema.
    pub fn compile(def: TableDef) -> Result<Table, TableError> {
        let invalid = |reason: String| TableError::Definition {
            id: def.id.clone(),
            reason,
        };
        let path = RecordPath::parse(&def.id).map_err(|e| invalid(e.to_string()))?;
        if path.is_root() || path.to_string() != format!("/{}", def.id) {
            return Err(invalid(
                "an id is one or more path segments like \"example.com/notes\", without leading or doubled slashes".into(),
            ));
        }
        if def.revision == 0 {
            return Err(invalid("revisions start at 1".into()));
        }
        if def.indexes.len() > MAX_INDEXES {
            return Err(invalid(format!("at most {MAX_INDEXES} indexes")));
        }
        let mut names = BTreeSet::new();
        for index in &def.indexes {
            if index.name.is_empty() || index.name.contains('\0') {
                return Err(invalid(
                    "index names are non-empty and have no NUL byte".into(),
                ));
            }
            if !names.insert(index.name.as_str()) {
                return Err(invalid(format!("two indexes are named {:?}", index.name)));
            }
            if !(index.path.is_empty() || index.path.starts_with('/')) {
                return Err(invalid(format!(
                    "index {:?}: {:?} is not a JSON pointer; write it like \"/title\"",
                    index.name, index.path
                )));
            }
        }
        if let Some(template) = &def.key_template {
            let pointers = template_pointers(template).map_err(invalid)?;
            if pointers.is_empty() {
                return Err(invalid(format!(
                    "key template {template:?} uses no field; write it like \"{{{{/id}}}}\""
                )));
            }
        }
        let validator = match &def.json_schema {
            None => None,
            Some(schema) => Some(
                jsonschema::validator_for(schema)
                    .map_err(|e| invalid(format!("its JSON Schema does not compile: {e}")))?,
            ),
        };
        Ok(Table { def, validator })
    }

    /// The definition.
    pub fn def(&self) -> &TableDef {
        &self.def
    }

    /// The table's id.
    pub fn id(&self) -> &str {
        &self.def.id
    }

    /// Checks a record against the schema; the error names the first failing place.
    pub fn validate(&self, value: &Value) -> Result<(), TableError> {
        let Some(validator) = &self.validator else {
            return Ok(());
        };
        validator.validate(value).map_err(|e| TableError::Schema {
            table: self.def.id.clone(),
            revision: self.def.revision,
            at: e.instance_path().to_string(),
            message: e.to_string(),
        })
    }

    /// Whether a record satisfies the schema.
    pub fn is_valid(&self, value: &Value) -> bool {
        self.validator.as_ref().is_none_or(|v| v.is_valid(value))
    }

    /// Checks a record's key against the key template, if there is one.
    pub fn check_key(&self, key: &str, value: &Value) -> Result<(), TableError> {
        let Some(template) = &self.def.key_template else {
            return Ok(());
        };
        let expected = self.make_key(value)?.unwrap_or_default();
        if expected != key {
            return Err(TableError::Key {
                table: self.def.id.clone(),
                template: template.clone(),
                expected,
                got: key.to_owned(),
            });
        }
        Ok(())
    }

    /// The key the template makes of a value, if the table has a template.
    pub fn make_key(&self, value: &Value) -> Result<Option<String>, TableError> {
        let Some(template) = &self.def.key_template else {
            return Ok(None);
        };
        let error = |reason: String| TableError::KeyTemplate {
            table: self.def.id.clone(),
            template: template.clone(),
            reason,
        };
        let mut key = String::new();
        let mut rest = template.as_str();
        while let Some(start) = rest.find("{{") {
            key.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| error("unclosed {{".into()))?;
            let pointer = &after[..end];
            match value.pointer(pointer) {
                Some(Value::String(s)) => key.push_str(s),
                Some(Value::Number(n)) => key.push_str(&n.to_string()),
                Some(Value::Bool(b)) => key.push_str(if *b { "true" } else { "false" }),
                Some(_) => {
                    return Err(error(format!(
                        "{pointer} is not a string, number or boolean"
                    )));
                }
                None => return Err(error(format!("the record has no {pointer}"))),
            }
            rest = &after[end + 2..];
        }
        key.push_str(rest);
        if key.is_empty() || key.contains(['/', '\0']) {
            return Err(error(format!(
                "it gives {key:?}, which is not a usable key (empty, or with '/' or NUL)"
            )));
        }
        Ok(Some(key))
    }

    /// The encoded values a record is filed under in one index.
    pub fn index_values(&self, index: &IndexDef, value: &Value) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        match value.pointer(&index.path) {
            Some(Value::Array(items)) => {
                for item in items {
                    out.extend(encode_index_value(item));
                }
            }
            Some(v) => out.extend(encode_index_value(v)),
            None => {}
        }
        out.sort();
        out.dedup();
        out
    }
}

fn template_pointers(template: &str) -> Result<Vec<&str>, String> {
    let mut pointers = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("key template {template:?} has an unclosed {{{{"))?;
        let pointer = &after[..end];
        if !pointer.starts_with('/') {
            return Err(format!(
                "key template {template:?}: {pointer:?} is not a JSON pointer; write it like {{{{/id}}}}"
            ));
        }
        pointers.push(pointer);
        rest = &after[end + 2..];
    }
    Ok(pointers)
}

/// Encodes a scalar so that byte order is value order: false < true < numbers < strings.
/// Strings escape their own 0x00 as 0x00 0xFF and end with 0x00 0x01, so no value's
/// encoding is a prefix of another's and a record key (UTF-8: never 0xFF) can follow it.
/// Numbers compare as doubles, so integers beyond 2^53 may share an encoding: lookups check
/// each hit against the record. Objects, arrays, null and overlong strings are not indexed.
pub(crate) fn encode_index_value(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::Bool(b) => Some(vec![0x10, u8::from(*b)]),
        Value::Number(n) => {
            let f = n.as_f64()?;
            let bits = f.to_bits();
            let ordered = if f.is_sign_negative() {
                !bits
            } else {
                bits ^ (1 << 63)
            };
            let mut out = vec![0x20];
            out.extend_from_slice(&ordered.to_be_bytes());
            Some(out)
        }
        Value::String(s) if s.len() <= MAX_INDEXED_BYTES => {
            let mut out = Vec::with_capacity(s.len() + 2);
            out.push(0x30);
            for &b in s.as_bytes() {
                out.push(b);
                if b == 0 {
                    out.push(0xFF);
                }
            }
            out.extend_from_slice(&[0, 1]);
            Some(out)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn notes(schema: Value) -> Table {
        Table::compile(TableDef {
            id: "example.com/notes".into(),
            revision: 1,
            json_schema: Some(schema),
            key_template: Some("{{/author}}-{{/n}}".into()),
            indexes: vec![IndexDef {
                name: "tags".into(),
                path: "/tags".into(),
            }],
        })
        .unwrap()
    }

    #[test]
    fn schema_errors_name_the_failing_place() {
        let t = notes(json!({"type": "object", "properties": {"title": {"type": "string"}}}));
        assert!(t.validate(&json!({"title": "x"})).is_ok());
        let err = t.validate(&json!({"title": 5})).unwrap_err();
        let TableError::Schema { at, revision, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(at, "/title");
        assert_eq!(*revision, 1);
        assert!(!t.is_valid(&json!({"title": 5})));
    }

    #[test]
    fn key_templates_make_and_check_keys() {
        let t = notes(json!({}));
        let v = json!({"author": "ann", "n": 7});
        assert_eq!(t.make_key(&v).unwrap().as_deref(), Some("ann-7"));
        assert!(t.check_key("ann-7", &v).is_ok());
        assert!(matches!(
            t.check_key("bob-7", &v),
            Err(TableError::Key { .. })
        ));
        assert!(matches!(
            t.make_key(&json!({"author": "ann"})),
            Err(TableError::KeyTemplate { .. })
        ));
        assert!(matches!(
            t.make_key(&json!({"author": "a/b", "n": 1})),
            Err(TableError::KeyTemplate { .. })
        ));
    }

    #[test]
    fn bad_definitions_are_refused() {
        let def = |id: &str, revision, template: Option<&str>| TableDef {
            id: id.into(),
            revision,
            json_schema: None,
            key_template: template.map(str::to_owned),
            indexes: vec![],
        };
        assert!(Table::compile(def("example.com/t", 1, None)).is_ok());
        for bad in [
            def("", 1, None),
            def("/x", 1, None),
            def("a//b", 1, None),
            def("a", 0, None),
            def("a", 1, Some("fixed")),
            def("a", 1, Some("{{id}}")),
        ] {
            assert!(
                matches!(
                    Table::compile(bad.clone()),
                    Err(TableError::Definition { .. })
                ),
                "{bad:?}"
            );
        }
        let mut schema = def("a", 1, None);
        schema.json_schema = Some(json!({"type": 12}));
        assert!(Table::compile(schema).is_err());
    }

    #[test]
    fn index_encoding_keeps_value_order() {
        let values = [
            json!(false),
            json!(true),
            json!(-1e9),
            json!(-2),
            json!(-0.5),
            json!(0),
            json!(1),
            json!(2.5),
            json!(1e12),
            json!(""),
            json!("a"),
            json!("a\u{0}"),
            json!("a\u{0}\u{0}"),
            json!("a\u{0}b"),
            json!("ab"),
            json!("b"),
        ];
        let encoded: Vec<Vec<u8>> = values
            .iter()
            .map(|v| encode_index_value(v).unwrap())
            .collect();
        for pair in encoded.windows(2) {
            assert!(pair[0] < pair[1], "{pair:?}");
        }
        // No encoding is a prefix of another's (an equality lookup is a prefix scan).
        for (i, a) in encoded.iter().enumerate() {
            for (j, b) in encoded.iter().enumerate() {
                assert!(i == j || !b.starts_with(a), "{a:?} is a prefix of {b:?}");
            }
        }
        assert!(encode_index_value(&json!(null)).is_none());
        assert!(encode_index_value(&json!({"a": 1})).is_none());
        let t = notes(json!({}));
        let idx = &t.def().indexes[0];
        assert_eq!(
            t.index_values(idx, &json!({"tags": ["x", "y", "x"]})).len(),
            2
        );
        assert!(t.index_values(idx, &json!({})).is_empty());
    }
}
