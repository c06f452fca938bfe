//! Listings against a simple in-memory reference model, over random keys (unicode, '/'-heavy,
//! shared prefixes, NUL bytes), random prefixes/delimiters/markers, paging with small max_keys.

mod common;

use common::*;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use strata_metadata::*;

/// One real store for all cases (opening RocksDB per case is slow); a fresh bucket per case.
fn store() -> &'static MetaStore {
    static STORE: OnceLock<(tempfile::TempDir, MetaStore)> = OnceLock::new();
    &STORE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let s = open_store(&dir.path().join("meta"));
            register(&s);
            (dir, s)
        })
        .1
}

fn fresh_bucket(versioning: VersioningState) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let name = format!("model-{}", N.fetch_add(1, Ordering::Relaxed));
    store().create_bucket(bucket(&name, versioning)).unwrap();
    name
}

fn key_strategy() -> impl Strategy<Value = String> {
    let fragment = prop::sample::select(vec![
        "a",
        "b",
        "/",
        "/",
        "a/",
        "ab",
        "é",
        "\u{10348}",
        "-",
        "\0",
        "z",
        "//",
        "ü/",
        "\u{7f}",
    ]);
    prop::collection::vec(fragment, 0..6).prop_map(|f| f.concat())
}

fn delimiter_strategy() -> impl Strategy<Value = Option<String>> {
    prop::option::of(
        prop::sample::select(vec!["/", "a", "é", "ab", "//", "\0"]).prop_map(String::from),
    )
}

fn prefix_strategy() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["", "", "a", "a/", "é", "b", "/", "ab", "\0"]).prop_map(String::from)
}

#[derive(Clone, Debug)]
enum Op {
    Put(String),
    Delete(String),
}

fn ops_strategy() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        (0..4u8, key_strategy())
            .prop_map(|(k, key)| if k < 3 { Op::Put(key) } else { Op::Delete(key) }),
        0..50,
    )
}

/// key -> versions newest first: (version id, is delete marker).
type Model = BTreeMap<String, Vec<(String, bool)>>;

fn apply(bucket: &str, ops: &[Op]) -> Model {
    let s = store();
    let mut model = Model::new();
    for op in ops {
        match op {
            Op::Put(key) => {
                let id = s.new_version_id();
                put(
                    s,
                    bucket,
                    key,
                    version(id.clone(), "e", None),
                    &Precondition::None,
                )
                .unwrap();
                model.entry(key.clone()).or_default().insert(0, (id, false));
            }
            Op::Delete(key) => {
                let out = s
                    .delete_object(bucket, key, None, "alice", 0, false)
                    .unwrap();
                model
                    .entry(key.clone())
                    .or_default()
                    .insert(0, (out.version_id.unwrap(), true));
            }
        }
    }
    model
}

fn rollup<'k>(key: &'k str, prefix: &str, delimiter: Option<&str>) -> Option<&'k str> {
    let d = delimiter.filter(|d| !d.is_empty())?;
    key[prefix.len()..]
        .find(d)
        .map(|i| &key[..prefix.len() + i + d.len()])
}

/// ListObjects per the model: sorted union of live keys and common prefixes (with a live key
/// under them), strictly after `start_after`. (entry, is_prefix)
fn model_objects(
    m: &Model,
    prefix: &str,
    delimiter: Option<&str>,
    start_after: Option<&str>,
) -> Vec<(String, bool)> {
    let mut out: BTreeMap<String, bool> = BTreeMap::new();
    for (k, versions) in m {
        if !k.starts_with(prefix) || versions[0].1 {
            continue;
        }
        match rollup(k, prefix, delimiter) {
            Some(cp) => out.insert(cp.to_string(), true),
            None => out.insert(k.clone(), false),
        };
    }
    out.into_iter()
        .filter(|(e, _)| start_after.is_none_or(|sa| e.as_str() > sa))
        .collect()
}

