//! Sets of UIDs as sorted, disjoint, inclusive ranges: what QRESYNC's known UIDs, a UID FETCH's
//! set and a VANISHED response are. Ranges, not lists, so `1:4294967295` costs nothing.

use std::fmt;

use imap_codec::imap_types::sequence::SequenceSet;
use strata_mailstore::model::Uid;

use crate::selected::ranges;

/// A set of UIDs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UidSet(Vec<(u32, u32)>);

impl UidSet {
    /// Every UID from `a` to `b`.
    pub fn range(a: u32, b: u32) -> UidSet {
        UidSet::from_ranges(vec![(a.min(b), a.max(b))])
    }

    /// A sequence set of UIDs, `*` being `largest`.
    pub fn from_sequence_set(set: &SequenceSet, largest: u32) -> UidSet {
        UidSet::from_ranges(ranges(set, largest))
    }

    /// UIDs in ascending order.
    pub fn from_sorted(uids: &[Uid]) -> UidSet {
        UidSet::from_ranges(uids.iter().map(|u| (u.0, u.0)).collect())
    }

    fn from_ranges(mut rs: Vec<(u32, u32)>) -> UidSet {
        rs.sort_unstable();
        let mut out: Vec<(u32, u32)> = Vec::with_capacity(rs.len());
        for (a, b) in rs {
            match out.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => out.push((a, b)),
            }
        }
        UidSet(out)
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `uid` is in the set.
    pub fn contains(&self, uid: Uid) -> bool {
        let i = self.0.partition_point(|r| r.1 < uid.0);
        self.0.get(i).is_some_and(|r| r.0 <= uid.0)
    }

    /// The set without the UIDs `present` (ascending) has.
    pub fn without(&self, present: &[Uid]) -> UidSet {
        let mut out = Vec::new();
        let mut p = 0;
        for &(a, b) in &self.0 {
            // In u64, so a UID of u32::MAX needs no special case.
            let mut start = u64::from(a);
            p += present[p..].partition_point(|u| u.0 < a);
            while let Some(u) = present
                .get(p)
                .map(|u| u64::from(u.0))
                .filter(|u| *u <= u64::from(b))
            {
                if u > start {
                    out.push((start as u32, (u - 1) as u32));
                }
                start = u + 1;
                p += 1;
            }
            if start <= u64::from(b) {
                out.push((start as u32, b));
            }
        }
        UidSet(out)
    }
}

impl fmt::Display for UidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (a, b)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if a == b {
                write!(f, "{a}")?;
            } else {
                write!(f, "{a}:{b}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uids(v: &[u32]) -> Vec<Uid> {
        v.iter().map(|u| Uid(*u)).collect()
    }

    #[test]
    fn ranges_merge_and_print() {
        let s = UidSet::from_ranges(vec![(5, 7), (1, 2), (3, 3), (10, 10)]);
        assert_eq!(s.to_string(), "1:3,5:7,10");
        assert!(s.contains(Uid(6)) && !s.contains(Uid(4)) && !s.contains(Uid(11)));
    }

    #[test]
    fn difference() {
        let a = UidSet::from_ranges(vec![(1, 10), (20, 30)]);
        assert_eq!(
            a.without(&uids(&[1, 4, 5, 10, 25])).to_string(),
            "2:3,6:9,20:24,26:30"
        );
        assert!(UidSet::range(1, 3).without(&uids(&[1, 2, 3])).is_empty());
        let top = UidSet::range(u32::MAX - 1, u32::MAX);
        assert_eq!(top.without(&uids(&[u32::MAX])).to_string(), "4294967294");
        assert!(top.without(&uids(&[u32::MAX - 1, u32::MAX])).is_empty());
    }
}
