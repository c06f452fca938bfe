//! The cluster map: storage nodes (id, address, disks with ids and capacity, state), layout
//! epochs, degraded chunks (acknowledged with missing shards) and disks waiting for a rebuild.
//!
//! A layout epoch is a placement layout (`layouts.rs`) whose disk names are `<node>/<disk>`,
//! interleaved by node (`n1/disk0, n2/disk0, ..., n1/disk1, ...`) so that any k + m consecutive
//! disks are on distinct nodes when there are enough nodes; the storage node crate derives the
//! placement groups from that list. Registering a node or a disk makes a new epoch (a new current
//! layout); older epochs stay readable because layouts are never edited, and the rebalance job
//! moves their data. All records live in `Space::Sys` under `cluster/`.

use crate::kv::{Batch, Direction, KeyRange, Space};
use crate::store::{decode, encode};
use crate::{
    BlobId, ClusterEpoch, DegradedChunk, DiskRebuild, LayoutRecord, MetaStore, NodeRecord,
    NodeState, Result,
};

const NODE_PREFIX: &[u8] = b"cluster/node/";
const EPOCH_PREFIX: &[u8] = b"cluster/epoch/";
const DEGRADED_PREFIX: &[u8] = b"cluster/degraded/";
const REBUILD_PREFIX: &[u8] = b"cluster/rebuild-disk/";

fn node_key(id: &str) -> Vec<u8> {
    [NODE_PREFIX, id.as_bytes()].concat()
}

fn degraded_key(blob: &BlobId, index: u32) -> Vec<u8> {
    [DEGRADED_PREFIX, blob, &index.to_be_bytes()].concat()
}

fn rebuild_key(node: &str, disk: &str) -> Vec<u8> {
    [REBUILD_PREFIX, node.as_bytes(), b"/", disk.as_bytes()].concat()
}

/// What registering a node changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeChange {
    /// The node was not in the map before.
    pub new_node: bool,
    /// Disks that were not in the map before (new epoch needed).
    pub added_disks: Vec<String>,
    /// Disks that came back with a new id (empty replacement): queued for rebuild.
    pub replaced_disks: Vec<String>,
    /// The address changed.
    pub moved: bool,
}

impl MetaStore {
    /// Puts a node's record (first registration, or what it reports now). A known disk that
    /// reports a new disk id is an empty replacement: a [`DiskRebuild`] is queued for it in the
    /// same batch, so the rebuild cannot be missed.
    pub fn register_node(&self, node: &NodeRecord, now: i64) -> Result<NodeChange> {
        crate::layouts::validate(
            &node
                .disks
                .iter()
                .map(|d| d.name.clone())
                .collect::<Vec<_>>(),
            1,
            0,
            1,
        )?;
        self.retry(|| {
            let key = node_key(&node.id);
            let raw = self.kv().get(Space::Sys, &key)?;
            let old: Option<NodeRecord> = raw.as_deref().map(decode).transpose()?;
            let mut change = NodeChange {
                new_node: old.is_none(),
                ..Default::default()
            };
            let mut rec = node.clone();
            rec.last_seen = now;
            rec.state = NodeState::Up;
            let mut b = Batch::default();
            b.unchanged(Space::Sys, &key, raw.as_deref());
            if let Some(old) = &old {
                rec.registered = old.registered;
                change.moved = old.address != node.address;
                for d in &node.disks {
                    match old.disks.iter().find(|o| o.name == d.name) {
                        None => change.added_disks.push(d.name.clone()),
                        Some(o) if o.disk_id != d.disk_id => {
                            change.replaced_disks.push(d.name.clone());
                            let job = DiskRebuild {
                                node: node.id.clone(),
                                disk: d.name.clone(),
                                disk_id: d.disk_id.clone(),
                                since: now,
                            };
                            b.put(Space::Sys, rebuild_key(&node.id, &d.name), encode(&job));
                        }
                        Some(_) => {}
                    }
                }
                // The map watcher calls this every few seconds: write only a change, or a
                // last-seen time more than 30 s old.
                let mut same = rec.clone();
                same.last_seen = old.last_seen;
                if old == &same && now - old.last_seen < 30_000 {
                    return Ok(change);
                }
            } else {
                change.added_disks = node.disks.iter().map(|d| d.name.clone()).collect();
            }
            b.put(Space::Sys, key, encode(&rec));
            self.kv().commit(b)?;
            if !change.replaced_disks.is_empty() {
                tracing::warn!(node = %node.id, disks = ?change.replaced_disks, "disks came back empty: queued for rebuild");
            }
            Ok(change)
        })
    }

