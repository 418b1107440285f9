//! Splits the export into records, by default one per line (PRODUCT.md: a
//! line break always ends a record), or with quoted fields spanning lines
//! when the table says so ([`Framing`]), while keeping what a reject needs:
//! the first line's number, the lines spanned and the raw bytes. LF and CRLF
//! line ends are both accepted. A quote left open breaks its own line only
//! (at the end of that line, or past a quoted record's bounds); it never
//! swallows the lines after it.
//!
//! The input is cut into large chunks that end after a record, so chunks can
//! be parsed on several threads; records are then slices of their chunk,
//! never copied. A line longer than [`MAX_LINE_BYTES`] is cut (its start is
//! kept for the rejects table, the rest skipped), so one runaway line cannot
//! take the memory of the whole file.

use std::io::{self, Read};

pub use crate::framing::Framing;
use crate::framing::{next_record, Lines};

/// The longest line read whole; longer lines are rejected. Real lines of the
/// export are a few hundred bytes.
pub const MAX_LINE_BYTES: usize = 1 << 20;
/// What is kept of a line that is too long, as its raw text.
pub const KEPT_OF_LONG_LINE: usize = 4096;

/// One record (a line, or the lines of a quoted record), borrowed from its chunk.
pub struct RawRecord<'a> {
    /// 1-based number of its first line.
    pub line: u64,
    /// Physical lines it spans (1 but for a quoted field holding line breaks).
    pub lines: u32,
    /// The record without its last line end.
    pub bytes: &'a [u8],
    /// True when the line was longer than the limit and was cut.
    pub cut: bool,
}

/// Whole records of the input: `bytes[start..]`, whose first line is line
/// `first_line`.
pub struct Chunk {
    pub bytes: Vec<u8>,
    pub start: usize,
    pub first_line: u64,
    /// Numbers of the lines cut while reading (longer than the limit, and
    /// not ended within the chunk), ascending.
    pub cut_lines: Vec<u64>,
    /// Lines longer than this are cut when their records are read.
    pub max_line: usize,
    pub framing: Framing,
    /// Where its buffer goes once it is parsed, for a later chunk.
    spare: Spare,
}

/// The buffers of chunks already parsed. A fresh buffer costs a page fault
/// for every 4 KiB the first time it is filled (a few percent of a load's
/// CPU in a profile): the chunker reuses them instead.
type Spare = std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>;

/// Buffers kept for reuse: about what is in flight between the chunker and
/// the parser threads.
const SPARE_BUFFERS: usize = 8;

impl Drop for Chunk {
    fn drop(&mut self) {
        let mut spare = self.spare.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if spare.len() < SPARE_BUFFERS {
            spare.push(std::mem::take(&mut self.bytes));
        }
    }
}

impl Chunk {
    pub fn records(&self) -> SliceRecords<'_> {
        SliceRecords {
            data: &self.bytes,
            pos: self.start,
            next_line: self.first_line,
            lines: Lines { cut_lines: &self.cut_lines, max_line: self.max_line },
            framing: self.framing,
        }
    }
}

/// Reads the input in chunks of about `target` bytes that end after a
/// record (only the last chunk may end elsewhere).
pub struct Chunker<R> {
    input: R,
    target: usize,
    max_line: usize,
    framing: Framing,
    /// What the previous chunk read past its last record: a line not
    /// finished, and (quoted) whole lines of a record not finished.
    carry: Vec<u8>,
    next_line: u64,
    done: bool,
    spare: Spare,
}

/// Where the line being read starts in a chunk being filled, and how many
/// lines end before it.
struct LineCursor {
    start: usize,
    lines_before: u64,
}

impl LineCursor {
    /// Takes note of the bytes appended from `from` on.
    fn scan(&mut self, bytes: &[u8], from: usize) {
        if let Some(last) = memchr::memrchr(b'\n', &bytes[from..]) {
            self.lines_before += memchr::memchr_iter(b'\n', &bytes[from..=from + last]).count() as u64;
            self.start = from + last + 1;
        }
    }
}

