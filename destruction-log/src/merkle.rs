//! The RFC 6962 Merkle tree of the log (docs/destruction-log.md, "Tree").
//!
//! Hashing is RFC 6962 §2.1: leaf = SHA-256(0x00 || leaf), node = SHA-256(0x01 || left || right),
//! MTH({}) = SHA-256(""). The log stores only *complete* subtrees (perfect, aligned; they never
//! change once written), addressed in the RFC 9420 array-tree order that `ct-merkle` also uses, so
//! a tree of any size is answered from disk without re-hashing: every node an RFC 6962 proof
//! needs is a complete subtree or a right-edge node folded from O(log n) complete ones. The proof
//! *shape* (which nodes, in which order) and all verification come from `ct-merkle`, whose own
//! tests carry the transparency-dev reference vectors; our tests check the same vectors here.

use std::collections::HashMap;
use std::io;

use ct_merkle::{ConsistencyProof, InclusionProof, RootHash};
use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// Largest tree the verifier accepts (ct-merkle's index math needs n <= 2^63; far beyond use).
pub const MAX_TREE_SIZE: u64 = 1 << 48;

pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut h = Sha256::new_with_prefix([0x00]);
    h.update(leaf);
    h.finalize().into()
}

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new_with_prefix([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Array-tree position of the complete subtree of height `level` whose leaves are
/// `[index << level, (index + 1) << level)`. Leaves are the even positions.
pub fn position(level: u32, index: u64) -> u64 {
    (index << (level + 1)) + (1u64 << level) - 1
}

/// Where complete subtrees come from (the tree file, or memory in tests).
pub trait Nodes {
    fn node(&self, level: u32, index: u64) -> io::Result<Hash>;
}

/// Hash of the RFC 6962 subtree over leaves `[start, end)`, where `start` is a multiple of the
/// largest power of two below `end - start` (true of every node of an RFC 6962 tree). Complete
/// subtrees are read, a right-edge node is folded from them. `memo` keeps folded nodes, which
/// every proof of one export shares.
pub fn subtree_hash<N: Nodes + ?Sized>(
    nodes: &N,
    start: u64,
    end: u64,
    memo: &mut HashMap<(u64, u64), Hash>,
) -> io::Result<Hash> {
    let size = end - start;
    debug_assert!(size > 0);
    if size.is_power_of_two() && start.is_multiple_of(size) {
        let level = size.trailing_zeros();
        return nodes.node(level, start >> level);
    }
    if let Some(h) = memo.get(&(start, end)) {
        return Ok(*h);
    }
    let split = 1u64 << (63 - (size - 1).leading_zeros()); // largest power of two < size
    let left = subtree_hash(nodes, start, start + split, memo)?;
    let right = subtree_hash(nodes, start + split, end, memo)?;
    let h = node_hash(&left, &right);
    if memo.len() > 1 << 16 {
        memo.clear();
    }
    memo.insert((start, end), h);
    Ok(h)
}

/// Root (MTH) of the first `n` leaves.
pub fn root<N: Nodes + ?Sized>(nodes: &N, n: u64) -> io::Result<Hash> {
    if n == 0 {
        return Ok(empty_root());
    }
    subtree_hash(nodes, 0, n, &mut HashMap::new())
}

/// The node at array-tree position `x` of a tree of `n` leaves (ct-merkle's indices): its
/// leaves are its complete span clipped to `n`.
fn array_node<N: Nodes + ?Sized>(
    nodes: &N,
    n: u64,
    x: u64,
    memo: &mut HashMap<(u64, u64), Hash>,
) -> io::Result<Hash> {
    let level = x.trailing_ones();
    let start = (x >> (level + 1)) << level;
    let end = (start + (1u64 << level)).min(n);
    subtree_hash(nodes, start, end, memo)
}

/// RFC 6962 PATH(index, D[n]): the audit path of leaf `index` in the tree of the first `n`.
pub fn inclusion_proof<N: Nodes + ?Sized>(
    nodes: &N,
    n: u64,
    index: u64,
    memo: &mut HashMap<(u64, u64), Hash>,
) -> io::Result<Vec<Hash>> {
    assert!(index < n, "leaf {index} is not in a tree of {n}");
    ct_merkle::indices_for_inclusion_proof(n, index)
        .into_iter()
        .map(|x| array_node(nodes, n, x, memo))
        .collect()
}

/// RFC 6962 PROOF(m, D[n]): the consistency proof from the tree of the first `m` leaves to the
/// tree of the first `n`; empty when `m` is 0 or `m == n`.
pub fn consistency_proof<N: Nodes + ?Sized>(
    nodes: &N,
    m: u64,
    n: u64,
    memo: &mut HashMap<(u64, u64), Hash>,
) -> io::Result<Vec<Hash>> {
    assert!(m <= n, "old size {m} above new size {n}");
    if m == 0 || m == n {
        return Ok(Vec::new());
    }
    ct_merkle::indices_for_consistency_proof(m, n - m)
        .into_iter()
        .map(|x| array_node(nodes, n, x, memo))
        .collect()
}

fn ct_root(root: &Hash, n: u64) -> RootHash<Sha256> {
    RootHash::new((*root).into(), n)
}

fn concat(path: &[Hash]) -> Vec<u8> {
    path.iter().flatten().copied().collect()
}

/// Checks that `leaf` (its bytes, hashed here) is leaf `index` of the tree of size `n` whose root
/// is `root`, given its audit path.
pub fn verify_inclusion(
    leaf: &[u8],
    index: u64,
    n: u64,
    root: &Hash,
    path: &[Hash],
) -> Result<(), String> {
    if n > MAX_TREE_SIZE {
        return Err(format!("tree size {n} is above the limit {MAX_TREE_SIZE}"));
    }
    if index >= n {
        return Err(format!("index {index} is not in a tree of size {n}"));
    }
    let proof = InclusionProof::<Sha256>::try_from_bytes(concat(path))
        .map_err(|e| format!("malformed inclusion proof: {e}"))?;
    ct_root(root, n)
        .verify_inclusion(&leaf, index, &proof)
        .map_err(|e| format!("inclusion proof does not verify: {e}"))
}

/// Checks that the tree (`m`, `root_m`) is a prefix of the tree (`n`, `root_n`).
pub fn verify_consistency(
    m: u64,
    root_m: &Hash,
    n: u64,
    root_n: &Hash,
    path: &[Hash],
) -> Result<(), String> {
    if n > MAX_TREE_SIZE {
        return Err(format!("tree size {n} is above the limit {MAX_TREE_SIZE}"));
    }
    if m > n {
        return Err(format!("tree size went down from {m} to {n}"));
    }
    if m == 0 {
        // Every tree extends the empty one; RFC 9162 defines no proof for it.
        if !path.is_empty() {
            return Err("a consistency proof from the empty tree must be empty".into());
        }
        if *root_m != empty_root() {
            return Err("the root of an empty tree must be SHA-256 of nothing".into());
        }
        return Ok(());
    }
    let proof = ConsistencyProof::<Sha256>::try_from_bytes(concat(path))
        .map_err(|e| format!("malformed consistency proof: {e}"))?;
    ct_root(root_n, n)
        .verify_consistency(&ct_root(root_m, m), &proof)
        .map_err(|e| format!("consistency proof does not verify: {e}"))
}

/// Complete subtrees in memory: the log's frontier logic on a `Vec`, for tests and the fuzz
/// fixture.
#[derive(Default)]
pub struct MemTree {
    nodes: HashMap<(u32, u64), Hash>,
    frontier: Frontier,
}

impl MemTree {
    pub fn push(&mut self, leaf: &[u8]) {
        let nodes = &mut self.nodes;
        self.frontier.push(leaf_hash(leaf), |level, index, h| {
            nodes.insert((level, index), *h);
        });
    }
    pub fn len(&self) -> u64 {
        self.frontier.len
    }
    pub fn is_empty(&self) -> bool {
        self.frontier.len == 0
    }
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }
}

impl Nodes for MemTree {
    fn node(&self, level: u32, index: u64) -> io::Result<Hash> {
        self.nodes
            .get(&(level, index))
            .copied()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("node {level}/{index}")))
    }
}

