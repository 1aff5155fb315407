//! The SQL of the checkpoint transaction and of the restore on assignment.

use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::upsert::excluded;

use super::schema::{
    consumer_offsets as co, dead_letters as dl, partition_owners as po,
    stream_metrics_minute as smm, stream_state as ss, window_snapshots as ws,
};
use super::{Result, StoreError};
use crate::checkpoint::{Checkpoint, Restored, Snapshot};

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
}

#[derive(Insertable)]
#[diesel(table_name = ws)]
struct NewSnapshot<'a> {
    stream_id: &'a str,
    topic: &'a str,
    partition: i32,
    state: &'a serde_json::Value,
    updated_at: DateTime<Utc>,
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

/// Writes one checkpoint in one transaction: rows, states, snapshots, dead
/// letters, offsets. Either all of it is visible afterwards or none.
pub fn write_checkpoint(
    conn: &mut PgConnection,
    cp: &Checkpoint,
    now: DateTime<Utc>,
) -> Result<()> {
    conn.transaction(|conn| {
        check_ownership(conn, cp)?;
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
            .states
            .iter()
            .map(|s| NewStreamState {
                stream_id: &s.stream_id,
                is_live: s.is_live,
                active_viewers: s.active_viewers,
                last_event_at: s.last_event_at,
                updated_at: now,
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
                ))
                .execute(conn)?;
        }

        let snapshots: Vec<NewSnapshot<'_>> = cp
            .snapshots
            .iter()
            .map(|s| NewSnapshot {
                stream_id: &s.stream_id,
                topic: &cp.topic,
                partition: s.partition,
                state: &s.state,
                updated_at: now,
            })
            .collect();
        for chunk in snapshots.chunks(CHUNK) {
            diesel::insert_into(ws::table)
                .values(chunk)
                .on_conflict(ws::stream_id)
                .do_update()
                .set((
                    ws::topic.eq(excluded(ws::topic)),
                    ws::partition.eq(excluded(ws::partition)),
                    ws::state.eq(excluded(ws::state)),
                    ws::updated_at.eq(excluded(ws::updated_at)),
                ))
                .execute(conn)?;
        }

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

/// Refuses the checkpoint unless `cp.owner` still owns every partition it
/// covers; the row locks hold off a concurrent claim until the commit.
fn check_ownership(conn: &mut PgConnection, cp: &Checkpoint) -> Result<()> {
    let partitions: Vec<i32> = cp.offsets.keys().copied().collect();
    let owners: Vec<(i32, String)> = po::table
        .filter(po::group_id.eq(&cp.group_id))
        .filter(po::topic.eq(&cp.topic))
        .filter(po::partition.eq_any(&partitions))
        .select((po::partition, po::owner))
        .for_update()
        .load(conn)?;
    for p in &partitions {
        match owners.iter().find(|(q, _)| q == p) {
            Some((_, owner)) if *owner == cp.owner => {}
            Some((_, owner)) => {
                return Err(StoreError::Fenced(format!(
                    "partition {p} now belongs to {owner}"
                )))
            }
            None => {
                return Err(StoreError::Fenced(format!(
                    "partition {p} was never claimed"
                )))
            }
        }
    }
    Ok(())
}

/// Claims `partitions` for `owner` and loads their stored offsets and
/// stream snapshots, in one transaction: from the claim on, checkpoints of
/// any previous owner of these partitions wait for it and are then refused.
pub fn load_assignment(
    conn: &mut PgConnection,
    group_id: &str,
    topic: &str,
    partitions: &[i32],
    owner: &str,
) -> Result<Restored> {
    // READ COMMITTED on purpose: the claim may wait for the previous
    // owner's checkpoint to commit, and the reads after it must see it.
    conn.transaction(|conn| {
        let now = Utc::now();
        for p in partitions {
            diesel::insert_into(po::table)
                .values((
                    po::group_id.eq(group_id),
                    po::topic.eq(topic),
                    po::partition.eq(*p),
                    po::owner.eq(owner),
                    po::generation.eq(1i64),
                    po::updated_at.eq(now),
                ))
                .on_conflict((po::group_id, po::topic, po::partition))
                .do_update()
                .set((
                    po::owner.eq(owner),
                    po::generation.eq(po::generation + 1),
                    po::updated_at.eq(now),
                ))
                .execute(conn)?;
        }
        let offsets: Vec<(i32, i64)> = co::table
            .filter(co::group_id.eq(group_id))
            .filter(co::topic.eq(topic))
            .filter(co::partition.eq_any(partitions))
            .select((co::partition, co::next_offset))
            .load(conn)?;
        let snapshots: Vec<(String, i32, serde_json::Value)> = ws::table
            .filter(ws::topic.eq(topic))
            .filter(ws::partition.eq_any(partitions))
            .select((ws::stream_id, ws::partition, ws::state))
            .load(conn)?;
        Ok(Restored {
            offsets: offsets.into_iter().collect(),
            snapshots: snapshots
                .into_iter()
                .map(|(stream_id, partition, state)| Snapshot {
                    stream_id,
                    partition,
                    state,
                })
                .collect(),
        })
    })
}