impl<R: Read> Chunker<R> {
    /// Chunks of about `target` bytes, lines longer than `max_line` cut,
    /// ending after a record of `framing` (`MAX_LINE_BYTES` in production).
    pub fn framed(input: R, target: usize, max_line: usize, framing: Framing) -> Self {
        Chunker {
            input,
            target: target.max(1),
            max_line,
            framing,
            carry: Vec::new(),
            next_line: 1,
            done: false,
            spare: Spare::default(),
        }
    }

    /// Where the last whole record of `bytes[..lines_end]` ends (0: none is
    /// whole yet). Lines: every whole line is a record; quoted: found
    /// record by record, as the records will be read.
    fn record_boundary(&self, bytes: &[u8], lines_end: usize, cut_lines: &[u64]) -> usize {
        if self.framing == Framing::Lines {
            return lines_end;
        }
        let lines = Lines { cut_lines, max_line: self.max_line };
        let (mut pos, mut line) = (0, self.next_line);
        while pos < lines_end {
            match next_record(bytes, pos, line, lines, self.framing, false) {
                Some(found) if found.next <= lines_end => (pos, line) = (found.next, line + u64::from(found.lines)),
                _ => break,
            }
        }
        pos
    }

    pub fn next_chunk(&mut self) -> io::Result<Option<Chunk>> {
        if self.done {
            return Ok(None);
        }
        let mut bytes = self.spare.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop().unwrap_or_default();
        bytes.clear();
        bytes.extend_from_slice(&self.carry);
        let mut cursor = LineCursor { start: 0, lines_before: 0 };
        // Quoted records may leave whole lines for the next chunk: they are no long line.
        cursor.scan(&bytes, 0);
        let mut cut_lines = Vec::new();
        let (eof, boundary) = 'fill: loop {
            let before = bytes.len();
            let at_eof = self.read_more(&mut bytes)?;
            cursor.scan(&bytes, before);
            // A line longer than the limit: keep its start, skip the rest.
            // One byte more is allowed: it may be the CR of a CRLF whose LF
            // is not read yet (the records then cut what is still too long).
            while bytes.len() - cursor.start > self.max_line + 1 {
                cut_lines.push(self.next_line + cursor.lines_before);
                bytes.truncate(cursor.start + KEPT_OF_LONG_LINE.min(self.max_line));
                match self.skip_rest_of_line()? {
                    Some(after) => {
                        let from = bytes.len();
                        bytes.push(b'\n');
                        bytes.extend_from_slice(&after);
                        cursor.scan(&bytes, from);
                    }
                    None => break 'fill (true, 0),
                }
            }
            if at_eof {
                break (true, 0);
            }
            if cursor.start > 0 && bytes.len() >= self.target {
                let boundary = self.record_boundary(&bytes, cursor.start, &cut_lines);
                if boundary > 0 {
                    break (false, boundary);
                }
            }
        };
        let boundary = if eof { bytes.len() } else { boundary };
        // The cursor counted the line ends up to its line; those past the
        // boundary (whole lines of a quoted record not finished) are the next chunk's.
        let lines = cursor.lines_before
            - bytes.get(boundary..cursor.start).map_or(0, |next| memchr::memchr_iter(b'\n', next).count() as u64);
        self.carry.clear();
        self.carry.extend_from_slice(&bytes[boundary..]);
        bytes.truncate(boundary);
        if eof {
            self.done = true;
            if bytes.is_empty() {
                return Ok(None);
            }
        }
        let first_line = self.next_line;
        self.next_line += lines;
        let (max_line, framing, spare) = (self.max_line, self.framing, self.spare.clone());
        Ok(Some(Chunk { bytes, start: 0, first_line, cut_lines, max_line, framing, spare }))
    }

    /// Appends up to `target` bytes; true at the end of the input.
    fn read_more(&mut self, bytes: &mut Vec<u8>) -> io::Result<bool> {
        let before = bytes.len();
        bytes.resize(before + self.target, 0);
        let mut filled = before;
        while filled < bytes.len() {
            match self.input.read(&mut bytes[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let eof = filled < bytes.len();
        bytes.truncate(filled);
        Ok(eof)
    }

    /// Reads past the end of the current line: the bytes read after its line
    /// end, or `None` when the input ends first.
    fn skip_rest_of_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut scratch = vec![0u8; 64 * 1024];
        loop {
            let n = match self.input.read(&mut scratch) {
                Ok(0) => return Ok(None),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if let Some(end) = memchr::memchr(b'\n', &scratch[..n]) {
                return Ok(Some(scratch[end + 1..n].to_vec()));
            }
        }
    }
}

/// The records of a chunk, in order.
pub struct SliceRecords<'a> {
    data: &'a [u8],
    pos: usize,
    next_line: u64,
    lines: Lines<'a>,
    framing: Framing,
}

impl<'a> SliceRecords<'a> {
    /// Where the next record starts, and its line: the rest of the chunk.
    pub fn position(&self) -> (usize, u64) {
        (self.pos, self.next_line)
    }
}

impl<'a> Iterator for SliceRecords<'a> {
    type Item = RawRecord<'a>;

    fn next(&mut self) -> Option<RawRecord<'a>> {
        if self.pos >= self.data.len() {
            return None;
        }
        let (start, line) = (self.pos, self.next_line);
        // A chunk ends after a record: its end is the input's for the framing.
        let found = next_record(self.data, start, line, self.lines, self.framing, true)?;
        self.pos = found.next;
        self.next_line += u64::from(found.lines);
        // A line cut while reading is its kept start: a CR there is data, not a line end.
        if self.lines.cut_lines.binary_search(&line).is_ok() {
            let end = memchr::memchr(b'\n', &self.data[start..]).map_or(self.data.len(), |o| start + o);
            return Some(RawRecord { line, lines: 1, bytes: &self.data[start..end], cut: true });
        }
        let bytes = &self.data[start..found.end];
        // A long line that fit in the chunk is cut here, as one that did not was while reading.
        if found.lines == 1 && bytes.len() > self.lines.max_line {
            let kept = &bytes[..KEPT_OF_LONG_LINE.min(self.lines.max_line)];
            return Some(RawRecord { line, lines: 1, bytes: kept, cut: true });
        }
        Some(RawRecord { line, lines: found.lines, bytes, cut: false })
    }
}

