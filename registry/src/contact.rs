//! What the registry says of an entry ([`Contact`]), and values encoded
//! once for every reply and watcher that sends them ([`Encoded`]): the
//! pieces both the protocol and the watch are made of, below both.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use wire::secure::PublicKey;

/// A live entry as the registry reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub id: String,
    pub name: String,
    pub ip: IpAddr,
    pub puerto: u16,
    /// The group it belongs to; original-dialect entries belong to none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<u32>,
    /// The static key that registered it, which greeters check the node
    /// proves; entries registered in plaintext (the originals) have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PublicKey>,
}

impl Contact {
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.puerto)
    }
}

/// A value with its JSON encoding, made once and sent as is by every
/// reply that holds it: an entry's contact, made when it is admitted, or a
/// change to the membership, which every watcher receives.
#[derive(Debug)]
pub struct Encoded<T> {
    pub value: T,
    json: Box<RawValue>,
}

impl<T: Serialize> Encoded<T> {
    pub fn new(value: T) -> Encoded<T> {
        let json = serde_json::value::to_raw_value(&value).expect("a contact or change serializes");
        Encoded { value, json }
    }
}

impl<T> Encoded<T> {
    pub fn json(&self) -> &str {
        self.json.get()
    }
}

impl<T> Serialize for Encoded<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.json.serialize(s)
    }
}

pub type EncodedContact = Encoded<Contact>;
