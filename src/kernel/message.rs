//! Jupyter wire format (protocol 5.3): framing, HMAC signing and parsing of untrusted frames.
//!
//! A message on the wire is `[identities…, "<IDS|MSG>", signature, header, parent_header,
//! metadata, content, buffers…]`. Everything here treats those frames as hostile: a missing
//! delimiter, a short message, a bad signature or invalid JSON is a [`WireError`], never a panic.

use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;

/// The frame that separates routing identities from the signed message.
pub const DELIMITER: &[u8] = b"<IDS|MSG>";
/// Messaging protocol version we speak.
pub const PROTOCOL_VERSION: &str = "5.3";

type HmacSha256 = Hmac<Sha256>;

/// Why a multipart message was rejected.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WireError {
    #[error("no <IDS|MSG> delimiter in {0} frames")]
    NoDelimiter(usize),
    #[error("only {0} frames after the delimiter, need 5 (signature, header, parent, metadata, content)")]
    TooShort(usize),
    #[error("bad signature")]
    BadSignature,
    #[error("{part} is not valid JSON: {reason}")]
    BadJson { part: &'static str, reason: String },
    #[error("header has no string msg_type")]
    NoMsgType,
    #[error("unsupported signature scheme `{0}` (only hmac-sha256)")]
    UnsupportedScheme(String),
}

/// Signs and verifies messages with the connection file's key.
#[derive(Clone)]
pub struct Signer {
    /// `None` when the key is empty: signing is disabled and signatures are empty strings.
    mac: Option<HmacSha256>,
}

impl Signer {
    /// A signer for `scheme` (must be `hmac-sha256`; empty is accepted when the key is empty).
    pub fn new(scheme: &str, key: &[u8]) -> Result<Signer, WireError> {
        if key.is_empty() {
            return Ok(Signer { mac: None });
        }
        if scheme != "hmac-sha256" {
            return Err(WireError::UnsupportedScheme(scheme.to_string()));
        }
        // HMAC accepts keys of any length; the error branch cannot happen but is handled anyway.
        let mac = HmacSha256::new_from_slice(key)
            .map_err(|_| WireError::UnsupportedScheme(scheme.into()))?;
        Ok(Signer { mac: Some(mac) })
    }

    /// Hex HMAC of the four signed frames (empty when signing is disabled).
    pub fn sign(&self, parts: &[&[u8]]) -> String {
        match &self.mac {
            None => String::new(),
            Some(mac) => {
                let mut mac = mac.clone();
                for p in parts {
                    mac.update(p);
                }
                hex::encode(mac.finalize().into_bytes())
            }
        }
    }

    /// Constant-time check of a hex signature over the four signed frames.
    pub fn verify(&self, signature: &[u8], parts: &[&[u8]]) -> bool {
        match &self.mac {
            None => true,
            Some(mac) => {
                let Ok(expected) = hex::decode(signature) else {
                    return false;
                };
                let mut mac = mac.clone();
                for p in parts {
                    mac.update(p);
                }
                mac.verify_slice(&expected).is_ok()
            }
        }
    }
}

/// One Jupyter message, parsed and verified.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// ROUTER identities (or the iopub topic) that precede the delimiter.
    pub identities: Vec<Vec<u8>>,
    pub header: Map<String, Value>,
    pub parent_header: Value,
    pub metadata: Value,
    pub content: Value,
    pub buffers: Vec<Vec<u8>>,
}

