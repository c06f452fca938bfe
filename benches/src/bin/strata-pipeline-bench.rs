//! Micro-benchmark of the chunk pipeline (no disk I/O): each stage alone, then the whole
//! encrypt + erasure-code + checksum path and its reverse, at 1 MiB and 8 MiB chunks.
//!
//! Figures are GiB/s of *chunk plaintext* processed, so stages are comparable (CRC32C touches
//! 1.5x the bytes under RS(4, 2) but is reported per chunk byte). Usage:
//!   cargo run --release -p strata-bench --bin strata-pipeline-bench [-- --seconds 1.0]

use std::time::{Duration, Instant};

use strata_erasure::Codec;
use strata_storage_node::cipher;
use strata_storage_node::pipeline::{self, open_chunk, open_data_shards, seal_chunk};
use strata_storage_node::{ChunkId, DataKey, format};

/// Best-of-trials throughput in GiB/s for `bytes_per_call` bytes per call. The machine is shared,
/// so `budget` is split into 8 short trials and the fastest one is kept: the best trial is the one
/// least disturbed by other processes, which makes stage-to-stage ratios meaningful. Each trial
/// calls `body` at least 3 and at most 100 000 times. `body` returns the time it wants counted, so
/// untimed setup (cloning inputs) can be excluded.
fn measure(bytes_per_call: usize, budget: Duration, mut body: impl FnMut() -> Duration) -> f64 {
    const TRIALS: u32 = 8;
    // Warm-up: caches, page faults, CPU frequency.
    for _ in 0..2 {
        body();
    }
    let mut best = 0.0f64;
    for _ in 0..TRIALS {
        let started = Instant::now();
        let mut counted = Duration::ZERO;
        let mut calls = 0u64;
        while (started.elapsed() < budget / TRIALS || calls < 3) && calls < 100_000 {
            counted += body();
            calls += 1;
        }
        let rate =
            (bytes_per_call as f64 * calls as f64) / counted.as_secs_f64() / (1u64 << 30) as f64;
        best = best.max(rate);
    }
    best
}

