//! The SQL of the checkpoint transaction (ownership and restores are in
//! `ownership`).

use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::upsert::excluded;

use super::ownership::refresh_ownership;
use super::schema::{consumer_offsets as co, dead_letters as dl};
use super::state::write_increments;
use super::upsert::{upsert_rows, upsert_states};
use super::Result;
use crate::checkpoint::Checkpoint;

/// Rows per multi-row statement, well under Postgres' 65535 parameters.
const CHUNK: usize = 2_000;

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
        upsert_rows(conn, &cp.rows, now)?;
        super::latest::upsert_latest(conn, &cp.rows, now)?;
        upsert_states(conn, &cp.topic, &cp.streams, now)?;
        write_increments(conn, &cp.increments)?;

        let letters: Vec<NewDeadLetter<'_>> = cp
            .dead_letters
            .iter()
            .map(|d| (cp.dead_letter_origin(d), d))
            .map(|((topic, partition, kafka_offset), d)| NewDeadLetter {
                topic,
                partition,
                kafka_offset,
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
