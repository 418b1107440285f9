//! A group of a chunk's CSV records, split into fields and held column by
//! column, so that each column's values are then parsed in one loop by its
//! kind ([`super::columns::ColumnBuilder::append_texts`]) instead of a call
//! and a match on the kind for every value of every line.

use shoplake_parse::header::ValueSource;
use shoplake_parse::records::Fields;

/// Records parsed together: enough that a column's loop dwarfs its setup,
/// few enough that their bytes and field places stay in the core's cache.
pub const GROUP_ROWS: usize = 1024;

/// Where a text is: `start..end` of the chunk's bytes or, with [`COPIED`]
/// set in `start`, of the group's copies (a quoted field whose doubled
/// quotes were undone, which is not a slice of its record).
#[derive(Clone, Copy, Default)]
struct Place {
    start: u32,
    end: u32,
}

const COPIED: u32 = 1 << 31;

/// The field texts of up to [`GROUP_ROWS`] records of one chunk.
pub struct FieldGroup {
    /// For each column the reader produces, the position of its field in a
    /// record (none for a file date not in the export, or a missing column).
    positions: Vec<Option<usize>>,
    /// `places[column * GROUP_ROWS + row]`.
    places: Vec<Place>,
    copies: String,
    /// Each row's line number and its record's place in the chunk.
    lines: Vec<u64>,
    records: Vec<Place>,
}

impl FieldGroup {
    pub fn new(sources: &[ValueSource]) -> Self {
        let positions: Vec<Option<usize>> = sources
            .iter()
            .map(|source| match *source {
                ValueSource::Field(position) => Some(position),
                ValueSource::FileDate | ValueSource::Missing => None,
            })
            .collect();
        FieldGroup {
            places: vec![Place::default(); positions.len() * GROUP_ROWS],
            positions,
            copies: String::new(),
            lines: Vec::with_capacity(GROUP_ROWS),
            records: Vec::with_capacity(GROUP_ROWS),
        }
    }

    pub fn rows(&self) -> usize {
        self.lines.len()
    }

    /// Adds `record` (a slice of `chunk`, on line `line`), whose fields
    /// `fields` holds. Taking the record as `&str` is what makes every text
    /// of the group valid UTF-8: a field is a slice of it cut at ASCII commas
    /// and quotes, or such a slice with ASCII quotes removed.
    pub fn push(&mut self, chunk: &[u8], line: u64, record: &str, fields: &Fields) {
        assert!(self.rows() < GROUP_ROWS, "the group is full");
        let row = self.rows();
        let record_bytes = record.as_bytes();
        let base = offset_in(chunk, record_bytes).expect("a record is a slice of its chunk");
        for (column, position) in self.positions.iter().enumerate() {
            let Some(position) = *position else { continue };
            let field = fields.get(record_bytes, position);
            let place = match offset_in(record_bytes, field) {
                Some(offset) => place(base + offset, base + offset + field.len()),
                None => {
                    let start = self.copies.len();
                    // SAFETY: see above: the field is UTF-8 because its record is.
                    self.copies.push_str(unsafe { std::str::from_utf8_unchecked(field) });
                    let copied = place(start, self.copies.len());
                    Place { start: copied.start | COPIED, end: copied.end }
                }
            };
            self.places[column * GROUP_ROWS + row] = place;
        }
        self.lines.push(line);
        self.records.push(place(base, base + record_bytes.len()));
    }

    /// The texts of `column`'s field, row by row; none for a column that
    /// is not a field of the export.
    pub fn texts<'g>(&'g self, chunk: &'g [u8], column: usize) -> Option<impl Iterator<Item = &'g str> + 'g> {
        self.positions[column]?;
        let places = &self.places[column * GROUP_ROWS..column * GROUP_ROWS + self.rows()];
        Some(places.iter().map(move |place| match place.start & COPIED {
            0 => {
                let bytes = &chunk[place.start as usize..place.end as usize];
                // SAFETY: `push` took this slice of the chunk from a `&str`
                // (its record), cut at ASCII bytes: it is valid UTF-8.
                unsafe { std::str::from_utf8_unchecked(bytes) }
            }
            _ => &self.copies[(place.start & !COPIED) as usize..place.end as usize],
        }))
    }

    pub fn line(&self, row: usize) -> u64 {
        self.lines[row]
    }

    /// Row `row`'s whole record, as read.
    pub fn record<'g>(&self, chunk: &'g [u8], row: usize) -> &'g [u8] {
        let place = self.records[row];
        &chunk[place.start as usize..place.end as usize]
    }

    pub fn clear(&mut self) {
        self.copies.clear();
        self.lines.clear();
        self.records.clear();
    }
}

fn place(start: usize, end: usize) -> Place {
    // A chunk is a few MiB (`super::CHUNK_BYTES` and one line at most
    // `MAX_LINE_BYTES` past it), and so are a group's copies.
    let offset = |at: usize| u32::try_from(at).ok().filter(|at| at & COPIED == 0).expect("a chunk is below 2 GiB");
    Place { start: offset(start), end: offset(end) }
}

/// Where `part` starts in `whole`, when it is a slice of it.
fn offset_in(whole: &[u8], part: &[u8]) -> Option<usize> {
    let (whole_start, part_start) = (whole.as_ptr() as usize, part.as_ptr() as usize);
    let inside = part_start >= whole_start && part_start + part.len() <= whole_start + whole.len();
    inside.then(|| part_start - whole_start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_come_back_column_by_column_from_the_chunk_or_the_copies() {
        let chunk = "a,\"b\"\"c\",d\n\"x\",,z\n";
        let sources = [ValueSource::Field(2), ValueSource::Missing, ValueSource::Field(0), ValueSource::Field(1)];
        let mut group = FieldGroup::new(&sources);
        let mut fields = Fields::default();
        let mut start = 0;
        for (line, record) in chunk.split_terminator('\n').enumerate() {
            let record = &chunk[start..start + record.len()];
            start += record.len() + 1;
            fields.split(record.as_bytes()).unwrap();
            group.push(chunk.as_bytes(), line as u64 + 1, record, &fields);
        }
        fn texts<'g>(group: &'g FieldGroup, chunk: &'g str, column: usize) -> Option<Vec<&'g str>> {
            group.texts(chunk.as_bytes(), column).map(|texts| texts.collect())
        }
        assert_eq!(texts(&group, chunk, 0), Some(vec!["d", "z"]));
        assert_eq!(texts(&group, chunk, 1), None, "a missing column has no field");
        assert_eq!(texts(&group, chunk, 2), Some(vec!["a", "x"]));
        assert_eq!(texts(&group, chunk, 3), Some(vec!["b\"c", ""]), "the doubled quote undone, in the copies");
        assert_eq!((group.line(1), group.record(chunk.as_bytes(), 1)), (2, &b"\"x\",,z"[..]));
        group.clear();
        assert_eq!(group.rows(), 0);
        assert_eq!(texts(&group, chunk, 0), Some(vec![]));
    }
}
