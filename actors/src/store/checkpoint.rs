//! The SQL of the checkpoint transaction (ownership and restores are in
//! `ownership`).

use chrono::{DateTime, Utc};
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::upsert::excluded;

use super::ownership::{refresh_ownership, stored_offsets};
use diesel::sql_types::{Array, BigInt, Bytea, Integer, Nullable, Text};

use super::schema::consumer_offsets as co;
use super::state::write_increments;
use super::upsert::{write_rows, write_states, WriteMode};
use super::{per_statement, Result};
use crate::checkpoint::{Checkpoint, DeadLetter};

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
/// afterwards or none. `mode` says how rows and states are written.
pub fn write_checkpoint(
    conn: &mut PgConnection,
    cp: &Checkpoint,
    now: DateTime<Utc>,
    mode: WriteMode,
) -> Result<()> {
    conn.transaction(|conn| {
        // Every statement below finds its rows through a primary key, one
        // probe per row it writes. Joined with a large `unnest`, the
        // planner may prefer hashing a whole table, which would make a
        // checkpoint's cost grow with history: not in this transaction.
        conn.batch_execute(
            "SET LOCAL enable_seqscan = off; SET LOCAL enable_hashjoin = off; \
             SET LOCAL enable_mergejoin = off",
        )?;
        refresh_ownership(conn, &cp.group_id, &cp.topic, &cp.owner, &cp.partitions)?;
        write_rows(conn, &cp.rows, &cp.rows_stored, now, mode)?;
        write_states(conn, &cp.topic, &cp.streams, now, mode)?;
        write_increments(conn, &cp.increments, mode)?;
        insert_dead_letters(conn, cp)?;

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

/// Inserts the checkpoint's dead letters that are not stored yet, a
/// statement per [`per_statement`] slice, the values as column arrays
/// expanded by `unnest` (a multi-row `VALUES` list of 2,000 rows cost
/// Postgres about 16 µs per row to parse and plan). Letters are stamped
/// `received_at` by the database's clock, which their retention counts
/// by, whatever the clock of the instance that wrote them.
fn insert_dead_letters(conn: &mut PgConnection, cp: &Checkpoint) -> Result<()> {
    if cp.dead_letters.is_empty() {
        return Ok(());
    }
    // A letter lies at or after the offset its partition had committed
    // when it was read. One below the stored offset was therefore
    // committed by an earlier attempt of this same checkpoint, whose
    // outcome was unknown: that attempt held the partitions' ownership
    // rows, which `refresh_ownership` has locked since, so it is over and
    // its offsets are visible. The rest are new: a plain insert, with no
    // unique key to check (a third of what a letter cost Postgres).
    let mut partitions: Vec<i32> = cp.dead_letters.iter().map(|l| l.partition).collect();
    partitions.sort_unstable();
    partitions.dedup();
    let stored = stored_offsets(conn, &cp.group_id, &cp.topic, &partitions)?;
    let committed = |letter: &DeadLetter| {
        stored
            .iter()
            .any(|(p, next)| *p == letter.partition && letter.offset < *next)
    };
    let new: Vec<&DeadLetter> = cp.dead_letters.iter().filter(|l| !committed(l)).collect();
    per_statement(&new, |letters| insert_dead_letter_chunk(conn, cp, letters))?;
    Ok(())
}

/// The insert of dead letters bound as column arrays.
const INSERT_DEAD_LETTERS: &str = "INSERT INTO dead_letters \
    (topic, partition, kafka_offset, reason, error, payload, kafka_key, received_at) \
    SELECT t, p, o, r, e, b, k, now() FROM unnest($1::text[], $2::int4[], $3::int8[], \
    $4::text[], $5::text[], $6::bytea[], $7::bytea[]) AS x(t, p, o, r, e, b, k)";

/// Inserts `letters`, bound as column arrays; returns the rows it wrote.
fn insert_dead_letter_chunk(
    conn: &mut PgConnection,
    cp: &Checkpoint,
    letters: &[&DeadLetter],
) -> Result<usize> {
    let n = letters.len();
    let (mut topics, mut partitions, mut offsets) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut reasons, mut errors, mut payloads, mut keys) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for letter in letters {
        let (topic, partition, offset) = cp.dead_letter_origin(letter);
        topics.push(topic);
        partitions.push(partition);
        offsets.push(offset);
        reasons.push(letter.reason.as_str());
        errors.push(letter.error.as_str());
        payloads.push(letter.payload.as_slice());
        keys.push(letter.key.as_deref());
    }
    Ok(diesel::sql_query(INSERT_DEAD_LETTERS)
        .bind::<Array<Text>, _>(&topics)
        .bind::<Array<Integer>, _>(&partitions)
        .bind::<Array<BigInt>, _>(&offsets)
        .bind::<Array<Text>, _>(&reasons)
        .bind::<Array<Text>, _>(&errors)
        .bind::<Array<Bytea>, _>(&payloads)
        .bind::<Array<Nullable<Bytea>>, _>(&keys)
        .execute(conn)?)
}
