//! Builders shared by the integration tests.
#![allow(dead_code)]

use strata_metadata::*;

/// A user id of the shape `create_user` makes.
pub const ALICE: &str = "a11ce00000000000000000000000000000000000000000000000000000000000";

pub fn bucket(name: &str, versioning: VersioningState) -> BucketRecord {
    BucketRecord {
        policy: None,
        public_access_block: None,
        ownership: None,
        name: name.into(),
        owner: ALICE.into(),
        created: 1_700_000_000_000,
        region: "us-east-1".into(),
        versioning,
        object_lock_enabled: false,
        default_retention: None,
        lifecycle_xml: None,
        lifecycle: None,
        tags: vec![],
        kek_id: "kek-1".into(),
        wrapped_kek: vec![],
        kek_slot: None,
        previous_keks: vec![],
        closing: None,
        retention_rules: vec![],
        encryption: None,
        cors: Vec::new(),
        logging: None,
        acl: None,
    }
}

/// A blob id that encodes (a, b) so tests can tell blobs apart.
pub fn blob(a: u64, b: u64) -> BlobId {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&a.to_be_bytes());
    id[8..].copy_from_slice(&b.to_be_bytes());
    id
}

pub fn segment(a: u64, b: u64, len: u64) -> Segment {
    Segment {
        blob: blob(a, b),
        len,
        chunk_size: 4 << 20,
        layout: 1,
    }
}

/// The instance that owns the tests' write intents (lease long past any test).
pub const INSTANCE: &str = "test-instance";

/// Registers [`INSTANCE`] (idempotent).
pub fn register(store: &MetaStore) {
    match store.register_instance(INSTANCE, i64::MAX / 4, 0) {
        Ok(()) | Err(MetaError::AlreadyExists) => {}
        Err(e) => panic!("register: {e}"),
    }
}

/// `put_version` as a writer does it: a write intent for every new segment first.
pub fn put(
    store: &MetaStore,
    bucket: &str,
    key: &str,
    v: VersionRecord,
    pre: &Precondition,
) -> Result<PutOutcome> {
    for seg in &v.data.segments {
        store.begin_write(seg, INSTANCE, 1).unwrap();
    }
    store.put_version(bucket, key, v, pre)
}

/// `put_part` with its write intent first.
pub fn put_part(
    store: &MetaStore,
    bucket: &str,
    key: &str,
    upload_id: &str,
    p: PartRecord,
) -> Result<()> {
    store.begin_write(&p.segment, INSTANCE, 1).unwrap();
    store.put_part(bucket, key, upload_id, p)
}

pub fn version(id: String, etag: &str, seg: Option<Segment>) -> VersionRecord {
    VersionRecord {
        version_id: id,
        is_delete_marker: false,
        last_modified: 1_700_000_000_000,
        size: seg.as_ref().map_or(0, |s| s.len),
        etag: etag.into(),
        checksum: None,
        checksum_type: None,
        content: ContentHeaders::default(),
        user_metadata: vec![("k".into(), "v".into())],
        tags: vec![],
        storage_class: "STANDARD".into(),
        owner: "alice".into(),
        data: DataLayout {
            kek_id: "kek-1".into(),
            dek_id: "dek".into(),
            wrapped_dek: vec![],
            segments: seg.into_iter().collect(),
            dek_slot: None,
        },
        parts: vec![],
        retention: None,
        legal_hold: false,
        archive: None,
        acl: None,
        origin: None,
    }
}

pub fn upload(store: &MetaStore, key: &str) -> UploadRecord {
    UploadRecord {
        upload_id: store.new_upload_id(),
        key: key.into(),
        initiated: 1_700_000_000_000,
        owner: "alice".into(),
        kek_id: "kek-1".into(),
        dek_id: "dek".into(),
        wrapped_dek: vec![],
        dek_slot: None,
        content: ContentHeaders::default(),
        user_metadata: vec![],
        tags: vec![],
        storage_class: "STANDARD".into(),
        checksum_algorithm: None,
        checksum_type: None,
        retention: None,
        legal_hold: false,
        acl: None,
    }
}

pub fn part(number: u32, etag: &str, size: u64, seg: Segment) -> PartRecord {
    PartRecord {
        part_number: number,
        etag: etag.into(),
        size,
        last_modified: 1_700_000_000_000,
        segment: seg,
        checksum: None,
    }
}

