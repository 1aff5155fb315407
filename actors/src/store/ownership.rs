//! Partition ownership (SPEC §5 fencing) and the restore that goes with a
//! claim. `partition_owners` names the consumer incarnation that may
//! commit for each partition; every checkpoint refreshes its rows, and a
//! checkpoint whose owner lost a row is refused. A claim and the read of
//! the stored offsets and snapshots are one transaction, so the previous
//! owner's last checkpoint is either in what is read or refused.
//!
//! Claims are timed by the database's clock alone (`now()` when written,
//! `clock_timestamp()` when judged), so instances whose clocks disagree,
//! one of them far ahead, still see each other's leases run out.

use chrono::{DateTime, TimeDelta, Utc};
use diesel::dsl;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::Timestamptz;

use super::schema::{consumer_offsets as co, partition_owners as po};
use super::state::{load_streams, open_streams};
use super::{Result, StoreError};
use crate::checkpoint::Restored;

/// Separates the instance name from the incarnation in an owner token.
const INCARNATION_SEPARATOR: char = '#';

/// An owner token: the stable instance name and this incarnation.
pub fn owner_token(instance_id: &str, incarnation: i64) -> String {
    format!("{instance_id}{INCARNATION_SEPARATOR}{incarnation}")
}

/// The instance part of an owner token.
fn instance_of(owner: &str) -> &str {
    owner
        .rsplit_once(INCARNATION_SEPARATOR)
        .map_or(owner, |(instance, _)| instance)
}

/// What a leased claim found.
#[derive(Debug)]
pub enum Claim {
    /// The partitions are ours, with what they restore.
    Claimed(Restored),
    /// Another live instance holds a partition; try again later.
    Held {
        /// The holder's owner token.
        owner: String,
        /// How long ago it last refreshed its claim.
        age: TimeDelta,
    },
}

/// Refreshes `owner`'s claim on `partitions` inside a checkpoint
/// transaction, or refuses the checkpoint if any of them has another owner.
/// The row locks hold off a concurrent claim until the commit.
pub(super) fn refresh_ownership(
    conn: &mut PgConnection,
    group_id: &str,
    topic: &str,
    owner: &str,
    partitions: &[i32],
) -> Result<()> {
    let refreshed: Vec<i32> = diesel::update(
        po::table
            .filter(po::group_id.eq(group_id))
            .filter(po::topic.eq(topic))
            .filter(po::partition.eq_any(partitions))
            .filter(po::owner.eq(owner)),
    )
    .set(po::updated_at.eq(dsl::now))
    .returning(po::partition)
    .get_results(conn)?;
    if refreshed.len() == partitions.len() {
        return Ok(());
    }
    let lost: Vec<&i32> = partitions
        .iter()
        .filter(|p| !refreshed.contains(p))
        .collect();
    Err(StoreError::Fenced(format!(
        "partitions {lost:?} of {topic} now belong to another consumer"
    )))
}

/// Refuses a database whose results belong to another consumer group: the
/// result tables and the stream state are not keyed by group, so two
/// groups would overwrite each other's rows and state.
pub fn check_group(conn: &mut PgConnection, group_id: &str) -> Result<()> {
    let others: Vec<String> = co::table
        .filter(co::group_id.ne(group_id))
        .select(co::group_id)
        .distinct()
        .limit(3)
        .load(conn)?;
    if others.is_empty() {
        return Ok(());
    }
    Err(StoreError::OtherGroup {
        group_id: group_id.to_owned(),
        others,
    })
}

/// Claims `partitions` for `owner` whoever held them (the group
/// coordinator decided) and loads what they restore.
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
        take_over(conn, group_id, topic, partitions, owner)?;
        load(conn, group_id, topic, partitions)
    })
}

/// Whether a claim refreshed `age` ago (by the database's clock) still
/// holds. A claim stamped in the future (by an earlier version, which used
/// its own clock, or before the database's clock was set back) counts as
/// fresh up to one lease ahead, for clocks a little apart; one stamped
/// further ahead has no age to judge and does not hold, or it could hold
/// for ever. Fencing keeps a wrong take-over safe: the holder's next
/// checkpoint is refused.
fn claim_is_live(age: TimeDelta, lease: TimeDelta) -> bool {
    age.abs() < lease
}

