//! The key service protocol end to end over an in-process transport: a remote store behaves
//! as the local one, and a destruction asked remotely overwrites the service's file.

use super::service::{RemoteKeyStore, Transport, handle};
use super::*;

struct Loopback(LocalKeyStore);

impl Transport for Loopback {
    fn call(&self, body: Vec<u8>) -> std::result::Result<Vec<u8>, String> {
        Ok(handle(&self.0, &body))
    }
}

fn entry(id: u8, wrapper: u8) -> Entry {
    Entry {
        kind: KeyKind::Dek,
        id: [id; 16],
        wrapper: [wrapper; 16],
        created_ms: 1,
        changed_ms: 1,
        wrapped: vec![id ^ 0x3c; 61],
    }
}

#[test]
fn remote_store_writes_reads_destroys_and_rewraps_in_the_service_file() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalKeyStore::open(dir.path()).unwrap();
    let ks = KeyStore::remote(RemoteKeyStore::new(Box::new(Loopback(local.clone()))));

    let a = ks.reserve().unwrap();
    let b = ks.reserve().unwrap();
    assert_ne!(a, b);
    // One round trip reserved a batch at the service.
    assert_eq!(
        local.stats().unwrap().reserved,
        u64::from(service::RESERVE_BATCH)
    );
    let (ea, eb) = (entry(1, 7), entry(2, 7));
    ks.write(a, &ea).unwrap();
    ks.write(b, &eb).unwrap();
    assert_eq!(ks.get(a, &ea.id).unwrap(), Some(ea.clone()));
    assert_eq!(
        local.get(b, &eb.id).unwrap(),
        Some(eb.clone()),
        "in the service's file"
    );
    assert_eq!(ks.stats().unwrap().live_deks, 2);
    let (page, next) = ks.scan(0, 1000).unwrap();
    assert_eq!(page.iter().map(|(s, _)| *s).collect::<Vec<_>>(), {
        let mut v = vec![a, b];
        v.sort();
        v
    });
    assert_eq!(next, None);

    // Writing a slot the service never reserved is refused there.
    assert!(matches!(
        ks.write(10_000, &entry(3, 7)),
        Err(KeyStoreError::Invalid(_))
    ));

    assert_eq!(ks.destroy(a, &ea.id).unwrap(), Destroyed::Now);
    assert_eq!(ks.destroy(a, &ea.id).unwrap(), Destroyed::AlreadyGone);
    assert!(matches!(local.read(a).unwrap(), Slot::Destroyed { .. }));
    let raw = fs::read(dir.path().join("slots")).unwrap();
    assert!(
        !raw.windows(16).any(|w| w == &ea.wrapped[..16]),
        "the destroyed key's bytes are gone from the service's file"
    );

    let n = ks
        .rewrap(&[Rewrap {
            slot: b,
            id: eb.id,
            from: [7; 16],
            to: [8; 16],
            wrapped: vec![0x11; 61],
        }])
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(local.get(b, &eb.id).unwrap().unwrap().wrapper, [8; 16]);

    // A released reservation is reused by this process before asking for more.
    let c = ks.reserve().unwrap();
    ks.release(c);
    assert_eq!(ks.reserve().unwrap(), c);
}

#[test]
fn bad_requests_are_answers_not_failures() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalKeyStore::open(dir.path()).unwrap();
    for body in [
        &b"not json"[..],
        br#"{"op":"write","slot":1,"raw":"zz"}"#,
        br#"{"op":"destroy","slot":1,"id":"00"}"#,
    ] {
        let out: service::Response = serde_json::from_slice(&handle(&local, body)).unwrap();
        assert!(matches!(out, service::Response::Error { .. }), "{out:?}");
    }
    // A reservation is bounded whatever is asked.
    let out: service::Response =
        serde_json::from_slice(&handle(&local, br#"{"op":"reserve","count":4000000000}"#)).unwrap();
    let service::Response::Slots(s) = out else {
        panic!()
    };
    assert_eq!(s.len() as u64, service::MAX_BATCH);
}
