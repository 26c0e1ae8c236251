//! Who owns a name or an address (a key, or for the originals an
//! address), what is held for a lost entry's key, and the bounds.

use super::*;

#[test]
fn a_taken_name_is_refused_and_names_its_holder() {
    let store = store();
    let now = Instant::now();
    store.register(&native("a", 1), observed(), now).unwrap();
    let err = store.register(&native("a", 2), observed(), now).unwrap_err();
    assert_eq!(err.code(), ErrorCode::NameTaken);
    assert!(err.to_string().contains("10.0.0.1:1"), "{err}");
    assert_eq!(held(&store), 1);
}

#[test]
fn the_same_node_registering_again_replaces_its_entry() {
    let store = store();
    let now = Instant::now();
    let first = store.register(&native("a", 1), observed(), now).unwrap();
    store.register(&native("b", 2), observed(), now).unwrap();
    let again = store.register(&native("a", 1), observed(), now).unwrap();
    assert_eq!(again.replaced, vec![first.entry.clone()]);
    assert_eq!(contact_names(&again), ["b"]);
    assert_eq!(names(&store.list(now)), ["b", "a"]);
    assert_eq!(store.heartbeat(&first.entry.id, None, now).unwrap_err().code(), ErrorCode::UnknownId);
}

#[test]
fn a_new_name_at_an_old_address_replaces_the_old_entry() {
    let store = store();
    let now = Instant::now();
    store.register(&native("old", 1), observed(), now).unwrap();
    let new = store.register(&native("new", 1), observed(), now).unwrap();
    assert_eq!(names(&new.replaced), ["old"]);
    assert_eq!(names(&store.list(now)), ["new"]);
}

#[test]
fn a_lost_entrys_name_and_address_stay_its_keys_until_its_lease_would_have_ended() {
    let store = store();
    let start = Instant::now();
    let alice = store.register(&incarnation("alice", 1, 1), observed(), start).unwrap();
    store.hold(&alice.entry.id, 7, start);
    assert!(store.session_lost(&alice.entry.id, 6, start).is_none(), "another session's loss changes nothing");
    let lost = store.session_lost(&alice.entry.id, 7, start).expect("its own session's loss ends it");
    assert_eq!(lost.name, "alice");
    assert!(store.list(start).is_empty());

    let mallory = Registration { name: Some("alice".into()), ..incarnation("m", 9, 9) };
    let error = store.register(&mallory, observed(), start).unwrap_err();
    assert_eq!(error.code(), ErrorCode::NameTaken, "{error}");
    let at_alices = Registration { name: Some("m".into()), ..incarnation("m", 1, 9) };
    assert_eq!(store.register(&at_alices, observed(), start).unwrap_err().code(), ErrorCode::AddressTaken);

    let back = store.register(&incarnation("alice", 1, 1), observed(), start).unwrap();
    assert_eq!(back.entry.id, alice.entry.id, "alice takes her place back");

    // Lost again: held for the hold (twice her lease), then anyone's.
    lose(&store, &back.entry.id, 8, start);
    let almost = start + 2 * TTL - Duration::from_secs(1);
    assert_eq!(store.register(&mallory, observed(), almost).unwrap_err().code(), ErrorCode::NameTaken);
    let over = start + 2 * TTL;
    store.sweep(over);
    assert!(store.register(&mallory, observed(), over).is_ok());
}

#[test]
fn a_keyed_entry_is_its_keys_alone() {
    let store = store();
    let now = Instant::now();
    let (alice, mallory) = (key(), key());
    let entry = store.register(&keyed("alice", 1, alice), observed(), now).unwrap().entry;
    let by_name = store.register(&keyed("alice", 2, mallory), observed(), now).unwrap_err();
    let by_addr = store.register(&keyed("mallory", 1, mallory), observed(), now).unwrap_err();
    let unkeyed = store.register(&native("mallory", 1), observed(), now).unwrap_err();
    assert_eq!(
        (by_name.code(), by_addr.code(), unkeyed.code()),
        (ErrorCode::NameTaken, ErrorCode::AddressTaken, ErrorCode::AddressTaken)
    );
    assert!(by_addr.to_string().contains("alice"), "{by_addr}");
    for caller in [None, Some(mallory)] {
        assert_eq!(store.heartbeat(&entry.id, caller, now).unwrap_err().code(), ErrorCode::Forbidden);
        let key = EntryKey::Name("alice".into());
        assert_eq!(store.deregister(&key, caller, now).unwrap_err().code(), ErrorCode::Forbidden);
    }
    assert_eq!(store.list(now), vec![entry.clone()], "nothing changed");
    assert_eq!(store.heartbeat(&entry.id, Some(alice), now).unwrap(), TTL);
    let moved = store.register(&keyed("alice", 3, alice), observed(), now).unwrap();
    assert_eq!(moved.replaced, vec![entry], "the same key moved to another port");
}

