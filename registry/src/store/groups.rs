//! Groups: which one a node that chooses none is assigned, and who
//! coordinates each (its oldest entry), as watchers were last told.

use std::collections::BTreeMap;

use crate::protocol::Contact;
use crate::watch::Change;

/// Of groups 1 to `groups`, the one with the fewest of `members` (the
/// groups of the live entries), the lowest on a tie.
pub(super) fn least_loaded(groups: u32, members: impl IntoIterator<Item = u32>) -> u32 {
    let mut load = vec![0usize; groups as usize];
    for group in members {
        if let Some(count) = load.get_mut(group as usize - 1) {
            *count += 1;
        }
    }
    let (index, _) =
        load.iter().enumerate().min_by_key(|(i, count)| (**count, *i)).expect("there is at least one group");
    index as u32 + 1
}

/// Each group's coordinator, by id, as last recorded.
#[derive(Debug, Default)]
pub(super) struct Coordinators(BTreeMap<u32, String>);

impl Coordinators {
    /// Records `oldest` as the coordinator of `group` (`None` once it has
    /// no entry left), and returns the change if it is one.
    pub(super) fn update(&mut self, group: u32, oldest: Option<Contact>) -> Option<Change> {
        if self.0.get(&group) == oldest.as_ref().map(|c| &c.id) {
            return None;
        }
        match &oldest {
            Some(contact) => self.0.insert(group, contact.id.clone()),
            None => self.0.remove(&group),
        };
        Some(Change::Coordinator { group, coordinator: oldest })
    }

    pub(super) fn by_group(&self) -> &BTreeMap<u32, String> {
        &self.0
    }
}
