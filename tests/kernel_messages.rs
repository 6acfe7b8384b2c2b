//! Wire format: signing, verification and parsing of untrusted frames (no network).

use gim::kernel::message::{new_header, Message, Signer, WireError, DELIMITER};
use serde_json::json;

fn signer() -> Signer {
    Signer::new("hmac-sha256", b"secret-key").unwrap()
}

fn sample() -> Message {
    Message {
        identities: vec![b"client-1".to_vec()],
        header: new_header("kernel_info_request", "s1", "me"),
        parent_header: json!({}),
        metadata: json!({}),
        content: json!({}),
        buffers: vec![],
    }
}

#[test]
fn round_trip_signed() {
    let m = sample();
    let back = Message::from_frames(m.to_frames(&signer()), &signer()).unwrap();
    assert_eq!(back, m);
    assert_eq!(back.msg_type(), "kernel_info_request");
}

#[test]
fn known_signature() {
    // Reference: python hmac.new(b"key", b"abcd", hashlib.sha256).hexdigest()
    let s = Signer::new("hmac-sha256", b"key").unwrap();
    let want = "2a31ec0ee8d878c9eece9fb0df79b3b90b2256240163aa5ee50d176d3d1121f8";
    assert_eq!(s.sign(&[b"a", b"b", b"c", b"d"]), want);
    assert!(s.verify(want.as_bytes(), &[b"ab", b"cd"]));
}

#[test]
fn wrong_key_or_tampering_is_rejected() {
    let m = sample();
    let other = Signer::new("hmac-sha256", b"other").unwrap();
    assert_eq!(
        Message::from_frames(m.to_frames(&other), &signer()),
        Err(WireError::BadSignature)
    );
    let mut frames = m.to_frames(&signer());
    let n = frames.len();
    frames[n - 1] = br#"{"code":"evil"}"#.to_vec();
    assert_eq!(
        Message::from_frames(frames, &signer()),
        Err(WireError::BadSignature)
    );
    let mut frames = m.to_frames(&signer());
    frames[2] = Vec::new(); // missing signature
    assert_eq!(
        Message::from_frames(frames, &signer()),
        Err(WireError::BadSignature)
    );
    let mut frames = m.to_frames(&signer());
    frames[2] = b"zz-not-hex".to_vec();
    assert_eq!(
        Message::from_frames(frames, &signer()),
        Err(WireError::BadSignature)
    );
}

#[test]
fn malformed_frames_are_errors() {
    let s = signer();
    assert_eq!(
        Message::from_frames(vec![], &s),
        Err(WireError::NoDelimiter(0))
    );
    assert_eq!(
        Message::from_frames(vec![b"x".to_vec()], &s),
        Err(WireError::NoDelimiter(1))
    );
    let short = vec![DELIMITER.to_vec(), b"sig".to_vec(), b"{}".to_vec()];
    assert_eq!(Message::from_frames(short, &s), Err(WireError::TooShort(2)));
}

#[test]
fn bad_json_and_missing_msg_type() {
    let s = signer();
    let make = |header: &[u8], content: &[u8]| {
        let sig = s.sign(&[header, b"{}", b"{}", content]);
        vec![
            DELIMITER.to_vec(),
            sig.into_bytes(),
            header.to_vec(),
            b"{}".to_vec(),
            b"{}".to_vec(),
            content.to_vec(),
        ]
    };
    assert!(matches!(
        Message::from_frames(make(b"{not json", b"{}"), &s),
        Err(WireError::BadJson { part: "header", .. })
    ));
    assert!(matches!(
        Message::from_frames(make(br#"{"msg_type":"x"}"#, b"\xff\xfe"), &s),
        Err(WireError::BadJson {
            part: "content",
            ..
        })
    ));
    assert_eq!(
        Message::from_frames(make(b"{}", b"{}"), &s),
        Err(WireError::NoMsgType)
    );
    assert_eq!(
        Message::from_frames(make(b"[1]", b"{}"), &s),
        Err(WireError::NoMsgType)
    );
}

#[test]
fn empty_key_disables_signing() {
    let s = Signer::new("", b"").unwrap();
    let frames = sample().to_frames(&s);
    assert_eq!(frames[2], b"".to_vec());
    assert!(Message::from_frames(frames, &s).is_ok());
    assert!(Signer::new("hmac-md5", b"k").is_err());
}

#[test]
fn replies_keep_session_and_parent() {
    let m = sample();
    let r = m.child("kernel_info_reply", json!({"status": "ok"}));
    assert_eq!(r.identities, m.identities);
    assert_eq!(r.header_str("session"), "s1");
    assert_eq!(r.parent_header["msg_id"], m.header["msg_id"]);
    let p = m.iopub("status", json!({"execution_state": "busy"}));
    assert_eq!(p.identities, vec![b"status".to_vec()]);
}
