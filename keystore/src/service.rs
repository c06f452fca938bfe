//! The key service: one process (a storage node started with `--key-service`) owns the slot
//! file, and every gateway of the cluster uses it through [`RemoteKeyStore`], so all gateways
//! read each other's keys and a destruction is one in-place overwrite wherever it is asked.
//!
//! The protocol is one request/response pair of JSON documents ([`Request`], [`Response`]);
//! the transport (mutual TLS between cluster members) is the caller's: this crate neither
//! listens nor connects. Only wrapped keys cross the wire (the master key that unwraps the
//! KEKs never leaves the gateways), and the transport encrypts those again.
//!
//! Reservations: a gateway reserves slots in batches ([`RESERVE_BATCH`]) and hands them out
//! locally, so a new key costs one round trip (its durable write), not two. Slots reserved by a
//! gateway that dies unwritten hold nothing and return to the free list when the key service
//! restarts (the free list is rebuilt from the file), exactly as a local process's do.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::slot;
use crate::{
    Destroyed, Entry, KeyStoreError, LocalKeyStore, Result, Rewrap, SLOT_SIZE, ScanPage, Slot,
    Stats,
};

/// Slots a gateway reserves per round trip.
pub const RESERVE_BATCH: u32 = 64;
/// Most slots one reserve or scan request may ask for (bounds a request's cost).
pub const MAX_BATCH: u64 = 4096;

/// One call to the key service. Slots travel as their stored 128 bytes (hex).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Reserve { count: u32 },
    Read { slot: u64 },
    Write { slot: u64, raw: String },
    Destroy { slot: u64, id: String },
    Rewrap { batch: Vec<Rewrap> },
    Scan { from: u64, limit: u64 },
    Stats,
}

/// The answer to a [`Request`].
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Slots(Vec<u64>),
    Raw(String),
    Done,
    Destroyed(Destroyed),
    Rewrapped(usize),
    Page {
        entries: Vec<(u64, String)>,
        next: Option<u64>,
    },
    Stats(Stats),
    Error {
        kind: String,
        message: String,
    },
}

fn raw_from_hex(h: &str) -> Result<[u8; SLOT_SIZE]> {
    let v = hex::decode(h).map_err(|_| KeyStoreError::Invalid("slot bytes are not hex".into()))?;
    v.try_into()
        .map_err(|_| KeyStoreError::Invalid("a slot is 128 bytes".into()))
}

fn id_from_hex(h: &str) -> Result<[u8; 16]> {
    let v = hex::decode(h).map_err(|_| KeyStoreError::Invalid("key id is not hex".into()))?;
    v.try_into()
        .map_err(|_| KeyStoreError::Invalid("a key id is 16 bytes".into()))
}

fn error_response(e: &KeyStoreError) -> Response {
    let kind = match e {
        KeyStoreError::Io(_) => "io",
        KeyStoreError::Corrupt(_) => "corrupt",
        KeyStoreError::Invalid(_) => "invalid",
    };
    Response::Error {
        kind: kind.into(),
        message: e.to_string(),
    }
}

/// The key service side: answers one request body against the local store. Never fails: an
/// error is an answer ([`Response::Error`]). Bounded: at most [`MAX_BATCH`] slots per request.
pub fn handle(store: &LocalKeyStore, body: &[u8]) -> Vec<u8> {
    let response = match serde_json::from_slice::<Request>(body) {
        Ok(req) => answer(store, req).unwrap_or_else(|e| error_response(&e)),
        Err(e) => error_response(&KeyStoreError::Invalid(format!("bad request: {e}"))),
    };
    serde_json::to_vec(&response).expect("serialisable")
}

fn answer(store: &LocalKeyStore, req: Request) -> Result<Response> {
    Ok(match req {
        Request::Reserve { count } => {
            let n = u64::from(count).min(MAX_BATCH);
            Response::Slots((0..n).map(|_| store.reserve()).collect())
        }
        Request::Read { slot } => Response::Raw(hex::encode(store.read_raw(slot)?)),
        Request::Write { slot, raw } => {
            let Slot::Live(entry) = slot::decode(&raw_from_hex(&raw)?) else {
                return Err(KeyStoreError::Invalid("a write carries a live key".into()));
            };
            store.write(slot, &entry)?;
            Response::Done
        }
        Request::Destroy { slot, id } => {
            Response::Destroyed(store.destroy(slot, &id_from_hex(&id)?)?)
        }
        Request::Rewrap { batch } => {
            if batch.len() as u64 > MAX_BATCH {
                return Err(KeyStoreError::Invalid("re-wrap batch too large".into()));
            }
            Response::Rewrapped(store.rewrap(&batch)?)
        }
        Request::Scan { from, limit } => {
            let (entries, next) = store.scan(from, limit.min(MAX_BATCH))?;
            Response::Page {
                entries: entries
                    .iter()
                    .map(|(s, e)| (*s, hex::encode(slot::encode_live(e))))
                    .collect(),
                next,
            }
        }
        Request::Stats => Response::Stats(store.stats()?),
    })
}

