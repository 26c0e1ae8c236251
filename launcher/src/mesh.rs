//! What the nodes' events say about the mesh: who registered, who greeted
//! whom, and whether every pair has met.
//!
//! The expected number of greetings is not N(N-1)/2 but the sum of what each
//! node reports the registry gave it, so that joining an existing registry,
//! with nodes of its own, is counted right.

use std::collections::{BTreeMap, BTreeSet};

use node::events::{Event, Record};

/// One node's view, built from its events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// The host port it is published on, when it runs in a container.
    pub host_port: Option<u16>,
    /// The address the registry recorded for it.
    pub advertised: Option<String>,
    /// The group the registry placed it in.
    pub group: Option<u64>,
    pub registered: bool,
    /// Greetings it was told to send (the contacts the registry gave it).
    pub to_greet: u64,
    pub sent: u64,
    pub received: u64,
    pub failed: u64,
    /// Names of the peers that greeted it.
    pub greeted_by: BTreeSet<String>,
}

/// The nodes, plus running totals, so that each event costs the same
/// however many nodes there are (a 1000-node mesh logs a million events).
#[derive(Debug, Clone, Default)]
pub struct Mesh {
    nodes: BTreeMap<String, NodeStats>,
    registered: usize,
    to_greet: u64,
    received: u64,
    /// Greetings whose sender has logged the outcome: sent or failed.
    settled: u64,
}

impl Mesh {
    /// A mesh of the named nodes, none registered yet.
    pub fn new(nodes: impl IntoIterator<Item = (String, Option<u16>)>) -> Mesh {
        let nodes = nodes.into_iter().map(|(name, host_port)| (name, NodeStats { host_port, ..NodeStats::default() }));
        Mesh { nodes: nodes.collect(), ..Mesh::default() }
    }

    pub fn nodes(&self) -> &BTreeMap<String, NodeStats> {
        &self.nodes
    }

    /// Applies an event logged by `node`.
    pub fn apply(&mut self, node: &str, record: &Record) {
        let Some(stats) = self.nodes.get_mut(node) else { return };
        match record.event {
            Event::Registered | Event::Reregistered => {
                if !stats.registered {
                    stats.registered = true;
                    self.registered += 1;
                }
                stats.advertised = record.addr.clone();
                stats.group = record.group;
                let to_greet = record.to_greet.unwrap_or(0);
                stats.to_greet += to_greet;
                self.to_greet += to_greet;
            }
            Event::GreetingSent => {
                stats.sent += 1;
                self.settled += 1;
            }
            Event::GreetingFailed => {
                stats.failed += 1;
                self.settled += 1;
            }
            Event::GreetingReceived => {
                stats.received += 1;
                self.received += 1;
                stats.greeted_by.extend(record.peer_name.clone());
            }
            _ => {}
        }
    }

    /// Greetings expected in all: known once every node has registered.
    pub fn expected(&self) -> Option<u64> {
        (self.registered == self.nodes.len()).then_some(self.to_greet)
    }

    /// Greetings that have arrived.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Every node has registered, every greeting expected has arrived, and
    /// every greeter has logged the outcome of each of its greetings, so the
    /// summary adds up. (A receiver logs a greeting before it answers, so
    /// arrivals can be complete while the senders' outcomes are still on
    /// their way.) Nodes log a greeting once per greeter, so this is every
    /// pair having met, even where a greeter gave up on a peer whose answers
    /// came too late: that one counts in `failed`.
    pub fn is_complete(&self) -> bool {
        self.expected().is_some_and(|expected| self.received >= expected && self.settled >= expected)
    }

    /// Every node has registered, every pair has greeted one way or the
    /// other, and every greeter has logged the outcome of its greetings: the
    /// verdict for a membership that changed (`scale`), where the counts of
    /// [`Mesh::is_complete`] include greetings with nodes since removed.
    pub fn all_met(&self) -> bool {
        let settled = self.nodes.values().all(|n| n.sent + n.failed >= n.to_greet);
        self.expected().is_some() && settled && self.missing_pairs().is_empty()
    }

