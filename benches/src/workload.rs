//! The load itself: worker tasks, the pool of objects written (with their digests), and the
//! preparation, measured and cleanup phases.

use crate::payload::{BLOCK, Payload};
use crate::s3::{PayloadMode, S3Client, S3Error};
use crate::spec::{Mix, OpKind, SizeDist};
use crate::stats::Stats;
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// An object this run wrote and still expects to exist.
#[derive(Clone)]
pub struct Written {
    pub key: String,
    pub size: u64,
    pub blake3: [u8; 32],
}

/// Every object written and not deleted, with its digest: what GETs are checked against.
#[derive(Default)]
pub struct Pool {
    objects: Mutex<Vec<Written>>,
}

impl Pool {
    pub fn add(&self, object: Written) {
        self.objects.lock().expect("pool lock").push(object);
    }

    pub fn len(&self) -> usize {
        self.objects.lock().expect("pool lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn pick(&self, rng: &mut Xoshiro256PlusPlus) -> Option<Written> {
        let objects = self.objects.lock().expect("pool lock");
        if objects.is_empty() {
            return None;
        }
        Some(objects[rng.random_range(0..objects.len())].clone())
    }

    /// Takes an object out before it is deleted, so no later GET expects it.
    pub fn take(&self, rng: &mut Xoshiro256PlusPlus) -> Option<Written> {
        let mut objects = self.objects.lock().expect("pool lock");
        if objects.is_empty() {
            return None;
        }
        let index = rng.random_range(0..objects.len());
        Some(objects.swap_remove(index))
    }

    pub fn contains(&self, key: &str) -> bool {
        self.objects
            .lock()
            .expect("pool lock")
            .iter()
            .any(|object| object.key == key)
    }
}

/// What every phase needs.
pub struct Workload {
    pub client: S3Client,
    pub bucket: String,
    /// Keys are `{key_prefix}{number}`; the prefix includes this run's id.
    pub key_prefix: String,
    pub sizes: SizeDist,
    pub part_size: u64,
    pub seed: u64,
    pub list_max_keys: u32,
    pub op_timeout: Duration,
    pub pool: Pool,
    next_key: AtomicU64,
}

/// How a phase of load ends: whichever comes first.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    pub duration: Duration,
    pub count: Option<u64>,
}

/// Which op each worker iteration runs.
#[derive(Clone, Debug)]
pub enum Plan {
    Only(OpKind),
    Mixed(Mix),
}

