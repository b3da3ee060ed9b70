//! A small reorder buffer so recordings and in-band detection see packets in order.
//!
//! Owns ordering only, by extended sequence number (from [`super::rtp::RtpReceiver`]).
//! It holds at most `depth` packets: when one more arrives the oldest is released,
//! gaps included, so delay is bounded by `depth` packet times and a lost packet never
//! stalls the stream. Not a playout buffer: bridged audio is relayed as it arrives
//! and the far end's own jitter buffer smooths it.
//!
//! ```text
//!   push(seq) -- seq < next released? --> dropped (too late / duplicate)
//!       |
//!       v
//!   held, sorted -- more than depth held? --> release lowest
//!   drain() at the end of the call releases everything, in order
//! ```

use std::collections::BTreeMap;

/// Default depth: 5 packets = 100 ms at 20 ms ptime, enough for the reordering seen
/// on real networks without making recordings lag.
pub const DEFAULT_DEPTH: usize = 5;

/// Reorders items by extended sequence number, holding at most `depth` of them.
#[derive(Debug, Clone)]
pub struct ReorderBuffer<T> {
    depth: usize,
    held: BTreeMap<u64, T>,
    /// Every sequence below this has been released or given up on.
    next: Option<u64>,
    dropped: u64,
}

impl<T> ReorderBuffer<T> {
    /// `depth` of 0 releases every packet at once (no reordering).
    pub fn new(depth: usize) -> Self {
        ReorderBuffer {
            depth,
            held: BTreeMap::new(),
            next: None,
            dropped: 0,
        }
    }

    /// Adds a packet; returns false if it came too late or was a duplicate.
    pub fn push(&mut self, sequence: u64, item: T) -> bool {
        if self.next.is_some_and(|n| sequence < n) || self.held.contains_key(&sequence) {
            self.dropped += 1;
            return false;
        }
        self.held.insert(sequence, item);
        true
    }

    /// The next packet that is due: the lowest held, once more than `depth` are held.
    pub fn pop(&mut self) -> Option<(u64, T)> {
        if self.held.len() <= self.depth {
            return None;
        }
        self.release()
    }

    /// The lowest held packet regardless of depth (end of call, or flush).
    pub fn drain(&mut self) -> Option<(u64, T)> {
        self.release()
    }

    fn release(&mut self) -> Option<(u64, T)> {
        let (seq, item) = self.held.pop_first()?;
        self.next = Some(seq + 1);
        Some((seq, item))
    }

    /// Packets held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Packets refused as too late or duplicate.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(depth: usize, arrivals: &[u64]) -> Vec<u64> {
        let mut b = ReorderBuffer::new(depth);
        let mut out = Vec::new();
        for &s in arrivals {
            b.push(s, ());
            while let Some((s, ())) = b.pop() {
                out.push(s);
            }
        }
        while let Some((s, ())) = b.drain() {
            out.push(s);
        }
        out
    }

    #[test]
    fn reorders_within_depth() {
        assert_eq!(run(3, &[1, 3, 2, 5, 4, 6, 7]), vec![1, 2, 3, 4, 5, 6, 7]);
    }

    #[test]
    fn gaps_do_not_stall_and_late_packets_drop() {
        let mut b = ReorderBuffer::new(2);
        for s in [10, 12, 13] {
            b.push(s, ());
        }
        assert_eq!(b.pop().map(|p| p.0), Some(10));
        b.push(14, ());
        assert_eq!(b.pop().map(|p| p.0), Some(12));
        // 11 arrives after 12 was released: too late for the recording.
        assert!(!b.push(11, ()));
        assert!(!b.push(13, ()));
        assert_eq!(b.dropped(), 2);
        assert_eq!(b.len(), 2);
    }

    proptest! {
        /// Whatever the arrival order, output is strictly increasing, and a shuffle no
        /// wider than the depth loses nothing.
        #[test]
        fn output_is_ordered(swaps in proptest::collection::vec(0usize..40, 0..40), depth in 1usize..6) {
            let mut arrivals: Vec<u64> = (0..40).collect();
            for (i, &j) in swaps.iter().enumerate() {
                let i = i % 40;
                if i.abs_diff(j) <= depth {
                    arrivals.swap(i, j);
                }
            }
            let out = run(depth, &arrivals);
            prop_assert!(out.windows(2).all(|w| w[0] < w[1]));
        }

        #[test]
        fn adjacent_swaps_lose_nothing(pairs in proptest::collection::vec(any::<bool>(), 20)) {
            let mut arrivals = Vec::new();
            for (k, swap) in pairs.iter().enumerate() {
                let (a, b) = (2 * k as u64, 2 * k as u64 + 1);
                if *swap { arrivals.extend([b, a]) } else { arrivals.extend([a, b]) }
            }
            prop_assert_eq!(run(2, &arrivals), (0..40).collect::<Vec<_>>());
        }
    }
}
