//! The store's tests: shared helpers, and admission, leases and groups;
//! incarnations and their places are in `places`, who owns a name or an
//! address and the bounds in `owners`.

mod owners;
mod places;

use super::*;
use crate::protocol::ErrorCode;

const TTL: Duration = Duration::from_secs(15);

/// Entries held, expired ones not yet swept included.
fn held(store: &Store) -> usize {
    store.lock().entries.len()
}

fn store() -> Store {
    Store::new(Leases::new(TTL, None), 3, Capacity::default())
}

fn native(name: &str, port: u16) -> Registration {
    Registration {
        ip: Some("10.0.0.1".parse().unwrap()),
        incarnation: None,
        puerto: port,
        name: Some(name.into()),
        group: None,
        dialect: Dialect::Native,
        key: None,
        ticket_key: None,
    }
}

fn in_group(name: &str, port: u16, group: u32) -> Registration {
    Registration { group: Some(group), ..native(name, port) }
}

fn observed() -> IpAddr {
    "192.0.2.1".parse().unwrap()
}

fn names(contacts: &[Contact]) -> Vec<&str> {
    contacts.iter().map(|c| c.name.as_str()).collect()
}

fn contact_names(admitted: &Admitted) -> Vec<&str> {
    admitted.contacts.iter().map(|earlier| earlier.contact.value.name.as_str()).collect()
}

/// `run-NAME`, registered with the key numbered `key`.
fn incarnation(name: &str, port: u16, key: u8) -> Registration {
    Registration { incarnation: Some(format!("run-{name}")), key: Some(key_numbered(key)), ..native(name, port) }
}

fn key_numbered(n: u8) -> PublicKey {
    PublicKey::from_bytes(&[n; 32]).unwrap()
}

/// The entry `id`, held by `session`, loses it `at`.
fn lose(store: &Store, id: &str, session: u64, at: Instant) {
    store.hold(id, session, at);
    store.session_lost(id, session, at).expect("lost");
}

fn keyed(name: &str, port: u16, key: PublicKey) -> Registration {
    Registration { key: Some(key), ..native(name, port) }
}

fn key() -> PublicKey {
    wire::secure::Identity::generate().public()
}

#[test]
fn each_registration_sees_the_earlier_ones_but_never_itself() {
    let store = store();
    let now = Instant::now();
    let a = store.register(&native("a", 1), observed(), now).unwrap();
    let b = store.register(&native("b", 2), observed(), now).unwrap();
    let c = store.register(&native("c", 3), observed(), now).unwrap();
    assert!(a.contacts.is_empty());
    assert_eq!(contact_names(&b), ["a"]);
    assert_eq!(contact_names(&c), ["a", "b"]);
    assert_eq!(names(&store.list(now)), ["a", "b", "c"]);
    assert_ne!(a.entry.id, b.entry.id);
}

#[test]
fn leases_expire_unless_renewed() {
    let store = store();
    let start = Instant::now();
    let a = store.register(&native("a", 1), observed(), start).unwrap();
    store.register(&native("b", 2), observed(), start).unwrap();
    let later = start + TTL - Duration::from_millis(1);
    assert_eq!(store.heartbeat(&a.entry.id, None, later).unwrap(), TTL);
    assert_eq!(store.silent(start + TTL / 2), Vec::<String>::new(), "half a lease of silence is allowed");
    let silent = store.silent(later);
    assert_eq!(silent.len(), 1, "b was silent for most of its lease");
    assert_eq!(store.lookup(&EntryKey::Id(silent[0].clone()), later).unwrap().name, "b");
    let after = start + TTL;
    assert_eq!(names(&store.list(after)), ["a"], "b expired, a was renewed");
    assert!(store.silent(after).is_empty(), "an expired entry is gone, not silent");
    assert_eq!(names(&store.sweep(after)), ["b"]);
    assert_eq!(held(&store), 1);
    assert_eq!(store.lookup(&EntryKey::Name("b".into()), after).unwrap_err().code(), ErrorCode::NotFound);
}

#[test]
fn an_expired_holder_does_not_block_its_name_even_before_the_sweep() {
    let store = store();
    let start = Instant::now();
    store.register(&native("a", 1), observed(), start).unwrap();
    let later = start + TTL;
    let again = store.register(&native("a", 2), observed(), later).unwrap();
    assert!(again.contacts.is_empty());
    assert_eq!(store.lookup(&EntryKey::Name("a".into()), later).unwrap().puerto, 2);
    assert_eq!(held(&store), 1, "the expired holder was replaced, not kept beside");
}

