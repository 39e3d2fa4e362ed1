//! The per-peer bandwidth bound of attachment transfers
//! (`limits.attachment_bytes_per_sec`): one [`Pacer`] per peer, shared by
//! every transfer to and from that peer, so two (or twenty) streams together
//! stay under the bound that one stream alone would.
//!
//! Invariants:
//! - Pure: time is passed in (nanoseconds on a monotonic clock of the
//!   caller's choosing); no clock, no sleeping here.
//! - A reservation of `n` bytes at time `now` is scheduled right after every
//!   earlier reservation (never before `now`): the schedule advances by
//!   `n / rate` seconds, and the caller waits until the end of its slot
//!   before sending. So after any sequence of reservations, the bytes whose
//!   slots have ended by time `t` are at most `rate × (t − t0)` plus one
//!   reservation — idle time is not banked into a burst.
//! - Rate 0 means unbounded: every wait is zero.

/// Nanoseconds in a second.
const NS: u128 = 1_000_000_000;

/// The schedule of one peer's attachment bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pacer {
    /// When the last reservation's slot ends.
    next_ns: u128,
}

impl Pacer {
    /// Reserves `bytes` at `now_ns` under `rate` bytes per second; returns
    /// how long to wait (ns) before sending them.
    pub fn reserve(&mut self, now_ns: u128, bytes: u64, rate: u64) -> u128 {
        if rate == 0 {
            return 0;
        }
        let start = self.next_ns.max(now_ns);
        self.next_ns = start + u128::from(bytes) * NS / u128::from(rate);
        self.next_ns - now_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_stream_is_paced_to_the_rate() {
        let mut p = Pacer::default();
        // 1 MB/s: each 1 MB chunk ends its slot one second after the last.
        assert_eq!(p.reserve(0, 1_000_000, 1_000_000), NS);
        assert_eq!(p.reserve(NS, 1_000_000, 1_000_000), NS);
        // Idle time is not banked: after a pause the next chunk waits a full slot.
        assert_eq!(p.reserve(10 * NS, 1_000_000, 1_000_000), NS);
    }

    #[test]
    fn streams_to_one_peer_share_the_bound() {
        let mut p = Pacer::default();
        // Two streams reserving at the same instant: the second waits for
        // the first's slot too, so together they send at the rate.
        let a = p.reserve(0, 500_000, 1_000_000);
        let b = p.reserve(0, 500_000, 1_000_000);
        assert_eq!((a, b), (NS / 2, NS));
        // Four streams × 10 chunks each, interleaved: the last slot ends at
        // 40 chunks / rate, whatever the interleaving.
        let mut p = Pacer::default();
        let mut last = 0;
        for round in 0..10u128 {
            for _stream in 0..4 {
                last = p.reserve(round * NS / 10, 100_000, 400_000);
            }
        }
        let end = 9 * NS / 10 + last;
        assert_eq!(end, 10 * NS, "40 × 100 kB at 400 kB/s take 10 s");
    }

    #[test]
    fn rate_zero_is_unbounded() {
        let mut p = Pacer::default();
        assert_eq!(p.reserve(5, u64::MAX, 0), 0);
        assert_eq!(p, Pacer::default());
    }
}
