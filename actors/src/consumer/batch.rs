//! One poll batch being built, and the buffers of earlier batches kept for
//! reuse: a batch's events and payloads are handed to the window actors
//! behind one `Arc`, and come back here once every actor has dropped it.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Range;
use std::sync::Arc;

use crate::event::{Event, RejectReason};
use crate::hash::FastMap;
use crate::messages::{Envelope, PollBatch};

/// Poll batches lent to the window actors that are kept for reuse once
/// returned; older ones are left to be freed.
const KEPT_BATCHES: usize = 4;

/// One batch being built: valid events in log order with their payloads,
/// the positions of each stream's events, and counts.
#[derive(Default)]
pub(super) struct Batch {
    pub data: PollBatch,
    /// Each stream's events, as positions in `data.events`.
    pub groups: FastMap<String, Vec<u32>>,
    pub consumed: u64,
    pub rejected: BTreeMap<RejectReason, u64>,
}

impl Batch {
    /// A batch that starts with `data`'s buffers (emptied).
    pub fn reusing(mut data: PollBatch) -> Batch {
        data.events.clear();
        data.payloads.clear();
        Batch {
            data,
            ..Batch::default()
        }
    }

    /// Copies a raw payload into the batch's payload buffer; returns where.
    pub fn copy_payload(&mut self, bytes: &[u8]) -> Range<usize> {
        let start = self.data.payloads.len();
        self.data.payloads.extend_from_slice(bytes);
        start..self.data.payloads.len()
    }

    /// Adds a valid event whose raw payload is at `payload` in the batch's
    /// payload buffer.
    pub fn push(
        &mut self,
        event: Event,
        partition: i32,
        offset: i64,
        keyed: bool,
        payload: Range<usize>,
    ) {
        let index = u32::try_from(self.data.events.len()).unwrap_or(u32::MAX);
        // The stream's id is copied once per batch, not per event.
        match self.groups.get_mut(event.stream_id.as_str()) {
            Some(indices) => indices.push(index),
            None => {
                self.groups.insert(event.stream_id.to_string(), vec![index]);
            }
        }
        self.data.events.push(Envelope {
            event,
            partition,
            offset,
            payload,
            keyed,
        });
    }

    /// Drops the events not yet handed over (their partitions were revoked).
    pub fn discard(&mut self) {
        self.groups.clear();
        self.data.events.clear();
        self.data.payloads.clear();
    }

    /// Hands the events over, grouped by stream; the batch keeps its
    /// counts and continues with empty buffers.
    pub fn take_groups(&mut self) -> (FastMap<String, Vec<u32>>, Arc<PollBatch>) {
        (
            std::mem::take(&mut self.groups),
            Arc::new(std::mem::take(&mut self.data)),
        )
    }
}

/// Poll batches lent to the window actors, reused once every actor is done
/// with them (their buffers keep their capacity: no fresh pages to fault
/// in for each batch).
#[derive(Default)]
pub(super) struct BatchPool {
    lent: VecDeque<Arc<PollBatch>>,
}

impl BatchPool {
    /// Keeps `batch` until every window actor is done with it; of the
    /// batches already back, `KEPT_BATCHES` stay for reuse.
    pub fn lend(&mut self, batch: Arc<PollBatch>) {
        let mut back = 0;
        self.lent.retain(|b| {
            let held = Arc::strong_count(b) > 1;
            back += usize::from(!held);
            held || back <= KEPT_BATCHES
        });
        self.lent.push_back(batch);
    }

    /// A returned batch's buffers, if one is back.
    pub fn reclaim(&mut self) -> Option<PollBatch> {
        let back = self.lent.iter().position(|b| Arc::strong_count(b) == 1)?;
        let batch = self.lent.remove(back)?;
        Arc::try_unwrap(batch).ok()
    }

    /// Events sent to window actors that some actor has not applied yet
    /// (counted by batch: a batch counts whole until every actor is done).
    pub fn backlog(&self) -> usize {
        self.lent
            .iter()
            .filter(|b| Arc::strong_count(b) > 1)
            .map(|b| b.events.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::Envelope;

    fn batch(events: usize) -> Arc<PollBatch> {
        let event = crate::event::Event::parse(
            br#"{"event_id":"e","ts":"2025-01-01T00:00:00Z","event_type":"stream_start","stream_id":"s"}"#,
            chrono::Utc::now(),
        )
        .expect("valid");
        let envelope = Envelope {
            event,
            partition: 0,
            offset: 0,
            payload: 0..0,
            keyed: false,
        };
        Arc::new(PollBatch {
            events: vec![envelope; events],
            payloads: Vec::new(),
        })
    }

    #[test]
    fn the_backlog_counts_batches_until_every_actor_is_done() {
        let mut pool = BatchPool::default();
        let (a, b) = (batch(3), batch(5));
        // Two actors hold `a`, one holds `b`.
        let held = [a.clone(), a.clone(), b.clone()];
        pool.lend(a);
        pool.lend(b);
        assert_eq!(pool.backlog(), 8);
        assert!(pool.reclaim().is_none(), "nothing is back");
        let [a1, a2, b1] = held;
        drop(a1);
        assert_eq!(pool.backlog(), 8, "one actor still holds a");
        drop(a2);
        assert_eq!(pool.backlog(), 5);
        drop(b1);
        assert_eq!(pool.backlog(), 0);
        assert!(pool.reclaim().is_some());
    }

    #[test]
    fn only_a_few_returned_batches_are_kept() {
        let mut pool = BatchPool::default();
        for _ in 0..3 * KEPT_BATCHES {
            pool.lend(batch(1));
        }
        assert_eq!(pool.lent.len(), KEPT_BATCHES + 1);
    }
}
