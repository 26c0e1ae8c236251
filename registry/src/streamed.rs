//! Replies made a piece at a time as their reader takes them
//! ([`Pieces`]): a registration's, which a late registrant of a large mesh
//! gets with a thousand contacts and as many tickets, and a watcher's batch
//! of changes. While a thousand nodes join, hundreds of these are under way
//! at once to nodes too busy to read them; made as they are read, each
//! costs the registry a chunk ([`wire::connection::PIECES_CHUNK`]) rather
//! than its whole size, and a ticket is sealed only when its turn comes.

use std::sync::Arc;

use serde::Serialize;
use wire::connection::Pieces;
use wire::ticket::Greeter;

use crate::credential::RegistryKey;
use crate::protocol::{Contact, Encoded, Policy};
use crate::store::ToGreet;
use crate::watch::WatchEvent;

/// A successful registration's reply: it reads as a
/// [`crate::protocol::Registered`].
pub struct RegisteredReply {
    /// The reply's small fields, as a JSON object still open for the arrays.
    head: Vec<u8>,
    contacts: Vec<ToGreet>,
    /// What its tickets name: none for a registrant that gave no ticket
    /// key, which no one could greet either.
    greeter: Option<(Greeter, u64)>,
    next: Part,
}

/// The fields of [`crate::protocol::Registered`] but its arrays.
#[derive(Serialize)]
pub struct Head<'a> {
    pub id: &'a str,
    pub ttl_ms: u64,
    pub entry: &'a Contact,
    pub registry_key: RegistryKey,
    pub policy: Policy,
}

enum Part {
    Head,
    Contact(usize),
    Ticket(usize),
}

impl RegisteredReply {
    /// The reply of `head`, telling of `contacts`, with a ticket for each
    /// that greets them as `greeter` until `expires_ms` (Unix milliseconds).
    pub fn new(head: &Head<'_>, contacts: Vec<ToGreet>, greeter: Option<(Greeter, u64)>) -> RegisteredReply {
        let mut json = Vec::new();
        wire::envelope::success(head, &mut serde_json::Serializer::new(&mut json)).expect("a reply serializes");
        json.pop(); // its closing brace: the arrays follow
        RegisteredReply { head: json, contacts, greeter, next: Part::Head }
    }
}

impl Pieces for RegisteredReply {
    fn next_piece(&mut self, out: &mut Vec<u8>) -> bool {
        match self.next {
            Part::Head => {
                out.extend_from_slice(&self.head);
                out.extend_from_slice(br#","contactos":["#);
                self.next = Part::Contact(0);
            }
            Part::Contact(i) => match self.contacts.get(i) {
                Some(earlier) => {
                    separate(out, i);
                    out.extend_from_slice(earlier.contact.json().as_bytes());
                    self.next = Part::Contact(i + 1);
                }
                None if self.greeter.is_some() => {
                    out.extend_from_slice(br#"],"tickets":["#);
                    self.next = Part::Ticket(0);
                }
                None => return end(out),
            },
            Part::Ticket(i) => {
                let (Some(earlier), Some((greeter, expires_ms))) = (self.contacts.get(i), &self.greeter) else {
                    return end(out);
                };
                separate(out, i);
                // `null` for an original contact, greeted in plaintext.
                let receiver = earlier.contact.value.key.zip(earlier.ticket_key.as_ref());
                let introduction = receiver.map(|(receiver, key)| key.issue(receiver, greeter, *expires_ms));
                serde_json::to_writer(&mut *out, &introduction).expect("an introduction serializes");
                self.next = Part::Ticket(i + 1);
            }
        }
        true
    }
}

fn separate(out: &mut Vec<u8>, i: usize) {
    if i > 0 {
        out.push(b',');
    }
}

/// Closes the open array and the reply.
fn end(out: &mut Vec<u8>) -> bool {
    out.extend_from_slice(b"]}\n");
    false
}

/// A watcher's batch: changes encoded once for every watcher, one per line.
pub struct Changes<'a> {
    changes: &'a [Arc<Encoded<WatchEvent>>],
    next: usize,
}

impl<'a> Changes<'a> {
    pub fn new(changes: &'a [Arc<Encoded<WatchEvent>>]) -> Changes<'a> {
        Changes { changes, next: 0 }
    }
}

impl Pieces for Changes<'_> {
    fn next_piece(&mut self, out: &mut Vec<u8>) -> bool {
        if let Some(change) = self.changes.get(self.next) {
            out.extend_from_slice(change.json().as_bytes());
            out.push(b'\n');
            self.next += 1;
        }
        self.next < self.changes.len()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use wire::secure::{Identity, PublicKey};
    use wire::ticket::TicketKey;

    use super::*;
    use crate::credential::Signer;
    use crate::protocol::Registered;
    use crate::watch::Change;

    fn contact(n: u16, key: Option<PublicKey>) -> Contact {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        Contact { id: format!("id-{n}"), name: format!("node-{n}"), ip, puerto: n, group: Some(1), key }
    }

    fn head(entry: &Contact) -> Head<'_> {
        let policy = Policy { token: false, originals: true };
        Head { id: &entry.id, ttl_ms: 15_000, entry, registry_key: Signer::generate().public(), policy }
    }

