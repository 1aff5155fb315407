//! Hand-computed cases pinning the window semantics of SPEC §3.

use chrono::{DateTime, TimeDelta, Utc};

use super::*;
use crate::event::{Event, EventKind, Id};

const LATENESS: TimeDelta = TimeDelta::minutes(10);

fn at(hms: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&format!("2025-12-20T{hms}Z"))
        .expect("valid test time")
        .with_timezone(&Utc)
}

fn ev(hms: &str, kind: EventKind) -> Event {
    Event {
        ts: at(hms),
        stream_id: "s".into(),
        kind,
    }
}

fn join(hms: &str, user: &str) -> Event {
    ev(
        hms,
        EventKind::ViewerJoin {
            user_id: user.into(),
        },
    )
}

fn leave(hms: &str, user: &str) -> Event {
    ev(
        hms,
        EventKind::ViewerLeave {
            user_id: user.into(),
        },
    )
}

fn chat(hms: &str, user: &str, len: i64) -> Event {
    ev(
        hms,
        EventKind::ChatMessage {
            user_id: user.into(),
            message_len: len,
        },
    )
}

fn donate(hms: &str, user: &str, cents: i64) -> Event {
    ev(
        hms,
        EventKind::Donation {
            user_id: user.into(),
            amount_cents: cents,
        },
    )
}

fn run(events: &[Event]) -> (StreamWindows, Vec<Applied>) {
    let mut s = StreamWindows::new("s");
    let applied = events.iter().map(|e| s.apply(e, LATENESS)).collect();
    (s, applied)
}

/// Rows as the table would hold them after everything is written.
fn table(s: &mut StreamWindows) -> Vec<WindowRow> {
    let mut rows: std::collections::BTreeMap<DateTime<Utc>, WindowRow> = Default::default();
    for row in s.take_changes().rows {
        rows.insert(row.window_start, row);
    }
    rows.into_values().collect()
}

#[test]
fn minute_bucketing_is_floor_to_the_minute() {
    assert_eq!(minute_of(at("18:34:38.300308")), at("18:34:00"));
    assert_eq!(minute_of(at("18:34:00")), at("18:34:00"));
    assert_eq!(minute_of(at("18:34:59.999999")), at("18:34:00"));
    let before_epoch = DateTime::from_timestamp(-1, 0).expect("valid");
    assert_eq!(minute_of(before_epoch).timestamp(), -60);
}

#[test]
fn presence_set_ignores_duplicate_joins_and_absent_leaves() {
    let (mut s, _) = run(&[
        join("10:00:01", "a"),
        join("10:00:02", "a"),
        leave("10:00:03", "ghost"),
        join("10:00:04", "b"),
    ]);
    let rows = table(&mut s);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].active_viewers, 2);
    assert_eq!(rows[0].viewer_joins, 3);
    assert_eq!(rows[0].viewer_leaves, 1);
    assert_eq!(rows[0].events, 4);
    assert_eq!(s.state_row().active_viewers, 2);
}

#[test]
fn stream_stop_clears_viewers_and_ends_live() {
    let (mut s, _) = run(&[
        ev("10:00:00", EventKind::StreamStart),
        join("10:00:01", "a"),
        join("10:00:02", "b"),
        ev("10:00:30", EventKind::StreamStop),
    ]);
    let rows = table(&mut s);
    assert_eq!(rows[0].active_viewers, 0);
    assert_eq!(rows[0].events, 4);
    let state = s.state_row();
    assert!(!state.is_live);
    assert_eq!(state.active_viewers, 0);
    assert_eq!(state.last_event_at, Some(at("10:00:30")));
}

#[test]
fn active_viewers_is_the_set_size_after_the_windows_last_event_in_log_order() {
    // Log order: join a (10:01), join b (10:00, out of order), join c (10:01), leave a (10:00).
    // Window 10:00 last event is "leave a": set {b, c} → 2.
    // Window 10:01 last event is "join c": set {a, b, c} → 3.
    let (mut s, applied) = run(&[
        join("10:01:10", "a"),
        join("10:00:50", "b"),
        join("10:01:20", "c"),
        leave("10:00:55", "a"),
    ]);
    assert!(applied.iter().all(|a| *a == Applied::Applied));
    let rows = table(&mut s);
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[0].window_start, rows[0].active_viewers),
        (at("10:00:00"), 2)
    );
    assert_eq!(
        (rows[1].window_start, rows[1].active_viewers),
        (at("10:01:00"), 3)
    );
    assert_eq!(s.state_row().active_viewers, 2);
    assert_eq!(s.state_row().last_event_at, Some(at("10:01:20")));
}

