//! What an etcd member's log lines say, as the launcher reads them: etcd
//! logs JSON (`--logger zap`) with its own time (`ts`) and a message
//! (`msg`); a member that wins an election logs `<id> became leader at
//! term <n>`, by which the launcher tells who leads and since when,
//! without reaching etcd's client port (only the project network does).

use serde::Deserialize;

/// One line of an etcd member's log.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EtcdRecord {
    #[serde(default)]
    pub level: String,
    /// When it was logged, RFC 3339 (etcd's clock: the host's, in a container).
    pub ts: String,
    pub msg: String,
}

impl EtcdRecord {
    /// Parses one JSON log line; `None` for lines that are not etcd's.
    pub fn parse(line: &str) -> Option<EtcdRecord> {
        serde_json::from_str(line).ok()
    }

    /// The term at which the member that logged this became the leader.
    pub fn became_leader(&self) -> Option<u64> {
        self.became().filter(|(leader, _)| *leader).map(|(_, term)| term)
    }

    /// A change of the logging member's raft role (`<id> became follower
    /// at term 3`): whether it became the leader, and at which term. A
    /// leader that loses its quorum steps down this way too.
    pub fn became(&self) -> Option<(bool, u64)> {
        let (_, change) = self.msg.split_once(" became ")?;
        let (role, term) = change.split_once(" at term ")?;
        let role_ok = matches!(role, "leader" | "follower" | "candidate" | "pre-candidate");
        role_ok.then_some(())?;
        Some((role == "leader", term.trim().parse().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_that_wins_an_election_says_at_which_term() {
        let line = r#"{"level":"info","ts":"2026-12-06T12:51:47.801Z","caller":"raft/raft.go:771","msg":"bdae9bbc11dd390d became leader at term 2"}"#;
        let record = EtcdRecord::parse(line).unwrap();
        assert_eq!(record.became_leader(), Some(2));
        assert_eq!(record.ts, "2026-12-06T12:51:47.801Z");
        let elected =
            r#"{"level":"info","ts":"2026-12-06T12:51:47.801Z","msg":"raft.node: bdae elected leader bdae at term 2"}"#;
        assert_eq!(EtcdRecord::parse(elected).unwrap().became_leader(), None);
        assert!(EtcdRecord::parse(r#"{"event":"registered","name":"node-1"}"#).is_none());
        let stepped_down =
            r#"{"level":"info","ts":"2026-12-06T12:51:49.801Z","msg":"bdae9bbc11dd390d became follower at term 3"}"#;
        assert_eq!(EtcdRecord::parse(stepped_down).unwrap().became(), Some((false, 3)));
        assert_eq!(EtcdRecord::parse(stepped_down).unwrap().became_leader(), None);
    }
}