/// Claims `partitions` for `owner` unless another instance refreshed its
/// claim on one of them within `lease`. A claim left by an earlier
/// incarnation of the same instance (a crash) is taken over at once.
pub fn claim_leased(
    conn: &mut PgConnection,
    group_id: &str,
    topic: &str,
    partitions: &[i32],
    owner: &str,
    lease: TimeDelta,
) -> Result<Claim> {
    conn.transaction(|conn| {
        let holders: Vec<(String, DateTime<Utc>)> = po::table
            .filter(po::group_id.eq(group_id))
            .filter(po::topic.eq(topic))
            .filter(po::partition.eq_any(partitions))
            .select((po::owner, po::updated_at))
            .for_update()
            .load(conn)?;
        // Read after the rows (whose lock may have waited for a holder's
        // checkpoint to commit): no claim read can be younger than this.
        let db_now: DateTime<Utc> =
            diesel::select(dsl::sql::<Timestamptz>("clock_timestamp()")).get_result(conn)?;
        let mine = instance_of(owner);
        let live_other = holders
            .into_iter()
            .filter(|(holder, _)| holder != owner && instance_of(holder) != mine)
            .map(|(holder, at)| (holder, db_now - at))
            .filter(|(_, age)| claim_is_live(*age, lease))
            .min_by_key(|(_, age)| *age);
        if let Some((owner, age)) = live_other {
            return Ok(Claim::Held { owner, age });
        }
        take_over(conn, group_id, topic, partitions, owner)?;
        Ok(Claim::Claimed(load(conn, group_id, topic, partitions)?))
    })
}

fn take_over(
    conn: &mut PgConnection,
    group_id: &str,
    topic: &str,
    partitions: &[i32],
    owner: &str,
) -> Result<()> {
    let rows: Vec<_> = partitions
        .iter()
        .map(|p| {
            (
                po::group_id.eq(group_id),
                po::topic.eq(topic),
                po::partition.eq(*p),
                po::owner.eq(owner),
                po::generation.eq(1i64),
                po::updated_at.eq(dsl::now),
            )
        })
        .collect();
    diesel::insert_into(po::table)
        .values(&rows)
        .on_conflict((po::group_id, po::topic, po::partition))
        .do_update()
        .set((
            po::owner.eq(diesel::upsert::excluded(po::owner)),
            po::generation.eq(po::generation + 1),
            po::updated_at.eq(diesel::upsert::excluded(po::updated_at)),
        ))
        .execute(conn)?;
    Ok(())
}

/// The next offset `group_id` committed for each of `partitions` of
/// `topic` that has one.
pub(super) fn stored_offsets(
    conn: &mut PgConnection,
    group_id: &str,
    topic: &str,
    partitions: &[i32],
) -> Result<Vec<(i32, i64)>> {
    Ok(co::table
        .filter(co::group_id.eq(group_id))
        .filter(co::topic.eq(topic))
        .filter(co::partition.eq_any(partitions))
        .select((co::partition, co::next_offset))
        .load(conn)?)
}

fn load(
    conn: &mut PgConnection,
    group_id: &str,
    topic: &str,
    partitions: &[i32],
) -> Result<Restored> {
    let offsets = stored_offsets(conn, group_id, topic, partitions)?;
    let open = open_streams(conn, topic, partitions)?;
    let streams = load_streams(conn, &open)?
        .into_iter()
        .filter_map(|(partition, model)| Some((partition?, model)))
        .collect();
    Ok(Restored {
        offsets: offsets.into_iter().collect(),
        streams,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_holds_for_its_lease_and_not_from_the_future() {
        let lease = TimeDelta::seconds(10);
        assert!(claim_is_live(TimeDelta::zero(), lease));
        assert!(claim_is_live(TimeDelta::seconds(9), lease));
        assert!(!claim_is_live(TimeDelta::seconds(10), lease));
        assert!(claim_is_live(TimeDelta::seconds(-9), lease));
        assert!(!claim_is_live(TimeDelta::seconds(-10), lease));
        assert!(!claim_is_live(TimeDelta::days(-365), lease));
    }

    #[test]
    fn owner_tokens_name_their_instance() {
        let token = owner_token("host:8000", 42);
        assert_eq!(instance_of(&token), "host:8000");
        assert_eq!(instance_of(&owner_token("a#b", 1)), "a#b");
        assert_eq!(instance_of("legacy-owner"), "legacy-owner");
    }
}
