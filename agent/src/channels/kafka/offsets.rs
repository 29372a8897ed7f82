//! Which offsets the channel may commit: per partition, the records taken but not yet
//! committed by a take transaction. The committable offset of a partition is its oldest
//! outstanding record, or one past the newest taken record when none is outstanding, so a
//! commit never passes a record that a sink still holds (several sinks, or a sink with several
//! batches in flight, commit out of order).

use std::collections::{BTreeMap, BTreeSet};

/// Where a taken record came from. `epoch` tells an assignment of the partition from a later
/// one: a record taken before a revocation no longer counts after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Origin {
    pub(super) partition: i32,
    pub(super) epoch: u64,
    pub(super) offset: i64,
}

#[derive(Debug)]
struct PartState {
    epoch: u64,
    outstanding: BTreeSet<i64>,
    /// One past the newest record taken (or skipped).
    next: Option<i64>,
    /// The last offset committed (or being committed).
    committed: Option<i64>,
}

/// The offsets of the channel's one topic.
#[derive(Debug, Default)]
pub(super) struct Offsets {
    parts: BTreeMap<i32, PartState>,
    epochs: u64,
}

impl Offsets {
    /// A partition was assigned: tracking starts afresh.
    pub(super) fn assign(&mut self, partition: i32) {
        self.epochs += 1;
        self.parts.insert(
            partition,
            PartState {
                epoch: self.epochs,
                outstanding: BTreeSet::new(),
                next: None,
                committed: None,
            },
        );
    }

    /// A partition was revoked: what was taken from it no longer counts.
    pub(super) fn revoke(&mut self, partition: i32) {
        self.parts.remove(&partition);
    }

    /// Records a taken record; its origin.
    pub(super) fn taken(&mut self, partition: i32, offset: i64) -> Origin {
        if !self.parts.contains_key(&partition) {
            self.assign(partition);
        }
        let Some(p) = self.parts.get_mut(&partition) else {
            unreachable!("assigned above")
        };
        p.outstanding.insert(offset);
        p.next = Some(p.next.map_or(offset + 1, |n| n.max(offset + 1)));
        Origin {
            partition,
            epoch: p.epoch,
            offset,
        }
    }

    /// Whether `o` still belongs to the current assignment of its partition.
    pub(super) fn valid(&self, o: &Origin) -> bool {
        self.parts
            .get(&o.partition)
            .is_some_and(|p| p.epoch == o.epoch)
    }

    /// The record at `o` is done (delivered by a sink, or skipped).
    pub(super) fn done(&mut self, o: &Origin) {
        if let Some(p) = self.parts.get_mut(&o.partition)
            && p.epoch == o.epoch
        {
            p.outstanding.remove(&o.offset);
        }
    }

    /// Offsets to commit (`partition`, next offset), for partitions whose committable offset
    /// moved past the last commit; `only` limits them.
    pub(super) fn committable(&self, only: Option<&[i32]>) -> Vec<(i32, i64)> {
        self.parts
            .iter()
            .filter(|(n, _)| only.is_none_or(|o| o.contains(n)))
            .filter_map(|(n, p)| {
                let target = p.outstanding.first().copied().or(p.next)?;
                (p.committed.is_none_or(|c| target > c)).then_some((*n, target))
            })
            .collect()
    }

    /// `offsets` reached the broker.
    pub(super) fn committed(&mut self, offsets: &[(i32, i64)]) {
        for (n, off) in offsets {
            if let Some(p) = self.parts.get_mut(n) {
                p.committed = Some(p.committed.map_or(*off, |c| c.max(*off)));
            }
        }
    }

    /// Records taken and not yet done, over all partitions.
    #[cfg(test)]
    pub(super) fn outstanding(&self) -> usize {
        self.parts.values().map(|p| p.outstanding.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_stop_at_the_oldest_outstanding_record() {
        let mut o = Offsets::default();
        let a: Vec<Origin> = (10..15).map(|off| o.taken(0, off)).collect();
        let b: Vec<Origin> = (15..20).map(|off| o.taken(0, off)).collect();
        // The second batch finishes first: nothing may be committed past offset 10.
        for x in &b {
            o.done(x);
        }
        assert_eq!(o.committable(None), vec![(0, 10)]);
        o.committed(&[(0, 10)]);
        assert_eq!(o.committable(None), vec![]);
        for x in &a {
            o.done(x);
        }
        assert_eq!(o.committable(None), vec![(0, 20)]);
        o.committed(&[(0, 20)]);
        assert!(o.committable(None).is_empty());
        assert_eq!(o.outstanding(), 0);
    }

    #[test]
    fn a_revocation_invalidates_what_was_taken_before_it() {
        let mut o = Offsets::default();
        o.assign(1);
        let old = o.taken(1, 5);
        o.revoke(1);
        assert!(!o.valid(&old));
        o.assign(1);
        assert!(!o.valid(&old));
        let new = o.taken(1, 5);
        o.done(&old);
        assert_eq!(
            o.committable(None),
            vec![(1, 5)],
            "the old origin does not count"
        );
        o.done(&new);
        assert_eq!(o.committable(Some(&[1])), vec![(1, 6)]);
        assert!(o.committable(Some(&[0])).is_empty());
    }
}