#[test]
fn unique_chatters_chat_chars_and_exact_donations() {
    let (mut s, _) = run(&[
        chat("10:00:01", "a", 5),
        chat("10:00:02", "a", 7),
        chat("10:00:03", "b", 0),
        donate("10:00:04", "a", 10),
        donate("10:00:05", "b", 20),
        donate("10:00:06", "c", 1),
    ]);
    let rows = table(&mut s);
    assert_eq!(rows[0].chat_messages, 3);
    assert_eq!(rows[0].chat_chars, 12);
    assert_eq!(rows[0].unique_chatters, 2);
    assert_eq!(rows[0].donations, 3);
    assert_eq!(rows[0].donation_cents, 31);
    assert_eq!(rows[0].active_viewers, 0);
    assert!(
        s.state_row().is_live,
        "activity without stream_start marks the stream live"
    );
}

#[test]
fn out_of_order_within_lateness_is_applied_and_outside_is_late() {
    let (mut s, applied) = run(&[
        chat("10:20:00", "a", 1), // watermark 10:10:00
        chat("10:12:30", "a", 1), // window [10:12, 10:13) open: applied
        chat("10:09:59", "a", 1), // window [10:09, 10:10) ends at 10:10 <= watermark: late
    ]);
    assert_eq!(applied, [Applied::Applied, Applied::Applied, Applied::Late]);
    assert_eq!(s.watermark(), Some(at("10:10:00")));
    let rows = table(&mut s);
    assert_eq!(rows.iter().map(|r| r.events).sum::<i64>(), 2);
    assert!(rows.iter().all(|r| !r.is_final));
}

#[test]
fn window_ending_exactly_at_the_watermark_is_final() {
    let (mut s, applied) = run(&[
        chat("10:00:30", "a", 1),
        chat("10:11:00", "a", 1), // watermark 10:01:00 = end of [10:00, 10:01)
        chat("10:00:59", "a", 1), // its window is final now: late
        chat("10:01:00", "a", 1), // [10:01, 10:02) ends after the watermark: applied
    ]);
    assert_eq!(
        applied,
        [
            Applied::Applied,
            Applied::Applied,
            Applied::Late,
            Applied::Applied
        ]
    );
    let rows = table(&mut s);
    assert_eq!(rows.len(), 3);
    assert!(rows[0].is_final && rows[0].window_start == at("10:00:00") && rows[0].events == 1);
    assert!(!rows[1].is_final && rows[1].window_start == at("10:01:00"));
    assert!(!rows[2].is_final && rows[2].window_start == at("10:11:00"));
    assert_eq!(s.open_windows(), 2, "the final window left memory");
}

#[test]
fn late_events_change_nothing() {
    let (mut s, applied) = run(&[join("10:20:00", "a"), leave("10:00:00", "a")]);
    assert_eq!(applied[1], Applied::Late);
    assert_eq!(
        s.state_row().active_viewers,
        1,
        "a late leave does not touch the presence set"
    );
    assert_eq!(table(&mut s).len(), 1);
}

#[test]
fn idle_advance_finalizes_and_never_moves_back() {
    let (mut s, _) = run(&[chat("10:00:10", "a", 1), chat("10:05:10", "a", 1)]);
    let _ = s.take_changes();
    s.advance_watermark(at("10:03:00"));
    let closed = s.take_changes();
    assert_eq!(closed.rows.len(), 1);
    assert!(closed.rows[0].is_final && closed.rows[0].window_start == at("10:00:00"));
    s.advance_watermark(at("10:01:00"));
    assert_eq!(s.watermark(), Some(at("10:03:00")));
    s.advance_watermark(at("11:00:00"));
    let closed = s.take_changes();
    assert_eq!(closed.rows.len(), 1);
    assert!(closed.rows[0].is_final && closed.rows[0].window_start == at("10:05:00"));
    assert_eq!(s.open_windows(), 0);
}