#[test]
fn legacy_entries_have_no_lease_unless_configured() {
    let legacy = Registration {
        ip: None,
        puerto: 1,
        name: None,
        group: None,
        incarnation: None,
        dialect: Dialect::Original,
        key: None,
        ticket_key: None,
    };
    let forever = store();
    let start = Instant::now();
    forever.register(&legacy, observed(), start).unwrap();
    assert!(forever.sweep(start + Duration::from_secs(86_400)).is_empty());

    let bounded = Store::new(Leases::new(TTL, Some(Duration::from_secs(60))), 3, Capacity::default());
    bounded.register(&legacy, observed(), start).unwrap();
    assert_eq!(bounded.sweep(start + Duration::from_secs(60)).len(), 1);
}

#[test]
fn deregister_by_id_or_name_and_lookup() {
    let store = store();
    let now = Instant::now();
    let a = store.register(&native("a", 1), observed(), now).unwrap();
    store.register(&native("b", 2), observed(), now).unwrap();
    assert_eq!(store.lookup(&EntryKey::Name("a".into()), now).unwrap(), a.entry);
    assert_eq!(store.deregister(&EntryKey::Id(a.entry.id.clone()), None, now).unwrap(), a.entry);
    assert_eq!(store.deregister(&EntryKey::Name("b".into()), None, now).unwrap().name, "b");
    assert_eq!(store.deregister(&EntryKey::Name("b".into()), None, now).unwrap_err().code(), ErrorCode::NotFound);
    assert_eq!(store.deregister(&EntryKey::Id(a.entry.id), None, now).unwrap_err().code(), ErrorCode::UnknownId);
    assert_eq!(held(&store), 0);
}

#[test]
fn groups_are_assigned_least_loaded_first_and_chosen_ones_count() {
    let store = store();
    let now = Instant::now();
    store.register(&in_group("chooser", 1, 2), observed(), now).unwrap();
    let groups: Vec<Option<u32>> =
        (2..=9).map(|p| store.register(&native(&format!("n{p}"), p), observed(), now).unwrap().entry.group).collect();
    assert_eq!(groups, [1, 3, 1, 2, 3, 1, 2, 3].map(Some));
    let legacy = Registration {
        ip: None,
        puerto: 99,
        name: None,
        group: None,
        incarnation: None,
        dialect: Dialect::Original,
        key: None,
        ticket_key: None,
    };
    assert_eq!(store.register(&legacy, observed(), now).unwrap().entry.group, None);
}

#[test]
fn the_oldest_live_member_coordinates_and_the_next_takes_over() {
    let store = store();
    let start = Instant::now();
    store.register(&in_group("first", 1, 2), observed(), start).unwrap();
    let later = start + Duration::from_secs(10);
    let second = store.register(&in_group("second", 2, 2), observed(), later).unwrap();
    store.register(&in_group("other", 3, 1), observed(), later).unwrap();
    let view = store.group(2, later).unwrap();
    assert_eq!(names(&view), ["first", "second"], "the oldest first, so it coordinates");

    let after = start + TTL;
    store.heartbeat(&second.entry.id, None, after - Duration::from_millis(1)).unwrap();
    let view = store.group(2, after).unwrap();
    assert_eq!(view[0].name, "second", "the first member's lease ran out");
}

#[test]
fn empty_and_unknown_groups_are_told_apart() {
    let store = store();
    let now = Instant::now();
    store.register(&in_group("far", 1, 7), observed(), now).unwrap();
    assert_eq!(store.group(2, now).unwrap_err(), StoreError::EmptyGroup { group: 2 });
    assert_eq!(store.group(4, now).unwrap_err(), StoreError::UnknownGroup { group: 4, groups: 3 });
    assert_eq!(store.group(7, now).unwrap().len(), 1, "a chosen group outside 1-3 exists while it has members");
}

#[test]
fn concurrent_registrations_see_each_pair_exactly_once() {
    let store = std::sync::Arc::new(store());
    let now = Instant::now();
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                (0..50)
                    .map(|i| {
                        let port = 1 + t * 50 + i;
                        let admitted = store.register(&native(&format!("n{port}"), port), observed(), now).unwrap();
                        (
                            admitted.entry.name.clone(),
                            contact_names(&admitted).iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                        )
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut pairs = std::collections::HashSet::new();
    for handle in handles {
        for (name, earlier) in handle.join().unwrap() {
            for other in earlier {
                let pair = if name < other { (name.clone(), other) } else { (other, name.clone()) };
                assert!(pairs.insert(pair), "a pair was introduced twice");
            }
        }
    }
    assert_eq!(pairs.len(), 400 * 399 / 2);
}
