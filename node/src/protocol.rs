//! The node's peer protocol as a whole: the error codes it answers with and
//! the refusals it can receive. The messages themselves are in
//! [`crate::greeting`] and [`crate::group`].

use std::fmt;

use serde::{Deserialize, Serialize};
use wire::envelope::{self, Code};

/// Codes a node answers with: its own, and the registry's, which a
/// coordinator passes on when the registry refuses it a group's members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// A coordinator could not ask the registry for its group's members.
    RegistryUnavailable,
    /// A multicast reached a node that does not coordinate the group.
    NotCoordinator,
    #[serde(untagged)]
    Registry(registry::protocol::ErrorCode),
}

impl From<Code> for ErrorCode {
    fn from(code: Code) -> Self {
        ErrorCode::Registry(code.into())
    }
}

impl From<registry::protocol::ErrorCode> for ErrorCode {
    fn from(code: registry::protocol::ErrorCode) -> Self {
        ErrorCode::Registry(code)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.serialize(f)
    }
}

/// A refusal from a node.
pub type ErrorBody = envelope::ErrorBody<ErrorCode>;

#[cfg(test)]
mod tests {
    use super::*;
    use registry::protocol::ErrorCode as RegistryCode;

    #[test]
    fn codes_of_both_protocols_round_trip() {
        for (code, name) in [
            (ErrorCode::RegistryUnavailable, "registry_unavailable"),
            (ErrorCode::Registry(RegistryCode::EmptyGroup), "empty_group"),
            (ErrorCode::from(Code::BadRequest), "bad_request"),
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), name);
            assert_eq!(serde_json::from_value::<ErrorCode>(name.into()).unwrap(), code);
            assert_eq!(code.to_string(), name);
        }
    }
}
