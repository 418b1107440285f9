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
pub struct FieldGroup<'c> {
    chunk: &'c [u8],
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

impl<'c> FieldGroup<'c> {
    pub fn new(chunk: &'c [u8], sources: &[ValueSource]) -> Self {
        let positions: Vec<Option<usize>> = sources
            .iter()
            .map(|source| match *source {
                ValueSource::Field(position) => Some(position),
                ValueSource::FileDate | ValueSource::Missing => None,
            })
            .collect();
        FieldGroup {
            chunk,
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

    /// Adds `record` (a slice of the chunk, on line `line`), whose fields
    /// `fields` holds. Taking the record as `&str`, and checking that each
    /// field is cut from it at character boundaries (it is: at ASCII commas
    /// and quotes), is what makes every text of the group valid UTF-8.
    pub fn push(&mut self, line: u64, record: &str, fields: &Fields) {
        assert!(self.rows() < GROUP_ROWS, "the group is full");
        let row = self.rows();
        let record_bytes = record.as_bytes();
        let base = offset_in(self.chunk, record_bytes).expect("a record is a slice of its chunk");
        for (column, position) in self.positions.iter().enumerate() {
            let Some(position) = *position else { continue };
            let field = fields.get(record_bytes, position);
            let place = match offset_in(record_bytes, field) {
                Some(offset) => {
                    let end = offset + field.len();
                    assert!(record.is_char_boundary(offset) && record.is_char_boundary(end), "fields of this record");
                    place(base + offset, base + end)
                }
                None => {
                    // Rare (a quoted field with doubled quotes): checked as it is copied.
                    let text = std::str::from_utf8(field).expect("a field of a UTF-8 record without its quotes");
                    let start = self.copies.len();
                    self.copies.push_str(text);
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
    pub fn texts(&self, column: usize) -> Option<impl Iterator<Item = &str> + '_> {
        self.positions[column]?;
        let places = &self.places[column * GROUP_ROWS..column * GROUP_ROWS + self.rows()];
        Some(places.iter().map(move |place| match place.start & COPIED {
            0 => {
                let bytes = &self.chunk[place.start as usize..place.end as usize];
                // SAFETY: `push` took this slice of the chunk from a `&str`
                // (its record), between character boundaries it checked.
                unsafe { std::str::from_utf8_unchecked(bytes) }
            }
            _ => &self.copies[(place.start & !COPIED) as usize..place.end as usize],
        }))
    }

    pub fn line(&self, row: usize) -> u64 {
        self.lines[row]
    }

    /// Row `row`'s whole record, as read.
    pub fn record(&self, row: usize) -> &'c [u8] {
        let place = self.records[row];
        &self.chunk[place.start as usize..place.end as usize]
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
        let mut group = FieldGroup::new(chunk.as_bytes(), &sources);
        let mut fields = Fields::default();
        let mut start = 0;
        for (line, record) in chunk.split_terminator('\n').enumerate() {
            let record = &chunk[start..start + record.len()];
            start += record.len() + 1;
            fields.split(record.as_bytes()).unwrap();
            group.push(line as u64 + 1, record, &fields);
        }
        fn texts<'g>(group: &'g FieldGroup, column: usize) -> Option<Vec<&'g str>> {
            group.texts(column).map(|texts| texts.collect())
        }
        assert_eq!(texts(&group, 0), Some(vec!["d", "z"]));
        assert_eq!(texts(&group, 1), None, "a missing column has no field");
        assert_eq!(texts(&group, 2), Some(vec!["a", "x"]));
        assert_eq!(texts(&group, 3), Some(vec!["b\"c", ""]), "the doubled quote undone, in the copies");
        assert_eq!((group.line(1), group.record(1)), (2, &b"\"x\",,z"[..]));
        group.clear();
        assert_eq!(group.rows(), 0);
        assert_eq!(texts(&group, 0), Some(vec![]));
    }

    #[test]
    #[should_panic(expected = "fields of this record")]
    fn fields_of_another_record_cannot_cut_a_character() {
        let chunk = "\u{e9}a,b\n";
        let mut fields = Fields::default();
        fields.split(b"a,bc").unwrap();
        let mut group = FieldGroup::new(chunk.as_bytes(), &[ValueSource::Field(0)]);
        group.push(1, &chunk[..chunk.len() - 1], &fields);
    }
}
