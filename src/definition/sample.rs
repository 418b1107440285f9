//! How `shoplake generate` makes up a column's values (`[columns.sample]`
//! in table.toml). Every key is optional: without them a column gets
//! values typical of its kind, so any definition can be generated.
//!
//! ```toml
//! [columns.sample]
//! values = ["{name}.myshopify.com"]  # one of these; {name} / {name_snake} is the row's name
//! weights = [1]                      # how often each value comes (default: equally)
//! format = "uuid"                    # text made up instead: uuid, code, digits, word, html
//! min = 0                            # numbers (and list items) between min and max
//! max = 200
//! length = [1, 6]                    # list lengths
//! empty = 0.03                       # share of empty fields
//! stable = true                      # the same for a row on every day
//! ```

use serde::Deserialize;

/// Text made up by the generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextFormat {
    /// A random UUID-like id.
    Uuid,
    /// Ten upper-case letters and digits.
    Code,
    /// A 13-digit number, as Shopify's numeric ids (`7981234567890`).
    Digits,
    /// A word.
    Word,
    /// A product description: one to three HTML paragraphs on lines of
    /// their own, with commas and quotes (for `records = "quoted"` tables).
    Html,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sample {
    #[serde(default)]
    pub values: Vec<String>,
    #[serde(default)]
    pub weights: Vec<u32>,
    pub format: Option<TextFormat>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub length: Option<[u32; 2]>,
    pub empty: Option<f64>,
    #[serde(default)]
    pub stable: bool,
}

impl Sample {
    /// The checks a sample needs beyond its types.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.weights.is_empty() && self.weights.len() != self.values.len() {
            problems.push("`weights` needs one weight per value".to_string());
        }
        if !self.weights.is_empty() && self.weights.iter().all(|w| *w == 0) {
            problems.push("`weights` are all zero".to_string());
        }
        if self.empty.is_some_and(|e| !(0.0..=1.0).contains(&e)) {
            problems.push("`empty` is a share between 0 and 1".to_string());
        }
        if let (Some(min), Some(max)) = (self.min, self.max) {
            if min > max {
                problems.push(format!("`min` {min} is above `max` {max}"));
            }
        }
        if self.length.is_some_and(|[from, to]| from > to) {
            problems.push("`length` is [shortest, longest]".to_string());
        }
        if self.format.is_some() && !self.values.is_empty() {
            problems.push("give `values` or a `format`, not both".to_string());
        }
        problems
    }
}
