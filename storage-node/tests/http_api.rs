//! The node's HTTP API on 127.0.0.1, driven through `RemoteChunkStore` (the gateway's client).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use strata_storage_node::{
    ChunkId, ChunkService, DataKey, Layout, LocalChunkStore, NodeConfig, NodeError,
    RemoteChunkStore, serve_http,
};

fn layout6() -> Layout {
    Layout::new(1, (0..6).map(|i| format!("disk{i}")).collect(), 4, 2).unwrap()
}

async fn start_node(
    root: &std::path::Path,
) -> (Arc<LocalChunkStore>, String, tokio::task::JoinHandle<()>) {
    let mut config = NodeConfig::under(root, 6);
    config.heal_on_read = false;
    config.max_chunk_len = 8 << 20;
    let store = Arc::new(LocalChunkStore::open(config).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(serve_http(store.clone(), listener));
    (store, url, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_put_get_stat_delete_over_http() {
    let l = layout6();
    let dir = tempfile::tempdir().unwrap();
    let (local, url, server) = start_node(dir.path()).await;
    let remote = RemoteChunkStore::new(url.clone());
    let dek = DataKey::generate();
    let id = ChunkId {
        blob: rand::random(),
        index: 3,
    };
    let data: Vec<u8> = (0..(3 << 20) + 11).map(|i: u32| (i % 251) as u8).collect();

    tokio::time::timeout(Duration::from_secs(60), async {
        remote
            .put_chunk(&l, id, &dek, Bytes::from(data.clone()))
            .await
            .unwrap();
        // Same bytes through the network and in-process: one implementation behind both.
        assert!(remote.get_chunk(&l, id, &dek).await.unwrap() == data);
        assert!(local.get_chunk(&l, id, &dek).await.unwrap() == data);
        let stat = remote.stat_chunk(&l, id).await.unwrap();
        assert_eq!(
            (stat.len, stat.healthy_shards, stat.total_shards),
            (data.len() as u64, 6, 6)
        );

        // Errors keep their meaning across the wire.
        assert!(matches!(
            remote
                .put_chunk(&l, id, &dek, Bytes::from_static(b"again"))
                .await,
            Err(NodeError::AlreadyExists)
        ));
        assert!(matches!(
            remote.get_chunk(&l, id, &DataKey::generate()).await,
            Err(NodeError::Integrity)
        ));
        let unknown = ChunkId {
            blob: [0; 16],
            index: 0,
        };
        assert!(matches!(
            remote.get_chunk(&l, unknown, &dek).await,
            Err(NodeError::NotFound)
        ));
        assert!(matches!(
            remote.stat_chunk(&l, unknown).await,
            Err(NodeError::NotFound)
        ));
        for s in 0..3 {
            std::fs::remove_file(local.shard_path(&l, id, s).unwrap()).unwrap();
        }
        assert!(matches!(
            remote.get_chunk(&l, id, &dek).await,
            Err(NodeError::Unrecoverable {
                available: 3,
                needed: 4
            })
        ));

        // Bodies above max_chunk_len are refused, not buffered. (The node answers 400 before
        // reading the body; depending on timing the client sees that answer or a reset.)
        let big = Bytes::from(vec![0u8; (8 << 20) + 1]);
        let refused = remote.put_chunk(&l, unknown, &dek, big).await;
        assert!(
            matches!(refused, Err(NodeError::Invalid(_) | NodeError::Io(_))),
            "{refused:?}"
        );
        assert!((0..6).all(|s| !local.shard_path(&l, unknown, s).unwrap().exists()));

        remote.delete_chunk(&l, id).await.unwrap();
        assert!((0..6).all(|s| !local.shard_path(&l, id, s).unwrap().exists()));
        remote.delete_chunk(&l, id).await.unwrap();
    })
    .await
    .expect("HTTP round trip took over 60 s");
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_requests_with_bad_paths_keys_or_layouts_get_400_and_scrub_answers_json() {
    let dir = tempfile::tempdir().unwrap();
    let (_local, url, server) = start_node(dir.path()).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<Bytes>>();
    let wire = layout6().to_wire();
    let send = |method: &str, path: &str, headers: &[(&str, &str)], body: &'static [u8]| {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("{url}{path}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        client.request(
            request
                .body(http_body_util::Full::new(Bytes::from_static(body)))
                .unwrap(),
        )
    };
    let status = |r: Result<http::Response<hyper::body::Incoming>, _>| r.unwrap().status().as_u16();
    let key = "00".repeat(32);
    let chunk = format!("/chunks/{}/1", "ab".repeat(16));
    let good = [
        ("x-strata-dek", key.as_str()),
        ("x-strata-layout", wire.as_str()),
    ];
    tokio::time::timeout(Duration::from_secs(30), async {
        assert_eq!(
            status(send("PUT", "/chunks/../../etc/passwd", &good, b"abc").await),
            400
        );
        assert_eq!(
            status(send("PUT", &chunk, &[("x-strata-layout", &wire)], b"abc").await),
            400
        );
        assert_eq!(
            status(
                send(
                    "PUT",
                    &chunk,
                    &[("x-strata-dek", "zz"), ("x-strata-layout", &wire)],
                    b"abc"
                )
                .await
            ),
            400
        );
        assert_eq!(
            status(
                send(
                    "PUT",
                    &format!("/chunks/{}/01", "ab".repeat(16)),
                    &good,
                    b"abc"
                )
                .await
            ),
            400
        );
        // The layout: required, exactly once, strict.
        assert_eq!(
            status(send("PUT", &chunk, &[("x-strata-dek", &key)], b"abc").await),
            400
        );
        for bad in [
            "1:4+2:disk0,disk1,disk2,disk3,disk4",
            "1:4+2:disk0,disk1,disk2,disk3,disk4,disk4",
            "01:4+2:disk0,disk1,disk2,disk3,disk4,disk5",
            "1:4+2:disk0,disk1,disk2,disk3,disk4,../x",
        ] {
            assert_eq!(
                status(
                    send(
                        "PUT",
                        &chunk,
                        &[("x-strata-dek", &key), ("x-strata-layout", bad)],
                        b"abc"
                    )
                    .await
                ),
                400,
                "{bad}"
            );
        }
        assert_eq!(
            status(
                send(
                    "PUT",
                    &chunk,
                    &[
                        ("x-strata-dek", &key),
                        ("x-strata-layout", &wire),
                        ("x-strata-layout", &wire)
                    ],
                    b"abc"
                )
                .await
            ),
            400
        );
        assert_eq!(status(send("PUT", &chunk, &good, b"abc").await), 204);
        // Create-only: the same id again is a conflict, whatever the bytes.
        let again = send("PUT", &chunk, &good, b"xyz").await.unwrap();
        assert_eq!(again.status().as_u16(), 409);
        assert_eq!(again.headers()["x-strata-error"], "already-exists");
        assert_eq!(status(send("GET", "/nope", &[], b"").await), 404);
        // Scrub takes the known layouts in its body and a strict query.
        assert_eq!(status(send("POST", "/scrub", &[], b"").await), 400);
        assert_eq!(
            status(
                send(
                    "POST",
                    "/scrub?repair=yes",
                    &[],
                    b"1:4+2:disk0,disk1,disk2,disk3,disk4,disk5\n"
                )
                .await
            ),
            400
        );
        assert_eq!(
            status(send("POST", "/scrub", &[], b"1:4+2:disk0,disk1\n").await),
            400
        );
        let scrub = send(
            "POST",
            "/scrub?repair=true",
            &[],
            b"1:4+2:disk0,disk1,disk2,disk3,disk4,disk5\n",
        )
        .await
        .unwrap();
        assert_eq!(scrub.status().as_u16(), 200);
        let body = http_body_util::BodyExt::collect(scrub.into_body())
            .await
            .unwrap()
            .to_bytes();
        let report: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(report["chunks_checked"], 1);
        assert_eq!(report["shards_healthy"], 6);
        // A scrub that does not know the chunk's layout leaves it alone and says so.
        let scrub = send(
            "POST",
            "/scrub?repair=true",
            &[],
            b"2:4+2:disk0,disk1,disk2,disk3,disk4,disk5",
        )
        .await
        .unwrap();
        let body = http_body_util::BodyExt::collect(scrub.into_body())
            .await
            .unwrap()
            .to_bytes();
        let report: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(report["chunks_checked"], 0);
        assert_eq!(report["unknown_layouts"].as_array().unwrap().len(), 1);
        // Heal needs the layout too.
        let heal = format!("/heal/{}/1", "ab".repeat(16));
        assert_eq!(status(send("POST", &heal, &[], b"").await), 400);
        assert_eq!(
            status(send("POST", &heal, &[("x-strata-layout", &wire)], b"").await),
            200
        );
    })
    .await
    .expect("requests took over 30 s");
    server.abort();
}
