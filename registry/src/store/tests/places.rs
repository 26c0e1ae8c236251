//! Incarnations: a repeat answered as its first admission, a lapsed one
//! back at its place, and whom each is told of.

use super::*;

#[test]
fn a_repeated_incarnation_is_answered_as_its_first_admission() {
    let store = store();
    let start = Instant::now();
    let once = |name: &str, port| Registration { incarnation: Some(format!("run-{name}")), ..native(name, port) };
    store.register(&native("x", 9), observed(), start).unwrap();
    let first = store.register(&once("a", 1), observed(), start).unwrap();
    let b = store.register(&native("b", 2), observed(), start).unwrap();
    assert_eq!(contact_names(&b), ["x", "a"]);
    store.deregister(&EntryKey::Name("x".into()), None, start).unwrap();

    let later = start + Duration::from_secs(10);
    let again = store.register(&once("a", 1), observed(), later).unwrap();
    assert!(again.repeat && !first.repeat);
    assert_eq!(again.entry, first.entry, "the same id and entry");
    assert!(contact_names(&again).is_empty(), "only what was admitted before it and is still live");
    assert!(again.replaced.is_empty());
    assert_eq!(names(&store.list(later)), ["a", "b"], "it keeps its place");
    assert_eq!(names(&store.list(later + TTL - Duration::from_secs(1))), ["a"], "the repeat renewed its lease");

    let expired = start + Duration::from_secs(10) + TTL;
    let anew = store.register(&once("a", 1), observed(), expired).unwrap();
    assert!(!anew.repeat, "after its lease, it is admitted again");
}

#[test]
fn a_lapsed_incarnation_takes_its_place_back_and_meets_those_admitted_while_it_was_gone() {
    let store = store();
    let start = Instant::now();
    let first = store.register(&incarnation("a", 1, 1), observed(), start).unwrap();
    let b = store.register(&incarnation("b", 2, 2), observed(), start).unwrap();
    assert_eq!(contact_names(&b), ["a"], "b greets a");

    // a stops heartbeating; b goes on. c joins once a's lease is over.
    let gone = start + TTL;
    store.heartbeat(&b.entry.id, b.entry.key, gone - Duration::from_secs(1)).unwrap();
    assert_eq!(names(&store.sweep(gone)), ["a"]);
    let c = store.register(&incarnation("c", 3, 3), observed(), gone).unwrap();
    assert_eq!(contact_names(&c), ["b"], "c never hears of a");

    let back = gone + Duration::from_secs(1);
    let again = store.register(&incarnation("a", 1, 1), observed(), back).unwrap();
    assert!(!again.repeat);
    assert_eq!(again.entry, first.entry, "its place, its id and its group");
    assert_eq!(contact_names(&again), ["c"], "b greets it already; c never heard of it");
    assert_eq!(names(&store.list(back)), ["a", "b", "c"]);

    let repeat = store.register(&incarnation("a", 1, 1), observed(), back).unwrap();
    assert!(repeat.repeat);
    assert_eq!(contact_names(&repeat), ["c"], "a repeat is told as the admission was");
    let d = store.register(&incarnation("d", 4, 4), observed(), back).unwrap();
    assert_eq!(contact_names(&d), ["a", "b", "c"]);
}

#[test]
fn a_node_back_at_its_place_is_told_of_every_earlier_one_again() {
    let store = store();
    let t0 = Instant::now();
    store.register(&incarnation("a", 1, 1), observed(), t0).unwrap();
    let b = store.register(&incarnation("b", 2, 2), observed(), t0).unwrap();
    // a lapses; c comes while it is away; a comes back and greets c.
    let t1 = t0 + TTL;
    store.heartbeat(&b.entry.id, b.entry.key, t1 - Duration::from_secs(1)).unwrap();
    store.sweep(t1);
    store.register(&incarnation("c", 3, 3), observed(), t1).unwrap();
    let a = store.register(&incarnation("a", 1, 1), observed(), t1).unwrap();
    assert_eq!(contact_names(&a), ["c"]);

    // Now c lapses and comes back: the reply that told it of b may be
    // what was lost, so it is told of b again, and of a (whose node may
    // have greeted it already: c's node then drops the introduction).
    let t2 = t1 + TTL;
    for (id, key) in [(&a.entry.id, a.entry.key), (&b.entry.id, b.entry.key)] {
        store.heartbeat(id, key, t2 - Duration::from_secs(2)).unwrap();
    }
    assert_eq!(names(&store.sweep(t2)), ["c"]);
    let c = store.register(&incarnation("c", 3, 3), observed(), t2).unwrap();
    assert_eq!(contact_names(&c), ["a", "b"]);
}