/// How a gateway reaches the key service: sends one request body, returns the response body.
/// Blocking (callers are on a blocking pool, like file I/O would be).
pub trait Transport: Send + Sync {
    fn call(&self, body: Vec<u8>) -> std::result::Result<Vec<u8>, String>;
}

/// The key store of a cluster, seen from a gateway.
pub struct RemoteKeyStore {
    transport: Box<dyn Transport>,
    /// Slots reserved for this process and not handed out yet.
    pool: Mutex<Vec<u64>>,
}

impl RemoteKeyStore {
    pub fn new(transport: Box<dyn Transport>) -> Self {
        RemoteKeyStore {
            transport,
            pool: Mutex::new(Vec::new()),
        }
    }

    fn call(&self, req: &Request) -> Result<Response> {
        let body = serde_json::to_vec(req).expect("serialisable");
        let out = self
            .transport
            .call(body)
            .map_err(|e| KeyStoreError::Io(std::io::Error::other(format!("key service: {e}"))))?;
        let resp: Response = serde_json::from_slice(&out).map_err(|e| {
            KeyStoreError::Io(std::io::Error::other(format!(
                "key service answered something unreadable: {e}"
            )))
        })?;
        match resp {
            Response::Error { kind, message } => Err(match kind.as_str() {
                "invalid" => KeyStoreError::Invalid(message),
                "corrupt" => KeyStoreError::Corrupt(message),
                _ => KeyStoreError::Io(std::io::Error::other(message)),
            }),
            r => Ok(r),
        }
    }

    fn unexpected(r: Response) -> KeyStoreError {
        KeyStoreError::Io(std::io::Error::other(format!(
            "key service answered out of turn: {r:?}"
        )))
    }

    pub fn reserve(&self) -> Result<u64> {
        if let Some(s) = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Ok(s);
        }
        match self.call(&Request::Reserve {
            count: RESERVE_BATCH,
        })? {
            Response::Slots(mut slots) => {
                let first = slots
                    .pop()
                    .ok_or_else(|| KeyStoreError::Io(std::io::Error::other("no slot reserved")))?;
                self.pool
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(slots);
                Ok(first)
            }
            r => Err(Self::unexpected(r)),
        }
    }

    pub fn release(&self, slot: u64) {
        // Still reserved for this process at the key service: reuse it for the next key.
        self.pool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(slot);
    }

    pub fn read(&self, slot: u64) -> Result<Slot> {
        match self.call(&Request::Read { slot })? {
            Response::Raw(h) => Ok(slot::decode(&raw_from_hex(&h)?)),
            r => Err(Self::unexpected(r)),
        }
    }

    pub fn write(&self, slot: u64, entry: &Entry) -> Result<()> {
        let raw = hex::encode(slot::encode_live(entry));
        match self.call(&Request::Write { slot, raw })? {
            Response::Done => Ok(()),
            r => Err(Self::unexpected(r)),
        }
    }

    pub fn destroy(&self, slot: u64, id: &[u8; 16]) -> Result<Destroyed> {
        match self.call(&Request::Destroy {
            slot,
            id: hex::encode(id),
        })? {
            Response::Destroyed(d) => Ok(d),
            r => Err(Self::unexpected(r)),
        }
    }

    pub fn rewrap(&self, batch: &[Rewrap]) -> Result<usize> {
        let mut done = 0;
        for part in batch.chunks(MAX_BATCH as usize) {
            match self.call(&Request::Rewrap {
                batch: part.to_vec(),
            })? {
                Response::Rewrapped(n) => done += n,
                r => return Err(Self::unexpected(r)),
            }
        }
        Ok(done)
    }

    pub fn scan(&self, from: u64, limit: u64) -> Result<ScanPage> {
        match self.call(&Request::Scan {
            from,
            limit: limit.min(MAX_BATCH),
        })? {
            Response::Page { entries, next } => {
                let mut out = Vec::with_capacity(entries.len());
                for (s, h) in entries {
                    if let Slot::Live(e) = slot::decode(&raw_from_hex(&h)?) {
                        out.push((s, e));
                    }
                }
                // A short page ends where the service stopped, not where the caller asked.
                Ok((out, next))
            }
            r => Err(Self::unexpected(r)),
        }
    }

    pub fn stats(&self) -> Result<Stats> {
        match self.call(&Request::Stats)? {
            Response::Stats(s) => Ok(s),
            r => Err(Self::unexpected(r)),
        }
    }
}