/// The version built from chosen parts, as the gateway would.
pub fn build_from_parts(
    store: &MetaStore,
    up: &UploadRecord,
    parts: &[PartRecord],
) -> VersionRecord {
    let mut v = version(
        store.new_version_id(),
        &format!("mpu-{}", parts.len()),
        None,
    );
    v.size = parts.iter().map(|p| p.size).sum();
    v.data.segments = parts.iter().map(|p| p.segment.clone()).collect();
    v.data.wrapped_dek = up.wrapped_dek.clone();
    v.parts = parts
        .iter()
        .map(|p| PartSummary {
            part_number: p.part_number,
            size: p.size,
            etag: p.etag.clone(),
            checksum: p.checksum.clone(),
        })
        .collect();
    v
}

/// Every segment blob in the GC queue.
pub fn gc_blobs(store: &MetaStore) -> Vec<BlobId> {
    store
        .gc_pending(i64::MAX, 1_000_000)
        .unwrap()
        .into_iter()
        .flat_map(|i| i.segments.into_iter().map(|s| s.blob))
        .collect()
}

// ---- backend selection ---------------------------------------------------------------------
// `STRATA_TEST_META=etcd` runs a test binary against a real etcd (one member per test binary,
// started on first use on free 127.0.0.1 ports; each store gets its own key prefix, derived
// from its path so that a reopen of the same path sees the same data). A missing etcd fails the
// test. Unset (or `rocksdb`): RocksDB in the path, as before.

use std::path::Path;
use std::sync::{Arc, OnceLock};

pub fn etcd_backend() -> bool {
    match std::env::var("STRATA_TEST_META").as_deref() {
        Ok("etcd") => true,
        Ok("rocksdb") | Ok("") | Err(_) => false,
        Ok(other) => panic!("STRATA_TEST_META={other:?}: expected etcd or rocksdb"),
    }
}

/// The etcd member this test binary shares (started once, killed when the process exits).
/// A static is never dropped, so its data directory cannot be a `TempDir`: it lives in cargo's
/// per-target scratch directory under this process's id, and each start removes the
/// directories of test processes that are gone (140 MiB each, leaked once per run before).
pub fn shared_etcd() -> &'static strata_metadata::etcd_server::EtcdCluster {
    static ETCD: OnceLock<strata_metadata::etcd_server::EtcdCluster> = OnceLock::new();
    ETCD.get_or_init(|| {
        let scratch = Path::new(env!("CARGO_TARGET_TMPDIR"));
        remove_dead_etcd_dirs(scratch);
        let dir = scratch.join(format!("shared-etcd-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        strata_metadata::etcd_server::EtcdCluster::start(&dir, 1)
            .unwrap_or_else(|e| panic!("STRATA_TEST_META=etcd but etcd cannot start: {e}"))
    })
}

fn remove_dead_etcd_dirs(scratch: &Path) {
    let Ok(entries) = std::fs::read_dir(scratch) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("shared-etcd-") else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// A key prefix unique to `path` (tempdirs are unique, so stores never share data).
fn prefix_for(path: &Path) -> String {
    format!("t/{}/", blake_ish(path.to_string_lossy().as_bytes()))
}

fn blake_ish(b: &[u8]) -> String {
    // FNV-1a, 128 bits as two lanes: only has to tell temp paths apart.
    let mut h1: u64 = 0xcbf29ce484222325;
    let mut h2: u64 = 0x84222325cbf29ce4;
    for &x in b {
        h1 = (h1 ^ x as u64).wrapping_mul(0x100000001b3);
        h2 = (h2 ^ x as u64).wrapping_mul(0x1000193).rotate_left(7);
    }
    format!("{h1:016x}{h2:016x}")
}

fn etcd_config(path: &Path) -> kv_etcd::EtcdConfig {
    kv_etcd::EtcdConfig::new(shared_etcd().endpoints(), prefix_for(path).into_bytes())
}

/// The store "at" `path` on the selected backend.
pub fn open_store(path: &Path) -> MetaStore {
    if etcd_backend() {
        MetaStore::open_etcd(etcd_config(path)).unwrap()
    } else {
        MetaStore::open(path).unwrap()
    }
}

/// The bare KV "at" `path` on the selected backend.
pub fn open_kv(path: &Path) -> Arc<dyn kv::OrderedKv> {
    if etcd_backend() {
        Arc::new(kv_etcd::EtcdKv::connect(etcd_config(path)).unwrap())
    } else {
        Arc::new(kv::RocksKv::open(path).unwrap())
    }
}
