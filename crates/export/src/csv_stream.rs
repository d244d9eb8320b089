//! conversation_logs.csv read against the rows the records give: each expected row is
//! compared with the file's next bytes, and only a row that differs is parsed (to name its
//! columns). Comparing bytes costs a fraction of parsing every row.

use std::io::BufRead;

/// A row as its cells.
pub type Cells = Vec<Vec<u8>>;

/// The largest row read, and the most cells: a record's row is far smaller (its fields
/// are bounded by the API's body limit), so a longer one is refused rather than held.
pub const MAX_ROW_BYTES: usize = 32 << 20;
pub const MAX_CELLS: usize = 1024;

fn too_long() -> std::io::Error {
    std::io::Error::other(format!(
        "a row is longer than {MAX_ROW_BYTES} bytes or {MAX_CELLS} cells: no record's is"
    ))
}

/// What the file holds where a row was expected.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Exactly the expected bytes.
    Same,
    /// Another row: its cells.
    Differs(Cells),
    /// Nothing: the file ended.
    End,
}

pub struct CsvStream<R> {
    input: R,
}

impl<R: BufRead> CsvStream<R> {
    pub fn new(input: R) -> Self {
        Self { input }
    }

    /// Read the next row, which should be the bytes `want` (one CSV record with its
    /// terminator).
    pub fn next_is(&mut self, want: &[u8]) -> std::io::Result<Next> {
        let mut matched = 0;
        loop {
            let buf = self.input.fill_buf()?;
            if buf.is_empty() {
                return Ok(match matched {
                    0 => Next::End,
                    _ => Next::Differs(self.parse_after(&want[..matched])?),
                });
            }
            let rest = &want[matched..];
            let len = buf.len().min(rest.len());
            // Equal slices are compared as memory; only a mismatch is walked byte by byte.
            let same = if buf[..len] == rest[..len] {
                len
            } else {
                buf[..len].iter().zip(rest).take_while(|(a, b)| a == b).count()
            };
            self.input.consume(same);
            matched += same;
            if matched == want.len() {
                return Ok(Next::Same);
            }
            if same < len {
                return Ok(Next::Differs(self.parse_after(&want[..matched])?));
            }
        }
    }

    /// The next row, parsed; `None` at the end of the file.
    pub fn next_row(&mut self) -> std::io::Result<Option<Cells>> {
        let row = self.parse_after(b"")?;
        Ok((!row.is_empty()).then_some(row))
    }

    /// Parse one record that starts with `read` (bytes already consumed) and goes on in
    /// the input, consuming exactly its bytes.
    fn parse_after(&mut self, read: &[u8]) -> std::io::Result<Cells> {
        let mut parser = Parser::default();
        // (Fed nothing, csv_core would take it for the end of the file.)
        if !read.is_empty() && parser.feed(read)? {
            return Ok(parser.cells);
        }
        loop {
            let buf = self.input.fill_buf()?;
            if buf.is_empty() {
                parser.feed(b"")?;
                return Ok(parser.cells);
            }
            let len = buf.len();
            let used = parser.feed_counted(buf)?;
            self.input.consume(used.unwrap_or(len));
            if used.is_some() {
                // A CRLF terminator's LF, left for the next record by csv_core.
                if parser.ended_on_cr && self.input.fill_buf()?.first() == Some(&b'\n') {
                    self.input.consume(1);
                }
                return Ok(parser.cells);
            }
        }
    }
}

/// Cells of CSV bytes (a whole record): for naming what differs.
pub fn cells_of(row: &[u8]) -> Cells {
    let mut parser = Parser::default();
    // A row this check made itself, from a record: within the bounds.
    if !parser.feed(row).unwrap_or(true) {
        let _ = parser.feed(b"");
    }
    parser.cells
}

/// One record through csv_core, fed as it comes (the csv crate's own loop).
struct Parser {
    reader: csv_core::Reader,
    fields: Vec<u8>,
    ends: Vec<usize>,
    /// Bytes written into `fields` and `ends` so far.
    out: usize,
    nends: usize,
    cells: Cells,
    ended_on_cr: bool,
}

impl Default for Parser {
    fn default() -> Self {
        Self {
            reader: csv_core::Reader::new(),
            fields: vec![0; 1024],
            ends: vec![0; 64],
            out: 0,
            nends: 0,
            cells: Vec::new(),
            ended_on_cr: false,
        }
    }
}

