//! Splits a byte stream into CSV records (RFC 4180) while keeping what a
//! reject needs: the record's first line number and its raw bytes. A quoted
//! field may span lines; LF and CRLF line ends are both accepted.

use std::io::{self, BufRead};

/// One record of the file, borrowed from the reader's buffer.
pub struct RawRecord<'a> {
    /// 1-based number of the physical line the record starts on.
    pub line: u64,
    /// The record without its line end.
    pub bytes: &'a [u8],
    /// False when the input ended inside a quoted field (a truncated file).
    pub complete: bool,
}

pub struct RecordReader<R> {
    input: R,
    lines_consumed: u64,
    buf: Vec<u8>,
}

impl<R: BufRead> RecordReader<R> {
    pub fn new(input: R) -> Self {
        RecordReader { input, lines_consumed: 0, buf: Vec::with_capacity(1024) }
    }

    /// The next record, or `None` at the end of the input.
    pub fn next_record(&mut self) -> io::Result<Option<RawRecord<'_>>> {
        self.buf.clear();
        let line = self.lines_consumed + 1;
        let mut inside_quotes = false;
        let complete;
        loop {
            let start = self.buf.len();
            let read = self.input.read_until(b'\n', &mut self.buf)?;
            if read == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                complete = !inside_quotes;
                break;
            }
            self.lines_consumed += 1;
            // Escaped quotes come in pairs, so the parity of the quote count
            // says whether a quoted field is still open at the line end.
            let quotes = self.buf[start..].iter().filter(|&&b| b == b'"').count();
            inside_quotes ^= quotes % 2 == 1;
            if !inside_quotes || !self.buf.ends_with(b"\n") {
                complete = !inside_quotes;
                break;
            }
        }
        let mut end = self.buf.len();
        if self.buf[..end].ends_with(b"\n") {
            end -= 1;
            if self.buf[..end].ends_with(b"\r") {
                end -= 1;
            }
        }
        Ok(Some(RawRecord { line, bytes: &self.buf[..end], complete }))
    }
}

/// The fields of one record, decoded into a reusable buffer.
#[derive(Default)]
pub struct Fields {
    data: Vec<u8>,
    ends: Vec<usize>,
}

impl Fields {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn get(&self, index: usize) -> &[u8] {
        let start = if index == 0 { 0 } else { self.ends[index - 1] };
        &self.data[start..self.ends[index]]
    }

    /// All field bytes, concatenated: one UTF-8 check covers every field.
    pub fn all_bytes(&self) -> &[u8] {
        &self.data
    }

    /// Splits `record` on commas, removing RFC 4180 quoting. Errors describe
    /// quoting that is not RFC 4180, which makes the field boundaries unknowable.
    pub fn split(&mut self, record: &[u8]) -> Result<(), String> {
        self.data.clear();
        self.ends.clear();
        let mut pos = 0;
        loop {
            if record.get(pos) == Some(&b'"') {
                pos += 1;
                loop {
                    match record[pos..].iter().position(|&b| b == b'"') {
                        None => return Err(format!("field {} has an unterminated quote", self.ends.len() + 1)),
                        Some(offset) => {
                            self.data.extend_from_slice(&record[pos..pos + offset]);
                            pos += offset + 1;
                            if record.get(pos) == Some(&b'"') {
                                self.data.push(b'"');
                                pos += 1;
                            } else {
                                break;
                            }
                        }
                    }
                }
                self.ends.push(self.data.len());
                match record.get(pos) {
                    None => return Ok(()),
                    Some(b',') => pos += 1,
                    Some(_) => return Err(format!("field {} has text after its closing quote", self.ends.len())),
                }
            } else {
                let end = record[pos..].iter().position(|&b| b == b',').map_or(record.len(), |o| pos + o);
                let field = &record[pos..end];
                if field.contains(&b'"') {
                    return Err(format!("field {} has a quote inside an unquoted value", self.ends.len() + 1));
                }
                self.data.extend_from_slice(field);
                self.ends.push(self.data.len());
                if end == record.len() {
                    return Ok(());
                }
                pos = end + 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(input: &str) -> Vec<(u64, String, bool)> {
        let mut reader = RecordReader::new(input.as_bytes());
        let mut out = Vec::new();
        while let Some(r) = reader.next_record().unwrap() {
            out.push((r.line, String::from_utf8(r.bytes.to_vec()).unwrap(), r.complete));
        }
        out
    }

    fn fields(record: &str) -> Result<Vec<String>, String> {
        let mut f = Fields::default();
        f.split(record.as_bytes())?;
        Ok((0..f.len()).map(|i| String::from_utf8(f.get(i).to_vec()).unwrap()).collect())
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
    }

    #[test]
    fn malformed_quoting_is_an_error() {
        assert!(fields("a,b\"c").unwrap_err().contains("field 2"));
        assert!(fields("\"a\"b,c").unwrap_err().contains("after its closing quote"));
        assert!(fields("\"abc").unwrap_err().contains("unterminated"));
    }
}