    /// All of `pieces`, made into chunks of about `chunk` bytes as
    /// `send_pieces` does, and how many chunks that took.
    fn drain(pieces: &mut impl Pieces, chunk: usize) -> (Vec<u8>, usize) {
        let (mut all, mut chunks, mut more) = (Vec::new(), 0, true);
        while more {
            let start = all.len();
            while more && all.len() - start < chunk {
                more = pieces.next_piece(&mut all);
            }
            chunks += 1;
        }
        (all, chunks)
    }

    #[test]
    fn a_registration_reply_in_pieces_reads_as_registered_with_a_ticket_for_each_contact() {
        let (receiver, greeter_key) = (Identity::generate(), Identity::generate());
        let ticket_key = Arc::new(TicketKey::generate());
        let mut contacts: Vec<ToGreet> = (1..=300)
            .map(|n| ToGreet {
                contact: Arc::new(Encoded::new(contact(n, Some(receiver.public())))),
                ticket_key: Some(ticket_key.clone()),
            })
            .collect();
        contacts.push(ToGreet { contact: Arc::new(Encoded::new(contact(301, None))), ticket_key: None });
        let entry = contact(400, Some(greeter_key.public()));
        let head = head(&entry);
        let greeter = Greeter {
            id: entry.id.clone(),
            name: entry.name.clone(),
            addr: entry.addr(),
            key: greeter_key.public(),
            group: Some(1),
        };
        let mut reply = RegisteredReply::new(&head, contacts.clone(), Some((greeter.clone(), 1_000)));

        let (bytes, chunks) = drain(&mut reply, 4096);

        assert!(chunks > 10, "made as it is read, not whole: {chunks} chunks");
        assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), 1, "one message");
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(json["ok"], true);
        let registered: Registered = serde_json::from_value(json).unwrap();
        assert_eq!((registered.id.as_str(), registered.ttl_ms, &registered.entry), (head.id, 15_000, &entry));
        assert_eq!(registered.registry_key, head.registry_key);
        let sent: Vec<&Contact> = contacts.iter().map(|c| &c.contact.value).collect();
        assert_eq!(registered.contactos.iter().collect::<Vec<_>>(), sent);
        let tickets = registered.tickets.expect("tickets");
        assert_eq!(tickets.len(), contacts.len());
        assert!(tickets[300].is_none(), "an original contact is greeted in plaintext");
        for introduction in &tickets[..300] {
            let introduction = introduction.as_ref().expect("a ticket");
            let opened = ticket_key.open(&introduction.ticket, receiver.public(), 0).unwrap();
            assert_eq!(opened.greeter, greeter);
        }
    }

    #[test]
    fn a_registrant_with_no_ticket_key_gets_no_tickets_and_one_with_no_contacts_an_empty_list() {
        let entry = contact(1, None);
        let (bytes, _) = drain(&mut RegisteredReply::new(&head(&entry), Vec::new(), None), 4096);
        let registered: Registered = serde_json::from_slice(&bytes).unwrap();
        assert!(registered.contactos.is_empty() && registered.tickets.is_none());
    }

    #[test]
    fn a_batch_of_changes_is_one_line_each() {
        let changes: Vec<Arc<Encoded<WatchEvent>>> =
            (1..=3).map(|revision| Arc::new(Encoded::new(WatchEvent { revision, change: Change::Progress }))).collect();
        let (bytes, _) = drain(&mut Changes::new(&changes), 1);
        let lines: Vec<WatchEvent> = bytes
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(lines.iter().map(|e| e.revision).collect::<Vec<_>>(), [1, 2, 3]);
    }
}
