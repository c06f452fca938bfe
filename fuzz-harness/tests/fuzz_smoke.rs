//! Smoke run of the fuzzing harness (`strata_fuzz_harness`) in ordinary CI: a few thousand
//! deterministic pseudo-random and mutated inputs per mode go through the real S3 service; the
//! test fails if any of them panics, or if the service no longer answers a valid signed request
//! afterwards. The real fuzz target is `fuzz/fuzz_targets/s3_request.rs` (cargo-fuzz, nightly).

use std::time::{Duration, Instant};

use strata_fuzz_harness::{FuzzHarness, MODE_AWS_CHUNKED, MODE_RAW, MODE_SIGNED_XML, XML_OPS};

/// Inputs per mode, unless the mode's time budget runs out first.
const PER_MODE: usize = 5000;
/// Wall-clock budget per mode (three modes: well under a minute in total).
const BUDGET: Duration = Duration::from_secs(15);

/// SplitMix64: small, deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

const TOKENS: &[&[u8]] = &[
    b"<",
    b">",
    b"</",
    b"/>",
    b"&amp;",
    b"&#x0;",
    b"&unknown;",
    b"<![CDATA[",
    b"]]>",
    b"<?xml version=\"1.0\"?>",
    b"<!DOCTYPE a [<!ENTITY x \"y\">]>",
    b"<Part>",
    b"<Object>",
    b"<Key>",
    b"<Tag>",
    b"\r\n",
    b";chunk-signature=",
    b"ffffffffffffffff",
    b"FFFFFFFF\r\n",
    b"0\r\n",
    b"x-amz-checksum-crc32:",
    b":",
    b"\x00",
    b"\xff\xfe",
];

/// One random edit: flip, overwrite, insert a token, delete a range, duplicate a range, truncate.
fn mutate(rng: &mut Rng, data: &mut Vec<u8>, keep: usize) {
    let len = data.len();
    let pos = keep + rng.below(len.saturating_sub(keep) + 1);
    match rng.below(7) {
        0 if pos < len => data[pos] ^= 1 << rng.below(8),
        1 if pos < len => data[pos] = rng.next() as u8,
        2 | 3 => {
            let t = TOKENS[rng.below(TOKENS.len())];
            data.splice(pos..pos, t.iter().copied());
        }
        4 if pos < len => {
            let end = (pos + 1 + rng.below(16)).min(len);
            data.drain(pos..end);
        }
        5 if pos < len => {
            let end = (pos + 1 + rng.below(64)).min(len);
            let copy = data[pos..end].to_vec();
            let reps = 1 + rng.below(8);
            for _ in 0..reps {
                data.splice(pos..pos, copy.iter().copied());
            }
        }
        6 if pos < len => data.truncate(pos),
        _ => data.push(rng.next() as u8),
    }
}

fn xml_seeds() -> Vec<Vec<u8>> {
    let bodies: [&str; 12] = [
        r#"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>"0123"</ETag></Part></CompleteMultipartUpload>"#,
        r#"<Delete><Object><Key>obj</Key><VersionId>null</VersionId></Object><Object><Key>x</Key></Object><Quiet>true</Quiet></Delete>"#,
        r#"<Tagging><TagSet><Tag><Key>a</Key><Value>b</Value></Tag></TagSet></Tagging>"#,
        r#"<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>Enabled</Status><MfaDelete>Disabled</MfaDelete></VersioningConfiguration>"#,
        r#"<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention><Mode>GOVERNANCE</Mode><Days>1</Days></DefaultRetention></Rule></ObjectLockConfiguration>"#,
        r#"<Retention><Mode>GOVERNANCE</Mode><RetainUntilDate>2020-01-01T00:00:00Z</RetainUntilDate></Retention>"#,
        r#"<LegalHold><Status>OFF</Status></LegalHold>"#,
        r#"<CreateBucketConfiguration><LocationConstraint>us-east-1</LocationConstraint></CreateBucketConfiguration>"#,
        r#"<Tagging><TagSet><Tag><Key>team</Key><Value>s</Value></Tag></TagSet></Tagging>"#,
        r#"<CORSConfiguration><CORSRule><AllowedOrigin>http://*.example</AllowedOrigin><AllowedMethod>GET</AllowedMethod><AllowedHeader>*</AllowedHeader><MaxAgeSeconds>3</MaxAgeSeconds></CORSRule></CORSConfiguration>"#,
        r#"<ServerSideEncryptionConfiguration><Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>aws:kms</SSEAlgorithm><KMSMasterKeyID>alias/x</KMSMasterKeyID></ApplyServerSideEncryptionByDefault><BucketKeyEnabled>true</BucketKeyEnabled></Rule></ServerSideEncryptionConfiguration>"#,
        r#"<BucketLoggingStatus><LoggingEnabled><TargetBucket>fuzz</TargetBucket><TargetPrefix>l/</TargetPrefix></LoggingEnabled></BucketLoggingStatus>"#,
    ];
    assert_eq!(bodies.len(), XML_OPS.len());
    let mut seeds = Vec::new();
    for (op, body) in bodies.iter().enumerate() {
        for flags in [0u8, 1] {
            let mut s = vec![MODE_SIGNED_XML, op as u8, flags];
            s.extend_from_slice(body.as_bytes());
            seeds.push(s);
        }
    }
    seeds
}

