//! Whether the node is healthy, as `/health` and the `up` metric say: once
//! registered, for as long as its session with the registry is up.
//!
//! The session is down from a failed heartbeat, or from the moment its
//! watch's connection fails (which is how a dead registry is noticed
//! first), until a heartbeat or a watch succeeds again. A node registered
//! with an original registry has no session: registered, it is healthy.

use std::sync::atomic::{AtomicBool, Ordering};

use wire::health::Health;

#[derive(Debug, Default)]
pub struct Vitals {
    registered: AtomicBool,
    session_down: AtomicBool,
}

impl Vitals {
    pub fn health(&self) -> Health {
        if !self.registered.load(Ordering::Relaxed) {
            Health::bad("not registered")
        } else if self.session_down.load(Ordering::Relaxed) {
            Health::bad("its session with the registry is down")
        } else {
            Health::good()
        }
    }

    /// Registered, or about to register again (`false`) once the registry forgot it.
    pub fn registered(&self, registered: bool) {
        self.registered.store(registered, Ordering::Relaxed);
        if registered {
            self.session(true);
        }
    }

    /// The session answered (`true`: a heartbeat, a watch) or failed.
    pub fn session(&self, up: bool) {
        self.session_down.store(!up, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_only_while_registered_with_the_session_up() {
        let vitals = Vitals::default();
        assert_eq!(vitals.health(), Health::bad("not registered"));
        vitals.registered(true);
        assert_eq!(vitals.health(), Health::good());
        vitals.session(false);
        assert_eq!(vitals.health(), Health::bad("its session with the registry is down"));
        vitals.session(true);
        assert_eq!(vitals.health(), Health::good());
        vitals.registered(false);
        assert!(!vitals.health().health);
    }
}
