//! Host ports for published nodes: a range, and the free ports in it.

use std::collections::HashSet;
use std::fmt;
use std::net::TcpListener;
use std::str::FromStr;

/// An inclusive range of host ports, written `8087-8095`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    /// How many ports it holds.
    pub fn count(&self) -> usize {
        usize::from(self.last - self.first) + 1
    }

    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }

    fn ports(&self) -> impl Iterator<Item = u16> {
        self.first..=self.last
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl FromStr for PortRange {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let parse = |part: &str| match part.trim().parse::<u16>() {
            Ok(port) if port > 0 => Ok(port),
            _ => Err(format!("`{text}` isn't a port range like 8087-8095: `{part}` isn't a port number (1-65535)")),
        };
        let (first, last) = match text.split_once('-') {
            Some((first, last)) => (parse(first)?, parse(last)?),
            None => (parse(text)?, parse(text)?),
        };
        if first > last {
            return Err(format!("`{text}` isn't a port range: {first} is above {last}"));
        }
        Ok(PortRange { first, last })
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PortError {
    #[error("{range} holds {held} ports; --nodes {needed} needs {needed}: widen --port-range")]
    RangeTooSmall { range: PortRange, held: usize, needed: usize },
    #[error(
        "only {free} of the ports {range} are free; --nodes {needed} needs {needed}: free some or widen --port-range"
    )]
    NotEnoughFree { range: PortRange, free: usize, needed: usize },
}

/// Fails before anything starts when the range cannot hold `needed` nodes.
pub fn check_capacity(range: PortRange, needed: usize) -> Result<(), PortError> {
    if range.count() < needed {
        return Err(PortError::RangeTooSmall { range, held: range.count(), needed });
    }
    Ok(())
}

/// The ports of `range` that no process on this host has bound and no
/// container has published, in random order so that projects started side
/// by side do not race for the same ones.
fn free_ports(range: PortRange, published: &HashSet<u16>) -> Vec<u16> {
    let mut ports: Vec<u16> = range.ports().filter(|p| !published.contains(p) && is_free(*p)).collect();
    fastrand::shuffle(&mut ports);
    ports
}

/// Picks `needed` distinct free ports from `range`, and returns them with
/// the free ports left over, to move to when one turns out taken after all.
pub fn pick(range: PortRange, needed: usize, published: &HashSet<u16>) -> Result<(Vec<u16>, Vec<u16>), PortError> {
    check_capacity(range, needed)?;
    let mut free = free_ports(range, published);
    if free.len() < needed {
        return Err(PortError::NotEnoughFree { range, free: free.len(), needed });
    }
    let spare = free.split_off(needed);
    Ok((free, spare))
}

/// The ports of `range` that some process on this host has bound (a
/// container's published port among them).
pub fn bound_here(range: PortRange) -> HashSet<u16> {
    range.ports().filter(|port| !is_free(*port)).collect()
}

/// The first `needed` ports above `after` that are free (unbound here,
/// unpublished) and outside `range`, which the nodes take.
pub fn next_free(after: u16, needed: usize, range: PortRange, published: &HashSet<u16>) -> Vec<u16> {
    let candidates = (after.saturating_add(1)..=u16::MAX).filter(|p| !range.contains(*p) && !published.contains(p));
    candidates.filter(|p| is_free(*p)).take(needed).collect()
}

/// Whether a listener could bind the port on every interface, as docker's would.
fn is_free(port: u16) -> bool {
    TcpListener::bind(("0.0.0.0", port)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ranges_and_says_what_is_wrong() {
        assert_eq!("8087-8095".parse(), Ok(PortRange { first: 8087, last: 8095 }));
        assert_eq!("8087".parse::<PortRange>().unwrap().count(), 1);
        assert!("9-8".parse::<PortRange>().unwrap_err().contains("9 is above 8"));
        assert!("1-70000".parse::<PortRange>().unwrap_err().contains("`70000` isn't a port number"));
        assert!("0-5".parse::<PortRange>().is_err());
    }

    #[test]
    fn a_range_smaller_than_the_node_count_is_refused_with_the_numbers() {
        let range: PortRange = "8087-8095".parse().unwrap();
        let error = check_capacity(range, 20).unwrap_err();
        assert_eq!(error.to_string(), "8087-8095 holds 9 ports; --nodes 20 needs 20: widen --port-range");
        assert!(check_capacity(range, 9).is_ok());
    }

    #[test]
    fn bound_and_published_ports_are_not_picked() {
        let taken = TcpListener::bind("0.0.0.0:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let range = PortRange { first: port, last: port.saturating_add(1) };
        let published = HashSet::from([port.saturating_add(1)]);
        assert!(free_ports(range, &published).is_empty());
        let error = pick(range, 1, &published).unwrap_err();
        assert_eq!(error, PortError::NotEnoughFree { range, free: 0, needed: 1 });
    }

    #[test]
    fn picks_distinct_ports_inside_the_range() {
        let range: PortRange = "40000-40999".parse().unwrap();
        let (ports, spare) = pick(range, 20, &HashSet::new()).unwrap();
        assert_eq!(ports.iter().collect::<HashSet<_>>().len(), 20);
        assert!(ports.iter().chain(&spare).all(|p| range.contains(*p)));
        assert!(spare.iter().all(|p| !ports.contains(p)), "spare ports are the ones not chosen");
        assert!(spare.len() > 900, "the rest of the free range is kept as spare: {}", spare.len());
    }
}
