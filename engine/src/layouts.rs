//! Placement layouts as the engine uses them: the current one (new segments are written with it
//! and record its id) and every earlier one (old segments stay readable under theirs). Layouts
//! are immutable records in the metadata tier; this is a cache of them, together with the chunk
//! store's view of each (`strata_storage_node::Layout`: disks by name, k, m), refreshed from the
//! metadata tier when a segment names a layout it has not seen (another process created it).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use strata_metadata::{LayoutRecord, MetaError, MetaStore};
use strata_storage_node::Layout;

use crate::Engine;
use crate::error::{EngineError, Result};

/// A layout record and the chunk store's view of it.
#[derive(Clone, Debug)]
pub struct KnownLayout {
    pub record: LayoutRecord,
    pub node: Arc<Layout>,
}

impl KnownLayout {
    pub fn new(record: LayoutRecord) -> Result<Self> {
        let node = Layout::new(
            record.id,
            record.disks.clone(),
            record.data_shards,
            record.parity_shards,
        )?;
        Ok(KnownLayout {
            record,
            node: Arc::new(node),
        })
    }
}

pub struct Layouts {
    current: RwLock<KnownLayout>,
    known: RwLock<HashMap<u32, KnownLayout>>,
}

impl Layouts {
    pub(crate) fn load(meta: &MetaStore, current: LayoutRecord) -> Result<Self> {
        let mut known = HashMap::new();
        for rec in meta.list_layouts()? {
            known.insert(rec.id, KnownLayout::new(rec)?);
        }
        let current = KnownLayout::new(current)?;
        known.insert(current.record.id, current.clone());
        Ok(Layouts {
            current: RwLock::new(current),
            known: RwLock::new(known),
        })
    }

    /// The layout new data is written with.
    pub fn current(&self) -> KnownLayout {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Makes `record` the layout new data is written with (a new cluster epoch, seen while
    /// running); the old current one stays known, so its data stays readable.
    pub fn set_current(&self, record: LayoutRecord) -> Result<()> {
        let k = KnownLayout::new(record)?;
        self.known
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(k.record.id, k.clone());
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = k;
        Ok(())
    }

    fn cached(&self, id: u32) -> Option<KnownLayout> {
        self.known
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }

    /// Every known layout record, by id.
    pub fn all(&self) -> Vec<LayoutRecord> {
        let mut v: Vec<LayoutRecord> = self
            .known
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|k| k.record.clone())
            .collect();
        v.sort_by_key(|l| l.id);
        v
    }

    /// Every known layout as the chunk store sees it (for scrub).
    pub fn node_layouts(&self) -> Result<Vec<Layout>> {
        let mut v: Vec<Layout> = self
            .known
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|k| (*k.node).clone())
            .collect();
        v.sort_by_key(|l| l.id);
        Ok(v)
    }
}

impl Engine {
    /// The layout a segment was written with.
    pub(crate) async fn layout(&self, id: u32) -> Result<KnownLayout> {
        if let Some(l) = self.layouts().cached(id) {
            return Ok(l);
        }
        let found = self.meta_call(move |m| m.get_layout(id)).await?;
        match found {
            Some(rec) => {
                let k = KnownLayout::new(rec)?;
                self.layouts()
                    .known
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id, k.clone());
                Ok(k)
            }
            None => Err(EngineError::Meta(MetaError::Corrupt(format!(
                "segment names layout {id}, which does not exist"
            )))),
        }
    }
}
