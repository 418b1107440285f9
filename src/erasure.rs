//! Erasures (issue #27): a value erased from a table, recorded with the
//! table so no later load brings it back, without ever holding the value.
//!
//! A value is known by its keyed hash, HMAC-SHA256 with the key in
//! `SHOPLAKE_ERASURE_KEY` (never an unsalted hash: a shop's domain or an
//! email is easy to guess, so a plain hash would give it away). Each
//! erasure is a table property, `shoplake.erased.<id>` = `<column>:<hash>`,
//! set by the erasure's own commit: it travels with the table's metadata,
//! so every load sees it in the snapshot it opens, with no extra read, and
//! a schema change keeps it (a load only sets the properties its definition
//! declares). The hash does not depend on the column, so a rejected line's
//! fields can be checked against it whatever the line's shape.

use std::collections::{HashMap, HashSet};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The environment variable holding the erasure key.
pub const KEY_VARIABLE: &str = "SHOPLAKE_ERASURE_KEY";
/// The table properties recording erasures start with this.
pub const PROPERTY_PREFIX: &str = "shoplake.erased.";
/// The shortest key accepted: a key is a secret, not a password.
const MIN_KEY_BYTES: usize = 16;

/// The key values are hashed with.
#[derive(Clone)]
pub struct ErasureKey(Hmac<Sha256>);

impl ErasureKey {
    /// The key from `SHOPLAKE_ERASURE_KEY`; why not, when it is unset or short.
    pub fn from_env() -> Result<ErasureKey, String> {
        match std::env::var(KEY_VARIABLE) {
            Ok(key) => ErasureKey::new(key.as_bytes()),
            Err(_) => Err(format!(
                "{KEY_VARIABLE} is not set: erased values are known by their keyed hash, never stored, so \
                 erasing or loading a table with erasures needs the key (at least {MIN_KEY_BYTES} bytes, kept \
                 secret, the same for every run)"
            )),
        }
    }

    pub fn new(key: &[u8]) -> Result<ErasureKey, String> {
        if key.len() < MIN_KEY_BYTES {
            return Err(format!("{KEY_VARIABLE} is {} bytes: it must have at least {MIN_KEY_BYTES}", key.len()));
        }
        Ok(ErasureKey(Hmac::new_from_slice(key).map_err(|e| e.to_string())?))
    }