/// b was told of a; b's reply was lost, and b asked again while a was
/// away (its session lost), so b's repeat leaves a out: a, back, is told
/// of b, last told while a was gone.
#[test]
fn a_repeat_while_another_is_away_counts_as_telling_then() {
    let store = store();
    let t0 = Instant::now();
    let a = store.register(&incarnation("a", 1, 1), observed(), t0).unwrap();
    let b = store.register(&incarnation("b", 2, 2), observed(), t0).unwrap();
    assert_eq!(contact_names(&b), ["a"], "the reply that is lost");
    lose(&store, &a.entry.id, 1, t0);
    let again = store.register(&incarnation("b", 2, 2), observed(), t0).unwrap();
    assert!(again.repeat);
    assert!(contact_names(&again).is_empty(), "a is away");
    let a = store.register(&incarnation("a", 1, 1), observed(), t0).unwrap();
    assert_eq!(contact_names(&a), ["b"]);
}

/// a is gone twice: b came during the first stretch, and a's reply that
/// told it of b was lost with its session, so a is told of b again.
#[test]
fn a_node_gone_twice_is_told_of_those_that_came_while_it_was_first_gone() {
    let store = store();
    let t0 = Instant::now();
    let a = store.register(&incarnation("a", 1, 1), observed(), t0).unwrap();
    lose(&store, &a.entry.id, 1, t0);
    store.register(&incarnation("b", 2, 2), observed(), t0).unwrap();
    let a = store.register(&incarnation("a", 1, 1), observed(), t0).unwrap();
    assert_eq!(contact_names(&a), ["b"], "the reply that is lost");
    lose(&store, &a.entry.id, 2, t0);
    store.register(&incarnation("c", 3, 3), observed(), t0).unwrap();
    let a = store.register(&incarnation("a", 1, 1), observed(), t0).unwrap();
    assert_eq!(contact_names(&a), ["b", "c"]);
}

/// A request takes its instant before it waits for the lock: b, told
/// its contacts after a's session was lost but with an instant from
/// before, counts as told then, so a, back, is told of b.
#[test]
fn a_registration_that_waited_for_the_lock_counts_as_told_when_it_got_it() {
    let store = store();
    let t0 = Instant::now();
    let lost = t0 + Duration::from_millis(5);
    let a = store.register(&incarnation("a", 1, 1), observed(), t0).unwrap();
    lose(&store, &a.entry.id, 1, lost);
    let b = store.register(&incarnation("b", 2, 2), observed(), t0).unwrap();
    assert!(contact_names(&b).is_empty(), "a is gone");
    let a = store.register(&incarnation("a", 1, 1), observed(), lost + Duration::from_millis(1)).unwrap();
    assert_eq!(contact_names(&a), ["b"]);
}

/// b was told of a, but its reply was lost, and its session with it (a
/// node that gives up on a registration drops the session); then a's
/// session is lost too, and b comes back while a is away, so it is not
/// told of a: a, on its return, is told of b, which came back while it
/// was away.
#[test]
fn a_node_back_while_another_was_away_is_introduced_to_it_on_its_return() {
    let store = store();
    let t0 = Instant::now();
    let a = store.register(&incarnation("a", 1, 1), observed(), t0).unwrap();
    let b = store.register(&incarnation("b", 2, 2), observed(), t0).unwrap();
    assert_eq!(contact_names(&b), ["a"], "the reply that is lost");
    lose(&store, &b.entry.id, 2, t0);
    lose(&store, &a.entry.id, 1, t0);
    let b = store.register(&incarnation("b", 2, 2), observed(), t0).unwrap();
    assert!(contact_names(&b).is_empty(), "a is away");
    let a = store.register(&incarnation("a", 1, 1), observed(), t0).unwrap();
    assert_eq!(contact_names(&a), ["b"], "b came back while a was away");
}