impl Parser {
    /// Feed bytes; whether the record ended within them.
    fn feed(&mut self, input: &[u8]) -> std::io::Result<bool> {
        Ok(self.feed_counted(input)?.is_some())
    }

    /// Feed bytes (none: the end of the file); how many of them the record used, if it
    /// ended within them. A record past [`MAX_ROW_BYTES`] or [`MAX_CELLS`] is an error.
    fn feed_counted(&mut self, input: &[u8]) -> std::io::Result<Option<usize>> {
        let mut used = 0;
        loop {
            let (result, read, written, ended) = self.reader.read_record(
                &input[used..],
                &mut self.fields[self.out..],
                &mut self.ends[self.nends..],
            );
            if read > 0 {
                self.ended_on_cr = input[used + read - 1] == b'\r';
            }
            used += read;
            self.out += written;
            self.nends += ended;
            match result {
                csv_core::ReadRecordResult::InputEmpty if input.is_empty() => return Ok(Some(0)),
                csv_core::ReadRecordResult::InputEmpty => return Ok(None),
                csv_core::ReadRecordResult::OutputFull if self.fields.len() >= MAX_ROW_BYTES => {
                    return Err(too_long());
                }
                csv_core::ReadRecordResult::OutputFull => {
                    self.fields.resize(self.fields.len() * 2, 0)
                }
                csv_core::ReadRecordResult::OutputEndsFull if self.ends.len() >= MAX_CELLS => {
                    return Err(too_long());
                }
                csv_core::ReadRecordResult::OutputEndsFull => {
                    self.ends.resize(self.ends.len() * 2, 0)
                }
                csv_core::ReadRecordResult::Record => {
                    let mut start = 0;
                    for &end in &self.ends[..self.nends] {
                        self.cells.push(self.fields[start..end].to_vec());
                        start = end;
                    }
                    return Ok(Some(used));
                }
                csv_core::ReadRecordResult::End => return Ok(Some(used)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[&str]) -> Vec<u8> {
        let mut w = crate::line::csv_writer(Vec::new());
        w.write_record(cells).unwrap();
        w.into_inner().unwrap()
    }

    fn owned(cells: &[&str]) -> Cells {
        cells.iter().map(|c| c.as_bytes().to_vec()).collect()
    }

    #[test]
    fn rows_are_matched_and_a_differing_one_is_parsed_whatever_the_buffer_size() {
        let rows = [
            row(&["1", "plain", "x"]),
            row(&["2", "a \"quoted\"\r\nline, with comma", ""]),
            row(&["3", "z", "y"]),
        ];
        let mut file = rows.concat();
        // Row 2's second cell differs, after a quoted CRLF.
        let edited = row(&["2", "a \"quoted\"\r\nline, with commas", ""]);
        file.splice(rows[0].len()..rows[0].len() + rows[1].len(), edited);
        file.extend_from_slice(&row(&["4", "extra", ""]));
        for capacity in [1, 2, 3, 7, 64, 4096] {
            let mut csv = CsvStream::new(std::io::BufReader::with_capacity(capacity, &file[..]));
            assert_eq!(csv.next_is(&rows[0]).unwrap(), Next::Same, "capacity {capacity}");
            assert_eq!(
                csv.next_is(&rows[1]).unwrap(),
                Next::Differs(owned(&["2", "a \"quoted\"\r\nline, with commas", ""])),
                "capacity {capacity}"
            );
            // Back in step after the differing row's CRLF.
            assert_eq!(csv.next_is(&rows[2]).unwrap(), Next::Same, "capacity {capacity}");
            assert_eq!(csv.next_row().unwrap(), Some(owned(&["4", "extra", ""])));
            assert_eq!(csv.next_row().unwrap(), None);
            assert_eq!(csv.next_is(&rows[2]).unwrap(), Next::End);
        }
    }

    #[test]
    fn a_file_cut_inside_a_row_gives_what_it_holds() {
        let want = row(&["1", "complete", "row"]);
        let cut = &want[..8];
        let mut csv = CsvStream::new(cut);
        assert_eq!(csv.next_is(&want).unwrap(), Next::Differs(owned(&["1", "comple"])));
        assert_eq!(cells_of(&want), owned(&["1", "complete", "row"]));
    }
}
