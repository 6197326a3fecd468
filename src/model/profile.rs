//! Opt-in wall-clock accounting of decoding by part, for benchmarks: where a token's time goes
//! (prefill, layer computation, K/V propagation of skipped layers, exit checks, the exit head).
//! Off unless [`begin`] was called on the thread; then each timed part costs two clock reads.
//! Candle's CPU kernels run synchronously, so a part's time is its kernels' time.

use serde::Serialize;
use std::cell::RefCell;
use std::time::Instant;

/// The parts of decoding that are timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The encoder (T5) or the full-model prompt prefill (decoder-only), with its first token.
    Prefill,
    /// Decoder layers run in full for active rows.
    Layers,
    /// K/V of skipped layers projected from the exit state.
    Propagation,
    /// Confidence measures (a softmax check includes its exit head).
    ExitChecks,
    /// The exit head's argmax where no softmax check gave the token.
    Head,
}

/// Seconds spent in each part since [`begin`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct TimeProfile {
    pub prefill_seconds: f64,
    pub layers_seconds: f64,
    pub propagation_seconds: f64,
    pub exit_checks_seconds: f64,
    pub head_seconds: f64,
}

impl TimeProfile {
    fn slot(&mut self, part: Part) -> &mut f64 {
        match part {
            Part::Prefill => &mut self.prefill_seconds,
            Part::Layers => &mut self.layers_seconds,
            Part::Propagation => &mut self.propagation_seconds,
            Part::ExitChecks => &mut self.exit_checks_seconds,
            Part::Head => &mut self.head_seconds,
        }
    }

    /// Seconds in the timed decoding parts (everything but the prefill).
    pub fn decode_parts_seconds(&self) -> f64 {
        self.layers_seconds
            + self.propagation_seconds
            + self.exit_checks_seconds
            + self.head_seconds
    }
}

thread_local! {
    static PROFILE: RefCell<Option<TimeProfile>> = const { RefCell::new(None) };
}

/// Start accounting on this thread (from zero).
pub fn begin() {
    PROFILE.with(|p| *p.borrow_mut() = Some(TimeProfile::default()));
}

/// Stop accounting on this thread and return what was accounted (zeros if [`begin`] was not
/// called).
pub fn end() -> TimeProfile {
    PROFILE.with(|p| p.borrow_mut().take()).unwrap_or_default()
}

/// Run `f`, adding its wall-clock time to `part` when accounting is on.
pub(crate) fn timed<T>(part: Part, f: impl FnOnce() -> T) -> T {
    let on = PROFILE.with(|p| p.borrow().is_some());
    if !on {
        return f();
    }
    let start = Instant::now();
    let value = f();
    let seconds = start.elapsed().as_secs_f64();
    PROFILE.with(|p| {
        if let Some(profile) = p.borrow_mut().as_mut() {
            *profile.slot(part) += seconds;
        }
    });
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_only_between_begin_and_end_and_per_part() {
        let spin = |ms: u64| {
            let start = Instant::now();
            while start.elapsed().as_millis() < ms as u128 {}
        };
        timed(Part::Layers, || spin(2));
        assert_eq!(end(), TimeProfile::default());
        begin();
        timed(Part::Layers, || spin(3));
        timed(Part::Head, || spin(1));
        let profile = end();
        assert!(profile.layers_seconds >= 0.003, "{profile:?}");
        assert!(profile.head_seconds >= 0.001 && profile.head_seconds < profile.layers_seconds);
        assert_eq!(profile.prefill_seconds, 0.0);
        assert!(
            (profile.decode_parts_seconds() - profile.layers_seconds - profile.head_seconds).abs()
                < 1e-12
        );
    }
}