/// Appends `fields` as one RFC 4180 record (without its line end): a field
/// holding a comma, a quote or a line end is quoted, its quotes doubled.
/// What [`Fields::split`] splits back (fuzzed: `split_fields`).
pub fn write_record(out: &mut Vec<u8>, fields: &[impl AsRef<[u8]>]) {
    for (i, field) in fields.iter().enumerate() {
        let field = field.as_ref();
        if i > 0 {
            out.push(b',');
        }
        if field.iter().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r')) {
            out.push(b'"');
            for &b in field {
                if b == b'"' {
                    out.push(b'"');
                }
                out.push(b);
            }
            out.push(b'"');
        } else {
            out.extend_from_slice(field);
        }
    }
}

/// Where the fields of one record are: mostly slices of the record itself;
/// only a quoted field with doubled quotes is copied (unescaped) aside.
#[derive(Default)]
pub struct Fields {
    spans: Vec<Span>,
    unescaped: Vec<u8>,
}

#[derive(Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
    unescaped: bool,
}

impl Fields {
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// True before the first split: a record split has one field at least.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Field `index` of `record` (the record last passed to `split`).
    pub fn get<'a>(&'a self, record: &'a [u8], index: usize) -> &'a [u8] {
        let span = self.spans[index];
        let source = if span.unescaped { &self.unescaped } else { record };
        &source[span.start..span.end]
    }

    /// Splits `record` on commas, removing RFC 4180 quoting. Errors describe
    /// quoting that is not RFC 4180, which makes the field boundaries unknowable.
    ///
    /// One pass of 64-byte blocks: a bitmask of each block's commas and
    /// quotes, the quoted stretches found by the parity of the quotes before
    /// each byte, and a field ended at every comma outside them. When the
    /// record is RFC 4180 that parity is exactly "inside a quoted field", so
    /// quoted fields cost no second pass; only their quotes are checked and
    /// removed. A record that is not (a quote left open, text after a
    /// closing quote, a quote in an unquoted value) is split again by
    /// [`Fields::split_quoted`], which says what is wrong with it.
    pub fn split(&mut self, record: &[u8]) -> Result<(), String> {
        self.spans.clear();
        self.unescaped.clear();
        let mut cursor = BlockCursor { start: 0, inside: 0, any_quote: false };
        let mut blocks = record.chunks_exact(BLOCK);
        let mut base = 0;
        for block in &mut blocks {
            self.split_block(block_masks(block.try_into().expect("a whole block")), base, &mut cursor);
            base += BLOCK;
        }
        let rest = blocks.remainder();
        if !rest.is_empty() {
            // Padded with zeros: neither a comma nor a quote.
            let mut last = [0u8; BLOCK];
            last[..rest.len()].copy_from_slice(rest);
            self.split_block(block_masks(&last), base, &mut cursor);
        }
        self.spans.push(Span { start: cursor.start, end: record.len(), unescaped: false });
        if !cursor.any_quote || (cursor.inside == 0 && self.unquote(record)) {
            return Ok(());
        }
        self.split_one_field_at_a_time(record)
    }

