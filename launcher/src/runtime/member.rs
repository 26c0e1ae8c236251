//! The members of a project, as every runtime names them.

use std::fmt;

/// A member of a project: its registry (the only one, or replica `i`),
/// member `i` of the etcd cluster under the replicas, or node `i`
/// (numbered from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Member {
    /// `None`: the project's only registry, `registry`; `Some(i)`: replica
    /// `i` of a project with several, `registry-i`.
    Registry(Option<usize>),
    Etcd(usize),
    Node(usize),
}

impl Member {
    /// The registry of a project that runs one.
    pub const REGISTRY: Member = Member::Registry(None);

    /// Its role, as the `io.hit6.role` label says it.
    pub fn role(self) -> &'static str {
        match self {
            Member::Registry(_) => "registry",
            Member::Etcd(_) => "etcd",
            Member::Node(_) => "node",
        }
    }

    /// What it is, in words.
    pub fn kind(self) -> &'static str {
        match self {
            Member::Registry(_) => "registry",
            Member::Etcd(_) => "etcd member",
            Member::Node(_) => "node",
        }
    }

    /// Its number among the members of its role, when it has one: the
    /// `io.hit6.index` label.
    pub fn index(self) -> Option<usize> {
        match self {
            Member::Registry(index) => index,
            Member::Etcd(index) | Member::Node(index) => Some(index),
        }
    }

    /// The member a role and an index (labels) name, if they name one.
    pub fn from_role(role: &str, index: Option<usize>) -> Option<Member> {
        match (role, index) {
            ("registry", index) => Some(Member::Registry(index)),
            ("etcd", Some(index)) => Some(Member::Etcd(index)),
            ("node", Some(index)) => Some(Member::Node(index)),
            _ => None,
        }
    }

    /// The member a user names: a node by its number (3) or its name
    /// (node-3), the registry (`registry`) or a replica (`registry-2`), an
    /// etcd member (`etcd-1`). Also reads back what [`Member`] prints.
    pub fn parse(text: &str) -> Result<Member, String> {
        let numbered = |prefix: &str| text.strip_prefix(prefix).map(|n| n.parse::<usize>().ok().filter(|&n| n > 0));
        let member = if text == "registry" {
            Some(Member::REGISTRY)
        } else if let Some(number) = numbered("registry-") {
            number.map(|i| Member::Registry(Some(i)))
        } else if let Some(number) = numbered("etcd-") {
            number.map(Member::Etcd)
        } else {
            let number = text.strip_prefix("node-").unwrap_or(text);
            number.parse::<usize>().ok().filter(|&i| i > 0).map(Member::Node)
        };
        member.ok_or_else(|| {
            format!(
                "`{text}` is no member: name a node by its number (3) or its name (node-3), a registry \
                 (registry, or registry-2 of several) or an etcd member (etcd-1)"
            )
        })
    }

    /// Whether it is a registry: the only one, or a replica.
    pub fn is_registry(self) -> bool {
        matches!(self, Member::Registry(_))
    }

    /// Whether it serves `/metrics` and `/health` (a registry or a node, not etcd).
    pub fn serves_http(self) -> bool {
        !matches!(self, Member::Etcd(_))
    }
}

/// `registry`, `registry-2`, `etcd-1` or `node-3`: the name that prefixes
/// its log lines, that nodes register under, and that follows the project's
/// in resource names.
impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Member::Registry(None) => f.write_str("registry"),
            Member::Registry(Some(index)) => write!(f, "registry-{index}"),
            Member::Etcd(index) => write!(f, "etcd-{index}"),
            Member::Node(index) => write!(f, "node-{index}"),
        }
    }
}

impl std::str::FromStr for Member {
    type Err = String;

    fn from_str(text: &str) -> Result<Member, String> {
        Member::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_is_named_by_its_number_or_its_name() {
        assert_eq!(Member::parse("3"), Ok(Member::Node(3)));
        assert_eq!(Member::parse("node-12"), Ok(Member::Node(12)));
        assert_eq!(Member::Node(12).to_string(), "node-12");
        for bad in ["0", "node-", "-1", "node-x", "registry-0", "etcd-", "etcd-x", "registry-", "etcd"] {
            assert!(Member::parse(bad).unwrap_err().contains("is no member"), "{bad}");
        }
    }

    #[test]
    fn registries_and_etcd_members_print_and_parse_back() {
        for (text, member) in [
            ("registry", Member::REGISTRY),
            ("registry-2", Member::Registry(Some(2))),
            ("etcd-1", Member::Etcd(1)),
            ("etcd-7", Member::Etcd(7)),
        ] {
            assert_eq!(Member::parse(text), Ok(member), "{text}");
            assert_eq!(member.to_string(), text);
        }
        assert_eq!(Member::Registry(Some(3)).role(), "registry");
        assert_eq!(Member::Etcd(3).role(), "etcd");
        assert_eq!(Member::from_role("registry", None), Some(Member::REGISTRY));
        assert_eq!(Member::from_role("registry", Some(2)), Some(Member::Registry(Some(2))));
        assert_eq!(Member::from_role("etcd", Some(2)), Some(Member::Etcd(2)));
        assert_eq!(Member::from_role("etcd", None), None);
        assert_eq!(Member::from_role("client", Some(1)), None);
        for member in [Member::REGISTRY, Member::Registry(Some(2)), Member::Etcd(1), Member::Node(4)] {
            assert_eq!(Member::from_role(member.role(), member.index()), Some(member));
        }
    }
}
