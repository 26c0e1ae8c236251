//! Log lines about refusals, at most one per source address and reason per
//! interval, so that a stranger sending 200,000 bad handshakes writes a few
//! lines, not 200,000.
//!
//! The first refusal of a source and reason is logged at once; those that
//! follow within [`INTERVAL`] are only counted, and the count rides on the
//! next line of that source and reason (its `unlogged` field). A reason is
//! its text up to [`REASON_CHARS`] characters, digits left out, so that
//! "attempt 3" and "attempt 4" of one replay are one reason. A source gets
//! at most [`REASONS_PER_SOURCE`] reasons: texts that echo what it sent
//! cannot buy it more lines, since the rest share one. Sources are bounded
//! in all as well, past which new ones share one line.

use std::collections::HashMap;
use std::fmt::{self, Write};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

/// How often one source and reason may be logged.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// How much of a reason's text tells reasons apart.
pub const REASON_CHARS: usize = 64;

/// Distinct reasons a source may be logged for per interval.
pub const REASONS_PER_SOURCE: usize = 16;

/// Sources followed at once.
const SOURCES: usize = 1024;

/// Where sources past [`SOURCES`] are counted together.
const MANY_SOURCES: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);

/// The process's refusals, which every service logs through.
pub static REFUSALS: LazyLock<Throttle> = LazyLock::new(|| Throttle::new(INTERVAL));

/// Whether a refusal of `source` for `reason` is logged now, by [`REFUSALS`]
/// (see [`Throttle::admit`]).
pub fn refusal(source: IpAddr, reason: &dyn fmt::Display) -> Option<u64> {
    REFUSALS.admit(source, reason, Instant::now())
}

#[derive(Debug)]
pub struct Throttle {
    interval: Duration,
    sources: Mutex<HashMap<IpAddr, Vec<Window>>>,
}

/// One source and reason: when it was last logged, and what went unlogged since.
#[derive(Debug)]
struct Window {
    reason: String,
    logged_at: Instant,
    unlogged: u64,
}

impl Throttle {
    pub fn new(interval: Duration) -> Throttle {
        Throttle { interval, sources: Mutex::default() }
    }

    /// Whether a refusal of `source` for `reason` is logged now: `Some` of
    /// how many of the same went unlogged since its last line, or `None`
    /// when it is only counted.
    pub fn admit(&self, source: IpAddr, reason: &dyn fmt::Display, now: Instant) -> Option<u64> {
        let reason = reason_key(reason);
        let mut sources = crate::lock(&self.sources);
        let source = source.to_canonical();
        if sources.len() >= SOURCES && !sources.contains_key(&source) {
            sources.retain(|_, windows| windows.iter().any(|w| now.duration_since(w.logged_at) < self.interval));
        }
        let source = if sources.len() >= SOURCES && !sources.contains_key(&source) { MANY_SOURCES } else { source };
        let windows = sources.entry(source).or_default();
        let at = match windows.iter().position(|w| w.reason == reason) {
            Some(at) => at,
            None if windows.len() < REASONS_PER_SOURCE => {
                windows.push(Window { reason, logged_at: now, unlogged: 0 });
                return Some(0);
            }
            // Past its reasons, a source's other refusals share its oldest line's.
            None => 0,
        };
        let window = &mut windows[at];
        if now.duration_since(window.logged_at) < self.interval {
            window.unlogged += 1;
            return None;
        }
        window.logged_at = now;
        Some(std::mem::take(&mut window.unlogged))
    }
}

/// The first [`REASON_CHARS`] characters of `reason`, digits left out.
fn reason_key(reason: &dyn fmt::Display) -> String {
    /// Keeps what tells reasons apart, and stops the formatting once it has enough.
    struct Key(String);
    impl Write for Key {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            for c in s.chars().filter(|c| !c.is_ascii_digit()) {
                if self.0.chars().count() == REASON_CHARS {
                    return Err(fmt::Error);
                }
                self.0.push(c);
            }
            Ok(())
        }
    }
    let mut key = Key(String::new());
    let _ = write!(key, "{reason}");
    key.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_source_and_reason_is_logged_once_per_interval_with_what_went_unlogged() {
        let throttle = Throttle::new(Duration::from_secs(10));
        let start = Instant::now();
        let later = |s| start + Duration::from_secs(s);

        assert_eq!(throttle.admit(ip("10.0.0.1"), &"wrong token", start), Some(0));
        for s in 1..10 {
            assert_eq!(throttle.admit(ip("10.0.0.1"), &"wrong token", later(s)), None);
        }
        assert_eq!(throttle.admit(ip("10.0.0.1"), &"replay of attempt 7", later(9)), Some(0), "another reason");
        assert_eq!(throttle.admit(ip("10.0.0.2"), &"wrong token", later(9)), Some(0), "another source");
        assert_eq!(throttle.admit(ip("10.0.0.1"), &"wrong token", later(10)), Some(9));
        assert_eq!(throttle.admit(ip("10.0.0.1"), &"wrong token", later(11)), None);
        assert_eq!(throttle.admit(ip("::ffff:10.0.0.1"), &"replay of attempt 8", later(12)), None, "the same");
    }

    #[test]
    fn a_source_cannot_buy_more_lines_with_reasons_that_echo_what_it_sent() {
        let throttle = Throttle::new(Duration::from_secs(10));
        let now = Instant::now();
        let letters = |i: u32| -> String { [i / 26, i % 26].iter().map(|l| char::from(b'a' + *l as u8)).collect() };
        let sent = |i| format!("field `ip`: `{}` is not an IP address", letters(i));
        let logged = (0..26 * 26).filter(|i| throttle.admit(ip("10.0.0.1"), &sent(*i), now).is_some()).count();
        assert_eq!(logged, REASONS_PER_SOURCE);
        let long = "y".repeat(10_000);
        assert_eq!(reason_key(&long).len(), REASON_CHARS);
    }

    #[test]
    fn past_the_bound_new_sources_share_one_line() {
        let throttle = Throttle::new(Duration::from_secs(10));
        let now = Instant::now();
        let logged = (0..SOURCES as u32 + 100)
            .filter(|i| throttle.admit(IpAddr::V4((*i).into()), &"wrong token", now).is_some())
            .count();
        assert_eq!(logged, SOURCES + 1);
        assert_eq!(crate::lock(&throttle.sources).len(), SOURCES + 1);
    }
}