#[test]
fn an_address_spelt_ipv4_mapped_is_the_address_it_maps() {
    let store = store();
    let now = Instant::now();
    let entry = store.register(&keyed("alice", 1, key()), observed(), now).unwrap().entry;
    let mapped: IpAddr = format!("::ffff:{}", entry.ip).parse().unwrap();
    let given = Registration { ip: Some(mapped), ..keyed("mallory", 1, key()) };
    let seen = keyed("mallory", 1, key());

    let errors = [store.register(&given, observed(), now), store.register(&seen, mapped, now)];

    assert!(errors.iter().all(|e| e.as_ref().unwrap_err().code() == ErrorCode::AddressTaken), "{errors:?}");
}

/// A node paused or cut off past its lease comes back with its key to
/// its name and address; a stranger gets them once the hold is over.
#[test]
fn a_keyed_name_and_address_are_held_past_the_lease_then_anyones() {
    let held = store();
    let start = Instant::now();
    let alice = key();
    held.register(&keyed("alice", 1, alice), observed(), start).unwrap();
    let lapsed = start + TTL;
    let by_name = held.register(&keyed("alice", 2, key()), observed(), lapsed).unwrap_err();
    let by_addr = held.register(&keyed("mallory", 1, key()), observed(), lapsed).unwrap_err();
    assert_eq!((by_name.code(), by_addr.code()), (ErrorCode::NameTaken, ErrorCode::AddressTaken));
    held.sweep(lapsed + TTL);
    let unkeyed = held.register(&native("alice", 2), observed(), lapsed + TTL).unwrap_err();
    assert_eq!(unkeyed.code(), ErrorCode::NameTaken, "held once swept, against anyone but her key");
    assert!(held.register(&keyed("alice", 1, alice), observed(), lapsed + TTL).is_ok(), "her key takes it back");

    let other = store();
    other.register(&keyed("alice", 1, alice), observed(), start).unwrap();
    let over = start + TTL + 2 * TTL;
    assert_eq!(other.register(&keyed("alice", 1, key()), observed(), over).unwrap().entry.name, "alice");
}

#[test]
fn an_address_no_peer_can_reach_is_refused() {
    let store = store();
    for ip in ["255.255.255.255", "224.0.0.251", "ff02::1"] {
        let registration = Registration { ip: Some(ip.parse().unwrap()), ..native("a", 1) };
        let error = store.register(&registration, observed(), Instant::now()).unwrap_err();
        assert_eq!(error.code(), ErrorCode::BadRequest);
        assert!(error.to_string().contains("no peer can connect"), "{error}");
    }
    let unspecified_source = Registration { ip: None, ..native("a", 1) };
    assert!(store.register(&unspecified_source, "0.0.0.0".parse().unwrap(), Instant::now()).is_err());
    assert_eq!(held(&store), 0);
}

#[test]
fn long_names_and_ids_are_truncated_in_errors() {
    let error = StoreError::UnknownId { id: "i".repeat(65_000) };
    assert!(error.to_string().len() < 120, "{}", error.to_string().len());
    let error = StoreError::NotFound { name: "n".repeat(128) };
    assert!(error.to_string().len() < 120, "{}", error.to_string().len());
}

#[test]
fn missing_ip_records_the_observed_address_and_defaults_the_name() {
    let store = store();
    let reg = Registration {
        ip: None,
        puerto: 8089,
        name: None,
        group: None,
        incarnation: None,
        dialect: Dialect::Original,
        key: None,
        ticket_key: None,
    };
    let admitted = store.register(&reg, observed(), Instant::now()).unwrap();
    assert_eq!(admitted.entry.addr(), "192.0.2.1:8089".parse().unwrap());
    assert_eq!(admitted.entry.name, "192.0.2.1:8089");
}

#[test]
fn original_entries_are_bounded_per_address_and_in_all() {
    let capacity = Capacity { entries: 100, original: 3, original_per_ip: 2, ..Capacity::default() };
    let store = Store::new(Leases::new(TTL, None), 3, capacity);
    let now = Instant::now();
    let original = |port| Registration { dialect: Dialect::Original, name: None, ..native("", port) };
    let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
    store.register(&original(1), a, now).unwrap();
    store.register(&original(2), a, now).unwrap();
    let per_ip = store.register(&original(3), a, now).unwrap_err();
    assert!(per_ip.to_string().contains("from this address"), "{per_ip}");
    store.register(&original(4), b, now).unwrap();
    let in_all = store.register(&original(5), b, now).unwrap_err();
    assert_eq!(in_all.code(), ErrorCode::Full);
    assert!(store.register(&native("n", 6), a, now).is_ok(), "native entries have their own bound");
    // Registering again at its own address takes its own place: no refusal.
    assert!(store.register(&original(2), a, now).is_ok());
    let key = EntryKey::Addr("10.0.0.1:1".parse().unwrap());
    store.deregister(&key, None, now).unwrap();
    assert!(store.register(&original(3), a, now).is_ok(), "a place freed is a place again");
}
