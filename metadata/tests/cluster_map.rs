//! The cluster map on a real store: node registration, epochs (new disks make a new current
//! layout, old ones stay readable), replaced disks queue a rebuild atomically, degraded-chunk
//! records merge and are cleared only when unchanged.

use strata_metadata::*;

const NOW: i64 = 1_700_000_000_000;

fn open() -> (tempfile::TempDir, MetaStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = MetaStore::open(&dir.path().join("meta")).unwrap();
    (dir, s)
}

fn node(id: &str, disks: &[(&str, &str)]) -> NodeRecord {
    NodeRecord {
        id: id.into(),
        address: format!("127.0.0.1:{}", 9100 + id.len()),
        disks: disks
            .iter()
            .map(|(n, d)| ClusterDisk {
                name: (*n).into(),
                disk_id: (*d).into(),
                capacity_bytes: 1 << 40,
            })
            .collect(),
        state: NodeState::Up,
        registered: NOW,
        last_seen: NOW,
    }
}

#[test]
fn nodes_make_epochs_and_old_epochs_stay() {
    let (_d, s) = open();
    for i in 0..6 {
        let c = s
            .register_node(&node(&format!("n{i}"), &[("disk0", &format!("a{i}"))]), NOW)
            .unwrap();
        assert!(c.new_node);
    }
    let e1 = s.ensure_cluster_epoch(4, 2, 1 << 20, |_| 6, NOW).unwrap();
    assert_eq!(e1.disks[..3], ["n0/disk0", "n1/disk0", "n2/disk0"]);
    // The same map again: the same epoch.
    assert_eq!(
        s.ensure_cluster_epoch(4, 2, 1 << 20, |_| 6, NOW)
            .unwrap()
            .id,
        e1.id
    );
    // A second disk on n0: a new epoch, interleaved by node; the old one is still there.
    let c = s
        .register_node(&node("n0", &[("disk0", "a0"), ("disk1", "b0")]), NOW + 1)
        .unwrap();
    assert_eq!(c.added_disks, ["disk1"]);
    let e2 = s.ensure_cluster_epoch(4, 2, 1 << 20, |_| 7, NOW).unwrap();
    assert!(e2.id > e1.id);
    assert_eq!(e2.disks.len(), 7);
    assert_eq!(e2.disks[6], "n0/disk1");
    assert_eq!(s.current_layout().unwrap().unwrap().id, e2.id);
    assert_eq!(s.get_layout(e1.id).unwrap().unwrap(), e1);
    let epochs = s.list_epochs().unwrap();
    assert_eq!(epochs.len(), 2);
    assert_eq!(epochs[1].placement_groups, 7);
    assert_eq!(epochs[0].nodes.len(), 6);
}

#[test]
fn a_replaced_disk_queues_its_rebuild_until_finished() {
    let (_d, s) = open();
    s.register_node(&node("n1", &[("disk0", "old")]), NOW)
        .unwrap();
    assert!(s.list_disk_rebuilds().unwrap().is_empty());
    let c = s
        .register_node(&node("n1", &[("disk0", "new")]), NOW + 5)
        .unwrap();
    assert_eq!(c.replaced_disks, ["disk0"]);
    let jobs = s.list_disk_rebuilds().unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        (jobs[0].node.as_str(), jobs[0].disk.as_str()),
        ("n1", "disk0")
    );
    // Registering again with the same id queues nothing more.
    s.register_node(&node("n1", &[("disk0", "new")]), NOW + 6)
        .unwrap();
    assert_eq!(s.list_disk_rebuilds().unwrap(), jobs);
    // A newer replacement supersedes the job: finishing the old one leaves the new one.
    s.register_node(&node("n1", &[("disk0", "newer")]), NOW + 7)
        .unwrap();
    assert!(!s.finish_disk_rebuild(&jobs[0]).unwrap());
    let now = s.list_disk_rebuilds().unwrap();
    assert_eq!(now[0].disk_id, "newer");
    assert!(s.finish_disk_rebuild(&now[0]).unwrap());
    assert!(s.list_disk_rebuilds().unwrap().is_empty());
    // Down, then up again.
    s.set_node_state("n1", NodeState::Down, NOW + 8).unwrap();
    assert_eq!(s.list_nodes().unwrap()[0].state, NodeState::Down);
}

#[test]
fn degraded_records_merge_page_and_clear_only_when_unchanged() {
    let (_d, s) = open();
    for i in 0..5u32 {
        s.record_degraded(3, &[7; 16], i, &[2], NOW).unwrap();
    }
    s.record_degraded(3, &[7; 16], 1, &[5, 2], NOW + 1).unwrap();
    assert_eq!(s.count_degraded(100).unwrap(), 5);
    let (page, next) = s.list_degraded(None, 3).unwrap();
    assert_eq!(page.len(), 3);
    assert_eq!(page[1].missing, [2, 5]);
    let (rest, end) = s.list_degraded(next.as_deref(), 3).unwrap();
    assert_eq!(rest.len(), 2);
    assert_eq!(end, None);
    // A record changed since it was read is kept.
    let seen = page[0].clone();
    s.record_degraded(3, &[7; 16], 0, &[4], NOW + 2).unwrap();
    assert!(!s.clear_degraded(&seen).unwrap());
    let (fresh, _) = s.list_degraded(None, 1).unwrap();
    assert!(s.clear_degraded(&fresh[0]).unwrap());
    assert_eq!(s.count_degraded(100).unwrap(), 4);
    // Cluster disk names pass layout validation; paths still do not.
    assert!(
        s.ensure_current_layout(&["n1/../x".into(); 1], 1, 0, 1, NOW)
            .is_err()
    );
}
