//! Timers on the hot path. Registering a tokio timer per request (and removing it again)
//! is a measurable share of a proxied request; these keep one sleep per connection or body
//! and only touch the timer wheel when it fires before the current deadline.

use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// `at + d`, saturating a year out instead of panicking. Configuration bounds every duration
/// to 365 days, so this never saturates in practice; it keeps a deadline from ever being
/// the thing that aborts the process.
#[inline]
pub fn after(at: Instant, d: Duration) -> Instant {
    at.checked_add(d).or_else(|| at.checked_add(Duration::from_secs(365 * 86_400))).unwrap_or(at)
}

/// One connection timer with a movable deadline. Moving the deadline later costs nothing;
/// the sleep is re-armed only when it fires before the current deadline.
pub struct Deadline {
    at: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Deadline {
    pub fn new(at: Instant) -> Self {
        Deadline { at, sleep: None }
    }

    /// The current deadline.
    pub fn at(&self) -> Instant {
        self.at
    }

    pub fn set(&mut self, at: Instant) {
        self.at = at;
        if let Some(s) = &mut self.sleep
            && s.deadline() > at
        {
            s.as_mut().reset(at);
        }
    }

    /// Registers for wake-up at the deadline; true once it has passed.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let at = self.at;
        let sleep = self.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        loop {
            if sleep.as_mut().poll(cx).is_pending() {
                return false;
            }
            if sleep.deadline() >= at {
                return true;
            }
            sleep.as_mut().reset(at);
        }
    }
}

/// Fires when a body has made no progress for `limit`: the period starts when it first
/// waits after making progress. Bodies that arrive in one piece never create a sleep.
pub struct IdleTimer {
    limit: Duration,
    deadline: Option<Deadline>,
    armed: bool,
}

impl IdleTimer {
    pub fn new(limit: Duration) -> Self {
        IdleTimer { limit, deadline: None, armed: false }
    }

    /// Progress was made: the next wait starts a fresh period.
    pub(crate) fn progress(&mut self) {
        self.armed = false;
    }

    /// Called when the inner body is pending; true once the period has run out.
    pub(crate) fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.armed {
            let at = after(Instant::now(), self.limit);
            match &mut self.deadline {
                Some(d) => d.set(at),
                None => self.deadline = Some(Deadline::new(at)),
            }
            self.armed = true;
        }
        self.deadline.as_mut().is_some_and(|d| d.poll_expired(cx))
    }
}
