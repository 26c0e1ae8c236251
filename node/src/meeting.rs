//! Which peers this node has met, so that a pair meets once even when the
//! registry has told both ends of it about the other.
//!
//! The registry tells both ends when it cannot know whether a lost reply
//! told one of them already (docs/protocol.md, "Who greets whom"). The end
//! greeted first does not greet back ([`Meetings::heard_from`]). When both
//! greetings with tickets are already on their way, each receiver decides
//! alike, from the two keys alone ([`Meetings::verdict`]): of two crossing
//! greetings the one from the smaller key is welcomed, the other answered
//! as met and logged by neither end. A greeting from a peer that already
//! welcomed this node's own is answered as met too.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Mutex;

use wire::secure::PublicKey;

use crate::recent::Recent;

/// What a node answers a greeting with a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The greeting is the pair's meeting: logged by both ends.
    Welcome,
    /// The pair has met, or is meeting, through this node's own greeting.
    Met,
}

#[derive(Debug, Default)]
pub struct Meetings {
    /// Peers that greeted this node, by address (an original node has no key).
    heard_from: Recent<SocketAddr>,
    /// Peers this node's greetings with tickets are on their way to.
    greeting: HashSet<PublicKey>,
    /// Peers that welcomed this node's greeting.
    welcomed: Recent<PublicKey>,
}

impl Meetings {
    /// Remembers that the peer at `addr` greeted this node.
    pub fn hear_from(&mut self, addr: SocketAddr) {
        self.heard_from.insert(addr);
    }

    /// Whether the peer at `addr` greeted this node: it need not be greeted back.
    pub fn heard_from(&self, addr: &SocketAddr) -> bool {
        self.heard_from.contains(addr)
    }

    /// How this node, `me`, answers a greeting with a ticket from `greeter`.
    pub fn verdict(&self, greeter: PublicKey, me: PublicKey) -> Verdict {
        let crossing = self.greeting.contains(&greeter) && greeter > me;
        if crossing || self.welcomed.contains(&greeter) {
            Verdict::Met
        } else {
            Verdict::Welcome
        }
    }
}

/// This node's greeting to one peer, on its way for as long as it lives.
#[derive(Debug)]
pub struct OnItsWay<'a> {
    meetings: &'a Mutex<Meetings>,
    peer: PublicKey,
}

impl<'a> OnItsWay<'a> {
    pub fn start(meetings: &'a Mutex<Meetings>, peer: PublicKey) -> OnItsWay<'a> {
        wire::lock(meetings).greeting.insert(peer);
        OnItsWay { meetings, peer }
    }

    /// The peer welcomed the greeting: the pair has met.
    pub fn welcomed(self) {
        wire::lock(self.meetings).welcomed.insert(self.peer);
    }
}

impl Drop for OnItsWay<'_> {
    fn drop(&mut self) {
        wire::lock(self.meetings).greeting.remove(&self.peer);
    }
}

#[cfg(test)]
mod tests {
    use wire::secure::Identity;

    use super::*;

    /// Two keys, the smaller first.
    fn ordered() -> (PublicKey, PublicKey) {
        let (a, b) = (Identity::generate().public(), Identity::generate().public());
        (a.min(b), a.max(b))
    }

    #[test]
    fn of_two_crossing_greetings_only_the_one_from_the_smaller_key_is_welcomed() {
        let (small, large) = ordered();
        let (at_small, at_large) = (Mutex::default(), Mutex::default());
        let _small_greets = OnItsWay::start(&at_small, large);
        let _large_greets = OnItsWay::start(&at_large, small);

        assert_eq!(wire::lock(&at_large).verdict(small, large), Verdict::Welcome);
        assert_eq!(wire::lock(&at_small).verdict(large, small), Verdict::Met);
    }

    #[test]
    fn a_greeting_from_a_peer_that_welcomed_this_nodes_own_is_met() {
        let (small, large) = ordered();
        let at_large = Mutex::default();
        OnItsWay::start(&at_large, small).welcomed();

        assert_eq!(wire::lock(&at_large).verdict(small, large), Verdict::Met);
        assert!(wire::lock(&at_large).greeting.is_empty(), "the greeting is no longer on its way");
    }

    #[test]
    fn a_greeting_not_crossing_one_of_this_nodes_is_welcomed_from_either_key() {
        let (small, large) = ordered();
        let (at_small, at_large) = (Mutex::<Meetings>::default(), Mutex::<Meetings>::default());
        // A greeting that failed, or was answered as met, is no longer on its way.
        drop(OnItsWay::start(&at_small, large));

        assert_eq!(wire::lock(&at_small).verdict(large, small), Verdict::Welcome);
        assert_eq!(wire::lock(&at_large).verdict(small, large), Verdict::Welcome);
    }
}
