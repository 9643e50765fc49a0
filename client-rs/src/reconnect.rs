//! When to try reconnecting after the connection is lost, and when to give up.

use std::time::Duration;

/// What the client does after it loses its connection.
///
/// Requests in flight at that moment always fail with
/// [`Error::ConnectionLost`](crate::Error::ConnectionLost); nothing is re-sent. The policy only
/// decides whether later calls get a new connection.
#[derive(Debug, Clone, PartialEq)]
pub enum ReconnectPolicy {
    /// Stay disconnected; later calls fail with [`Error::NotConnected`](crate::Error::NotConnected).
    Off,
    /// Try again every `interval` (the original Node client's `autoReconnect`, 1000 ms).
    Fixed {
        /// Time before each attempt.
        interval: Duration,
        /// Attempts before giving up; `None` tries forever.
        max_retries: Option<u32>,
    },
    /// Exponential backoff, in tremor's `reconnect.retry` shape plus a ceiling and jitter.
    Backoff(Backoff),
}

/// Exponential backoff settings: attempt `n` (from 1) waits
/// `min(interval * growth_rate^(n-1), max_delay)`, spread by `jitter`.
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    /// Wait before the first attempt (tremor's `interval_ms`).
    pub interval: Duration,
    /// Factor between consecutive waits (tremor's `growth_rate`).
    pub growth_rate: f64,
    /// Attempts before giving up (tremor's `max_retries`); `None` tries forever.
    pub max_retries: Option<u32>,
    /// Longest wait between attempts.
    pub max_delay: Duration,
    /// Random spread as a fraction of the wait: 0.2 waits between 80% and 120% of it (never more
    /// than `max_delay`). Keeps many clients from reconnecting in lockstep.
    pub jitter: f64,
}

impl Default for Backoff {
    /// 100 ms, doubling, up to 10 s apart, ±20% jitter, retrying forever.
    fn default() -> Self {
        Backoff {
            interval: Duration::from_millis(100),
            growth_rate: 2.0,
            max_retries: None,
            max_delay: Duration::from_secs(10),
            jitter: 0.2,
        }
    }
}

impl ReconnectPolicy {
    /// Checks every setting; [`ClientBuilder::connect`](crate::ClientBuilder::connect) calls it.
    ///
    /// # Errors
    /// [`Error::InvalidOption`](crate::Error::InvalidOption) for a `growth_rate` that is not a
    /// finite number of at least 1, or a `jitter` outside `0.0..=1.0` (NaN included).
    pub(crate) fn validate(&self) -> Result<(), crate::Error> {
        let ReconnectPolicy::Backoff(backoff) = self else {
            return Ok(());
        };
        let invalid = |option, reason: String| Err(crate::Error::InvalidOption { option, reason });
        if !(backoff.growth_rate.is_finite() && backoff.growth_rate >= 1.0) {
            return invalid(
                "reconnect.growth_rate",
                format!("{} is not a finite number >= 1", backoff.growth_rate),
            );
        }
        if !(0.0..=1.0).contains(&backoff.jitter) {
            return invalid(
                "reconnect.jitter",
                format!("{} is not within 0.0..=1.0", backoff.jitter),
            );
        }
        Ok(())
    }

    /// The original's `autoReconnect: 1000`: every second, forever.
    pub fn original() -> Self {
        ReconnectPolicy::Fixed {
            interval: Duration::from_millis(1000),
            max_retries: None,
        }
    }

    /// The wait before attempt `attempt` (counting from 1), without jitter; `None` means give
    /// up.
    pub fn delay(&self, attempt: u32) -> Option<Duration> {
        self.delay_with(attempt, 0.5)
    }

