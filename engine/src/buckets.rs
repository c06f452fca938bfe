//! Buckets: create (with the bucket's own key-encryption key), look up, configure, delete.

use strata_metadata::{BucketRecord, VersioningState};

use crate::error::Result;
use crate::{Engine, now_ms};

/// A bucket to create.
#[derive(Clone, Debug)]
pub struct NewBucket {
    pub name: String,
    /// User id of the owner.
    pub owner: String,
    pub region: String,
    pub object_lock: bool,
    /// The bucket's ACL (`None`: `private`).
    pub acl: Option<strata_metadata::acl::Acl>,
    /// Object Ownership (`None`: no controls, `ObjectWriter` behaviour).
    pub ownership: Option<strata_metadata::acl::ObjectOwnership>,
}

impl Engine {
    /// Creates the bucket with a fresh KEK. `BucketAlreadyExists` if the name is taken (by
    /// anyone: the caller decides what to answer an owner).
    pub async fn create_bucket(&self, spec: NewBucket) -> Result<BucketRecord> {
        let owner = spec.owner.clone();
        if let Some(u) = self.meta_call(move |m| m.get_user_by_id(&owner)).await?
            && u.closing.is_some()
        {
            // A closing account is read-only.
            return Err(strata_metadata::MetaError::BucketClosing.into());
        }
        let kek = self.new_kek().await?;
        let rec = BucketRecord {
            policy: None,
            public_access_block: None,
            ownership: spec.ownership,
            name: spec.name,
            owner: spec.owner,
            created: now_ms(),
            region: spec.region,
            // Object Lock needs versions to protect, so it switches versioning on.
            versioning: if spec.object_lock {
                VersioningState::Enabled
            } else {
                VersioningState::Unversioned
            },
            object_lock_enabled: spec.object_lock,
            default_retention: None,
            lifecycle_xml: None,
            lifecycle: None,
            tags: Vec::new(),
            kek_id: kek.id.clone(),
            wrapped_kek: Vec::new(),
            kek_slot: Some(kek.slot),
            previous_keks: Vec::new(),
            closing: None,
            retention_rules: Vec::new(),
            encryption: None,
            cors: Vec::new(),
            logging: None,
            acl: spec.acl,
        };
        let r = rec.clone();
        if let Err(e) = self.meta_call(move |m| m.create_bucket(r)).await {
            self.discard_key(kek.key_ref(), "bucket-not-created").await;
            return Err(e);
        }
        self.note_key_event("kek", &rec.kek_id, "created", Some(&rec.name))
            .await?;
        tracing::info!(bucket = %rec.name, owner = %rec.owner, object_lock = rec.object_lock_enabled, "bucket created");
        Ok(rec)
    }

    pub async fn bucket(&self, name: &str) -> Result<Option<BucketRecord>> {
        let n = name.to_string();
        self.meta_call(move |m| m.get_bucket(&n)).await
    }

    pub async fn list_buckets(&self) -> Result<Vec<BucketRecord>> {
        self.meta_call(|m| m.list_buckets()).await
    }

    /// Atomic read-modify-write of a bucket's settings (`BucketClosing` for a bucket being
    /// destroyed: read-only).
    pub async fn update_bucket<F>(&self, name: &str, mut f: F) -> Result<BucketRecord>
    where
        F: FnMut(&mut BucketRecord) -> strata_metadata::Result<()> + Send + 'static,
    {
        let n = name.to_string();
        self.meta_call(move |m| {
            m.update_bucket(&n, |b| {
                if b.closing.is_some() {
                    return Err(strata_metadata::MetaError::BucketClosing);
                }
                f(b)
            })
        })
        .await
    }

    /// `BucketNotEmpty` while any version, delete marker or upload remains.
    pub async fn delete_bucket(&self, name: &str) -> Result<()> {
        let n = name.to_string();
        self.meta_call(move |m| m.delete_bucket(&n)).await?;
        tracing::info!(bucket = %name, "bucket deleted");
        Ok(())
    }
}