/// The right edge of the tree: one complete subtree per set bit of the size, largest first.
/// Appending a leaf merges equal-height subtrees, which is when complete nodes are born.
#[derive(Clone, Default, Debug)]
pub struct Frontier {
    pub len: u64,
    subtrees: Vec<(u32, Hash)>,
}

impl Frontier {
    /// Rebuilds the frontier of a tree of `n` leaves from its stored complete subtrees.
    pub fn load<N: Nodes + ?Sized>(nodes: &N, n: u64) -> io::Result<Self> {
        let mut subtrees = Vec::new();
        let mut start = 0u64;
        for level in (0..64).rev() {
            if n & (1u64 << level) != 0 {
                subtrees.push((level, nodes.node(level, start >> level)?));
                start += 1u64 << level;
            }
        }
        Ok(Self { len: n, subtrees })
    }

    /// Appends a leaf hash; `emit(level, index, hash)` receives every complete subtree this
    /// creates (the leaf itself first).
    pub fn push(&mut self, leaf: Hash, mut emit: impl FnMut(u32, u64, &Hash)) {
        let mut index = self.len;
        let mut level = 0u32;
        let mut h = leaf;
        emit(level, index, &h);
        while let Some(&(top, left)) = self.subtrees.last() {
            if top != level {
                break;
            }
            self.subtrees.pop();
            h = node_hash(&left, &h);
            level += 1;
            index >>= 1;
            emit(level, index, &h);
        }
        self.subtrees.push((level, h));
        self.len += 1;
    }

