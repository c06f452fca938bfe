//! The node's HTTP API on 127.0.0.1, driven through `RemoteChunkStore` (the gateway's client).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use strata_storage_node::{
    ChunkId, ChunkService, DataKey, LocalChunkStore, NodeConfig, NodeError, RemoteChunkStore,
    serve_http,
};

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
            .put_chunk(id, &dek, Bytes::from(data.clone()))
            .await
            .unwrap();
        // Same bytes through the network and in-process: one implementation behind both.
        assert!(remote.get_chunk(id, &dek).await.unwrap() == data);
        assert!(local.get_chunk(id, &dek).await.unwrap() == data);
        let stat = remote.stat_chunk(id).await.unwrap();
        assert_eq!(
            (stat.len, stat.healthy_shards, stat.total_shards),
            (data.len() as u64, 6, 6)
        );

        // Errors keep their meaning across the wire.
        assert!(matches!(
            remote.get_chunk(id, &DataKey::generate()).await,
            Err(NodeError::Integrity)
        ));
        let unknown = ChunkId {
            blob: [0; 16],
            index: 0,
        };
        assert!(matches!(
            remote.get_chunk(unknown, &dek).await,
            Err(NodeError::NotFound)
        ));
        assert!(matches!(
            remote.stat_chunk(unknown).await,
            Err(NodeError::NotFound)
        ));
        for s in 0..3 {
            std::fs::remove_file(local.shard_path(id, s)).unwrap();
        }
        assert!(matches!(
            remote.get_chunk(id, &dek).await,
            Err(NodeError::Unrecoverable {
                available: 3,
                needed: 4
            })
        ));

        // Bodies above max_chunk_len are refused, not buffered. (The node answers 400 before
        // reading the body; depending on timing the client sees that answer or a reset.)
        let big = Bytes::from(vec![0u8; (8 << 20) + 1]);
        let refused = remote.put_chunk(unknown, &dek, big).await;
        assert!(
            matches!(refused, Err(NodeError::Invalid(_) | NodeError::Io(_))),
            "{refused:?}"
        );
        assert!((0..6).all(|s| !local.shard_path(unknown, s).exists()));

        remote.delete_chunk(id).await.unwrap();
        assert!((0..6).all(|s| !local.shard_path(id, s).exists()));
        remote.delete_chunk(id).await.unwrap();
    })
    .await
    .expect("HTTP round trip took over 60 s");
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_requests_with_bad_paths_or_keys_get_400_and_scrub_answers_json() {
    let dir = tempfile::tempdir().unwrap();
    let (_local, url, server) = start_node(dir.path()).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<Bytes>>();
    let send = |method: &str, path: &str, dek: Option<&str>| {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("{url}{path}"));
        if let Some(dek) = dek {
            request = request.header("x-strata-dek", dek);
        }
        client.request(
            request
                .body(http_body_util::Full::new(Bytes::from_static(b"abc")))
                .unwrap(),
        )
    };
    let status = |r: Result<http::Response<hyper::body::Incoming>, _>| r.unwrap().status().as_u16();
    tokio::time::timeout(Duration::from_secs(30), async {
        assert_eq!(
            status(send("PUT", "/chunks/../../etc/passwd", Some(&"00".repeat(32))).await),
            400
        );
        assert_eq!(
            status(send("PUT", &format!("/chunks/{}/1", "ab".repeat(16)), None).await),
            400
        );
        assert_eq!(
            status(send("PUT", &format!("/chunks/{}/1", "ab".repeat(16)), Some("zz")).await),
            400
        );
        assert_eq!(
            status(
                send(
                    "PUT",
                    &format!("/chunks/{}/01", "ab".repeat(16)),
                    Some(&"00".repeat(32))
                )
                .await
            ),
            400
        );
        assert_eq!(
            status(
                send(
                    "PUT",
                    &format!("/chunks/{}/1", "ab".repeat(16)),
                    Some(&"00".repeat(32))
                )
                .await
            ),
            204
        );
        assert_eq!(status(send("GET", "/nope", None).await), 404);
        let scrub = send("POST", "/scrub?repair=true", None).await.unwrap();
        assert_eq!(scrub.status().as_u16(), 200);
        let body = http_body_util::BodyExt::collect(scrub.into_body())
            .await
            .unwrap()
            .to_bytes();
        let report: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(report["chunks_checked"], 1);
        assert_eq!(report["shards_healthy"], 6);
    })
    .await
    .expect("requests took over 30 s");
    server.abort();
}
