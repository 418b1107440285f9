//! Where exports and tables live, as given on the command line: a local
//! path (the default) or an `s3://bucket/prefix` URI, normalised once when
//! parsed, so that two spellings of one place are one [`Location`] (and one
//! table, with one rejects table).

use std::fmt;
use std::path::{Component, PathBuf};

/// Text that names no location, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLocation {
    pub text: String,
    pub why: &'static str,
}

impl fmt::Display for BadLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.text, self.why)
    }
}

impl std::error::Error for BadLocation {}

/// A directory or object prefix, as given on the command line, normalised:
/// no trailing or doubled separators, no `.` segments, so `lake/t/` and
/// `./lake/t` are the same table (and have the same rejects table).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Location {
    Local(PathBuf),
    S3 { bucket: String, prefix: String },
}

impl Location {
    pub fn parse(text: &str) -> Result<Location, BadLocation> {
        let bad = |why: &'static str| BadLocation { text: text.to_string(), why };
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("an s3:// URI needs a bucket: s3://bucket/prefix"));
            }
            let segments: Vec<&str> = prefix.split('/').filter(|s| !s.is_empty() && *s != ".").collect();
            if segments.contains(&"..") {
                return Err(bad("`..` is not allowed in an s3:// URI"));
            }
            return Ok(Location::S3 { bucket: bucket.to_string(), prefix: segments.join("/") });
        }
        let path = match text.strip_prefix("file://") {
            Some(path) => path,
            None if text.contains("://") => return Err(bad("only local paths and s3:// URIs are supported")),
            None => text,
        };
        if path.is_empty() {
            return Err(bad("the location is empty"));
        }
        Ok(Location::Local(normalise_path(path)))
    }

    /// A file or directory inside this one.
    pub fn join(&self, name: &str) -> Location {
        match self {
            Location::Local(path) => Location::Local(path.join(name)),
            Location::S3 { bucket, prefix } if prefix.is_empty() => {
                Location::S3 { bucket: bucket.clone(), prefix: name.to_string() }
            }
            Location::S3 { bucket, prefix } => {
                Location::S3 { bucket: bucket.clone(), prefix: format!("{prefix}/{name}") }
            }
        }
    }

    /// The same location with `suffix` appended to its last segment.
    pub fn with_suffix(&self, suffix: &str) -> Location {
        match self {
            Location::Local(path) => {
                let mut text = path.as_os_str().to_os_string();
                text.push(suffix);
                Location::Local(PathBuf::from(text))
            }
            Location::S3 { bucket, prefix } => {
                Location::S3 { bucket: bucket.clone(), prefix: format!("{prefix}{suffix}") }
            }
        }
    }
}

/// `a//b/./c/` → `a/b/c`; `./x` → `x`; `/` stays `/`.
fn normalise_path(text: &str) -> PathBuf {
    let path = std::path::Path::new(text);
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        out
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(path) => write!(f, "{}", path.display()),
            Location::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_locations() {
        assert_eq!(
            Location::parse("s3://raw/exports/").unwrap(),
            Location::S3 { bucket: "raw".into(), prefix: "exports".into() }
        );
        assert_eq!(Location::parse("s3://raw").unwrap(), Location::S3 { bucket: "raw".into(), prefix: "".into() });
        assert_eq!(Location::parse("./data/raw").unwrap(), Location::Local("data/raw".into()));
        assert!(Location::parse("gs://bucket/x").is_err());
        assert!(Location::parse("s3:///x").is_err());
    }

    #[test]
    fn the_same_place_written_differently_is_one_location() {
        for (a, b) in [
            ("lake/t/", "lake/t"),
            ("./lake//t", "lake/t"),
            ("lake/./t/", "lake/t"),
            ("file://lake/t/", "lake/t"),
            ("s3://b/lake//t/", "s3://b/lake/t"),
            ("s3://b/./lake/t", "s3://b/lake/t"),
        ] {
            assert_eq!(Location::parse(a).unwrap(), Location::parse(b).unwrap(), "{a} vs {b}");
        }
        assert_eq!(Location::parse("lake/t/").unwrap().with_suffix("_rejects").to_string(), "lake/t_rejects");
        assert_eq!(Location::parse("/").unwrap().to_string(), "/");
        assert!(Location::parse("s3://b/../x").is_err());
    }

    #[test]
    fn joins_and_suffixes() {
        let table = Location::parse("s3://lake/shopify_configuration").unwrap();
        assert_eq!(table.with_suffix("_rejects").to_string(), "s3://lake/shopify_configuration_rejects");
        let raw = Location::parse("s3://raw").unwrap();
        assert_eq!(raw.join("2019-04-01.csv").to_string(), "s3://raw/2019-04-01.csv");
        let local = Location::parse("lake/t").unwrap();
        assert_eq!(local.with_suffix("_rejects").to_string(), "lake/t_rejects");
    }
}
