//! Reconnect delays: capped, jittered exponential backoff. Pure: the caller sleeps.

use std::time::Duration;

/// Exponential backoff with full jitter between `min` and the current ceiling.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    ceiling: Duration,
    rng: fastrand::Rng,
}

/// Invalid backoff bounds.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid backoff: need 0 < min ({min:?}) <= max ({max:?})")]
pub struct InvalidBackoff {
    min: Duration,
    max: Duration,
}

impl Backoff {
    /// A backoff from `min` doubling up to `max`; `seed` fixes the jitter (tests).
    pub fn new(min: Duration, max: Duration, seed: u64) -> Result<Self, InvalidBackoff> {
        if min.is_zero() || min > max {
            return Err(InvalidBackoff { min, max });
        }
        Ok(Self {
            min,
            max,
            ceiling: min,
            rng: fastrand::Rng::with_seed(seed),
        })
    }

    /// Back to the first delay (after a stream delivered its first message).
    pub fn reset(&mut self) {
        self.ceiling = self.min;
    }
}

impl Iterator for Backoff {
    type Item = Duration;

    /// The next delay: uniform in `[ceiling/2, ceiling]`, never below `min`; the ceiling
    /// then doubles, up to `max`.
    fn next(&mut self) -> Option<Duration> {
        let ceiling = self.ceiling;
        let half = ceiling / 2;
        let span = (ceiling - half).as_nanos().min(u128::from(u64::MAX)) as u64;
        let jitter = Duration::from_nanos(self.rng.u64(0..=span));
        self.ceiling = ceiling.saturating_mul(2).min(self.max);
        Some((half + jitter).max(self.min))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_within_bounds_and_grow_to_the_cap() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(10));
        for seed in 0..50 {
            let mut b = Backoff::new(min, max, seed).unwrap();
            let delays: Vec<_> = b.by_ref().take(30).collect();
            assert!(delays.iter().all(|d| *d >= min && *d <= max), "{delays:?}");
            assert!(delays[20..].iter().all(|d| *d >= max / 2), "{delays:?}");
            b.reset();
            assert!(b.next().unwrap() <= min);
        }
    }

    #[test]
    fn jitter_spreads_delays() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(10), 7).unwrap();
        let d: Vec<_> = b.by_ref().skip(10).take(10).collect();
        assert!(d.windows(2).any(|w| w[0] != w[1]));
    }

    #[test]
    fn rejects_nonsense_bounds() {
        assert!(Backoff::new(Duration::ZERO, Duration::from_secs(1), 0).is_err());
        assert!(Backoff::new(Duration::from_secs(2), Duration::from_secs(1), 0).is_err());
        let huge = Backoff::new(Duration::from_secs(1), Duration::MAX, 0).unwrap();
        assert!(huge.take(200).all(|d| d >= Duration::from_secs(1)));
    }
}
