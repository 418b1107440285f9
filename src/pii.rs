//! Declared PII (issue #27, item 6): a column of a definition may say
//! `pii = "hash" | "mask" | "drop"`, and its values are then never written
//! as read, neither to the table nor in a rejected line's raw text.
//!
//! * `hash`: HMAC-SHA256 with the key in `SHOPLAKE_PII_KEY`, in hex (64
//!   characters). Keyed, never a plain hash: a domain or an email is easy to
//!   guess and a plain hash would give it away. The same key gives the same
//!   value in every load (joins and counts by it still work); another key,
//!   another value.
//! * `mask`: every character but the last four becomes `*` (a value of four
//!   characters or fewer is all `*`s): enough to tell values apart by eye.
//! * `drop`: null (the column must be nullable).
//!
//! A rejected line that splits into the header's fields gets the PII
//! columns' fields replaced the same way (`drop`: emptied) and is written
//! back as RFC 4180; one that does not split, or splits into another number
//! of fields, cannot say where the PII is, so its text is withheld whole
//! (its line number and reason are kept).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, RecordBatch, StringArray};

use crate::definition::{Pii, TableDefinition};
use crate::erasure::ErasureKey;

/// The environment variable holding the key `pii = "hash"` columns are hashed with.
pub const KEY_VARIABLE: &str = "SHOPLAKE_PII_KEY";
const MIN_KEY_BYTES: usize = 16;

/// How a load writes a definition's PII columns.
pub struct PiiRules {
    /// By column name: what is done to it, and its header text.
    columns: Vec<(String, String, Pii)>,
    key: Option<ErasureKey>,
    /// A JSONL export's rejected line is an object: its PII found by pointer.
    jsonl: bool,
}

impl PiiRules {
    /// The rules of `def`: `None` without PII columns; why not, when a
    /// column is hashed and the key is unset or short.
    pub fn of(def: &TableDefinition) -> Result<Option<PiiRules>, String> {
        let columns: Vec<(String, String, Pii)> =
            def.columns.iter().filter_map(|c| c.pii.map(|pii| (c.name.clone(), c.header.clone(), pii))).collect();
        if columns.is_empty() {
            return Ok(None);
        }
        let key = match columns.iter().any(|(_, _, pii)| *pii == Pii::Hash) {
            false => None,
            true => {
                let key = std::env::var(KEY_VARIABLE).map_err(|_| {
                    format!(
                        "{KEY_VARIABLE} is not set: table {} hashes its pii = \"hash\" columns with it (a secret of at \
                         least {MIN_KEY_BYTES} bytes, the same for every load)",
                        def.name
                    )
                })?;
                if key.len() < MIN_KEY_BYTES {
                    return Err(format!(
                        "{KEY_VARIABLE} is {} bytes: it must have at least {MIN_KEY_BYTES}",
                        key.len()
                    ));
                }
                Some(ErasureKey::new(key.as_bytes())?)
            }
        };
        Ok(Some(PiiRules { columns, key, jsonl: def.format == crate::definition::SourceFormat::Jsonl }))
    }

    /// Which key hashes (its keyed hash of a fixed text, which says nothing
    /// of the key): a load with another key is not a repeat of the last.
    pub fn key_id(&self) -> Option<String> {
        self.key.as_ref().map(|key| key.hash("shoplake pii key id")[..16].to_string())
    }

    /// The value written for `value` of a column declared `pii`.
    fn protect(&self, pii: Pii, value: &str) -> Option<String> {
        match pii {
            Pii::Hash => Some(self.key.as_ref().expect("a key when a column is hashed").hash(value)),
            Pii::Mask => Some(mask(value)),
            Pii::Drop => None,
        }
    }

    /// `batch` with its PII columns' values replaced.
    pub fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch, String> {
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        for (name, _, pii) in &self.columns {
            let Ok(at) = batch.schema().index_of(name) else { continue };
            let values = batch.column(at).as_string_opt::<i32>().ok_or_else(|| format!("{name} is not text"))?;
            let protected: StringArray =
                values.iter().map(|value| value.and_then(|value| self.protect(*pii, value))).collect();
            columns[at] = Arc::new(protected);
        }
        RecordBatch::try_new(batch.schema(), columns).map_err(|e| e.to_string())
    }