fn timed(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

fn main() {
    let mut budget = Duration::from_secs_f64(1.0);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--seconds" {
            let secs: f64 = args
                .next()
                .and_then(|s| s.parse().ok())
                .expect("--seconds <float>");
            budget = Duration::from_secs_f64(secs.clamp(0.05, 30.0));
        } else {
            eprintln!("usage: strata-pipeline-bench [--seconds S]");
            std::process::exit(2);
        }
    }
    let codec = Codec::new(4, 2).expect("RS(4, 2)");
    let dek = DataKey::generate();
    let id = ChunkId {
        blob: [0x42; 16],
        index: 7,
    };
    // The store draws a fresh nonce per put; reusing one here is fine (nothing is stored) and
    // keeps the figures about the pipeline alone.
    let chunk_nonce = pipeline::new_nonce();
    println!(
        "RS({}, {}), {:.1} s per figure, GiB/s of chunk plaintext (best of 8 trials), single thread unless noted",
        codec.data_shards(),
        codec.parity_shards(),
        budget.as_secs_f64()
    );
    println!(
        "{:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "chunk",
        "ring-enc",
        "ring-dec",
        "aesgcm-en",
        "aesgcm-de",
        "rs-enc",
        "rs-simd",
        "rs-rebld",
        "crc32c",
        "blake3",
        "seal",
        "open",
        "open-gen",
        "open-dgr",
        "seal-2thr"
    );
    for chunk_len in [1usize << 20, 8 << 20] {
        let plaintext: Vec<u8> = (0..chunk_len)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761) as u8)
            .collect();
        let ciphertext_len = chunk_len + 16;
        let key = [7u8; 32];
        let nonce = [1u8; 12];

        // Stage: AES-256-GCM alone, in place on a reused buffer. Through storage-node's
        // reference functions so AES is compiled exactly like the pipeline (opt-level 3), whatever
        // the opt-level of this crate.
        let mut buffer = plaintext.clone();
        let aes_enc = measure(chunk_len, budget, || {
            timed(|| {
                std::hint::black_box(pipeline::aes_gcm_encrypt_in_place(
                    &key,
                    &nonce,
                    b"aad",
                    &mut buffer,
                ));
            })
        });
        let mut sealed_buf = plaintext.clone();
        let tag = pipeline::aes_gcm_encrypt_in_place(&key, &nonce, b"aad", &mut sealed_buf);
        let aes_dec = measure(chunk_len, budget, || {
            let mut work = sealed_buf.clone();
            timed(|| {
                assert!(pipeline::aes_gcm_decrypt_in_place(
                    &key, &nonce, b"aad", &mut work, &tag
                ))
            })
        });
        // The cipher the store uses (ring): the same AES-256-GCM, so the same tag.
        let ring_enc = measure(chunk_len, budget, || {
            timed(|| {
                std::hint::black_box(cipher::seal_in_place(&key, &nonce, b"aad", &mut buffer));
            })
        });
        let ring_dec = measure(chunk_len, budget, || {
            let mut work = sealed_buf.clone();
            timed(|| assert!(cipher::open_in_place(&key, &nonce, b"aad", &mut work, &tag)))
        });

        // Stage: Reed-Solomon encode alone (parity into the stripe buffer), and rebuild of two
        // lost data shards.
        let mut stripe = vec![0u8; codec.stripe_len(ciphertext_len)];
        stripe[..chunk_len].copy_from_slice(&plaintext);
        let rs_enc = measure(chunk_len, budget, || {
            timed(|| codec.encode_stripe(&mut stripe, ciphertext_len).unwrap())
        });
        let shard_len = codec.shard_len(ciphertext_len);
        // The alternative backend on the same shards (it needs an even shard length).
        let simd_shard_len = shard_len.next_multiple_of(2);
        let simd_data: Vec<Vec<u8>> = stripe[..4 * shard_len]
            .chunks(shard_len)
            .map(|s| {
                let mut v = s.to_vec();
                v.resize(simd_shard_len, 0);
                v
            })
            .collect();
        let mut simd_encoder =
            reed_solomon_simd::ReedSolomonEncoder::new(4, 2, simd_shard_len).expect("RS(4, 2)");
        let rs_simd = measure(chunk_len, budget, || {
            timed(|| {
                simd_encoder.reset(4, 2, simd_shard_len).expect("reset");
                for shard in &simd_data {
                    simd_encoder.add_original_shard(shard).expect("add");
                }
                let result = simd_encoder.encode().expect("encode");
                std::hint::black_box(result.recovery(0));
            })
        });
        let shards: Vec<Vec<u8>> = stripe.chunks(shard_len).map(<[u8]>::to_vec).collect();
        let rs_rebuild = measure(chunk_len, budget, || {
            let mut damaged: Vec<Option<Vec<u8>>> = shards.iter().cloned().map(Some).collect();
            damaged[0] = None;
            damaged[2] = None;
            timed(|| drop(codec.decode(damaged, ciphertext_len).unwrap()))
        });

        // Stage: checksums alone, over every shard of the stripe (1.5x the chunk).
        let crc = measure(chunk_len, budget, || {
            timed(|| {
                let sum: u32 = stripe
                    .chunks(shard_len)
                    .map(format::crc32c)
                    .fold(0, |a, c| a ^ c);
                std::hint::black_box(sum);
            })
        });
        let blake = measure(chunk_len, budget, || {
            timed(|| {
                for shard in stripe.chunks(shard_len) {
                    std::hint::black_box(blake3::hash(shard));
                }
            })
        });

        // Whole pipeline: encrypt -> encode -> checksum, reusing the stripe buffer.
        let mut reuse = Vec::new();
        let seal = measure(chunk_len, budget, || {
            let mut out = None;
            let d = timed(|| {
                out = Some(seal_chunk(
                    &codec,
                    id,
                    &dek,
                    chunk_nonce,
                    &plaintext,
                    std::mem::take(&mut reuse),
                ))
            });
            reuse = out.expect("sealed").into_buffer();
            d
        });
        // Reverse, healthy (what a get does when the k data shards are fine): the store reads the
        // k data shards straight into one buffer (the untimed clone stands in for those reads, as
        // in aes-dec), then verify each shard's CRC32C and decrypt in place; no Reed-Solomon.
        let sealed = seal_chunk(&codec, id, &dek, chunk_nonce, &plaintext, Vec::new());
        let checksums = sealed.checksums.clone();
        let data_region = sealed.stripe[..4 * shard_len].to_vec();
        let open_ok = measure(chunk_len, budget, || {
            let mut data = data_region.clone();
            timed(|| {
                for (i, shard) in data.chunks(shard_len).enumerate() {
                    assert_eq!(format::crc32c(shard), checksums[i]);
                }
                let len =
                    open_data_shards(&codec, id, &dek, chunk_nonce, &mut data, chunk_len as u64)
                        .unwrap();
                data.truncate(len);
                assert_eq!(data.len(), chunk_len);
            })
        });
        // The general path (one buffer per shard, Reed-Solomon decode, decrypt): healthy, as every
        // get did before the single-buffer read ("open-gen"), and degraded, two data shards lost
        // ("open-dgr"): verify the four survivors, rebuild, decrypt.
        let all: Vec<Vec<u8>> = (0..6).map(|i| sealed.shard(i).to_vec()).collect();
        let open_general = |missing: &[usize]| {
            measure(chunk_len, budget, || {
                let shards: Vec<Option<Vec<u8>>> = all
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        (!missing.contains(&i) && (i < 4 || !missing.is_empty())).then(|| s.clone())
                    })
                    .collect();
                timed(|| {
                    for (i, shard) in shards.iter().enumerate() {
                        if let Some(s) = shard {
                            assert_eq!(format::crc32c(s), checksums[i]);
                        }
                    }
                    let out = open_chunk(&codec, id, &dek, chunk_nonce, shards, chunk_len as u64)
                        .unwrap();
                    assert_eq!(out.len(), chunk_len);
                })
            })
        };
        let open_gen = open_general(&[]);
        let open_degraded = open_general(&[0, 2]);

        // Two puts at once (two threads), as the node runs concurrent chunk puts.
        let two_threads = {
            let started = Instant::now();
            let per_thread: Vec<u64> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..2)
                    .map(|_| {
                        let (codec, dek, plaintext) = (&codec, &dek, &plaintext);
                        scope.spawn(move || {
                            let mut reuse = Vec::new();
                            let mut calls = 0u64;
                            while (started.elapsed() < budget || calls < 3) && calls < 100_000 {
                                reuse = seal_chunk(codec, id, dek, chunk_nonce, plaintext, reuse)
                                    .into_buffer();
                                calls += 1;
                            }
                            calls
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("bench thread"))
                    .collect()
            });
            let secs = started.elapsed().as_secs_f64();
            per_thread.iter().sum::<u64>() as f64 * chunk_len as f64 / secs / (1u64 << 30) as f64
        };

        println!(
            "{:>4}Mi {ring_enc:>9.2} {ring_dec:>9.2} {aes_enc:>9.2} {aes_dec:>9.2} {rs_enc:>9.2} {rs_simd:>9.2} {rs_rebuild:>9.2} {crc:>9.2} {blake:>9.2} {seal:>9.2} {open_ok:>9.2} {open_gen:>9.2} {open_degraded:>9.2} {two_threads:>9.2}",
            chunk_len >> 20
        );
        println!(
            "       seal = {:.0}% of AES-GCM (ring) encrypt alone; open = {:.0}% of AES-GCM (ring) decrypt alone (general path: {:.0}%)",
            100.0 * seal / ring_enc,
            100.0 * open_ok / ring_dec,
            100.0 * open_gen / ring_dec
        );
    }
}
