//! Splits the export into CSV records (RFC 4180) while keeping what a
//! reject needs: the record's first line number and its raw bytes. A quoted
//! field may span lines; LF and CRLF line ends are both accepted.
//!
//! The input is cut into large chunks that end on a record boundary, so
//! chunks can be parsed on several threads; records are then slices of
//! their chunk, never copied.

use std::io::{self, Read};

/// One record, borrowed from its chunk.
pub struct RawRecord<'a> {
    /// 1-based number of the physical line the record starts on.
    pub line: u64,
    /// The record without its line end.
    pub bytes: &'a [u8],
    /// False when the input ended inside a quoted field (a truncated file).
    pub complete: bool,
}

/// Whole records of the input: `bytes[start..]`, whose first record starts
/// on line `first_line`.
pub struct Chunk {
    pub bytes: Vec<u8>,
    pub start: usize,
    pub first_line: u64,
}

impl Chunk {
    pub fn records(&self) -> SliceRecords<'_> {
        SliceRecords { data: &self.bytes, pos: self.start, next_line: self.first_line }
    }
}

/// Reads the input in chunks of about `target` bytes that end after a line
/// end outside quotes (only the last chunk may end elsewhere).
pub struct Chunker<R> {
    input: R,
    target: usize,
    carry: Vec<u8>,
    next_line: u64,
    done: bool,
}

impl<R: Read> Chunker<R> {
    pub fn new(input: R, target: usize) -> Self {
        Chunker { input, target, carry: Vec::new(), next_line: 1, done: false }
    }

    pub fn next_chunk(&mut self) -> io::Result<Option<Chunk>> {
        if self.done {
            return Ok(None);
        }
        let mut bytes = std::mem::take(&mut self.carry);
        let mut scanned = 0;
        let mut inside_quotes = false;
        let mut boundary = None;
        loop {
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
            // Track quote parity up to the last line end outside quotes.
            for at in memchr::memchr2_iter(b'"', b'\n', &bytes[scanned..]) {
                let at = scanned + at;
                if bytes[at] == b'"' {
                    inside_quotes = !inside_quotes;
                } else if !inside_quotes {
                    boundary = Some(at + 1);
                }
            }
            scanned = bytes.len();
            if eof {
                self.done = true;
                if bytes.is_empty() {
                    return Ok(None);
                }
                boundary = Some(bytes.len());
                break;
            }
            if boundary.is_some() && bytes.len() >= self.target {
                break;
            }
        }
        let boundary = boundary.expect("set before leaving the loop");
        self.carry = bytes[boundary..].to_vec();
        bytes.truncate(boundary);
        let first_line = self.next_line;
        self.next_line += memchr::memchr_iter(b'\n', &bytes).count() as u64;
        Ok(Some(Chunk { bytes, start: 0, first_line }))
    }
}

/// The records of a chunk, in order.
pub struct SliceRecords<'a> {
    data: &'a [u8],
    pos: usize,
    next_line: u64,
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
        let mut inside_quotes = false;
        let mut scan = start;
        let (end, terminated, complete) = loop {
            let line_end = memchr::memchr(b'\n', &self.data[scan..]).map(|o| scan + o);
            let stop = line_end.unwrap_or(self.data.len());
            // Escaped quotes come in pairs, so the parity of the quote count
            // says whether a quoted field is still open at the line end.
            inside_quotes ^= memchr::memchr_iter(b'"', &self.data[scan..stop]).count() % 2 == 1;
            self.next_line += 1;
            match line_end {
                Some(at) if !inside_quotes => {
                    self.pos = at + 1;
                    break (at, true, true);
                }
                Some(at) => scan = at + 1,
                None => {
                    self.pos = self.data.len();
                    break (self.data.len(), false, !inside_quotes);
                }
            }
        };
        let mut bytes = &self.data[start..end];
        if terminated {
            bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        }
        Some(RawRecord { line, bytes, complete })
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

    /// Field `index` of `record` (the record last passed to `split`).
    pub fn get<'a>(&'a self, record: &'a [u8], index: usize) -> &'a [u8] {
        let span = self.spans[index];
        let source = if span.unescaped { &self.unescaped } else { record };
        &source[span.start..span.end]
    }

    /// Splits `record` on commas, removing RFC 4180 quoting. Errors describe
    /// quoting that is not RFC 4180, which makes the field boundaries unknowable.
    pub fn split(&mut self, record: &[u8]) -> Result<(), String> {
        self.spans.clear();
        self.unescaped.clear();
        // Most lines have no quotes: one pass over the bytes splits them.
        let mut start = 0;
        for (i, &byte) in record.iter().enumerate() {
            if byte == b',' {
                self.spans.push(Span { start, end: i, unescaped: false });
                start = i + 1;
            } else if byte == b'"' {
                self.spans.clear();
                return self.split_quoted(record);
            }
        }
        self.spans.push(Span { start, end: record.len(), unescaped: false });
        Ok(())
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

    fn records(input: &str) -> Vec<(u64, String, bool)> {
        // Tiny chunks: records must survive being cut anywhere.
        let mut out = Vec::new();
        for target in [1, 3, 1 << 20] {
            let mut chunker = Chunker::new(input.as_bytes(), target);
            let mut got = Vec::new();
            while let Some(chunk) = chunker.next_chunk().unwrap() {
                for r in chunk.records() {
                    got.push((r.line, String::from_utf8(r.bytes.to_vec()).unwrap(), r.complete));
                }
            }
            if !out.is_empty() {
                assert_eq!(got, out, "chunk size {target}");
            }
            out = got;
        }
        out
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
            vec![(1, "a,b".into(), true), (2, "c,d".into(), true), (3, "e,f".into(), true)]
        );
    }

    #[test]
    fn quoted_field_spanning_lines_is_one_record() {
        let got = records("a,\"x\ny\"\nb,c\n");
        assert_eq!(got, vec![(1, "a,\"x\ny\"".into(), true), (3, "b,c".into(), true)]);
    }

    #[test]
    fn truncated_inside_quotes_is_incomplete() {
        let got = records("a,b\nc,\"[1, 2");
        assert_eq!(got[1], (2, "c,\"[1, 2".into(), false));
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
    fn malformed_quoting_is_an_error() {
        assert!(fields("a,b\"c").unwrap_err().contains("field 2"));
        assert!(fields("\"a\"b,c").unwrap_err().contains("after its closing quote"));
        assert!(fields("\"abc").unwrap_err().contains("unterminated"));
    }
}