#[derive(Debug, PartialEq, Eq, Clone)]
enum VEntry {
    Version {
        key: String,
        id: String,
        latest: bool,
        marker: bool,
    },
    Prefix(String),
}

fn model_versions(m: &Model, prefix: &str, delimiter: Option<&str>) -> Vec<VEntry> {
    let mut out = Vec::new();
    for (k, versions) in m {
        if !k.starts_with(prefix) {
            continue;
        }
        match rollup(k, prefix, delimiter) {
            Some(cp) => {
                if out.last() != Some(&VEntry::Prefix(cp.to_string())) {
                    out.push(VEntry::Prefix(cp.to_string()));
                }
            }
            None => {
                for (i, (id, marker)) in versions.iter().enumerate() {
                    out.push(VEntry::Version {
                        key: k.clone(),
                        id: id.clone(),
                        latest: i == 0,
                        marker: *marker,
                    });
                }
            }
        }
    }
    out
}

fn page_entries(page: &ListObjectsPage) -> Vec<(String, bool)> {
    let mut e: Vec<(String, bool)> = page
        .objects
        .iter()
        .map(|(k, _)| (k.clone(), false))
        .chain(page.common_prefixes.iter().map(|p| (p.clone(), true)))
        .collect();
    e.sort();
    e
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn list_objects_pages_match_model(
        ops in ops_strategy(),
        prefix in prefix_strategy(),
        delimiter in delimiter_strategy(),
        start_after in prop::option::of(key_strategy()),
        max_keys in 1usize..6,
    ) {
        let b = fresh_bucket(VersioningState::Enabled);
        let m = apply(&b, &ops);
        let expect = model_objects(&m, &prefix, delimiter.as_deref(), start_after.as_deref());

        // One big page.
        let params = ListObjectsParams { prefix: prefix.clone(), delimiter: delimiter.clone(), start_after: start_after.clone(), max_keys: 1000 };
        let page = store().list_objects(&b, &params).unwrap();
        prop_assert_eq!(page_entries(&page), expect.clone());
        prop_assert!(!page.is_truncated);
        prop_assert_eq!(page.next_marker, None);
        for (k, v) in &page.objects {
            prop_assert_eq!(&v.version_id, &m[k][0].0, "latest version returned");
        }

        // Small pages, chained through next_marker, concatenate to the same list.
        let mut got = Vec::new();
        let mut params = ListObjectsParams { max_keys, ..params };
        for _ in 0..=expect.len() + 1 {
            let page = store().list_objects(&b, &params).unwrap();
            let entries = page_entries(&page);
            prop_assert!(entries.len() <= max_keys);
            got.extend(entries.clone());
            if !page.is_truncated {
                break;
            }
            prop_assert_eq!(entries.len(), max_keys, "a truncated page is full");
            prop_assert_eq!(page.next_marker.as_ref(), entries.last().map(|e| &e.0));
            params.start_after = page.next_marker;
        }
        prop_assert_eq!(got, expect);
    }

    #[test]
    fn list_versions_pages_match_model(
        ops in ops_strategy(),
        prefix in prefix_strategy(),
        delimiter in delimiter_strategy(),
        max_keys in 1usize..6,
    ) {
        let b = fresh_bucket(VersioningState::Enabled);
        let m = apply(&b, &ops);
        let expect = model_versions(&m, &prefix, delimiter.as_deref());
        let mut got = Vec::new();
        let mut params = ListVersionsParams { prefix, delimiter, max_keys, ..Default::default() };
        for _ in 0..=expect.len() + 1 {
            let page = store().list_versions(&b, &params).unwrap();
            let mut entries: Vec<VEntry> = page
                .entries
                .iter()
                .map(|e| VEntry::Version { key: e.key.clone(), id: e.version.version_id.clone(), latest: e.is_latest, marker: e.version.is_delete_marker })
                .collect();
            entries.extend(page.common_prefixes.iter().cloned().map(VEntry::Prefix));
            // Within a page, versions and prefixes interleave by key.
            entries.sort_by(|a, b| {
                let key = |e: &VEntry| match e { VEntry::Version { key, .. } => key.clone(), VEntry::Prefix(p) => p.clone() };
                key(a).cmp(&key(b))
            });
            prop_assert!(entries.len() <= max_keys);
            got.extend(entries);
            if !page.is_truncated {
                break;
            }
            params.key_marker = page.next_key_marker;
            params.version_id_marker = page.next_version_id_marker;
        }
        prop_assert_eq!(got, expect);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn list_uploads_pages_match_model(
        keys in prop::collection::vec(key_strategy(), 0..25),
        prefix in prefix_strategy(),
        delimiter in delimiter_strategy(),
        max_uploads in 1usize..5,
    ) {
        let b = fresh_bucket(VersioningState::Unversioned);
        // Model: (key, upload id) in order, common prefixes rolled up.
        let mut made = Vec::new();
        for k in &keys {
            let up = upload(store(), k);
            store().create_upload(&b, up.clone()).unwrap();
            made.push((k.clone(), up.upload_id));
        }
        made.sort();
        let mut expect: Vec<(String, Option<String>)> = Vec::new();
        for (k, id) in made.iter().filter(|(k, _)| k.starts_with(prefix.as_str())) {
            match rollup(k, &prefix, delimiter.as_deref()) {
                Some(cp) => {
                    if expect.last().map(|e| e.0.as_str()) != Some(cp) {
                        expect.push((cp.to_string(), None));
                    }
                }
                None => expect.push((k.clone(), Some(id.clone()))),
            }
        }
        let mut got: Vec<(String, Option<String>)> = Vec::new();
        let mut p = ListUploadsParams { prefix, delimiter, max_uploads, ..Default::default() };
        for _ in 0..=expect.len() + 1 {
            let page = store().list_uploads(&b, &p).unwrap();
            let mut entries: Vec<(String, Option<String>)> = page
                .uploads
                .iter()
                .map(|u| (u.key.clone(), Some(u.upload_id.clone())))
                .chain(page.common_prefixes.iter().map(|c| (c.clone(), None)))
                .collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            prop_assert!(entries.len() <= max_uploads);
            got.extend(entries);
            if !page.is_truncated {
                break;
            }
            p.key_marker = page.next_key_marker;
            p.upload_id_marker = page.next_upload_id_marker;
        }
        prop_assert_eq!(got, expect);
    }
}

#[test]
fn start_after_inside_a_common_prefix_and_deleted_prefixes() {
    let b = fresh_bucket(VersioningState::Enabled);
    let ops: Vec<Op> = ["a/1", "a/2", "b", "c/1", "d"]
        .iter()
        .map(|k| Op::Put(k.to_string()))
        .collect();
    apply(&b, &ops);
    let list = |sa: Option<&str>| {
        page_entries(
            &store()
                .list_objects(
                    &b,
                    &ListObjectsParams {
                        delimiter: Some("/".into()),
                        start_after: sa.map(String::from),
                        max_keys: 100,
                        ..Default::default()
                    },
                )
                .unwrap(),
        )
        .into_iter()
        .map(|e| e.0)
        .collect::<Vec<_>>()
    };
    assert_eq!(list(None), ["a/", "b", "c/", "d"]);
    assert_eq!(
        list(Some("a/")),
        ["b", "c/", "d"],
        "a common prefix marker skips the prefix"
    );
    assert_eq!(list(Some("a/1")), ["b", "c/", "d"]);
    // A prefix whose only key is deleted disappears from ListObjects, but not from versions.
    store()
        .delete_object(&b, "c/1", None, "alice", 0, false)
        .unwrap();
    assert_eq!(list(None), ["a/", "b", "d"]);
    let v = store()
        .list_versions(
            &b,
            &ListVersionsParams {
                delimiter: Some("/".into()),
                max_keys: 100,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(v.common_prefixes, ["a/", "c/"]);
}