    /// Up/down as the gateway's health check last saw it (no-op if unchanged or unknown).
    pub fn set_node_state(&self, id: &str, state: NodeState, now: i64) -> Result<()> {
        self.retry(|| {
            let key = node_key(id);
            let Some(raw) = self.kv().get(Space::Sys, &key)? else {
                return Ok(());
            };
            let mut rec: NodeRecord = decode(&raw)?;
            if rec.state == state && (state == NodeState::Down || now - rec.last_seen < 60_000) {
                return Ok(());
            }
            rec.state = state;
            if state == NodeState::Up {
                rec.last_seen = now;
            }
            let mut b = Batch::default();
            b.equals(Space::Sys, &key, &raw);
            b.put(Space::Sys, key, encode(&rec));
            self.kv().commit(b)
        })
    }

    /// Every node, by id.
    pub fn list_nodes(&self) -> Result<Vec<NodeRecord>> {
        self.scan_all(Space::Sys, NODE_PREFIX.to_vec())?
            .into_iter()
            .map(|(_, v)| decode(&v))
            .collect()
    }

    /// Every disk of every node as `<node>/<disk>`, interleaved by node (round `r` takes disk
    /// `r` of each node that has one, nodes by id).
    pub fn cluster_disks(&self) -> Result<Vec<String>> {
        let nodes = self.list_nodes()?;
        let rounds = nodes.iter().map(|n| n.disks.len()).max().unwrap_or(0);
        let mut out = Vec::new();
        for r in 0..rounds {
            for n in &nodes {
                if let Some(d) = n.disks.get(r) {
                    out.push(format!("{}/{}", n.id, d.name));
                }
            }
        }
        Ok(out)
    }

    /// The current layout epoch over every registered disk: the current layout if it already
    /// places exactly these disks with this geometry, else a new one (and its epoch record).
    /// `placement_groups` is recorded for operators (the storage node computes the groups).
    pub fn ensure_cluster_epoch(
        &self,
        data_shards: u8,
        parity_shards: u8,
        chunk_size: u32,
        placement_groups: impl Fn(&[String]) -> u32,
        now: i64,
    ) -> Result<LayoutRecord> {
        let disks = self.cluster_disks()?;
        let layout =
            self.ensure_current_layout(&disks, data_shards, parity_shards, chunk_size, now)?;
        let key = [EPOCH_PREFIX, &layout.id.to_be_bytes()[..]].concat();
        if self.kv().get(Space::Sys, &key)?.is_none() {
            let mut nodes: Vec<String> = disks
                .iter()
                .filter_map(|d| d.split_once('/').map(|(n, _)| n.to_owned()))
                .collect();
            nodes.sort();
            nodes.dedup();
            let epoch = ClusterEpoch {
                epoch: layout.id,
                nodes,
                disks: disks.len() as u32,
                placement_groups: placement_groups(&disks),
                created: now,
            };
            let mut b = Batch::default();
            b.put(Space::Sys, key, encode(&epoch));
            self.kv().commit(b)?;
            tracing::info!(
                epoch = layout.id,
                disks = disks.len(),
                "new cluster layout epoch"
            );
        }
        Ok(layout)
    }

    /// Every epoch, oldest first.
    pub fn list_epochs(&self) -> Result<Vec<ClusterEpoch>> {
        self.scan_all(Space::Sys, EPOCH_PREFIX.to_vec())?
            .into_iter()
            .map(|(_, v)| decode(&v))
            .collect()
    }

