//! JSON-lines files as a log: where a line is (file index and line number
//! packed into one offset, so a file source's position is stored like a
//! Kafka partition's) and what counts as a line. Pure values; the reading
//! is in `crate::consumer::file_source`.

/// Bits of an offset that hold the line number; the file index is above.
const LINE_BITS: u32 = 40;
const LINE_MASK: i64 = (1 << LINE_BITS) - 1;

/// A line of one of the files of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LinePosition {
    /// Index of the file in the source's list.
    pub file: usize,
    /// Line number in the file, from 1.
    pub line: u64,
}

impl LinePosition {
    /// The first line of the first file.
    pub const START: LinePosition = LinePosition { file: 0, line: 1 };

    /// The position as an offset: increasing along the source's files and
    /// lines, so it orders barriers and resumes like a Kafka offset.
    pub fn offset(self) -> i64 {
        let file = i64::try_from(self.file).unwrap_or(i64::MAX >> LINE_BITS);
        let line = i64::try_from(self.line).unwrap_or(LINE_MASK) & LINE_MASK;
        (file << LINE_BITS) | line
    }

    /// The position an offset encodes (`None` for a negative one).
    pub fn from_offset(offset: i64) -> Option<LinePosition> {
        if offset < 0 {
            return None;
        }
        Some(LinePosition {
            file: usize::try_from(offset >> LINE_BITS).ok()?,
            line: u64::try_from(offset & LINE_MASK).ok()?,
        })
    }
}

/// The event text of one line as read (its `\n` already removed): without
/// a trailing `\r`, or `None` for a blank line, which is not an event.
pub fn event_text(line: &[u8]) -> Option<&[u8]> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    (!line.iter().all(u8::is_ascii_whitespace)).then_some(line)
}

/// The event texts of a whole JSON-lines buffer with their line numbers,
/// as a file source reads them (for ground truth and tools).
pub fn event_lines(buf: &[u8]) -> impl Iterator<Item = (u64, &[u8])> {
    let body = buf.strip_suffix(b"\n").unwrap_or(buf);
    let lines = (!buf.is_empty()).then(|| body.split(|b| *b == b'\n'));
    lines
        .into_iter()
        .flatten()
        .zip(1u64..)
        .filter_map(|(line, n)| event_text(line).map(|text| (n, text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_order_like_positions_and_round_trip() {
        let a = LinePosition { file: 0, line: 7 };
        let b = LinePosition { file: 0, line: 8 };
        let c = LinePosition { file: 1, line: 1 };
        assert!(a.offset() < b.offset() && b.offset() < c.offset());
        for p in [
            a,
            b,
            c,
            LinePosition {
                file: 300,
                line: (1 << 39) + 5,
            },
        ] {
            assert_eq!(LinePosition::from_offset(p.offset()), Some(p));
        }
        assert_eq!(LinePosition::from_offset(-1), None);
    }

    #[test]
    fn blank_lines_are_skipped_but_counted() {
        let buf = b"{\"a\":1}\r\n\n  \n{\"b\":2}\n{\"c\":3}";
        let got: Vec<(u64, &[u8])> = event_lines(buf).collect();
        assert_eq!(
            got,
            vec![
                (1, &b"{\"a\":1}"[..]),
                (4, &b"{\"b\":2}"[..]),
                (5, &b"{\"c\":3}"[..])
            ]
        );
        assert_eq!(event_lines(b"").count(), 0);
        assert_eq!(event_lines(b"x\n").count(), 1);
    }
}
