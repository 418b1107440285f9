//! A column's value conventions in `table.toml` (how the export writes its
//! values when not by shoplake's defaults), checked: each option is for the
//! kinds it can apply to, spellings are unambiguous, and a timestamp format
//! reads back what it writes, its offset included.

use shoplake_parse::values::Conventions;

use super::Kind;

/// The column the conventions are declared on.
pub(super) struct On<'a> {
    pub name: &'a str,
    pub kind: Kind,
    pub in_export: bool,
    pub has_time_zone: bool,
}

/// Problems found, each with its key under the column.
pub(super) type Problems = Vec<(&'static str, String)>;

/// `c`, the conventions declared on `column`, and the problems with them.
pub(super) fn resolve(c: Conventions, column: On<'_>) -> (Conventions, Problems) {
    let mut problems = Problems::new();
    let declared = [
        ("strip_prefix", c.strip_prefix.is_some()),
        ("null_values", !c.null_values.is_empty()),
        ("true_values", !c.true_values.is_empty()),
        ("false_values", !c.false_values.is_empty()),
        ("timestamp_format", c.timestamp_format.is_some()),
    ];
    for (key, _) in declared.iter().filter(|(_, is)| *is) {
        if !column.in_export {
            problems.push((key, "is for a column read from the export".into()));
        }
    }
    if c.strip_prefix.as_deref() == Some("") {
        problems.push(("strip_prefix", "cannot be empty".into()));
    }
    if c.null_values.iter().any(String::is_empty) {
        problems.push(("null_values", "the empty field is always missing: list other texts".into()));
    }
    check_spellings(&c, &column, &mut problems);
    check_timestamp_format(&c, &column, &mut problems);
    (c, problems)
}

/// Flag spellings: for flags, both lists or neither, none empty, none in both.
fn check_spellings(c: &Conventions, column: &On<'_>, problems: &mut Problems) {
    if c.true_values.is_empty() && c.false_values.is_empty() {
        return;
    }
    if column.kind != Kind::Flag {
        problems.push(("true_values", format!("spellings are for flag columns ({} is not one)", column.name)));
        return;
    }
    if c.true_values.is_empty() || c.false_values.is_empty() {
        problems.push(("true_values", "declare both true_values and false_values".into()));
    }
    if c.true_values.iter().chain(&c.false_values).any(String::is_empty) {
        problems.push(("true_values", "a spelling cannot be empty (the empty field is missing)".into()));
    }
    if let Some(both) = c.true_values.iter().find(|t| c.false_values.iter().any(|f| f.eq_ignore_ascii_case(t))) {
        problems.push(("false_values", format!("{both:?} is in true_values too")));
    }
}

/// A timestamp format: for timestamps, without `time_zone` (its offset
/// says the zone), and one that reads back the instant it writes.
fn check_timestamp_format(c: &Conventions, column: &On<'_>, problems: &mut Problems) {
    let Some(format) = &c.timestamp_format else { return };
    if column.kind != Kind::Timestamp {
        problems.push(("timestamp_format", format!("is for timestamp columns ({} is not one)", column.name)));
        return;
    }
    if column.has_time_zone {
        problems.push(("time_zone", "a timestamp_format carries its offset: declare one or the other".into()));
    }
    let instant = chrono::DateTime::parse_from_rfc3339("2026-05-01T10:17:43+02:00").expect("an instant");
    let mut written = String::new();
    let wrote = std::fmt::Write::write_fmt(&mut written, format_args!("{}", instant.format(format))).is_ok();
    let read = wrote.then(|| chrono::DateTime::parse_from_str(&written, format).ok()).flatten();
    if read.map(|t| t.timestamp()) != Some(instant.timestamp()) {
        problems.push((
            "timestamp_format",
            format!("{format:?} does not read back an instant it writes (it needs the date, the time to the second and an offset such as %z)"),
        ));
    }
}
