//! shoplake's parsers of untrusted input, apart from the engine so they can
//! be fuzzed on their own (`fuzz/`, docs/fuzzing.md): the export's records
//! and fields ([`records`], framed by [`framing`]), its header matched with
//! a table's columns ([`header`]), each column kind's values ([`values`]), and the
//! command line's locations, sizes, dates and `--as-of` points
//! ([`location`], [`arguments`]). [`properties`] states what each must hold
//! for any input; the fuzz targets and the stable tests both check it.

pub mod arguments;
pub mod framing;
pub mod header;
pub mod location;
pub mod properties;
pub mod records;
pub mod values;