    /// A rejected line's raw text, its PII fields replaced; withheld whole
    /// when it does not split into `header`'s fields.
    pub fn raw_line(&self, raw: &str, header: &[String]) -> String {
        if self.jsonl {
            return self.raw_object(raw);
        }
        let mut fields = shoplake_parse::records::Fields::default();
        let split = fields.split(raw.as_bytes()).is_ok() && fields.len() == header.len();
        if !split {
            return format!(
                "<withheld: the line does not split into the header's {} fields, so where its PII columns are \
                 cannot be told>",
                header.len()
            );
        }
        let mut values: Vec<Vec<u8>> = (0..fields.len()).map(|i| fields.get(raw.as_bytes(), i).to_vec()).collect();
        for (_, column_header, pii) in &self.columns {
            if let Some(at) = header.iter().position(|h| h == column_header) {
                let value = String::from_utf8_lossy(&values[at]).trim().to_string();
                values[at] = match value.is_empty() {
                    true => Vec::new(),
                    false => self.protect(*pii, &value).unwrap_or_default().into_bytes(),
                };
            }
        }
        let mut out = Vec::with_capacity(raw.len());
        shoplake_parse::records::write_record(&mut out, &values);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// A rejected JSONL line, its PII values (found by their pointers)
    /// replaced; withheld whole when it is not a JSON object.
    fn raw_object(&self, raw: &str) -> String {
        let Ok(mut object @ serde_json::Value::Object(_)) = serde_json::from_str::<serde_json::Value>(raw) else {
            return "<withheld: the line is not a JSON object, so where its PII values are cannot be told>".into();
        };
        for (_, pointer, pii) in &self.columns {
            if let Some(value) = object.pointer_mut(pointer) {
                let text = match &*value {
                    serde_json::Value::Null => continue,
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                *value = self.protect(*pii, &text).map_or(serde_json::Value::Null, serde_json::Value::String);
            }
        }
        object.to_string()
    }
}

fn mask(value: &str) -> String {
    let count = value.chars().count();
    let shown = if count > 4 { 4 } else { 0 };
    let mut masked: String = std::iter::repeat_n('*', count - shown).collect();
    masked.extend(value.chars().skip(count - shown));
    masked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> PiiRules {
        PiiRules {
            columns: vec![
                ("email".into(), "Email".into(), Pii::Hash),
                ("phone".into(), "Phone".into(), Pii::Mask),
                ("name".into(), "Name".into(), Pii::Drop),
            ],
            key: Some(ErasureKey::new(b"0123456789abcdef").unwrap()),
            jsonl: false,
        }
    }

    #[test]
    fn a_rejected_jsonl_line_has_its_values_replaced_by_pointer_or_is_withheld() {
        let rules = PiiRules {
            columns: vec![
                ("email".into(), "/email".into(), Pii::Mask),
                ("city".into(), "/address/city".into(), Pii::Drop),
            ],
            key: None,
            jsonl: true,
        };
        let line = r#"{"id":"gid://shopify/Customer/1","email":"ann@example.com","address":{"city":"Lyon"},"n":"x"}"#;
        let written: serde_json::Value = serde_json::from_str(&rules.raw_line(line, &[])).unwrap();
        assert_eq!(written["email"], "***********.com");
        assert_eq!(written["address"]["city"], serde_json::Value::Null);
        assert_eq!(written["n"], "x", "other values as read");
        // Beside it: a line that is not JSON cannot say where its values are.
        let broken = rules.raw_line(r#"{"email":"ann@example.com""#, &[]);
        assert!(broken.starts_with("<withheld") && !broken.contains("ann@"), "{broken}");
    }

    #[test]
    fn values_are_hashed_masked_or_dropped() {
        let rules = rules();
        assert_eq!(mask("+1 555 0100"), "*******0100");
        assert_eq!(mask("abcd"), "****");
        let hashed = rules.protect(Pii::Hash, "a@b.c").unwrap();
        assert_eq!(hashed, ErasureKey::new(b"0123456789abcdef").unwrap().hash("a@b.c"));
        assert_ne!(hashed, ErasureKey::new(b"fedcba9876543210").unwrap().hash("a@b.c"), "another key, another value");
        assert_eq!(rules.protect(Pii::Drop, "x"), None);
    }

    #[test]
    fn a_rejected_line_keeps_its_other_fields_or_is_withheld() {
        let rules = rules();
        let header: Vec<String> = ["Id", "Email", "Phone", "Name"].map(String::from).to_vec();
        let line = rules.raw_line("7,a@b.c,+1 555 0100,\"Doe, Jane\"", &header);
        let hashed = rules.protect(Pii::Hash, "a@b.c").unwrap();
        assert_eq!(line, format!("7,{hashed},*******0100,"));
        assert!(!line.contains("a@b.c") && !line.contains("Doe"));
        let short = rules.raw_line("7,a@b.c", &header);
        assert!(short.starts_with("<withheld") && !short.contains("a@b.c"), "{short}");
        let unsplittable = rules.raw_line("7,\"a@b.c", &header);
        assert!(unsplittable.starts_with("<withheld"));
    }
}
