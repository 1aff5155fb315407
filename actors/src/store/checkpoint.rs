//! The SQL of the checkpoint transaction (ownership and restores are in
//! `ownership`).

use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::upsert::excluded;

use super::ownership::refresh_ownership;
use super::schema::{
    consumer_offsets as co, dead_letters as dl, stream_metrics_minute as smm, stream_state as ss,
};
use super::state::write_increments;
use super::Result;
use crate::checkpoint::Checkpoint;

/// Rows per multi-row statement, well under Postgres' 65535 parameters.
const CHUNK: usize = 2_000;

#[derive(Insertable)]
#[diesel(table_name = smm)]
struct NewWindowRow<'a> {
    window_start: DateTime<Utc>,
    window_end: DateTime<Utc>,
    stream_id: &'a str,
    active_viewers: i64,
    chat_messages: i64,
    donations_cents: i64,
    events: i64,
    chat_chars: i64,
    donations: i64,
    viewer_joins: i64,
    viewer_leaves: i64,
    unique_chatters: i64,
    is_final: bool,
    updated_at: DateTime<Utc>,
}

#[derive(Insertable)]
#[diesel(table_name = ss)]
struct NewStreamState<'a> {
    stream_id: &'a str,
    is_live: bool,
    active_viewers: i64,
    last_event_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
    topic: &'a str,
    partition: i32,
    watermark: Option<DateTime<Utc>>,
    open_windows: i32,
}

#[derive(Insertable)]
#[diesel(table_name = dl)]
struct NewDeadLetter<'a> {
    topic: &'a str,
    partition: i32,
    kafka_offset: i64,
    reason: &'a str,
    error: &'a str,
    payload: &'a [u8],
    kafka_key: Option<&'a [u8]>,
    received_at: DateTime<Utc>,
}

#[derive(Insertable)]
#[diesel(table_name = co)]
struct NewOffset<'a> {
    group_id: &'a str,
    topic: &'a str,
    partition: i32,
    next_offset: i64,
    updated_at: DateTime<Utc>,
}

/// Writes one checkpoint in one transaction: rows, stream states with the
/// restore increments, dead letters, offsets. Either all of it is visible
/// afterwards or none.
pub fn write_checkpoint(
    conn: &mut PgConnection,
    cp: &Checkpoint,
    now: DateTime<Utc>,
) -> Result<()> {
    conn.transaction(|conn| {
        refresh_ownership(
            conn,
            &cp.group_id,
            &cp.topic,
            &cp.owner,
            &cp.partitions,
            now,
        )?;
        let rows: Vec<NewWindowRow<'_>> = cp
            .rows
            .iter()
            .map(|r| NewWindowRow {
                window_start: r.window_start,
                window_end: r.window_end(),
                stream_id: &r.stream_id,
                active_viewers: r.active_viewers,
                chat_messages: r.chat_messages,
                donations_cents: r.donation_cents,
                events: r.events,
                chat_chars: r.chat_chars,
                donations: r.donations,
                viewer_joins: r.viewer_joins,
                viewer_leaves: r.viewer_leaves,
                unique_chatters: r.unique_chatters,
                is_final: r.is_final,
                updated_at: now,
            })
            .collect();
        for chunk in rows.chunks(CHUNK) {
            diesel::insert_into(smm::table)
                .values(chunk)
                .on_conflict((smm::window_start, smm::stream_id))
                .do_update()
                .set((
                    smm::active_viewers.eq(excluded(smm::active_viewers)),
                    smm::chat_messages.eq(excluded(smm::chat_messages)),
                    smm::donations_cents.eq(excluded(smm::donations_cents)),
                    smm::events.eq(excluded(smm::events)),
                    smm::chat_chars.eq(excluded(smm::chat_chars)),
                    smm::donations.eq(excluded(smm::donations)),
                    smm::viewer_joins.eq(excluded(smm::viewer_joins)),
                    smm::viewer_leaves.eq(excluded(smm::viewer_leaves)),
                    smm::unique_chatters.eq(excluded(smm::unique_chatters)),
                    smm::is_final.eq(excluded(smm::is_final)),
                    smm::updated_at.eq(excluded(smm::updated_at)),
                ))
                .execute(conn)?;
        }
        super::latest::upsert_latest(conn, &cp.rows, now)?;

        let states: Vec<NewStreamState<'_>> = cp
            .streams
            .iter()
            .map(|s| NewStreamState {
                stream_id: &s.state.stream_id,
                is_live: s.state.is_live,
                active_viewers: s.state.active_viewers,
                last_event_at: s.state.last_event_at,
                updated_at: now,
                topic: &cp.topic,
                partition: s.partition,
                watermark: s.watermark,
                open_windows: i32::try_from(s.open_windows).unwrap_or(i32::MAX),
            })
            .collect();
        for chunk in states.chunks(CHUNK) {
            diesel::insert_into(ss::table)
                .values(chunk)
                .on_conflict(ss::stream_id)
                .do_update()
                .set((
                    ss::is_live.eq(excluded(ss::is_live)),
                    ss::active_viewers.eq(excluded(ss::active_viewers)),
                    ss::last_event_at.eq(excluded(ss::last_event_at)),
                    ss::updated_at.eq(excluded(ss::updated_at)),
                    ss::topic.eq(excluded(ss::topic)),
                    ss::partition.eq(excluded(ss::partition)),
                    ss::watermark.eq(excluded(ss::watermark)),
                    ss::open_windows.eq(excluded(ss::open_windows)),
                ))
                .execute(conn)?;
        }
        write_increments(conn, &cp.increments)?;

        let letters: Vec<NewDeadLetter<'_>> = cp
            .dead_letters
            .iter()
            .map(|d| NewDeadLetter {
                topic: &cp.topic,
                partition: d.partition,
                kafka_offset: d.offset,
                reason: d.reason.as_str(),
                error: &d.error,
                payload: &d.payload,
                kafka_key: d.key.as_deref(),
                received_at: now,
            })
            .collect();
        for chunk in letters.chunks(CHUNK) {
            diesel::insert_into(dl::table)
                .values(chunk)
                .on_conflict((dl::topic, dl::partition, dl::kafka_offset))
                .do_nothing()
                .execute(conn)?;
        }

        let offsets: Vec<NewOffset<'_>> = cp
            .offsets
            .iter()
            .map(|(partition, next)| NewOffset {
                group_id: &cp.group_id,
                topic: &cp.topic,
                partition: *partition,
                next_offset: *next,
                updated_at: now,
            })
            .collect();
        diesel::insert_into(co::table)
            .values(&offsets)
            .on_conflict((co::group_id, co::topic, co::partition))
            .do_update()
            .set((
                co::next_offset.eq(excluded(co::next_offset)),
                co::updated_at.eq(excluded(co::updated_at)),
            ))
            .execute(conn)?;
        Ok(())
    })
}