    /// Records that chunk (`blob`, `index`) of `layout` lacks shards `missing` (merged with what
    /// an earlier record of it says). Durable before it returns: a degraded put is acknowledged
    /// only after this.
    pub fn record_degraded(
        &self,
        layout: u32,
        blob: &BlobId,
        index: u32,
        missing: &[u8],
        now: i64,
    ) -> Result<()> {
        self.retry(|| {
            let key = degraded_key(blob, index);
            let raw = self.kv().get(Space::Sys, &key)?;
            let mut rec = match raw.as_deref().map(decode::<DegradedChunk>).transpose()? {
                Some(r) => r,
                None => DegradedChunk {
                    blob: *blob,
                    index,
                    layout,
                    missing: Vec::new(),
                    since: now,
                },
            };
            rec.missing.extend_from_slice(missing);
            rec.missing.sort_unstable();
            rec.missing.dedup();
            let mut b = Batch::default();
            b.unchanged(Space::Sys, &key, raw.as_deref());
            b.put(Space::Sys, key, encode(&rec));
            self.kv().commit(b)
        })
    }

    /// Up to `limit` degraded chunks after the cursor `after` (a previous page's last key),
    /// with the cursor of the next page (`None`: no more).
    pub fn list_degraded(
        &self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<(Vec<DegradedChunk>, Option<Vec<u8>>)> {
        let start = match after {
            Some(a) => [a, &[0]].concat(),
            None => DEGRADED_PREFIX.to_vec(),
        };
        let end = crate::kv::prefix_successor(DEGRADED_PREFIX);
        let rows = self.kv().scan(
            Space::Sys,
            &KeyRange::new(start, end),
            Direction::Forward,
            limit.max(1),
        )?;
        let next = (rows.len() == limit.max(1))
            .then(|| rows.last().map(|(k, _)| k.clone()))
            .flatten();
        let recs = rows
            .into_iter()
            .map(|(_, v)| decode(&v))
            .collect::<Result<Vec<DegradedChunk>>>()?;
        Ok((recs, next))
    }

    /// How many degraded chunks are recorded (counted up to `cap`).
    pub fn count_degraded(&self, cap: usize) -> Result<u64> {
        let rows = self.kv().scan(
            Space::Sys,
            &KeyRange::prefix(DEGRADED_PREFIX),
            Direction::Forward,
            cap,
        )?;
        Ok(rows.len() as u64)
    }

    /// Removes a degraded record once its chunk is whole again, only if it is still exactly
    /// `rec` (a write that degraded it again meanwhile keeps it). Returns whether it was removed.
    pub fn clear_degraded(&self, rec: &DegradedChunk) -> Result<bool> {
        let key = degraded_key(&rec.blob, rec.index);
        let Some(raw) = self.kv().get(Space::Sys, &key)? else {
            return Ok(false);
        };
        if decode::<DegradedChunk>(&raw)? != *rec {
            return Ok(false);
        }
        let mut b = Batch::default();
        b.equals(Space::Sys, &key, &raw);
        b.delete(Space::Sys, key);
        match self.kv().commit(b) {
            Ok(()) => Ok(true),
            Err(crate::MetaError::Conflict) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Disks waiting for a full rebuild.
    pub fn list_disk_rebuilds(&self) -> Result<Vec<DiskRebuild>> {
        self.scan_all(Space::Sys, REBUILD_PREFIX.to_vec())?
            .into_iter()
            .map(|(_, v)| decode(&v))
            .collect()
    }

    /// Queues a full rebuild of `node`'s disk `disk` (operator verb, or a replaced node).
    pub fn queue_disk_rebuild(&self, job: &DiskRebuild) -> Result<()> {
        let mut b = Batch::default();
        b.put(Space::Sys, rebuild_key(&job.node, &job.disk), encode(job));
        self.kv().commit(b)
    }

    /// Ends a disk rebuild after a complete pass, only if no newer replacement was queued.
    pub fn finish_disk_rebuild(&self, job: &DiskRebuild) -> Result<bool> {
        let key = rebuild_key(&job.node, &job.disk);
        let Some(raw) = self.kv().get(Space::Sys, &key)? else {
            return Ok(false);
        };
        if decode::<DiskRebuild>(&raw)? != *job {
            return Ok(false);
        }
        let mut b = Batch::default();
        b.equals(Space::Sys, &key, &raw);
        b.delete(Space::Sys, key);
        match self.kv().commit(b) {
            Ok(()) => Ok(true),
            Err(crate::MetaError::Conflict) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