    /// Ends a field at every comma of a block outside quotes.
    fn split_block(&mut self, (commas, quotes): (u64, u64), base: usize, cursor: &mut BlockCursor) {
        let mut separators = commas;
        if quotes != 0 || cursor.inside != 0 {
            cursor.any_quote |= quotes != 0;
            // Bit i: an odd number of quotes up to byte i, with the blocks before.
            let inside = prefix_xor(quotes) ^ cursor.inside;
            cursor.inside = 0u64.wrapping_sub(inside >> 63);
            separators &= !inside;
        }
        while separators != 0 {
            let at = base + separators.trailing_zeros() as usize;
            self.spans.push(Span { start: cursor.start, end: at, unescaped: false });
            cursor.start = at + 1;
            separators &= separators - 1;
        }
    }

    /// Removes the quoting of each quoted field (fields were cut at the
    /// commas outside quotes); false when a field's quoting is not RFC 4180.
    fn unquote(&mut self, record: &[u8]) -> bool {
        for span in &mut self.spans {
            let field = &record[span.start..span.end];
            if memchr::memchr(b'"', field).is_none() {
                continue;
            }
            if field.len() < 2 || field[0] != b'"' || field[field.len() - 1] != b'"' {
                return false;
            }
            let (content, end) = (span.start + 1, span.end - 1);
            let raw = &record[content..end];
            if memchr::memchr(b'"', raw).is_none() {
                *span = Span { start: content, end, unescaped: false };
                continue;
            }
            // Quotes inside come in pairs, each standing for one quote.
            let from = self.unescaped.len();
            let mut rest = raw;
            while let Some(q) = memchr::memchr(b'"', rest) {
                if rest.get(q + 1) != Some(&b'"') {
                    return false;
                }
                self.unescaped.extend_from_slice(&rest[..=q]);
                rest = &rest[q + 2..];
            }
            self.unescaped.extend_from_slice(rest);
            *span = Span { start: from, end: self.unescaped.len(), unescaped: true };
        }
        true
    }

    /// The quote-by-quote split: the reference the block split is tested
    /// against, and what explains a record that is not RFC 4180.
    #[doc(hidden)]
    pub fn split_one_field_at_a_time(&mut self, record: &[u8]) -> Result<(), String> {
        self.spans.clear();
        self.unescaped.clear();
        self.split_quoted(record)
    }

    fn split_quoted(&mut self, record: &[u8]) -> Result<(), String> {
        let mut pos = 0;
        loop {
            let number = self.spans.len() + 1;
            if record.get(pos) == Some(&b'"') {
                let content = pos + 1;
                let close = find_closing_quote(record, content)
                    .ok_or_else(|| format!("field {number} has an unterminated quote"))?;
                let raw = &record[content..close];
                if raw.contains(&b'"') {
                    let start = self.unescaped.len();
                    let mut rest = raw;
                    while let Some(q) = rest.iter().position(|&b| b == b'"') {
                        self.unescaped.extend_from_slice(&rest[..=q]);
                        rest = &rest[q + 2..];
                    }
                    self.unescaped.extend_from_slice(rest);
                    self.spans.push(Span { start, end: self.unescaped.len(), unescaped: true });
                } else {
                    self.spans.push(Span { start: content, end: close, unescaped: false });
                }
                pos = close + 1;
                match record.get(pos) {
                    None => return Ok(()),
                    Some(b',') => pos += 1,
                    Some(_) => return Err(format!("field {number} has text after its closing quote")),
                }
            } else {
                let end = match memchr::memchr2(b',', b'"', &record[pos..]) {
                    None => record.len(),
                    Some(o) if record[pos + o] == b',' => pos + o,
                    Some(_) => return Err(format!("field {number} has a quote inside an unquoted value")),
                };
                self.spans.push(Span { start: pos, end, unescaped: false });
                if end == record.len() {
                    return Ok(());
                }
                pos = end + 1;
            }
        }
    }
}