#[test]
fn take_changes_reports_only_what_changed_since_last_time() {
    let mut s = StreamWindows::new("s");
    s.apply(&chat("10:00:01", "a", 1), LATENESS);
    s.apply(&chat("10:01:01", "a", 1), LATENESS);
    assert_eq!(s.take_changes().rows.len(), 2);
    assert!(s.take_changes().is_empty());
    s.apply(&chat("10:01:02", "b", 1), LATENESS);
    let changes = s.take_changes();
    assert_eq!(changes.rows.len(), 1);
    assert_eq!(changes.rows[0].unique_chatters, 2);
    assert!(changes.state.is_some());
}

/// Replays what a checkpoint stores for `s` (rows, state, watermark,
/// viewer and chatter increments) into `stored`, like the tables do.
#[derive(Default, Clone)]
struct Stored {
    rows: std::collections::BTreeMap<DateTime<Utc>, WindowRow>,
    state: Option<StreamStateRow>,
    watermark: Option<DateTime<Utc>>,
    viewers: crate::hash::FastSet<String>,
    /// Each open window's stored chatters and the number of its chunks.
    chatters: std::collections::BTreeMap<DateTime<Utc>, (crate::hash::FastSet<String>, i32)>,
}

impl Stored {
    fn checkpoint(&mut self, s: &mut StreamWindows) {
        let c = s.take_changes();
        assert_eq!(c.stored.len(), c.rows.len());
        for (r, stored) in c.rows.into_iter().zip(c.stored) {
            let key = r.window_start;
            assert_eq!(stored, self.rows.contains_key(&key), "row {key} tracked");
            self.rows.insert(key, r);
        }
        if c.state.is_some() {
            assert_eq!(c.state_stored, self.state.is_some(), "state row tracked");
            self.state = c.state;
            self.watermark = c.watermark;
        }
        if c.viewers.cleared {
            self.viewers.clear();
        }
        for u in &c.viewers.removed {
            assert!(self.viewers.remove(u), "removes only stored users");
        }
        for u in c.viewers.added {
            assert!(self.viewers.insert(u), "adds only new users");
        }
        // Each window's new chunks continue its numbering, in order.
        let mut chunk_of: std::collections::BTreeMap<DateTime<Utc>, i32> = Default::default();
        for (start, chunk, u) in c.chatters {
            let (set, chunks) = self.chatters.entry(start).or_default();
            match chunk_of.get(&start) {
                None => assert_eq!(chunk, *chunks, "numbering continues"),
                Some(&last) => assert!(chunk == last || chunk == last + 1, "in order"),
            }
            chunk_of.insert(start, chunk);
            assert!(set.insert(u), "adds only new chatters");
        }
        for (start, chunk) in chunk_of {
            if let Some((_, chunks)) = self.chatters.get_mut(&start) {
                *chunks = chunk + 1;
            }
        }
        for start in c.closed {
            assert!(
                self.chatters.remove(&start).is_some(),
                "deletes only stored chatters ({start})"
            );
        }
        // Every final window's chatters were deleted: none are left behind.
        for start in self.chatters.keys() {
            assert!(
                self.rows.get(start).is_none_or(|r| !r.is_final),
                "chatters of final window {start} left stored"
            );
        }
    }

    fn restore(&self) -> StreamWindows {
        let open = self
            .rows
            .values()
            .filter(|r| !r.is_final)
            .map(|r| {
                let (chatters, chunks): (crate::hash::FastSet<Id>, i32) = self
                    .chatters
                    .get(&r.window_start)
                    .map(|(set, chunks)| {
                        (set.iter().map(|u| Id::from(u.as_str())).collect(), *chunks)
                    })
                    .unwrap_or_default();
                assert_eq!(chatters.len() as i64, r.unique_chatters);
                (r.window_start, MinuteAgg::from_row(r, chatters, chunks))
            })
            .collect();
        let state = self.state.clone().expect("a state row was stored");
        let viewers = self.viewers.iter().map(|u| Id::from(u.as_str())).collect();
        StreamWindows::restore(&state, self.watermark, viewers, open)
    }
}

