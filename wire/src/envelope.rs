//! The reply envelope: `{"ok":true, <fields>}` for a success, and
//! `{"ok":false,"error":{"code":"…","message":"…"}}` for a refusal.
//!
//! Codes are a contract, so they are enums: [`Code`] holds the ones the
//! framing and parsing shared by every service can produce, and each
//! protocol's own code enum embeds it as an untagged variant, so that one
//! enum per crate parses every code that crate can receive.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

/// The codes any service answers with before its own protocol is involved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    /// Not JSON, not an object, a missing field, a field of the wrong type or value.
    BadRequest,
    /// An `op` the service does not have.
    UnknownOp,
    /// A message over the size cap.
    TooLarge,
    /// No proof of membership: a failed handshake, or plaintext where a
    /// join token is required.
    Unauthorized,
    /// The server dropped a connection that was still proving itself (too
    /// slow, or too many at once): try again.
    Busy,
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.serialize(f)
    }
}

/// `{"code": ..., "message": ...}`: what went wrong, for machines and people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody<C> {
    pub code: C,
    pub message: String,
}

impl<C> ErrorBody<C> {
    pub fn new(code: impl Into<C>, message: impl Into<String>) -> Self {
        Self { code: code.into(), message: message.into() }
    }

    pub fn bad_request(message: impl Into<String>) -> Self
    where
        C: From<Code>,
    {
        Self::new(Code::BadRequest, message)
    }

    /// The same refusal under a protocol whose codes include these.
    pub fn widen<D: From<C>>(self) -> ErrorBody<D> {
        ErrorBody { code: self.code.into(), message: self.message }
    }
}

impl<C: fmt::Display> fmt::Display for ErrorBody<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl<C: fmt::Debug + fmt::Display> std::error::Error for ErrorBody<C> {}

/// A reply in the envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<T, C> {
    /// `{"ok":true}` followed by the fields of `T`, which serializes as an object.
    Ok(T),
    /// `{"ok":false,"error":{...}}`.
    Err(ErrorBody<C>),
}

impl<T: Serialize, C: Serialize> Serialize for Reply<T, C> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Reply::Ok(body) => success(body, s),
            Reply::Err(error) => failure(error, s),
        }
    }
}

/// Serializes `body`'s fields after `"ok":true`, for replies with several shapes.
pub fn success<T: Serialize, S: Serializer>(body: &T, s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Success<'a, T> {
        ok: bool,
        #[serde(flatten)]
        body: &'a T,
    }
    Success { ok: true, body }.serialize(s)
}

/// Serializes a refusal: `{"ok":false,"error":{...}}`.
pub fn failure<C: Serialize, S: Serializer>(error: &ErrorBody<C>, s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Failure<'a, C> {
        ok: bool,
        error: &'a ErrorBody<C>,
    }
    Failure { ok: false, error }.serialize(s)
}

/// A received message, read through the envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened<C> {
    /// `{"ok":true,...}`: all its fields.
    Ok(Map<String, Value>),
    /// `{"ok":false,"error":{...}}`.
    Refused(ErrorBody<C>),
    /// An object without `ok`: how the original programs answer.
    Bare(Map<String, Value>),
}

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("the answer is {0}, not an object")]
    NotAnObject(&'static str),
    #[error("field `ok` must be a boolean, got {0}")]
    NotABoolean(&'static str),
    #[error("a refusal without a valid `error` object")]
    NoError(#[source] serde_json::Error),
}

/// Reads `message` through the envelope.
pub fn open<C: DeserializeOwned>(message: Value) -> Result<Opened<C>, EnvelopeError> {
    let Value::Object(mut fields) = message else {
        return Err(EnvelopeError::NotAnObject(kind_of(&message)));
    };
    match fields.get("ok") {
        None => Ok(Opened::Bare(fields)),
        Some(Value::Bool(true)) => Ok(Opened::Ok(fields)),
        Some(Value::Bool(false)) => {
            let error = fields.remove("error").unwrap_or(Value::Null);
            serde_json::from_value(error).map(Opened::Refused).map_err(EnvelopeError::NoError)
        }
        Some(other) => Err(EnvelopeError::NotABoolean(kind_of(other))),
    }
}

/// Names a JSON value's type for error messages.
pub fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Serialize)]
    struct Renewed {
        ttl_ms: u64,
    }

    #[test]
    fn replies_have_the_documented_shapes() {
        let ok: Reply<Renewed, Code> = Reply::Ok(Renewed { ttl_ms: 15000 });
        assert_eq!(serde_json::to_value(&ok).unwrap(), json!({"ok":true,"ttl_ms":15000}));
        let err: Reply<Renewed, Code> = Reply::Err(ErrorBody::new(Code::TooLarge, "big"));
        assert_eq!(
            serde_json::to_value(&err).unwrap(),
            json!({"ok":false,"error":{"code":"too_large","message":"big"}})
        );
    }

    #[test]
    fn opens_successes_refusals_and_bare_answers() {
        let opened = open::<Code>(json!({"ok":true,"ttl_ms":5})).unwrap();
        assert!(matches!(opened, Opened::Ok(fields) if fields["ttl_ms"] == 5));
        let refused = open::<Code>(json!({"ok":false,"error":{"code":"bad_request","message":"no"}})).unwrap();
        assert_eq!(refused, Opened::Refused(ErrorBody::bad_request("no")));
        assert!(matches!(open::<Code>(json!({"mensaje":"Hola"})).unwrap(), Opened::Bare(_)));
    }

    #[test]
    fn malformed_envelopes_say_what_is_wrong() {
        let error = |value| open::<Code>(value).unwrap_err().to_string();
        assert_eq!(error(json!([1])), "the answer is an array, not an object");
        assert_eq!(error(json!({"ok":"yes"})), "field `ok` must be a boolean, got a string");
        assert_eq!(error(json!({"ok":false})), "a refusal without a valid `error` object");
        assert_eq!(
            error(json!({"ok":false,"error":{"code":"no_such_code","message":""}})),
            "a refusal without a valid `error` object"
        );
    }
}