/// Bytes the field split looks at at once.
const BLOCK: usize = 64;

/// Where a field split is between blocks.
struct BlockCursor {
    /// Where the current field starts.
    start: usize,
    /// All ones when the block before ended inside quotes.
    inside: u64,
    any_quote: bool,
}

/// Bit i set when byte i is preceded by an odd number of set bits,
/// itself included.
fn prefix_xor(mut bits: u64) -> u64 {
    for shift in [1, 2, 4, 8, 16, 32] {
        bits ^= bits << shift;
    }
    bits
}

/// Bitmasks of a block's commas and of its quotes (bit i: byte i).
#[cfg(target_arch = "x86_64")]
fn block_masks(block: &[u8; BLOCK]) -> (u64, u64) {
    use std::arch::x86_64::{__m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8};
    let (mut commas, mut quotes) = (0u64, 0u64);
    for (i, lane) in block.chunks_exact(16).enumerate() {
        // SAFETY: SSE2 is part of the x86_64 baseline; the unaligned load
        // reads the 16 bytes of `lane`, which is 16 bytes long.
        let (c, q) = unsafe {
            let bytes = _mm_loadu_si128(lane.as_ptr().cast::<__m128i>());
            (
                _mm_movemask_epi8(_mm_cmpeq_epi8(bytes, _mm_set1_epi8(b',' as i8))),
                _mm_movemask_epi8(_mm_cmpeq_epi8(bytes, _mm_set1_epi8(b'"' as i8))),
            )
        };
        commas |= u64::from(c as u16) << (16 * i);
        quotes |= u64::from(q as u16) << (16 * i);
    }
    (commas, quotes)
}

/// Bitmasks of a block's commas and of its quotes (bit i: byte i).
#[cfg(not(target_arch = "x86_64"))]
fn block_masks(block: &[u8; BLOCK]) -> (u64, u64) {
    let (mut commas, mut quotes) = (0u64, 0u64);
    for (i, &byte) in block.iter().enumerate() {
        commas |= u64::from(byte == b',') << i;
        quotes |= u64::from(byte == b'"') << i;
    }
    (commas, quotes)
}

