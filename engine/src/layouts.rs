//! Placement layouts as the engine uses them: the current one (new segments are written with it
//! and record its id) and every earlier one (old segments stay readable under theirs). Layouts
//! are immutable records in the metadata tier; this is a cache, refreshed from the metadata tier
//! when a segment names a layout it has not seen (another process created it).

use std::collections::HashMap;
use std::sync::RwLock;

use strata_metadata::{LayoutRecord, MetaError, MetaStore};

use crate::Engine;
use crate::error::{EngineError, Result};

pub struct Layouts {
    current: RwLock<LayoutRecord>,
    known: RwLock<HashMap<u32, LayoutRecord>>,
}

impl Layouts {
    pub(crate) fn load(meta: &MetaStore, current: LayoutRecord) -> Result<Self> {
        let known = meta
            .list_layouts()?
            .into_iter()
            .map(|l| (l.id, l))
            .collect();
        Ok(Layouts {
            current: RwLock::new(current),
            known: RwLock::new(known),
        })
    }

    /// The layout new data is written with.
    pub fn current(&self) -> LayoutRecord {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn cached(&self, id: u32) -> Option<LayoutRecord> {
        self.known
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }

    /// Every known layout, by id.
    pub fn all(&self) -> Vec<LayoutRecord> {
        let mut v: Vec<LayoutRecord> = self
            .known
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by_key(|l| l.id);
        v
    }
}

impl Engine {
    /// The layout a segment was written with.
    pub(crate) async fn layout(&self, id: u32) -> Result<LayoutRecord> {
        if let Some(l) = self.layouts().cached(id) {
            return Ok(l);
        }
        let found = self.meta_call(move |m| m.get_layout(id)).await?;
        match found {
            Some(l) => {
                self.layouts()
                    .known
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id, l.clone());
                Ok(l)
            }
            None => Err(EngineError::Meta(MetaError::Corrupt(format!(
                "segment names layout {id}, which does not exist"
            )))),
        }
    }
}
