//! Property-based fuzzing of the event parser: it never panics on any
//! input, rejects everything it does not accept with a reason, and valid
//! events survive a JSON round trip. Longer runs: `PROPTEST_CASES=100000
//! cargo test -p streamstats-actors --release event_fuzz`.

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use proptest::prelude::*;

use crate::event::{Event, EventKind};

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .expect("valid literal")
        .with_timezone(&Utc)
}

fn kind() -> impl Strategy<Value = EventKind> {
    let user = "[a-zA-Z0-9_\\-é]{1,40}";
    prop_oneof![
        Just(EventKind::StreamStart),
        Just(EventKind::StreamStop),
        user.prop_map(|user_id| EventKind::ViewerJoin {
            user_id: user_id.into()
        }),
        user.prop_map(|user_id| EventKind::ViewerLeave {
            user_id: user_id.into()
        }),
        (user, 0i64..1_000_000).prop_map(|(user_id, message_len)| EventKind::ChatMessage {
            user_id: user_id.into(),
            message_len
        }),
        (user, 0i64..100_000_000_000).prop_map(|(user_id, amount_cents)| EventKind::Donation {
            user_id: user_id.into(),
            amount_cents
        }),
    ]
}

fn to_json(event_id: &str, e: &Event, offset_hours: i32) -> String {
    let offset = chrono::FixedOffset::east_opt(offset_hours * 3600).expect("valid offset");
    let mut fields = vec![
        format!(
            "\"event_id\":{}",
            serde_json::to_string(event_id).expect("string")
        ),
        format!(
            "\"ts\":\"{}\"",
            e.ts.with_timezone(&offset)
                .to_rfc3339_opts(SecondsFormat::AutoSi, false)
        ),
        format!("\"event_type\":\"{}\"", e.kind.name()),
        format!(
            "\"stream_id\":{}",
            serde_json::to_string(e.stream_id.as_str()).expect("string")
        ),
    ];
    match &e.kind {
        EventKind::StreamStart | EventKind::StreamStop => {}
        EventKind::ViewerJoin { user_id } | EventKind::ViewerLeave { user_id } => {
            fields.push(format!(
                "\"user_id\":{}",
                serde_json::to_string(user_id.as_str()).expect("string")
            ));
        }
        EventKind::ChatMessage {
            user_id,
            message_len,
        } => {
            fields.push(format!(
                "\"user_id\":{}",
                serde_json::to_string(user_id.as_str()).expect("string")
            ));
            fields.push(format!("\"message_len\":{message_len}"));
        }
        EventKind::Donation {
            user_id,
            amount_cents,
        } => {
            fields.push(format!(
                "\"user_id\":{}",
                serde_json::to_string(user_id.as_str()).expect("string")
            ));
            fields.push(format!(
                "\"amount_usd\":{}.{:02}",
                amount_cents / 100,
                amount_cents % 100
            ));
        }
    }
    format!("{{{}}}", fields.join(","))
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = Event::parse(&bytes, now());
    }

    #[test]
    fn never_panics_on_json_like_text(text in "[{}\\[\\]\":,0-9a-z_.eE+\\- ]{0,400}") {
        let _ = Event::parse(text.as_bytes(), now());
    }

    #[test]
    fn mutated_valid_events_never_panic(k in kind(), cut in 0usize..400, byte in any::<u8>()) {
        let e = Event { ts: now() - TimeDelta::hours(1), stream_id: "s".into(), kind: k };
        let mut bytes = to_json("e", &e, 0).into_bytes();
        if cut < bytes.len() {
            bytes[cut] = byte;
        }
        let _ = Event::parse(&bytes, now());
    }

    #[test]
    fn the_one_pass_parse_agrees_with_the_raw_one(
        k in kind(),
        // Quotes and backslashes are escaped in the JSON: the raw path.
        stream_id in "[a-z\"\\\\/]{1,12}",
        cut in 0usize..400,
        byte in prop_oneof![Just(b'\\'), Just(b'"'), Just(b'1'), Just(b'{'), Just(b' '), any::<u8>()],
    ) {
        let e = Event { ts: now() - TimeDelta::hours(1), stream_id: stream_id.into(), kind: k };
        let mut bytes = to_json("e", &e, 0).into_bytes();
        if cut < bytes.len() {
            bytes[cut] = byte;
        }
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let skew = crate::event::DEFAULT_MAX_FUTURE_SKEW;
            let one_pass = crate::event::Fields::parse(text)
                .and_then(|f| Event::from_fields(f, Some(now()), skew));
            let raw = crate::event::Fields::parse_raw(text)
                .and_then(|f| Event::from_fields(f, Some(now()), skew));
            prop_assert_eq!(one_pass, raw);
        }
    }

    #[test]
    fn valid_events_round_trip(
        event_id in "[a-zA-Z0-9\\-]{1,64}",
        stream_id in "[a-zA-Z0-9\\-ü]{1,128}",
        micros in 0i64..1_700_000_000_000_000,
        offset_hours in -12i32..14,
        k in kind(),
    ) {
        let ts = DateTime::from_timestamp_micros(micros).expect("in range");
        let e = Event { ts, stream_id: stream_id.into(), kind: k };
        let parsed = Event::parse(to_json(&event_id, &e, offset_hours).as_bytes(), now());
        prop_assert_eq!(parsed, Ok(e));
    }

    #[test]
    fn the_scanner_accepts_only_what_serde_reads_the_same(
        members in proptest::collection::vec((member_key(), member_value()), 0..8),
        // Mostly spaces only: a tab or line break anywhere sends the
        // payload to serde_json, so the scanner would rarely be exercised.
        ws in prop_oneof![
            3 => proptest::collection::vec(prop_oneof![Just(""), Just(" ")], 40),
            1 => proptest::collection::vec(
                prop_oneof![3 => Just(""), 1 => Just(" "), 1 => Just("\n"), 1 => Just("\t\r ")],
                40,
            ),
        ],
        cut in 0usize..400,
        byte in prop_oneof![Just(b','), Just(b'"'), Just(b'}'), Just(b':'), Just(b'\\'), any::<u8>()],
    ) {
        let mut text = format!("{}{{", ws[0]);
        for (i, (key, value)) in members.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            text.push_str(&format!("{}\"{key}\"{}:{}{value}{}", ws[4 * i + 1], ws[4 * i + 2], ws[4 * i + 3], ws[4 * i + 4]));
        }
        text.push('}');
        text.push_str(ws[39]);
        let mut bytes = text.into_bytes();
        // Some cases as built, the others with one byte changed.
        if cut < bytes.len() && cut % 2 == 0 {
            bytes[cut] = byte;
        }
        if let Ok(text) = std::str::from_utf8(&bytes) {
            if let Some(scanned) = crate::event_scan::scan(text) {
                let serde = crate::event::Fields::parse_serde(text);
                prop_assert!(serde.is_some(), "scanned but serde_json refuses: {}", text);
                let scanned = crate::event::Fields::from(scanned);
                prop_assert_eq!(scanned.texts(), serde.map(|f| f.texts()).unwrap_or_default());
            }
        }
    }
}

/// A key of a flat object: the contract's fields, others, and escaped ones.
fn member_key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "event_id", "ts", "event_type", "stream_id", "user_id", "message_len",
            "amount_usd", "amount", "x", "t\\u0073", "",
        ])
        .prop_map(str::to_owned),
        1 => "[a-z_]{1,12}",
    ]
}

/// A member's value: strings (some with escapes or control characters),
/// numbers valid and not, literals, nested values.
fn member_value() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[a-zA-Z0-9:\\-é ]{0,20}".prop_map(|s| format!("\"{s}\"")),
        1 => "[a-z\"\\\\\t\u{1}\u{1f}]{0,6}".prop_map(|s| format!("\"{s}\"")),
        3 => "-?[0-9]{1,4}(\\.[0-9]{0,3})?([eE][+-]?[0-9]{0,2})?",
        2 => prop::sample::select(vec![
            "null", "true", "false", "nul", "tru", "[]", "{}", "[1, \"a\"]",
            "{\"a\": 1}", "01", "-", "1.", ".5", "+1", "1e", "NaN",
        ])
        .prop_map(str::to_owned),
    ]
}
