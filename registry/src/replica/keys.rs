//! Where the replicas keep their log in etcd.

use etcd::LeaseId;

/// Every key the replicas write begins with it.
pub(super) const PREFIX: &[u8] = b"hit6/registry/";
const LOG: &[u8] = b"log";
const LEASE: &[u8] = b"lease/";
const READY: &[u8] = b"ready";

/// A key of the replicas' log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Key {
    /// Commands without a lease: each write is a revision of their own.
    Log,
    /// A registration, tied to its entry's lease: etcd deletes it when the
    /// lease ends, which every replica reads as the entry's expiry.
    Lease(LeaseId),
    /// Where a replica that starts marks the end of the log it must catch up with.
    Ready,
}

impl Key {
    pub fn bytes(self) -> Vec<u8> {
        let rest = match self {
            Key::Log => LOG.to_vec(),
            Key::Lease(lease) => [LEASE, format!("{lease:016x}").as_bytes()].concat(),
            Key::Ready => READY.to_vec(),
        };
        [PREFIX, &rest].concat()
    }

    pub fn parse(key: &[u8]) -> Option<Key> {
        let rest = key.strip_prefix(PREFIX)?;
        if rest == LOG {
            return Some(Key::Log);
        }
        if rest == READY {
            return Some(Key::Ready);
        }
        let hex = std::str::from_utf8(rest.strip_prefix(LEASE)?).ok()?;
        (hex.len() == 16).then(|| i64::from_str_radix(hex, 16).ok()).flatten().map(Key::Lease)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_parses_back_and_no_other_does() {
        for key in [Key::Log, Key::Ready, Key::Lease(0x7fff_0000_1234), Key::Lease(1)] {
            assert_eq!(Key::parse(&key.bytes()), Some(key));
        }
        for other in [
            &b"hit6/registry/lease/12"[..],
            b"hit6/registry/logs",
            b"other/log",
            b"hit6/registry/lease/zz00000000000000",
        ] {
            assert_eq!(Key::parse(other), None, "{}", String::from_utf8_lossy(other));
        }
    }
}