fn chunked_seeds() -> Vec<Vec<u8>> {
    let bodies: [(&[u8], u64); 6] = [
        (
            b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n",
            5,
        ),
        (b"5\r\nhello\r\n0\r\n\r\n", 5),
        (
            b"3\r\nhel\r\n2\r\nlo\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n",
            5,
        ),
        (
            b"5;chunk-signature=abc\r\nhello\r\n0;chunk-signature=def\r\n\r\n",
            5,
        ),
        (b"ffffffffffffffff\r\nhello\r\n0\r\n\r\n", 5),
        (
            b"0\r\nx-amz-checksum-sha256:\r\nx-amz-meta-extra:1\r\n\r\n",
            0,
        ),
    ];
    let mut seeds = Vec::new();
    for (body, len) in bodies {
        for (flags, trailer) in [(1u8, 0u8), (1 | 16, 0), (1 | 8, 4), (3, 0), (4, 1)] {
            let mut s = vec![MODE_AWS_CHUNKED, flags, trailer];
            s.extend_from_slice(&len.to_le_bytes());
            s.extend_from_slice(body);
            seeds.push(s);
        }
    }
    seeds
}

/// Inputs for one mode: a third purely random (after the mode byte), the rest mutated seeds.
fn inputs(rng: &mut Rng, mode: u8, seeds: &[Vec<u8>], i: usize) -> Vec<u8> {
    if seeds.is_empty() || i.is_multiple_of(3) {
        let cap = if rng.below(8) == 0 { 16 * 1024 } else { 512 };
        let n = rng.below(cap);
        let mut v = vec![mode];
        v.extend(rng.bytes(n));
        return v;
    }
    let mut v = seeds[rng.below(seeds.len())].clone();
    // Keep the mode byte; the other header bytes may be mutated too.
    let edits = 1 + rng.below(8);
    for _ in 0..edits {
        mutate(rng, &mut v, 1);
    }
    v.truncate(80 * 1024);
    v
}

#[test]
fn fuzz_inputs_do_not_panic_and_the_service_survives() {
    let h = FuzzHarness::new().expect("harness");
    assert_eq!(h.head_bucket().unwrap(), http::StatusCode::OK);

    let raw_seeds: Vec<Vec<u8>> = Vec::new();
    let modes: [(&str, u8, Vec<Vec<u8>>); 3] = [
        ("raw", MODE_RAW, raw_seeds),
        ("signed-xml", MODE_SIGNED_XML, xml_seeds()),
        ("aws-chunked", MODE_AWS_CHUNKED, chunked_seeds()),
    ];
    let mut rng = Rng(0x5EED_5EED_2026);
    for (name, mode, seeds) in &modes {
        // The seeds themselves first, unmutated.
        let mut statuses = std::collections::BTreeMap::<String, usize>::new();
        for s in seeds {
            let st = h.run_status(s);
            // Signed inputs must get past authentication, or they would not reach the parsers.
            assert_ne!(
                st,
                Some(http::StatusCode::FORBIDDEN),
                "seed {:?}",
                String::from_utf8_lossy(s)
            );
            *statuses.entry(format!("{st:?}")).or_default() += 1;
        }
        eprintln!("fuzz_smoke: mode {name}: seed statuses {statuses:?}");
        statuses.clear();
        let start = Instant::now();
        let mut n = 0;
        while n < PER_MODE && start.elapsed() < BUDGET {
            let input = inputs(&mut rng, *mode, seeds, n);
            let st = h.run_status(&input);
            if st.is_some_and(|s| s.is_server_error()) {
                eprintln!(
                    "fuzz_smoke: mode {name}: {st:?} for {:?}",
                    String::from_utf8_lossy(&input)
                );
            }
            *statuses
                .entry(st.map_or("none".into(), |s| s.as_u16().to_string()))
                .or_default() += 1;
            n += 1;
        }
        eprintln!(
            "fuzz_smoke: mode {name}: {} seeds + {n} inputs in {:.1?}",
            seeds.len(),
            start.elapsed()
        );
        eprintln!("fuzz_smoke: mode {name}: statuses {statuses:?}");
        assert!(n >= 200, "mode {name}: only {n} inputs within the budget");
        assert_eq!(
            h.head_bucket().unwrap(),
            http::StatusCode::OK,
            "service no longer answers after mode {name}"
        );
    }
}
