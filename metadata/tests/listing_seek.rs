//! Listing cost does not grow with the keys a common prefix (or a key's history) holds: the walk
//! seeks past them. Measured by counting the entries read through the KV interface.

mod common;

use common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use strata_metadata::kv::{Batch, Direction, KeyRange, OrderedKv, Space};
use strata_metadata::*;

struct CountingKv {
    inner: Arc<dyn OrderedKv>,
    rows: AtomicU64,
}

impl OrderedKv for CountingKv {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.rows.fetch_add(1, Ordering::Relaxed);
        self.inner.get(space, key)
    }
    fn scan(
        &self,
        space: Space,
        range: &KeyRange,
        d: Direction,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let rows = self.inner.scan(space, range, d, limit)?;
        self.rows.fetch_add(rows.len() as u64, Ordering::Relaxed);
        Ok(rows)
    }
    fn commit(&self, batch: Batch) -> Result<()> {
        self.inner.commit(batch)
    }
    fn checkpoint(&self, dir: &std::path::Path) -> Result<()> {
        self.inner.checkpoint(dir)
    }
}

#[test]
fn delimiter_listing_seeks_past_a_big_prefix_and_long_histories() {
    let dir = tempfile::tempdir().unwrap();
    let kv = Arc::new(CountingKv {
        inner: open_kv(dir.path()),
        rows: AtomicU64::new(0),
    });
    let s = MetaStore::with_kv(kv.clone()).unwrap();
    register(&s);
    s.create_bucket(bucket("b", VersioningState::Enabled))
        .unwrap();
    const BIG: u64 = 20_000;
    const THREADS: u64 = 8;
    std::thread::scope(|sc| {
        for t in 0..THREADS {
            let s = s.clone();
            sc.spawn(move || {
                for i in (t..BIG).step_by(THREADS as usize) {
                    put(
                        &s,
                        "b",
                        &format!("big/{i:06}"),
                        version(s.new_version_id(), "e", None),
                        &Precondition::None,
                    )
                    .unwrap();
                }
            });
        }
    });
    // A key with a long history right before the prefix, and a few keys around it.
    for _ in 0..500 {
        put(
            &s,
            "b",
            "a",
            version(s.new_version_id(), "e", None),
            &Precondition::None,
        )
        .unwrap();
    }
    for k in ["c", "d/1", "e"] {
        put(
            &s,
            "b",
            k,
            version(s.new_version_id(), "e", None),
            &Precondition::None,
        )
        .unwrap();
    }

    let before = kv.rows.load(Ordering::Relaxed);
    let page = s
        .list_objects(
            "b",
            &ListObjectsParams {
                delimiter: Some("/".into()),
                max_keys: 1000,
                ..Default::default()
            },
        )
        .unwrap();
    let read = kv.rows.load(Ordering::Relaxed) - before;
    let keys: Vec<_> = page.objects.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["a", "c", "e"]);
    assert_eq!(page.common_prefixes, ["big/", "d/"]);
    // The first batch reads up to 1001 rows; without seeking it would read > 20,500.
    assert!(
        read < 1_200,
        "listing read {read} entries: it scanned instead of seeking"
    );

    // Paging with small pages costs about the page size, not the history or the prefix.
    let before = kv.rows.load(Ordering::Relaxed);
    let page = s
        .list_objects(
            "b",
            &ListObjectsParams {
                delimiter: Some("/".into()),
                max_keys: 2,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(page.next_marker.as_deref(), Some("big/"));
    let page = s
        .list_objects(
            "b",
            &ListObjectsParams {
                delimiter: Some("/".into()),
                max_keys: 2,
                start_after: page.next_marker,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(
        page.objects
            .iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>(),
        ["c"]
    );
    assert_eq!(page.common_prefixes, ["d/"]);
    let read = kv.rows.load(Ordering::Relaxed) - before;
    assert!(read < 100, "two small pages read {read} entries");

    // Without a delimiter: a page of 1000 reads ~1000 entries.
    let before = kv.rows.load(Ordering::Relaxed);
    let page = s
        .list_objects(
            "b",
            &ListObjectsParams {
                max_keys: 1000,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(page.objects.len(), 1000);
    assert!(page.is_truncated);
    let read = kv.rows.load(Ordering::Relaxed) - before;
    assert!(read < 2_200, "a page of 1000 read {read} entries");
}