impl Workload {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: S3Client,
        bucket: String,
        key_prefix: String,
        sizes: SizeDist,
        part_size: u64,
        seed: u64,
        list_max_keys: u32,
        op_timeout: Duration,
    ) -> Self {
        Workload {
            client,
            bucket,
            key_prefix,
            sizes,
            part_size,
            seed,
            list_max_keys,
            op_timeout,
            pool: Pool::default(),
            next_key: AtomicU64::new(0),
        }
    }

    fn new_key(&self) -> String {
        format!(
            "{}{:010}",
            self.key_prefix,
            self.next_key.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// SHA-256 of a range in signed-payload mode, off the async threads for large bodies. It is
    /// computed before the request's clock starts: it is client work, not server latency.
    async fn body_sha256(&self, payload: &Payload, offset: u64, len: u64) -> Option<String> {
        if self.client.mode != PayloadMode::Signed {
            return None;
        }
        if len <= 1 << 20 {
            return Some(payload.sha256_hex(offset, len));
        }
        let payload = payload.clone();
        tokio::task::spawn_blocking(move || payload.sha256_hex(offset, len))
            .await
            .ok()
    }

    /// Runs `concurrency` workers under `plan` until `bounds` or until there is nothing left to
    /// do (a delete run that emptied the pool). Returns the wall time the phase took.
    pub async fn run(
        self: &Arc<Self>,
        plan: &Plan,
        concurrency: usize,
        bounds: Bounds,
        stats: &Arc<Stats>,
        progress_label: &str,
    ) -> Duration {
        let started = Instant::now();
        let deadline = started + bounds.duration;
        let issued = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let progress = tokio::spawn(progress_printer(
            stats.clone(),
            stop.clone(),
            started,
            bounds,
            progress_label.to_owned(),
        ));
        let mut workers = Vec::with_capacity(concurrency);
        for worker in 0..concurrency {
            let workload = self.clone();
            let plan = plan.clone();
            let stats = stats.clone();
            let issued = issued.clone();
            let stop = stop.clone();
            let seed = self.seed ^ (worker as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            workers.push(tokio::spawn(async move {
                let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
                let mut cursor = ListCursor::default();
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    if let Some(count) = bounds.count
                        && issued.fetch_add(1, Ordering::Relaxed) >= count
                    {
                        break;
                    }
                    let op = match &plan {
                        Plan::Only(op) => *op,
                        Plan::Mixed(mix) => mix.pick(&mut rng),
                    };
                    let outcome = workload.one_op(op, &mut rng, &mut cursor, &stats).await;
                    if outcome == Outcome::Exhausted {
                        match plan {
                            // Nothing to read or delete yet: write instead, as a user would.
                            Plan::Mixed(_) => {
                                workload
                                    .one_op(OpKind::Put, &mut rng, &mut cursor, &stats)
                                    .await;
                            }
                            Plan::Only(_) => break,
                        }
                    }
                }
            }));
        }
        for worker in workers {
            // A worker only ends by returning; a panic is a bug worth seeing.
            if let Err(error) = worker.await {
                eprintln!("worker failed: {error}");
            }
        }
        let elapsed = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        let _ = progress.await;
        elapsed
    }

    /// One operation, timed and recorded. A GET or DELETE with nothing to act on turns into a
    /// PUT in a mixed run; in a single-op run it means the run is done.
    async fn one_op(
        &self,
        op: OpKind,
        rng: &mut Xoshiro256PlusPlus,
        cursor: &mut ListCursor,
        stats: &Stats,
    ) -> Outcome {
        // An op started just before the deadline may still finish: a phase ends at most one
        // op timeout after its deadline.
        let timeout = self.op_timeout;
        match op {
            OpKind::Put => {
                let key = self.new_key();
                let size = self.sizes.sample(rng);
                let payload = Payload::new(self.seed, &key, size);
                let sha256 = self.body_sha256(&payload, 0, size).await;
                let started = Instant::now();
                let result = bounded(
                    timeout,
                    self.client.put_object(&self.bucket, &key, &payload, sha256),
                )
                .await;
                match result {
                    Ok(blake3) => {
                        stats.record_ok(op, started.elapsed(), size, 0);
                        self.pool.add(Written { key, size, blake3 });
                    }
                    Err(error) => record_failure(stats, op, &error),
                }
                Outcome::Done
            }
            OpKind::Get => {
                let Some(object) = self.pool.pick(rng) else {
                    return Outcome::Exhausted;
                };
                let started = Instant::now();
                let result =
                    bounded(timeout, self.client.get_object(&self.bucket, &object.key)).await;
                let elapsed = started.elapsed();
                match result {
                    Ok((length, blake3)) if length == object.size && blake3 == object.blake3 => {
                        stats.record_ok(op, elapsed, length, 0);
                    }
                    Ok((length, _)) => {
                        let error = S3Error::new(
                            "BodyMismatch",
                            format!(
                                "{}: got {length} bytes that differ from the {} written",
                                object.key, object.size
                            ),
                        );
                        record_failure(stats, op, &error);
                    }
                    Err(error) if error.code == "NoSuchKey" && !self.pool.contains(&object.key) => {
                        stats.record_raced_delete();
                    }
                    Err(error) => record_failure(stats, op, &error),
                }
                Outcome::Done
            }
            OpKind::Delete => {
                let Some(object) = self.pool.take(rng) else {
                    return Outcome::Exhausted;
                };
                let started = Instant::now();
                match bounded(
                    timeout,
                    self.client.delete_object(&self.bucket, &object.key),
                )
                .await
                {
                    Ok(()) => stats.record_ok(op, started.elapsed(), 0, 0),
                    Err(error) => {
                        record_failure(stats, op, &error);
                        // It may still exist: keep it for cleanup's listing, not for GETs.
                    }
                }
                Outcome::Done
            }
            OpKind::List => {
                let started = Instant::now();
                let token = cursor.token.clone();
                let result = bounded(
                    timeout,
                    self.client.list_page(
                        &self.bucket,
                        &self.key_prefix,
                        self.list_max_keys,
                        token.as_deref(),
                    ),
                )
                .await;
                match result {
                    Ok(page) => {
                        stats.record_ok(
                            op,
                            started.elapsed(),
                            page.body_bytes,
                            page.keys.len() as u64,
                        );
                        if let Some(key) = page
                            .keys
                            .iter()
                            .find(|key| !key.starts_with(&self.key_prefix))
                        {
                            let error = S3Error::new("ListWrongPrefix", format!("listed {key}"));
                            record_failure(stats, op, &error);
                        }
                        cursor.token = page.next;
                    }
                    Err(error) => {
                        record_failure(stats, op, &error);
                        cursor.token = None;
                    }
                }
                Outcome::Done
            }
            OpKind::Multipart => {
                let key = self.new_key();
                let size = self.sizes.sample(rng);
                let started = Instant::now();
                match bounded(timeout, self.multipart(&key, size)).await {
                    Ok(blake3) => {
                        stats.record_ok(op, started.elapsed(), size, 0);
                        self.pool.add(Written { key, size, blake3 });
                    }
                    Err(error) => record_failure(stats, op, &error),
                }
                Outcome::Done
            }
        }
    }

    /// Create, parts in order, complete; on failure the upload is aborted so nothing lingers.
    async fn multipart(&self, key: &str, size: u64) -> Result<[u8; 32], S3Error> {
        let payload = Payload::new(self.seed, key, size);
        let upload_id = self.client.create_multipart(&self.bucket, key).await?;
        let result = async {
            let mut hasher = blake3::Hasher::new();
            let mut etags = Vec::new();
            let mut offset = 0;
            // Even an empty object has one (empty) part.
            while offset < size || etags.is_empty() {
                let len = self.part_size.min(size - offset);
                let sha256 = self.body_sha256(&payload, offset, len).await;
                let part_number = etags.len() as u32 + 1;
                let (etag, carried) = self
                    .client
                    .upload_part(
                        &self.bucket,
                        key,
                        &upload_id,
                        part_number,
                        &payload,
                        offset,
                        len,
                        sha256,
                        hasher,
                    )
                    .await?;
                hasher = carried;
                etags.push(etag);
                offset += len;
            }
            self.client
                .complete_multipart(&self.bucket, key, &upload_id, &etags)
                .await?;
            Ok(*hasher.finalize().as_bytes())
        }
        .await;
        if result.is_err() {
            let _ = bounded(
                self.op_timeout,
                self.client.abort_multipart(&self.bucket, key, &upload_id),
            )
            .await;
        }
        result
    }

    /// Writes `objects` objects for GET/LIST/DELETE phases to work on.
    pub async fn prepare(
        self: &Arc<Self>,
        objects: u64,
        concurrency: usize,
        stats: &Arc<Stats>,
    ) -> Duration {
        let bounds = Bounds {
            // Bounded by count; the time cap only guards against a server that hangs.
            duration: Duration::from_secs(24 * 3600),
            count: Some(objects),
        };
        self.run(
            &Plan::Only(OpKind::Put),
            concurrency,
            bounds,
            stats,
            "prepare",
        )
        .await
    }

    /// Lists everything under this run's prefix and deletes it; returns (deleted, failed).
    pub async fn cleanup(self: &Arc<Self>, concurrency: usize) -> (u64, u64) {
        let deleted = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        // Always list from the top (deleting while paging would shift tokens) until the prefix
        // is empty or a page could not be deleted at all; the page count bounds the loop.
        for _ in 0..100_000 {
            let page = match bounded(
                self.op_timeout,
                self.client
                    .list_page(&self.bucket, &self.key_prefix, 1000, None),
            )
            .await
            {
                Ok(page) if page.keys.is_empty() => break,
                Ok(page) => page,
                Err(error) => {
                    eprintln!("cleanup: listing failed: {error}");
                    failed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            };
            let deleted_before = deleted.load(Ordering::Relaxed);
            let keys = Arc::new(Mutex::new(page.keys));
            let mut tasks = Vec::new();
            for _ in 0..concurrency {
                let (workload, keys, deleted, failed) =
                    (self.clone(), keys.clone(), deleted.clone(), failed.clone());
                tasks.push(tokio::spawn(async move {
                    loop {
                        let Some(key) = keys.lock().expect("keys lock").pop() else {
                            break;
                        };
                        let result = bounded(
                            workload.op_timeout,
                            workload.client.delete_object(&workload.bucket, &key),
                        )
                        .await;
                        match result {
                            Ok(()) => deleted.fetch_add(1, Ordering::Relaxed),
                            Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                }));
            }
            for task in tasks {
                let _ = task.await;
            }
            if deleted.load(Ordering::Relaxed) == deleted_before {
                break;
            }
        }
        (
            deleted.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed),
        )
    }

    /// Walks the whole listing once: the number of keys under this run's prefix.
    pub async fn count_listed(&self) -> Result<u64, S3Error> {
        let mut token: Option<String> = None;
        let mut total = 0;
        for _ in 0..1_000_000 {
            let page = bounded(
                self.op_timeout,
                self.client
                    .list_page(&self.bucket, &self.key_prefix, 1000, token.as_deref()),
            )
            .await?;
            total += page.keys.len() as u64;
            token = page.next;
            if token.is_none() {
                return Ok(total);
            }
        }
        Err(S3Error::new("BadResponse", "listing did not end"))
    }
}

#[derive(PartialEq, Eq)]
enum Outcome {
    Done,
    Exhausted,
}

/// A worker's place in a paged listing.
#[derive(Default)]
struct ListCursor {
    token: Option<String>,
}

fn record_failure(stats: &Stats, op: OpKind, error: &S3Error) {
    stats.record_error(op, &error.code);
    // The first few of each kind are worth reading in full; the counts tell the rest.
    static SHOWN: AtomicU64 = AtomicU64::new(0);
    if SHOWN.fetch_add(1, Ordering::Relaxed) < 5 {
        eprintln!("{} failed: {error}", op.name());
    }
}

async fn bounded<T>(
    limit: Duration,
    future: impl Future<Output = Result<T, S3Error>>,
) -> Result<T, S3Error> {
    match tokio::time::timeout(limit, future).await {
        Ok(result) => result,
        Err(_) => Err(S3Error::new(
            "Timeout",
            format!("no answer within {limit:?}"),
        )),
    }
}

/// One line a second on stderr while a phase runs.
async fn progress_printer(
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    started: Instant,
    bounds: Bounds,
    label: String,
) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    let (ops, bytes, _) = stats.totals();
    let mut previous = (ops, bytes);
    while !stop.load(Ordering::Relaxed) {
        ticker.tick().await;
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let (ops, bytes, errors) = stats.totals();
        let elapsed = started.elapsed().as_secs();
        let goal = match bounds.count {
            Some(count) => format!("{ops}/{count} ops"),
            None => format!("{elapsed}/{}s", bounds.duration.as_secs()),
        };
        eprintln!(
            "[{label} {elapsed:>4}s] {goal}  {:>8} ops/s  {:>9.2} MiB/s  errors {errors}",
            ops - previous.0,
            (bytes - previous.1) as f64 / (1024.0 * 1024.0),
        );
        previous = (ops, bytes);
    }
}

// Multipart parts are generated from block-aligned offsets.
const _: () = assert!(BLOCK.is_power_of_two());
