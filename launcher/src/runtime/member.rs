//! The members of a project, as every runtime names them.

use std::fmt;

/// A member of a project: its registry, or node `i` (numbered from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Member {
    Registry,
    Node(usize),
}

impl Member {
    /// Its role, as the `io.hit6.role` label says it.
    pub fn role(self) -> &'static str {
        match self {
            Member::Registry => "registry",
            Member::Node(_) => "node",
        }
    }

    /// The index of a node a user names `3` or `node-3`.
    pub fn node_index(text: &str) -> Result<usize, String> {
        let number = text.strip_prefix("node-").unwrap_or(text);
        match number.parse::<usize>() {
            Ok(index) if index > 0 => Ok(index),
            _ => Err(format!("`{text}` is no node: give its number (3) or its name (node-3)")),
        }
    }
}

/// `registry` or `node-3`: the name that prefixes its log lines, that
/// nodes register under, and that follows the project's in resource names.
impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Member::Registry => f.write_str("registry"),
            Member::Node(index) => write!(f, "node-{index}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_is_named_by_its_number_or_its_name() {
        assert_eq!(Member::node_index("3"), Ok(3));
        assert_eq!(Member::node_index("node-12"), Ok(12));
        assert_eq!(Member::Node(12).to_string(), "node-12");
        for bad in ["0", "node-", "registry", "-1", "node-x"] {
            assert!(Member::node_index(bad).unwrap_err().contains("give its number"), "{bad}");
        }
    }
}