#[test]
fn increments_restore_the_same_model_at_every_checkpoint() {
    let events = [
        join("10:00:01", "a"),
        chat("10:00:02", "a", 4),
        join("10:00:03", "b"),
        leave("10:00:04", "a"),
        join("10:00:05", "a"),
        chat("10:00:06", "b", 2),
        join("10:01:01", "c"),
        ev("10:01:02", EventKind::StreamStop),
        join("10:01:03", "d"),
        leave("10:01:04", "d"),
        join("10:01:05", "e"),
        chat("10:01:06", "e", 1),
        donate("10:02:00", "b", 150),
        chat("10:12:30", "a", 3),
        leave("10:12:31", "e"),
    ];
    // Checkpoint after every prefix; the model restored from what was
    // stored must then behave exactly like the one that ran straight on.
    for cut in 0..=events.len() {
        let mut stored = Stored::default();
        let mut running = StreamWindows::new("s");
        for (i, e) in events[..cut].iter().enumerate() {
            running.apply(e, LATENESS);
            if i % 3 == 2 {
                stored.checkpoint(&mut running);
            }
        }
        stored.checkpoint(&mut running);
        if cut == 0 {
            continue;
        }
        let mut resumed = stored.restore();
        assert_eq!(resumed.viewer_count(), running.viewer_count(), "cut {cut}");
        for e in &events[cut..] {
            assert_eq!(resumed.apply(e, LATENESS), running.apply(e, LATENESS));
        }
        resumed.advance_watermark(at("12:00:00"));
        running.advance_watermark(at("12:00:00"));
        // Both continue the same stored tables the same way, the restored
        // model included (rows it knows as stored, chatters it deletes).
        let mut a = stored.clone();
        let mut b = stored.clone();
        a.checkpoint(&mut resumed);
        b.checkpoint(&mut running);
        assert_eq!(a.rows, b.rows, "cut {cut}");
        assert!(a.rows.values().all(|r| r.is_final));
        assert!(a.chatters.is_empty() && b.chatters.is_empty(), "cut {cut}");
        assert_eq!(resumed.state_row(), running.state_row(), "cut {cut}");
    }
}

#[test]
fn close_all_finalizes_every_open_window_without_making_later_windows_late() {
    let mut s = StreamWindows::new("s");
    assert_eq!(s.apply(&join("18:00:10", "a"), LATENESS), Applied::Applied);
    assert_eq!(
        s.apply(&chat("18:05:00", "a", 3), LATENESS),
        Applied::Applied
    );
    assert_eq!(s.open_windows(), 2);
    s.close_all();
    assert_eq!(s.open_windows(), 0);
    let rows = s.take_changes().rows;
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.is_final));
    assert_eq!(s.watermark(), Some(at("18:06:00")));
    // The closed minutes are final; the next minute is not.
    assert_eq!(s.apply(&chat("18:05:59", "a", 1), LATENESS), Applied::Late);
    assert_eq!(
        s.apply(&chat("18:06:00", "a", 1), LATENESS),
        Applied::Applied
    );
}

#[test]
fn a_window_gaining_many_chatters_is_stored_in_bounded_chunks() {
    let mut s = StreamWindows::new("s");
    let n = crate::window::CHUNK_USERS + 5;
    for i in 0..n {
        s.apply(&chat("10:00:01", &format!("u{i}"), 1), LATENESS);
    }
    let sizes = |c: &Changes| {
        let mut per_chunk = std::collections::BTreeMap::<i32, usize>::new();
        for (_, chunk, _) in &c.chatters {
            *per_chunk.entry(*chunk).or_default() += 1;
        }
        per_chunk.into_iter().collect::<Vec<_>>()
    };
    assert_eq!(
        sizes(&s.take_changes()),
        vec![(0, crate::window::CHUNK_USERS), (1, 5)]
    );
    s.apply(&chat("10:00:02", "late-comer", 1), LATENESS);
    assert_eq!(sizes(&s.take_changes()), vec![(2, 1)], "numbering goes on");
}