impl Message {
    /// Parse and verify the frames of one multipart message.
    pub fn from_frames(frames: Vec<Vec<u8>>, signer: &Signer) -> Result<Message, WireError> {
        let n = frames.len();
        let delim = frames
            .iter()
            .position(|f| f.as_slice() == DELIMITER)
            .ok_or(WireError::NoDelimiter(n))?;
        let mut rest = frames.into_iter();
        let identities: Vec<Vec<u8>> = rest.by_ref().take(delim).collect();
        rest.next(); // the delimiter itself
        let after: Vec<Vec<u8>> = rest.collect();
        if after.len() < 5 {
            return Err(WireError::TooShort(after.len()));
        }
        let mut after = after.into_iter();
        let mut next = || after.next().unwrap_or_default();
        let (signature, header, parent, metadata, content) =
            (next(), next(), next(), next(), next());
        if !signer.verify(&signature, &[&header, &parent, &metadata, &content]) {
            return Err(WireError::BadSignature);
        }
        let buffers: Vec<Vec<u8>> = after.collect();
        let header = match parse_json("header", &header)? {
            Value::Object(m) => m,
            _ => return Err(WireError::NoMsgType),
        };
        if !header.get("msg_type").is_some_and(Value::is_string) {
            return Err(WireError::NoMsgType);
        }
        Ok(Message {
            identities,
            header,
            parent_header: parse_json("parent_header", &parent)?,
            metadata: parse_json("metadata", &metadata)?,
            content: parse_json("content", &content)?,
            buffers,
        })
    }

    /// Signed frames ready to send.
    pub fn to_frames(&self, signer: &Signer) -> Vec<Vec<u8>> {
        let header = Value::Object(self.header.clone()).to_string().into_bytes();
        let parent = self.parent_header.to_string().into_bytes();
        let metadata = self.metadata.to_string().into_bytes();
        let content = self.content.to_string().into_bytes();
        let signature = signer.sign(&[&header, &parent, &metadata, &content]);
        let mut frames = self.identities.clone();
        frames.push(DELIMITER.to_vec());
        frames.push(signature.into_bytes());
        frames.extend([header, parent, metadata, content]);
        frames.extend(self.buffers.iter().cloned());
        frames
    }

    /// The header's `msg_type` (guaranteed a string by parsing).
    pub fn msg_type(&self) -> &str {
        self.header_str("msg_type")
    }

    /// A string field of the header, or "" when absent.
    pub fn header_str(&self, key: &str) -> &str {
        self.header.get(key).and_then(Value::as_str).unwrap_or("")
    }

    /// A string field of the content, or "" when absent or not a string.
    pub fn content_str(&self, key: &str) -> &str {
        self.content.get(key).and_then(Value::as_str).unwrap_or("")
    }

    /// A boolean field of the content, with a default.
    pub fn content_bool(&self, key: &str, default: bool) -> bool {
        self.content
            .get(key)
            .and_then(Value::as_bool)
            .unwrap_or(default)
    }

    /// A new message answering (or published on behalf of) `self`: same session and
    /// identities, `self`'s header as parent.
    pub fn child(&self, msg_type: &str, content: Value) -> Message {
        Message {
            identities: self.identities.clone(),
            header: new_header(
                msg_type,
                self.header_str("session"),
                self.header_str("username"),
            ),
            parent_header: Value::Object(self.header.clone()),
            metadata: json!({}),
            content,
            buffers: Vec::new(),
        }
    }

    /// An iopub message whose parent is `self`; the topic frame is the message type.
    pub fn iopub(&self, msg_type: &str, content: Value) -> Message {
        let mut m = self.child(msg_type, content);
        m.identities = vec![msg_type.as_bytes().to_vec()];
        m
    }
}

/// A fresh header with a unique id and the current time.
pub fn new_header(msg_type: &str, session: &str, username: &str) -> Map<String, Value> {
    let mut h = Map::new();
    h.insert(
        "msg_id".into(),
        Value::String(uuid::Uuid::new_v4().to_string()),
    );
    h.insert("session".into(), Value::String(session.to_string()));
    let user = if username.is_empty() { "gim" } else { username };
    h.insert("username".into(), Value::String(user.to_string()));
    h.insert(
        "date".into(),
        Value::String(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
    );
    h.insert("msg_type".into(), Value::String(msg_type.to_string()));
    h.insert(
        "version".into(),
        Value::String(PROTOCOL_VERSION.to_string()),
    );
    h
}

fn parse_json(part: &'static str, bytes: &[u8]) -> Result<Value, WireError> {
    serde_json::from_slice(bytes).map_err(|e| WireError::BadJson {
        part,
        reason: e.to_string(),
    })
}
