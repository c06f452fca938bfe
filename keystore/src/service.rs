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
    Reserve {
        count: u32,
    },
    Read {
        slot: u64,
    },
    Write {
        slot: u64,
        raw: String,
    },
    Destroy {
        slot: u64,
        id: String,
    },
    Rewrap {
        batch: Vec<Rewrap>,
    },
    Scan {
        from: u64,
        limit: u64,
    },
    Stats,
    // The replicated key service (`crate::replicated`):
    /// A replica's write into a cluster-allocated slot (`LocalKeyStore::store_at`).
    Store {
        slot: u64,
        raw: String,
    },
    /// A replica's destruction (`LocalKeyStore::destroy_at`: tombstones an empty slot).
    DestroyAt {
        slot: u64,
        id: String,
    },
    /// Whether the replica serves reads, and its file's slot count. Answered while fenced.
    Status,
    /// Serve reads again (the caller applied this replica's journal).
    Admit,
    /// Stop serving reads (the caller found journal entries this replica has not applied).
    Fence,
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
    Stored(bool),
    Status {
        serving: bool,
        slots: u64,
    },
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

/// One replica of the replicated key service: the local store, and whether it serves reads. A
/// replica starts fenced (it may have missed writes and destructions while it was away) and
/// serves reads only once a gateway has applied its journal and admitted it; writes and
/// destructions are applied while fenced.
pub struct Replica {
    pub store: LocalKeyStore,
    serving: std::sync::atomic::AtomicBool,
}

impl Replica {
    pub fn new(store: LocalKeyStore) -> Self {
        Replica {
            store,
            serving: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn serving(&self) -> bool {
        self.serving.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The replica side: as [`handle`], with reads refused while the replica is fenced.
pub fn handle_replica(replica: &Replica, body: &[u8]) -> Vec<u8> {
    use std::sync::atomic::Ordering::SeqCst;
    let response = match serde_json::from_slice::<Request>(body) {
        Ok(Request::Status) => Response::Status {
            serving: replica.serving(),
            slots: replica.store.stats().map_or(0, |s| s.slots),
        },
        Ok(Request::Admit) => {
            replica.serving.store(true, SeqCst);
            tracing::info!("key service replica admitted: serving reads");
            Response::Done
        }
        Ok(Request::Fence) => {
            replica.serving.store(false, SeqCst);
            tracing::warn!("key service replica fenced: behind its journal");
            Response::Done
        }
        Ok(
            Request::Read { .. } | Request::Scan { .. } | Request::Stats | Request::Reserve { .. },
        ) if !replica.serving() => Response::Error {
            kind: "fenced".into(),
            message: "this key service replica is catching up and serves no reads yet".into(),
        },
        Ok(req) => answer(&replica.store, req).unwrap_or_else(|e| error_response(&e)),
        Err(e) => error_response(&KeyStoreError::Invalid(format!("bad request: {e}"))),
    };
    serde_json::to_vec(&response).expect("serialisable")
}

fn answer(store: &LocalKeyStore, req: Request) -> Result<Response> {
    Ok(match req {
        Request::Store { slot, raw } => {
            let Slot::Live(entry) = slot::decode(&raw_from_hex(&raw)?) else {
                return Err(KeyStoreError::Invalid("a store carries a live key".into()));
            };
            Response::Stored(store.store_at(slot, &entry)?)
        }
        Request::DestroyAt { slot, id } => {
            Response::Destroyed(store.destroy_at(slot, &id_from_hex(&id)?)?)
        }
        Request::Status => Response::Status {
            serving: true,
            slots: store.stats()?.slots,
        },
        Request::Admit | Request::Fence => Response::Done,
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

    /// A slot's stored bytes (a replica catching up copies them from a peer).
    pub fn read_raw(&self, slot: u64) -> Result<[u8; SLOT_SIZE]> {
        match self.call(&Request::Read { slot })? {
            Response::Raw(h) => raw_from_hex(&h),
            r => Err(Self::unexpected(r)),
        }
    }

    /// A replica's write of a live slot's bytes; false if the slot was destroyed there.
    pub fn store_raw(&self, slot: u64, raw: &[u8; SLOT_SIZE]) -> Result<bool> {
        match self.call(&Request::Store {
            slot,
            raw: hex::encode(raw),
        })? {
            Response::Stored(b) => Ok(b),
            r => Err(Self::unexpected(r)),
        }
    }

    /// A replica's destruction (tombstones an empty slot).
    pub fn destroy_at(&self, slot: u64, id: &[u8; 16]) -> Result<Destroyed> {
        match self.call(&Request::DestroyAt {
            slot,
            id: hex::encode(id),
        })? {
            Response::Destroyed(d) => Ok(d),
            r => Err(Self::unexpected(r)),
        }
    }

    /// (serving reads, slots in the file).
    pub fn status(&self) -> Result<(bool, u64)> {
        match self.call(&Request::Status)? {
            Response::Status { serving, slots } => Ok((serving, slots)),
            r => Err(Self::unexpected(r)),
        }
    }

    pub fn admit(&self) -> Result<()> {
        match self.call(&Request::Admit)? {
            Response::Done => Ok(()),
            r => Err(Self::unexpected(r)),
        }
    }

    pub fn fence(&self) -> Result<()> {
        match self.call(&Request::Fence)? {
            Response::Done => Ok(()),
            r => Err(Self::unexpected(r)),
        }
    }
}