/// The position of the quote that closes a quoted field whose content starts
/// at `from`, skipping doubled (escaped) quotes.
fn find_closing_quote(record: &[u8], from: usize) -> Option<usize> {
    let mut pos = from;
    loop {
        let q = pos + memchr::memchr(b'"', &record[pos..])?;
        if record.get(q + 1) == Some(&b'"') {
            pos = q + 2;
        } else {
            return Some(q);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (line, text, cut) of every record, checked to be the same whatever the chunk size.
    fn records_with(input: &str, max_line: usize) -> Vec<(u64, String, bool)> {
        let mut out = Vec::new();
        // Tiny chunks: records must survive being cut anywhere.
        for target in [1, 3, 7, 1 << 20] {
            let mut chunker = Chunker::framed(input.as_bytes(), target, max_line, Framing::Lines);
            let mut got = Vec::new();
            while let Some(chunk) = chunker.next_chunk().unwrap() {
                for r in chunk.records() {
                    got.push((r.line, String::from_utf8(r.bytes.to_vec()).unwrap(), r.cut));
                }
            }
            if !out.is_empty() {
                assert_eq!(got, out, "chunk size {target}");
            }
            out = got;
        }
        out
    }

    fn records(input: &str) -> Vec<(u64, String, bool)> {
        records_with(input, MAX_LINE_BYTES)
    }

    fn fields(record: &str) -> Result<Vec<String>, String> {
        let mut f = Fields::default();
        f.split(record.as_bytes())?;
        Ok((0..f.len()).map(|i| String::from_utf8(f.get(record.as_bytes(), i).to_vec()).unwrap()).collect())
    }

    #[test]
    fn lf_crlf_and_missing_final_newline() {
        assert_eq!(
            records("a,b\nc,d\r\ne,f"),
            vec![(1, "a,b".into(), false), (2, "c,d".into(), false), (3, "e,f".into(), false)]
        );
        assert_eq!(
            records("a,b\r\nc,d\r"),
            vec![(1, "a,b".into(), false), (2, "c,d".into(), false)],
            "a CR ends the input"
        );
    }

    #[test]
    fn a_line_break_always_ends_a_record() {
        // An open quote breaks its own line only: the next lines are records of their own.
        let got = records("a,\"x\ny\"\nb,c\n");
        assert_eq!(got, vec![(1, "a,\"x".into(), false), (2, "y\"".into(), false), (3, "b,c".into(), false)]);
        let got = records("h\nc,\"[1, 2\nd,e\n");
        assert_eq!(got, vec![(1, "h".into(), false), (2, "c,\"[1, 2".into(), false), (3, "d,e".into(), false)]);
    }

    #[test]
    fn blank_lines_are_records_too() {
        assert_eq!(
            records("a\n\n \r\nb\n"),
            vec![(1, "a".into(), false), (2, "".into(), false), (3, " ".into(), false), (4, "b".into(), false)]
        );
    }

    #[test]
    fn long_lines_are_cut_and_the_next_lines_read() {
        let long = "x".repeat(50);
        let input = format!("h\n{long}\nnext\n{long}");
        let got = records_with(&input, 20);
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(got[0], (1, "h".into(), false));
        assert_eq!((got[1].0, got[1].1.len(), got[1].2), (2, 20, true), "cut to the limit");
        assert_eq!(got[2], (3, "next".into(), false));
        assert_eq!((got[3].0, got[3].2), (4, true), "a long last line is cut too");
        // A line exactly at the limit is whole, LF- or CRLF-ended, wherever a read ends.
        let at_limit = "y".repeat(20);
        assert_eq!(
            records_with(&format!("{at_limit}\nz\n"), 20),
            vec![(1, at_limit.clone(), false), (2, "z".into(), false)]
        );
        let crlf = records_with(&format!("{at_limit}\r\nz\r\n"), 20);
        assert_eq!(crlf, vec![(1, at_limit, false), (2, "z".into(), false)]);
    }

    #[test]
    fn splits_rfc4180_fields() {
        assert_eq!(fields("a,\"[0, 4, 7]\",,\"say \"\"hi\"\"\"").unwrap(), vec!["a", "[0, 4, 7]", "", "say \"hi\""]);
        assert_eq!(fields("").unwrap(), vec![""]);
        assert_eq!(fields("a,").unwrap(), vec!["a", ""]);
        assert_eq!(fields("\"\"").unwrap(), vec![""]);
        assert_eq!(fields("\"a\"\"\",b,\"\"\"\"").unwrap(), vec!["a\"", "b", "\""]);
    }

    #[test]
    fn the_block_split_agrees_with_the_field_by_field_one() {
        // Records across block boundaries (63, 64, 65 bytes and more),
        // quotes opened in one block and closed in another.
        let pieces = ["a", ",", "\"", "\"\"", "x,y", "\"[1, 2]\"", "é", " "];
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let length = (next() % 90) as usize;
            let record: String = (0..length).map(|_| pieces[(next() % pieces.len() as u64) as usize]).collect();
            assert_eq!(fields(&record), reference(&record), "{record:?}");
        }
        for record in ["\"".to_string() + &"a,".repeat(40) + "\"", "a,".repeat(32) + "\"x\"", "\"".repeat(129)] {
            assert_eq!(fields(&record), reference(&record), "{record:?}");
        }
    }

    fn reference(record: &str) -> Result<Vec<String>, String> {
        let mut f = Fields::default();
        f.split_one_field_at_a_time(record.as_bytes())?;
        Ok((0..f.len()).map(|i| String::from_utf8(f.get(record.as_bytes(), i).to_vec()).unwrap()).collect())
    }

    #[test]
    fn malformed_quoting_is_an_error() {
        assert!(fields("a,b\"c").unwrap_err().contains("field 2"));
        assert!(fields("\"a\"b,c").unwrap_err().contains("after its closing quote"));
        assert!(fields("\"abc").unwrap_err().contains("unterminated"));
        assert!(fields("c,\"[1, 2").unwrap_err().contains("field 2 has an unterminated quote"));
    }
}