#[test]
fn two_nodes_away_in_turn_are_still_introduced_once() {
    let store = store();
    let t0 = Instant::now();
    // x lapses; z comes while x is away, then lapses too; x comes back
    // while z is away, then z comes back: z greets x.
    let x = store.register(&incarnation("x", 1, 1), observed(), t0).unwrap();
    let t1 = t0 + TTL;
    store.sweep(t1);
    let z = store.register(&incarnation("z", 2, 2), observed(), t1).unwrap();
    assert!(contact_names(&z).is_empty(), "x is away");
    let t2 = t1 + TTL;
    store.sweep(t2);
    let x_back = store.register(&incarnation("x", 1, 1), observed(), t2).unwrap();
    assert_eq!(x_back.entry.id, x.entry.id);
    assert!(contact_names(&x_back).is_empty(), "z is away");
    let z_back = store.register(&incarnation("z", 2, 2), observed(), t2 + Duration::from_secs(1)).unwrap();
    assert_eq!(contact_names(&z_back), ["x"], "nobody else greets the pair");
}

#[test]
fn only_its_own_key_takes_a_lapsed_place_and_a_node_that_left_takes_a_new_one() {
    let store = store();
    let start = Instant::now();
    let first = store.register(&incarnation("a", 1, 1), observed(), start).unwrap();
    store.register(&incarnation("left", 2, 2), observed(), start).unwrap();
    store.deregister(&EntryKey::Name("left".into()), Some(key_numbered(2)), start).unwrap();

    let gone = start + TTL;
    let stranger = Registration { name: Some("m".into()), ..incarnation("a", 7, 9) };
    let stranger = store.register(&stranger, observed(), gone).unwrap();
    assert_ne!(stranger.entry.id, first.entry.id, "another key with a's incarnation gets a place of its own");
    let again = store.register(&incarnation("a", 1, 1), observed(), gone).unwrap();
    assert_eq!(again.entry.id, first.entry.id, "a's place waited for a's key");
    assert_eq!(contact_names(&again), ["m"]);

    let rejoined = store.register(&incarnation("left", 2, 2), observed(), gone).unwrap();
    assert_eq!(contact_names(&rejoined), ["a", "m"], "a node that deregistered joins at the end");
}

#[test]
fn the_registry_forgets_the_oldest_lapsed_places_first() {
    let bound = 3;
    let store = Store::new(Leases::new(TTL, None), 3, Capacity { entries: bound, ..Capacity::default() });
    let start = Instant::now();
    let gone = start + TTL;
    let register = |i: u16, now| {
        let registration = Registration { incarnation: Some(format!("run-{i}")), ..native(&i.to_string(), i) };
        store.register(&registration, observed(), now).unwrap().entry.id
    };
    let mut ids: Vec<String> = (0..bound as u16).map(|i| register(i, start)).collect();
    assert_eq!(store.sweep(gone).len(), bound);
    ids.push(register(bound as u16, gone));
    assert_eq!(store.sweep(gone + TTL).len(), 1, "a fourth lapses");
    assert_eq!(store.lock().lapsed.len(), bound);
    assert_ne!(register(0, gone + TTL), ids[0], "the first to lapse was forgotten");
    assert_eq!(register(1, gone + TTL), ids[1]);
}

#[test]
fn a_repeated_incarnation_from_another_key_is_no_repeat() {
    let store = store();
    let now = Instant::now();
    let run = |key| Registration { incarnation: Some("run-1".into()), ..keyed("alice", 1, key) };
    store.register(&run(key()), observed(), now).unwrap();
    assert_eq!(store.register(&run(key()), observed(), now).unwrap_err().code(), ErrorCode::NameTaken);
}