    /// Pairs of our nodes that have not greeted, either way round.
    pub fn missing_pairs(&self) -> Vec<(String, String)> {
        let names: Vec<&String> = self.nodes.keys().collect();
        let met = |a: &String, b: &String| self.nodes[a].greeted_by.contains(b) || self.nodes[b].greeted_by.contains(a);
        let mut missing = Vec::new();
        for (i, a) in names.iter().enumerate() {
            for b in &names[i + 1..] {
                if !met(a, b) {
                    missing.push(((*a).clone(), (*b).clone()));
                }
            }
        }
        missing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(event: Event) -> Record {
        serde_json::from_value(serde_json::json!({ "event": event })).unwrap()
    }

    fn registered(to_greet: u64) -> Record {
        Record { to_greet: Some(to_greet), addr: Some("10.0.0.1:8087".into()), ..record(Event::Registered) }
    }

    fn received_from(peer: &str) -> Record {
        Record { peer_name: Some(peer.into()), ..record(Event::GreetingReceived) }
    }

    fn three() -> Mesh {
        Mesh::new(["a", "b", "c"].map(|n| (n.to_owned(), None)))
    }

    #[test]
    fn expected_count_comes_from_what_the_registry_gave_each_node() {
        let mut mesh = three();
        mesh.apply("a", &registered(0));
        mesh.apply("b", &registered(1));
        assert_eq!(mesh.expected(), None, "c has not registered");
        mesh.apply("c", &registered(2));
        assert_eq!(mesh.expected(), Some(3));
    }

    #[test]
    fn complete_once_every_greeting_is_sent_and_received() {
        let mut mesh = three();
        for (node, k) in [("a", 0), ("b", 1), ("c", 2)] {
            mesh.apply(node, &registered(k));
        }
        mesh.apply("b", &record(Event::GreetingSent));
        mesh.apply("a", &received_from("b"));
        mesh.apply("c", &record(Event::GreetingSent));
        mesh.apply("a", &received_from("c"));
        assert!(!mesh.is_complete());
        assert_eq!(mesh.missing_pairs(), [("b".to_owned(), "c".to_owned())]);
        mesh.apply("b", &received_from("c"));
        assert!(mesh.missing_pairs().is_empty());
        assert!(!mesh.is_complete(), "every greeting arrived, but c has not logged its second one as sent");
        mesh.apply("c", &record(Event::GreetingSent));
        assert!(mesh.is_complete());
    }

    #[test]
    fn a_failed_greeting_is_counted_and_unknown_nodes_are_ignored() {
        let mut mesh = three();
        for (node, k) in [("a", 0), ("b", 1), ("c", 0)] {
            mesh.apply(node, &registered(k));
        }
        mesh.apply("b", &record(Event::GreetingFailed));
        assert!(!mesh.is_complete(), "a has not been greeted");
        assert_eq!(mesh.nodes()["b"].failed, 1);
        // The greeting did arrive; only its answer was lost.
        mesh.apply("a", &received_from("b"));
        assert!(mesh.is_complete());
        mesh.apply("stranger", &received_from("a"));
        assert_eq!((mesh.nodes().len(), mesh.received()), (3, 1), "a stranger's events count for nothing");
    }

    #[test]
    fn all_met_needs_every_pair_and_every_outcome_whatever_the_counts() {
        let mut mesh = three();
        // a greeted a node since removed: its count says one more than this mesh shows.
        for (node, k) in [("a", 1), ("b", 1), ("c", 2)] {
            mesh.apply(node, &registered(k));
        }
        mesh.apply("a", &record(Event::GreetingSent));
        mesh.apply("a", &received_from("b"));
        mesh.apply("a", &received_from("c"));
        mesh.apply("b", &received_from("c"));
        assert!(!mesh.all_met(), "b and c have not logged their greetings as sent");
        mesh.apply("b", &record(Event::GreetingSent));
        mesh.apply("c", &record(Event::GreetingSent));
        mesh.apply("c", &record(Event::GreetingSent));
        assert!(mesh.all_met());
        assert!(!mesh.is_complete(), "the counts include a's greeting to the removed node");
    }

    #[test]
    fn registering_again_counts_a_node_once() {
        let mut mesh = three();
        mesh.apply("a", &registered(0));
        mesh.apply("a", &Record { event: Event::Reregistered, ..registered(0) });
        assert_eq!(mesh.expected(), None, "b and c have not registered");
    }
}