    pub fn root(&self) -> Hash {
        let mut it = self.subtrees.iter().rev();
        let Some(&(_, mut h)) = it.next() else {
            return empty_root();
        };
        for (_, left) in it {
            h = node_hash(left, &h);
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Leaves and hashes of the RFC 6962 reference tree used by transparency-dev/merkle
    // (testonly/constants.go and reference_test.go), the CT ecosystem's test vectors.
    const LEAVES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];
    const ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];
    // Complete-subtree hashes by level (the vectors' NodeHashes).
    const NODES: [&[&str]; 4] = [
        &[
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
            "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
        ],
        &[
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        ],
        &[
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
        &["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
    ];
    // (index, size, path) and (size1, size2, path) from reference_test.go.
    const INCLUSION: [(u64, u64, &[&str]); 7] = [
        (0, 1, &[]),
        (
            0,
            2,
            &["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"],
        ),
        (
            1,
            2,
            &["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"],
        ),
        (
            2,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];
    const CONSISTENCY: [(u64, u64, &[&str]); 4] = [
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];

    fn h(s: &str) -> Hash {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    fn vector_tree(n: usize) -> MemTree {
        let mut t = MemTree::default();
        for l in &LEAVES[..n] {
            t.push(&hex::decode(l).unwrap());
        }
        t
    }

    /// RFC 6962 §2.1 MTH, PATH and PROOF written straight from the definitions (recursive, on
    /// the leaf list), to cross-check the stored-subtree algorithms for every size.
    mod reference {
        use super::super::*;
        fn split(n: usize) -> usize {
            1 << (usize::BITS - 1 - (n - 1).leading_zeros())
        }
        pub fn mth(d: &[Vec<u8>]) -> Hash {
            match d.len() {
                0 => empty_root(),
                1 => leaf_hash(&d[0]),
                n => {
                    let k = split(n);
                    node_hash(&mth(&d[..k]), &mth(&d[k..]))
                }
            }
        }
        pub fn path(m: usize, d: &[Vec<u8>]) -> Vec<Hash> {
            let n = d.len();
            if n == 1 {
                return vec![];
            }
            let k = split(n);
            if m < k {
                let mut p = path(m, &d[..k]);
                p.push(mth(&d[k..]));
                p
            } else {
                let mut p = path(m - k, &d[k..]);
                p.push(mth(&d[..k]));
                p
            }
        }
        pub fn proof(m: usize, d: &[Vec<u8>]) -> Vec<Hash> {
            subproof(m, d, true)
        }
        fn subproof(m: usize, d: &[Vec<u8>], b: bool) -> Vec<Hash> {
            let n = d.len();
            if m == n {
                return if b { vec![] } else { vec![mth(d)] };
            }
            let k = split(n);
            if m <= k {
                let mut p = subproof(m, &d[..k], b);
                p.push(mth(&d[k..]));
                p
            } else {
                let mut p = subproof(m - k, &d[k..], false);
                p.push(mth(&d[..k]));
                p
            }
        }
    }

    #[test]
    fn rfc6962_reference_vectors() {
        for (n, want) in ROOTS.iter().enumerate() {
            let t = vector_tree(n);
            assert_eq!(t.root(), h(want), "root of {n}");
            assert_eq!(root(&t, n as u64).unwrap(), h(want), "stored root of {n}");
        }
        let full = vector_tree(8);
        for (level, hashes) in NODES.iter().enumerate() {
            for (i, want) in hashes.iter().enumerate() {
                assert_eq!(full.node(level as u32, i as u64).unwrap(), h(want));
            }
        }
        let mut memo = HashMap::new();
        for (index, n, want) in INCLUSION {
            let t = vector_tree(n as usize);
            let got = inclusion_proof(&t, n, index, &mut memo).unwrap();
            assert_eq!(got, want.iter().map(|s| h(s)).collect::<Vec<_>>());
            let leaf = hex::decode(LEAVES[index as usize]).unwrap();
            verify_inclusion(&leaf, index, n, &t.root(), &got).unwrap();
        }
        for (m, n, want) in CONSISTENCY {
            let t = vector_tree(n as usize);
            let got = consistency_proof(&t, m, n, &mut memo).unwrap();
            assert_eq!(got, want.iter().map(|s| h(s)).collect::<Vec<_>>());
            let old = vector_tree(m as usize).root();
            verify_consistency(m, &old, n, &t.root(), &got).unwrap();
        }
    }

    /// Every size up to N, every index and every older size: the stored-subtree proofs equal
    /// the RFC definitions, verify with ct-merkle, and fail for a wrong leaf, index or root.
    #[test]
    fn every_proof_up_to_n_matches_the_rfc_and_verifies() {
        const N: usize = 70;
        let leaves: Vec<Vec<u8>> = (0..N).map(|i| format!("leaf {i}").into_bytes()).collect();
        let mut t = MemTree::default();
        let mut roots = vec![empty_root()];
        for l in &leaves {
            t.push(l);
            roots.push(t.root());
        }
        let mut memo = HashMap::new();
        for n in 1..=N {
            let d = &leaves[..n];
            let nn = n as u64;
            assert_eq!(roots[n], reference::mth(d), "root {n}");
            assert_eq!(root(&t, nn).unwrap(), roots[n]);
            memo.clear();
            for i in 0..n {
                let p = inclusion_proof(&t, nn, i as u64, &mut memo).unwrap();
                assert_eq!(p, reference::path(i, d), "PATH({i}, D[{n}])");
                verify_inclusion(&d[i], i as u64, nn, &roots[n], &p).unwrap();
                assert!(verify_inclusion(b"other", i as u64, nn, &roots[n], &p).is_err());
                assert!(verify_inclusion(&d[i], i as u64, nn, &roots[n - 1], &p).is_err());
                if n > 1 {
                    let j = ((i + 1) % n) as u64;
                    assert!(verify_inclusion(&d[i], j, nn, &roots[n], &p).is_err());
                }
            }
            for m in 0..=n {
                let p = consistency_proof(&t, m as u64, nn, &mut memo).unwrap();
                if m > 0 {
                    assert_eq!(p, reference::proof(m, d), "PROOF({m}, D[{n}])");
                }
                verify_consistency(m as u64, &roots[m], nn, &roots[n], &p).unwrap();
                if m > 0 && m < n {
                    // A forked older tree (another root of the same size) is caught.
                    let forked = node_hash(&roots[m], &roots[m]);
                    assert!(verify_consistency(m as u64, &forked, nn, &roots[n], &p).is_err());
                    assert!(verify_consistency(m as u64, &roots[m], nn, &forked, &p).is_err());
                }
            }
        }
    }

    #[test]
    fn frontier_reload_matches_and_positions_are_the_array_tree() {
        let mut t = MemTree::default();
        for i in 0..37u32 {
            t.push(&i.to_be_bytes());
            let f = Frontier::load(&t, t.len()).unwrap();
            assert_eq!(f.root(), t.root());
        }
        assert_eq!(position(0, 0), 0);
        assert_eq!(position(0, 3), 6);
        assert_eq!(position(1, 0), 1);
        assert_eq!(position(2, 0), 3);
        assert_eq!(position(1, 1), 5);
        assert_eq!(position(3, 1), 23);
    }

    #[test]
    fn verifiers_refuse_absurd_sizes_without_panicking() {
        let r = empty_root();
        assert!(verify_inclusion(b"x", 0, u64::MAX, &r, &[]).is_err());
        assert!(verify_inclusion(b"x", 5, 3, &r, &[]).is_err());
        assert!(verify_inclusion(b"x", 0, 0, &r, &[]).is_err());
        assert!(verify_consistency(3, &r, 2, &r, &[]).is_err());
        assert!(verify_consistency(1, &r, u64::MAX, &r, &[]).is_err());
        assert!(verify_consistency(0, &r, 5, &r, &[r]).is_err());
        assert!(verify_consistency(0, &leaf_hash(b""), 5, &r, &[]).is_err());
        verify_consistency(0, &r, 5, &leaf_hash(b"any"), &[]).unwrap();
    }
}