    /// The keyed hash of `value`, in hex (as the table records it).
    pub fn hash(&self, value: &str) -> String {
        use std::fmt::Write;
        self.digest(value).iter().fold(String::with_capacity(64), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
    }

    /// The keyed hash of `value`, as bytes: what a load compares each value
    /// by, with nothing allocated.
    fn digest(&self, value: &str) -> Digest {
        let mut mac = self.0.clone();
        mac.update(value.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

/// A keyed hash.
type Digest = [u8; 32];

/// A recorded hash back as bytes; `None` when it is not 64 hex digits.
fn from_hex(hex: &str) -> Option<Digest> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut digest = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        digest[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(digest)
}

/// One erasure, as the table records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erasure {
    pub id: String,
    /// The column the value was erased from (the key, or an erasable one).
    pub column: String,
    /// The value's keyed hash.
    pub hash: String,
}

impl Erasure {
    /// The table property recording it.
    pub fn property(&self) -> (String, String) {
        (format!("{PROPERTY_PREFIX}{}", self.id), format!("{}:{}", self.column, self.hash))
    }

    /// The erasures a table's properties record, by id.
    pub fn recorded<'a>(properties: impl IntoIterator<Item = (&'a String, &'a String)>) -> Vec<Erasure> {
        let mut erasures: Vec<Erasure> = properties
            .into_iter()
            .filter_map(|(name, value)| {
                let id = name.strip_prefix(PROPERTY_PREFIX)?;
                let (column, hash) = value.rsplit_once(':')?;
                Some(Erasure { id: id.to_string(), column: column.to_string(), hash: hash.to_string() })
            })
            .collect();
        erasures.sort_by(|a, b| a.id.cmp(&b.id));
        erasures
    }
}

/// What a load keeps out: the erased values of each column, by hash.
#[derive(Clone)]
pub struct Suppression {
    key: ErasureKey,
    by_column: HashMap<String, HashSet<Digest>>,
    hashes: HashSet<Digest>,
}

impl Suppression {
    /// The suppression of a table's erasures: `None` when it has none; an
    /// error (saying why) when it has some and the key is not set.
    pub fn of(erasures: &[Erasure]) -> Result<Option<Suppression>, String> {
        if erasures.is_empty() {
            return Ok(None);
        }
        let key = ErasureKey::from_env()?;
        let mut by_column: HashMap<String, HashSet<Digest>> = HashMap::new();
        for erasure in erasures {
            let digest = from_hex(&erasure.hash).ok_or_else(|| {
                format!(
                    "erasure {} records {:?}, not a keyed hash: the table's properties were changed",
                    erasure.id, erasure.hash
                )
            })?;
            by_column.entry(erasure.column.clone()).or_default().insert(digest);
        }
        let hashes = by_column.values().flatten().copied().collect();
        Ok(Some(Suppression { key, by_column, hashes }))
    }

    /// The columns it looks at.
    pub fn columns(&self) -> impl Iterator<Item = &str> {
        self.by_column.keys().map(String::as_str)
    }

    /// Whether `value` of `column` was erased.
    pub fn erased(&self, column: &str, value: &str) -> bool {
        self.by_column.get(column).is_some_and(|hashes| hashes.contains(&self.key.digest(value)))
    }

    /// Whether any of `fields` (a rejected line's) is an erased value, in
    /// whatever column.
    pub fn holds_erased<'a>(&self, fields: impl IntoIterator<Item = &'a str>) -> bool {
        fields.into_iter().any(|field| self.hashes.contains(&self.key.digest(field)))
    }

    /// Whether a rejected line holds an erased value ([`raw_fields`]).
    pub fn in_raw_line(&self, raw: &str) -> bool {
        self.holds_erased(raw_fields(raw).iter().map(String::as_str))
    }
}

/// The texts of a rejected line a value is looked for in: its fields as
/// RFC 4180 splits them (trimmed, as values are read), or, for a line that
/// does not split, its comma-separated parts (unquoted) and the line itself.
pub fn raw_fields(raw: &str) -> Vec<String> {
    // A JSONL line: its values, wherever they are nested.
    if let Ok(object @ serde_json::Value::Object(_)) = serde_json::from_str::<serde_json::Value>(raw) {
        return json_fields(&object);
    }
    let mut fields = shoplake_parse::records::Fields::default();
    if fields.split(raw.as_bytes()).is_ok() {
        return (0..fields.len())
            .map(|i| String::from_utf8_lossy(fields.get(raw.as_bytes(), i)).trim().to_string())
            .collect();
    }
    let parts = raw.split(',').map(|part| part.trim_matches(|c: char| c == '"' || c.is_whitespace()).to_string());
    parts.chain([raw.to_string()]).collect()
}

/// The texts a JSONL line's value is looked for in: every scalar it holds.
pub fn json_fields(object: &serde_json::Value) -> Vec<String> {
    let mut values = Vec::new();
    json_values(object, &mut values);
    values
}

/// Every scalar of `value` as text; a `gid://` id also by its number
/// (the column a definition strips the prefix from holds that).
fn json_values(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => map.values().for_each(|v| json_values(v, out)),
        serde_json::Value::Array(items) => items.iter().for_each(|v| json_values(v, out)),
        serde_json::Value::Null => {}
        serde_json::Value::String(s) => {
            if let Some(tail) = s.strip_prefix("gid://").and_then(|rest| rest.rsplit('/').next()) {
                out.push(tail.to_string());
            }
            out.push(s.trim().to_string());
        }
        other => out.push(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_known_by_its_keyed_hash_only() {
        let key = ErasureKey::new(b"0123456789abcdef").unwrap();
        let other = ErasureKey::new(b"fedcba9876543210").unwrap();
        let hash = key.hash("shop.myshopify.com");
        assert_eq!(hash.len(), 64);
        assert_eq!(hash, key.hash("shop.myshopify.com"), "the same key, the same hash");
        assert_ne!(hash, other.hash("shop.myshopify.com"), "another key, another hash");
        assert_ne!(hash, key.hash("shop.myshopify.co"));
        assert!(!hash.contains("shop"));
        assert!(ErasureKey::new(b"short").is_err());
        assert_eq!(from_hex(&hash), Some(key.digest("shop.myshopify.com")), "the recorded hash reads back");
        assert_eq!(from_hex(&hash[1..]), None);
    }

    #[test]
    fn erasures_are_read_back_from_the_properties_that_record_them() {
        let erasure = Erasure { id: "e1".into(), column: "shop_domain".into(), hash: "ab".repeat(32) };
        let (name, value) = erasure.property();
        let properties: HashMap<String, String> =
            [(name, value), ("delta.appendOnly".to_string(), "false".to_string())].into_iter().collect();
        assert_eq!(Erasure::recorded(&properties), vec![erasure]);
    }
}
