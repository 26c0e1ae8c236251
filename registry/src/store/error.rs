//! Why the store refuses a request, and the code each refusal is sent with.

use std::net::SocketAddr;

use wire::fields::{truncate, BadField};

use crate::protocol::{Contact, ErrorCode};

/// A refusal, naming what holds what was asked for where one does.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    #[error("name `{name}` is taken by {} at {} (id {})", holder.name, holder.addr(), holder.id)]
    NameTaken { name: String, holder: Box<Contact> },
    #[error("address {addr} is held by {} (id {}), registered with another key", holder.name, holder.id)]
    AddressTaken { addr: SocketAddr, holder: Box<Contact> },
    #[error("entry {} ({}) belongs to another key; only the node that registered it may {op} it", holder.id, holder.name)]
    Forbidden { op: &'static str, holder: Box<Contact> },
    #[error("the registry holds {limit} {what}, as many as it may; try again once some have left")]
    Full { what: &'static str, limit: usize },
    #[error("field `ip`: {reason}")]
    Unreachable { reason: BadField },
    #[error("no live entry has id `{}`; register again", truncate(id))]
    UnknownId { id: String },
    #[error("no live entry is named `{}`", truncate(name))]
    NotFound { name: String },
    #[error("revision {revision} is ahead of this registry's, {current}: watch without `since`")]
    FutureRevision { revision: u64, current: u64 },
    #[error("group {group} has no live members")]
    EmptyGroup { group: u32 },
    #[error("there is no group {group}: groups are 1 to {groups}, and no node chose {group}")]
    UnknownGroup { group: u32, groups: u32 },
    #[error("this replica cannot reach the store it shares ({reason}); ask another replica")]
    Unavailable { reason: String },
}

impl StoreError {
    pub fn code(&self) -> ErrorCode {
        match self {
            StoreError::NameTaken { .. } => ErrorCode::NameTaken,
            StoreError::AddressTaken { .. } => ErrorCode::AddressTaken,
            StoreError::Forbidden { .. } => ErrorCode::Forbidden,
            StoreError::Full { .. } => ErrorCode::Full,
            StoreError::Unreachable { .. } | StoreError::FutureRevision { .. } => ErrorCode::BadRequest,
            StoreError::UnknownId { .. } => ErrorCode::UnknownId,
            StoreError::NotFound { .. } => ErrorCode::NotFound,
            StoreError::EmptyGroup { .. } => ErrorCode::EmptyGroup,
            StoreError::UnknownGroup { .. } => ErrorCode::UnknownGroup,
            StoreError::Unavailable { .. } => ErrorCode::Unavailable,
        }
    }
}
