//! Where one record of an export ends, by the table's framing
//! (`records` in table.toml): a line break always ends a record
//! ([`Framing::Lines`], the default), or, RFC 4180, a quoted field may span
//! lines ([`Framing::Quoted`], Shopify's admin exports: a product's
//! `Body (HTML)` holds line breaks). A quoted record is bounded: a quote
//! still open after `max_lines` lines or `max_bytes` bytes, or at the end
//! of the input, makes its first line a record of its own (which its field
//! splitter then refuses: "unterminated quote"), and the next record starts
//! at the line after it. A stray quote so costs its own line, never the
//! lines after it.

/// How an export's records are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// A line break always ends a record.
    Lines,
    /// A quoted field may span lines, within these bounds a record.
    Quoted {
        /// Physical lines of one record, at most.
        max_lines: u32,
        /// Bytes of one record, line ends included, at most.
        max_bytes: usize,
    },
}

/// A record found in the input: its bytes are `data[start..end]` (the line
/// end of its last line left out, a CR before it too), it spans `lines` physical lines, and the
/// next record starts at `next`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Found {
    pub end: usize,
    pub next: usize,
    pub lines: u32,
}

/// The record starting at `start` of `data`, whose first line is line
/// `first_line`, or `None` when it may go on past the end of `data` (read
/// more first). `at_eof`: `data` ends the input. A line is long when it was
/// cut while being read (`cut_lines`, ascending: its bytes are not all
/// there) or is longer than `max_line`: a long line is always a record of
/// its own, and a record never spans one. `start < data.len()`.
pub(crate) fn next_record(
    data: &[u8],
    start: usize,
    first_line: u64,
    lines: Lines<'_>,
    framing: Framing,
    at_eof: bool,
) -> Option<Found> {
    let first = line_at(data, start, at_eof)?;
    let (max_lines, max_bytes) = match framing {
        Framing::Quoted { max_lines, max_bytes } if !lines.is_long(first_line, first.end - start) => {
            (max_lines, max_bytes)
        }
        _ => return Some(first),
    };
    let mut open = false;
    let mut line = first;
    let mut line_start = start;
    loop {
        open ^= memchr::memchr_iter(b'"', &data[line_start..line.end]).count() % 2 == 1;
        if !open {
            return Some(line);
        }
        // Still open at the end of its last line: go on to the next one, unless a bound stops it.
        let over = line.lines >= max_lines || line.next - start >= max_bytes;
        if over || line.next >= data.len() {
            return if over || at_eof { Some(first) } else { None };
        }
        line_start = line.next;
        let following = line_at(data, line_start, at_eof)?;
        if lines.is_long(first_line + u64::from(line.lines), following.end - line_start) {
            return Some(first);
        }
        line = Found { end: following.end, next: following.next, lines: line.lines + 1 };
    }
}

/// What makes a line long: cut while reading, or longer than `max_line`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lines<'a> {
    pub cut_lines: &'a [u64],
    pub max_line: usize,
}

impl Lines<'_> {
    /// Whether line `number`, `length` bytes without its line end, is long.
    pub fn is_long(&self, number: u64, length: usize) -> bool {
        length > self.max_line || self.cut_lines.binary_search(&number).is_ok()
    }
}

/// The physical line at `start`: its end (a CR before the LF, or ending the
/// input, left out) and where the next one starts; `None` when its line end
/// is not read yet.
fn line_at(data: &[u8], start: usize, at_eof: bool) -> Option<Found> {
    let (content_end, next) = match memchr::memchr(b'\n', &data[start..]) {
        Some(offset) => (start + offset, start + offset + 1),
        None if at_eof => (data.len(), data.len()),
        None => return None,
    };
    let end = if content_end > start && data[content_end - 1] == b'\r' { content_end - 1 } else { content_end };
    Some(Found { end, next, lines: 1 })
}