    /// The wait before `attempt` with `random` (in `0.0..1.0`) choosing the jitter.
    pub(crate) fn delay_with(&self, attempt: u32, random: f64) -> Option<Duration> {
        let within = |max: Option<u32>| max.is_none_or(|max| attempt <= max);
        match self {
            ReconnectPolicy::Off => None,
            ReconnectPolicy::Fixed {
                interval,
                max_retries,
            } => within(*max_retries).then_some(*interval),
            ReconnectPolicy::Backoff(backoff) => {
                if !within(backoff.max_retries) {
                    return None;
                }
                let max = backoff.max_delay.as_secs_f64();
                let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
                let base = (backoff.interval.as_secs_f64()
                    * backoff.growth_rate.max(1.0).powi(exponent))
                .min(max);
                let jitter = backoff.jitter.clamp(0.0, 1.0);
                let spread = base * (1.0 + jitter * (2.0 * random - 1.0));
                // Never panics: a NaN (validated away at construction anyway) or a wait past
                // what a `Duration` holds becomes the ceiling.
                Some(
                    Duration::try_from_secs_f64(spread.clamp(0.0, max))
                        .unwrap_or(backoff.max_delay),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn off_never_retries() {
        assert_eq!(ReconnectPolicy::Off.delay(1), None);
    }

    #[test]
    fn fixed_retries_at_the_same_interval_until_the_limit() {
        let forever = ReconnectPolicy::original();
        assert_eq!(forever.delay(1), Some(MS(1000)));
        assert_eq!(forever.delay(10_000), Some(MS(1000)));
        let limited = ReconnectPolicy::Fixed {
            interval: MS(50),
            max_retries: Some(2),
        };
        assert_eq!(limited.delay(2), Some(MS(50)));
        assert_eq!(limited.delay(3), None);
    }

    #[test]
    fn backoff_grows_caps_and_stops_like_tremors_retry() {
        // tremor's example: interval_ms 100, growth_rate 2, max_retries 3.
        let policy = ReconnectPolicy::Backoff(Backoff {
            interval: MS(100),
            growth_rate: 2.0,
            max_retries: Some(3),
            max_delay: MS(250),
            jitter: 0.0,
        });
        let schedule: Vec<_> = (1..=4).map(|n| policy.delay(n)).collect();
        assert_eq!(
            schedule,
            [Some(MS(100)), Some(MS(200)), Some(MS(250)), None]
        );
    }

    #[test]
    fn jitter_spreads_within_bounds_and_never_passes_the_ceiling() {
        let policy = ReconnectPolicy::Backoff(Backoff {
            jitter: 0.2,
            ..Backoff::default()
        });
        assert_eq!(policy.delay_with(1, 0.0), Some(MS(80)));
        assert_eq!(policy.delay_with(1, 1.0), Some(MS(120)));
        let late = policy.delay_with(30, 1.0).unwrap();
        assert_eq!(
            late,
            Duration::from_secs(10),
            "capped at max_delay even with jitter"
        );
    }

    #[test]
    fn out_of_range_settings_are_refused_and_never_panic() {
        let nan = Backoff {
            jitter: f64::NAN,
            ..Backoff::default()
        };
        assert!(ReconnectPolicy::Backoff(nan.clone()).validate().is_err());
        assert!(ReconnectPolicy::Backoff(nan.clone()).delay(1).is_some());
        let growth = Backoff {
            growth_rate: f64::INFINITY,
            ..Backoff::default()
        };
        assert!(ReconnectPolicy::Backoff(growth).validate().is_err());
        let forever = ReconnectPolicy::Backoff(Backoff {
            interval: Duration::MAX,
            max_delay: Duration::MAX,
            ..Backoff::default()
        });
        assert!(forever.validate().is_ok());
        assert_eq!(forever.delay(1), Some(Duration::MAX));
        assert!(ReconnectPolicy::Backoff(Backoff::default())
            .validate()
            .is_ok());
    }

    #[test]
    fn huge_attempt_numbers_do_not_overflow() {
        let policy = ReconnectPolicy::Backoff(Backoff {
            jitter: 0.0,
            ..Backoff::default()
        });
        assert_eq!(policy.delay(u32::MAX), Some(Duration::from_secs(10)));
    }
}
