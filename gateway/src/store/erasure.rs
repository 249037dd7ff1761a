//! Storage classes and the Reed–Solomon stripe codec (docs/erasure.md).
//!
//! A storage class names how each chunk of an object is kept: as full
//! copies on distinct nodes (`copies:3`, `STANDARD`), or as a stripe of
//! `k` data and `m` parity shards on `k + m` distinct nodes (`rs:4+2`,
//! `STANDARD_IA` by default), any `k` of which give the chunk back.
//!
//! The codec works on one chunk at a time, so memory stays bounded by the
//! data path's window of chunks whatever the object's size. Shards carry no
//! checksum of their own here: the caller keeps a CRC per shard and leaves
//! out any shard that fails it before decoding, since Reed–Solomon
//! reconstructs erasures, it does not find errors.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use reed_solomon_erasure::galois_8::ReedSolomon;
use serde::{Deserialize, Serialize};

/// The class objects get when neither the request nor the bucket names one.
pub const DEFAULT_CLASS: &str = "STANDARD";

/// Fewest copies a class may keep: the promise every chunk is held to.
pub const MIN_COPIES: u8 = 3;
/// Most copies a class may keep (more only costs disk).
pub const MAX_COPIES: u8 = 5;
/// Fewest parity shards: a stripe survives the loss of any two nodes, as
/// three copies do.
pub const MIN_PARITY: u8 = 2;
/// Bounds on a stripe's width: every shard needs its own node, and a wide
/// stripe makes every read wait on many nodes.
pub const MAX_DATA: u8 = 16;
pub const MAX_PARITY: u8 = 8;

/// How a storage class keeps each chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Redundancy {
    /// Full copies on this many distinct nodes.
    Copies(u8),
    /// A stripe of `data` + `parity` shards on that many distinct nodes.
    ReedSolomon { data: u8, parity: u8 },
}

impl Redundancy {
    /// Distinct storage nodes a chunk of this class needs.
    pub fn nodes(self) -> usize {
        match self {
            Redundancy::Copies(n) => n as usize,
            Redundancy::ReedSolomon { data, parity } => (data + parity) as usize,
        }
    }

    /// Node losses a chunk of this class survives.
    pub fn tolerates(self) -> usize {
        match self {
            Redundancy::Copies(n) => n as usize - 1,
            Redundancy::ReedSolomon { parity, .. } => parity as usize,
        }
    }
}

impl fmt::Display for Redundancy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Redundancy::Copies(n) => write!(f, "copies:{n}"),
            Redundancy::ReedSolomon { data, parity } => write!(f, "rs:{data}+{parity}"),
        }
    }
}

/// Why a storage class setting cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClassError {
    #[error(
        "{0:?} is not a layout: use copies:N (N from {MIN_COPIES} to {MAX_COPIES}) or rs:K+M (K from 1 to {MAX_DATA}, M from {MIN_PARITY} to {MAX_PARITY})"
    )]
    BadLayout(String),
    #[error("{0:?} is not a storage class setting: use NAME=LAYOUT, e.g. STANDARD_IA=rs:4+2")]
    BadSetting(String),
    #[error("{0:?} is not a storage class name: S3 names are upper-case letters, digits and '_'")]
    BadName(String),
    #[error(
        "the {DEFAULT_CLASS} class must keep copies, not a stripe: objects written before storage classes existed are {DEFAULT_CLASS}"
    )]
    StandardNotCopies,
}

impl FromStr for Redundancy {
    type Err = ClassError;

    fn from_str(s: &str) -> Result<Redundancy, ClassError> {
        let bad = || ClassError::BadLayout(s.to_string());
        let number = |n: &str| n.trim().parse::<u8>().map_err(|_| bad());
        let (kind, rest) = s.trim().split_once(':').ok_or_else(bad)?;
        let redundancy = match kind.trim().to_ascii_lowercase().as_str() {
            "copies" => Redundancy::Copies(number(rest)?),
            "rs" => {
                let (data, parity) = rest.split_once('+').ok_or_else(bad)?;
                Redundancy::ReedSolomon {
                    data: number(data)?,
                    parity: number(parity)?,
                }
            }
            _ => return Err(bad()),
        };
        let allowed = match redundancy {
            Redundancy::Copies(n) => (MIN_COPIES..=MAX_COPIES).contains(&n),
            Redundancy::ReedSolomon { data, parity } => {
                (1..=MAX_DATA).contains(&data) && (MIN_PARITY..=MAX_PARITY).contains(&parity)
            }
        };
        if !allowed {
            return Err(bad());
        }
        Ok(redundancy)
    }
}

/// The storage classes a cluster serves, by S3 name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageClasses {
    classes: BTreeMap<String, Redundancy>,
}

impl Default for StorageClasses {
    /// `STANDARD`: three copies; `STANDARD_IA`: a 4 + 2 stripe.
    fn default() -> StorageClasses {
        let classes = BTreeMap::from([
            (DEFAULT_CLASS.to_string(), Redundancy::Copies(3)),
            (
                "STANDARD_IA".to_string(),
                Redundancy::ReedSolomon { data: 4, parity: 2 },
            ),
        ]);
        StorageClasses { classes }
    }
}

impl StorageClasses {
    /// The defaults, changed or extended by settings such as
    /// `STANDARD_IA=rs:6+3` (the `--storage-class` flag, repeatable).
    pub fn with_settings<'a>(
        settings: impl IntoIterator<Item = &'a str>,
    ) -> Result<StorageClasses, ClassError> {
        let mut classes = StorageClasses::default();
        for setting in settings {
            let (name, layout) = setting
                .split_once('=')
                .ok_or_else(|| ClassError::BadSetting(setting.to_string()))?;
            let name = name.trim();
            let valid_name = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if !valid_name {
                return Err(ClassError::BadName(name.to_string()));
            }
            let redundancy: Redundancy = layout.parse()?;
            if name == DEFAULT_CLASS && !matches!(redundancy, Redundancy::Copies(_)) {
                return Err(ClassError::StandardNotCopies);
            }
            classes.classes.insert(name.to_string(), redundancy);
        }
        Ok(classes)
    }

    /// The class of a write: the one the request names, else the bucket's
    /// default, else `STANDARD`. None when the name is not served here (the
    /// caller answers InvalidStorageClass).
    pub fn resolve<'a>(
        &'a self,
        requested: Option<&'a str>,
        bucket_default: Option<&'a str>,
    ) -> Option<(&'a str, Redundancy)> {
        let name = requested.or(bucket_default).unwrap_or(DEFAULT_CLASS);
        self.classes
            .get_key_value(name)
            .map(|(name, redundancy)| (name.as_str(), *redundancy))
    }

    /// Every class served, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Redundancy)> {
        self.classes.iter().map(|(n, r)| (n.as_str(), *r))
    }
}

/// Why a stripe could not be encoded or decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StripeError {
    #[error("{present} of {total} shards present, {needed} needed to read the chunk")]
    TooFewShards {
        present: usize,
        needed: usize,
        total: usize,
    },
    #[error("shard {index} has {len} bytes, the stripe's shards have {expected}")]
    ShardSize {
        index: usize,
        len: usize,
        expected: usize,
    },
    #[error("{given} shards given, the stripe has {total}")]
    ShardCount { given: usize, total: usize },
    #[error("a chunk of {len} bytes does not fit a stripe of {data} shards of {shard_size} bytes")]
    ChunkSize {
        len: usize,
        data: usize,
        shard_size: usize,
    },
    #[error("reed-solomon: {0}")]
    Codec(String),
}

/// Encodes chunks into stripes and decodes them back, for one `k + m`.
pub struct StripeCodec {
    data: usize,
    parity: usize,
    rs: ReedSolomon,
}

impl StripeCodec {
    pub fn new(data: u8, parity: u8) -> Result<StripeCodec, StripeError> {
        let rs = ReedSolomon::new(data as usize, parity as usize).map_err(codec_error)?;
        Ok(StripeCodec {
            data: data as usize,
            parity: parity as usize,
            rs,
        })
    }

    pub fn data_shards(&self) -> usize {
        self.data
    }

    pub fn total_shards(&self) -> usize {
        self.data + self.parity
    }

    /// Bytes in each shard of a chunk of `chunk_len` bytes: the chunk is cut
    /// into `k` equal pieces, the last padded with zeros.
    pub fn shard_size(&self, chunk_len: usize) -> usize {
        chunk_len.div_ceil(self.data).max(1)
    }

    /// The `k + m` shards of `chunk`, data shards first.
    pub fn encode(&self, chunk: &[u8]) -> Result<Vec<Bytes>, StripeError> {
        let shard_size = self.shard_size(chunk.len());
        let mut padded = vec![0u8; shard_size * self.data];
        padded[..chunk.len()].copy_from_slice(chunk);
        let data: Vec<&[u8]> = padded.chunks(shard_size).collect();
        let mut parity = vec![vec![0u8; shard_size]; self.parity];
        self.rs
            .encode_sep(&data, &mut parity)
            .map_err(codec_error)?;
        let padded = Bytes::from(padded);
        Ok((0..self.data)
            .map(|i| padded.slice(i * shard_size..(i + 1) * shard_size))
            .chain(parity.into_iter().map(Bytes::from))
            .collect())
    }

    /// The chunk of `chunk_len` bytes back from its shards, `None` where a
    /// shard is missing or failed its checksum. With every data shard
    /// present nothing is computed; otherwise the missing data shards are
    /// reconstructed from any `k` shards (a degraded read).
    pub fn decode(&self, shards: &[Option<Bytes>], chunk_len: usize) -> Result<Bytes, StripeError> {
        let shard_size = self.check(shards, chunk_len)?;
        let data_present = shards[..self.data].iter().all(Option::is_some);
        let mut chunk = Vec::with_capacity(shard_size * self.data);
        if data_present {
            for shard in shards[..self.data].iter().flatten() {
                chunk.extend_from_slice(shard);
            }
        } else {
            let mut work = owned(shards);
            self.rs.reconstruct_data(&mut work).map_err(codec_error)?;
            for shard in work.into_iter().take(self.data).flatten() {
                chunk.extend_from_slice(&shard);
            }
        }
        chunk.truncate(chunk_len);
        Ok(Bytes::from(chunk))
    }

    /// Every missing shard made again from the others (repair): the
    /// returned stripe has all `k + m` shards.
    pub fn rebuild(
        &self,
        shards: &[Option<Bytes>],
        chunk_len: usize,
    ) -> Result<Vec<Bytes>, StripeError> {
        self.check(shards, chunk_len)?;
        let mut work = owned(shards);
        self.rs.reconstruct(&mut work).map_err(codec_error)?;
        Ok(work.into_iter().flatten().map(Bytes::from).collect())
    }

    /// The shard size, once the stripe is known to be decodable.
    fn check(&self, shards: &[Option<Bytes>], chunk_len: usize) -> Result<usize, StripeError> {
        let total = self.total_shards();
        if shards.len() != total {
            return Err(StripeError::ShardCount {
                given: shards.len(),
                total,
            });
        }
        let present = shards.iter().flatten().count();
        if present < self.data {
            return Err(StripeError::TooFewShards {
                present,
                needed: self.data,
                total,
            });
        }
        let expected = self.shard_size(chunk_len);
        if let Some((index, shard)) = shards
            .iter()
            .enumerate()
            .find_map(|(i, s)| s.as_ref().filter(|s| s.len() != expected).map(|s| (i, s)))
        {
            return Err(StripeError::ShardSize {
                index,
                len: shard.len(),
                expected,
            });
        }
        if chunk_len > expected * self.data {
            return Err(StripeError::ChunkSize {
                len: chunk_len,
                data: self.data,
                shard_size: expected,
            });
        }
        Ok(expected)
    }
}

/// The codec reconstructs in place, into buffers it owns.
fn owned(shards: &[Option<Bytes>]) -> Vec<Option<Vec<u8>>> {
    shards
        .iter()
        .map(|s| s.as_ref().map(|b| b.to_vec()))
        .collect()
}

fn codec_error(e: reed_solomon_erasure::Error) -> StripeError {
    StripeError::Codec(format!("{e:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + i / 251) as u8).collect()
    }

    /// Every way of losing shards: each bit of `mask` keeps one shard.
    fn subsets(total: usize) -> impl Iterator<Item = Vec<bool>> {
        (0u32..1 << total).map(move |mask| (0..total).map(|i| mask & (1 << i) != 0).collect())
    }

    #[test]
    fn any_k_shards_give_the_chunk_back_and_fewer_say_how_many_are_missing() {
        let codec = StripeCodec::new(4, 2).unwrap();
        for len in [1, 3, 4, 5, 1000, 1 << 20, (1 << 20) + 1] {
            let original = chunk(len);
            let shards = codec.encode(&original).unwrap();
            assert_eq!(shards.len(), 6);
            assert!(shards.iter().all(|s| s.len() == codec.shard_size(len)));
            for keep in subsets(6) {
                let given: Vec<Option<Bytes>> = shards
                    .iter()
                    .zip(&keep)
                    .map(|(s, k)| k.then(|| s.clone()))
                    .collect();
                let present = keep.iter().filter(|k| **k).count();
                match codec.decode(&given, len) {
                    Ok(back) => {
                        assert!(present >= 4, "decoded from {present} shards");
                        assert_eq!(back, original, "len {len}, kept {keep:?}");
                    }
                    Err(e) => {
                        assert!(present < 4, "len {len}, kept {keep:?}: {e}");
                        assert_eq!(
                            e,
                            StripeError::TooFewShards {
                                present,
                                needed: 4,
                                total: 6
                            }
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn rebuild_makes_the_lost_shards_exactly_as_they_were() {
        let codec = StripeCodec::new(6, 3).unwrap();
        let original = chunk(100_003);
        let shards = codec.encode(&original).unwrap();
        let mut given: Vec<Option<Bytes>> = shards.iter().cloned().map(Some).collect();
        given[0] = None;
        given[4] = None;
        given[7] = None;
        assert_eq!(codec.rebuild(&given, original.len()).unwrap(), shards);
    }

    #[test]
    fn a_stripe_of_the_wrong_shape_is_refused_not_decoded() {
        let codec = StripeCodec::new(4, 2).unwrap();
        let shards: Vec<Option<Bytes>> = codec
            .encode(&chunk(40))
            .unwrap()
            .into_iter()
            .map(Some)
            .collect();
        assert!(matches!(
            codec.decode(&shards[..5], 40),
            Err(StripeError::ShardCount { given: 5, total: 6 })
        ));
        // A length that does not match the shards' size.
        assert!(matches!(
            codec.decode(&shards, 400),
            Err(StripeError::ShardSize { expected: 100, .. })
        ));
        let mut short = shards.clone();
        short[5] = Some(Bytes::from_static(b"x"));
        assert!(matches!(
            codec.decode(&short, 40),
            Err(StripeError::ShardSize { index: 5, .. })
        ));
    }

    #[test]
    fn layouts_parse_within_the_durability_bounds() {
        assert_eq!("copies:3".parse(), Ok(Redundancy::Copies(3)));
        assert_eq!(
            " RS:4+2 ".parse(),
            Ok(Redundancy::ReedSolomon { data: 4, parity: 2 })
        );
        for bad in [
            "copies:2", "copies:9", "rs:4+1", "rs:0+2", "rs:17+2", "rs:4", "4+2", "rs:a+b", "",
        ] {
            assert!(bad.parse::<Redundancy>().is_err(), "{bad:?} accepted");
        }
        let layout = Redundancy::ReedSolomon { data: 4, parity: 2 };
        assert_eq!(layout.to_string().parse(), Ok(layout));
        assert_eq!((layout.nodes(), layout.tolerates()), (6, 2));
        assert_eq!(Redundancy::Copies(3).tolerates(), 2);
    }

    #[test]
    fn classes_resolve_request_then_bucket_then_standard() {
        let classes =
            StorageClasses::with_settings(["STANDARD_IA=rs:6+3", "GLACIER_IR=rs:8+3"]).unwrap();
        let ia = Redundancy::ReedSolomon { data: 6, parity: 3 };
        assert_eq!(
            classes.resolve(Some("STANDARD_IA"), None),
            Some(("STANDARD_IA", ia))
        );
        assert_eq!(
            classes.resolve(None, Some("GLACIER_IR")).map(|(n, _)| n),
            Some("GLACIER_IR")
        );
        assert_eq!(
            classes.resolve(None, None),
            Some(("STANDARD", Redundancy::Copies(3)))
        );
        assert_eq!(classes.resolve(Some("NOPE"), Some("STANDARD_IA")), None);
        assert_eq!(classes.iter().count(), 3);

        for (setting, expected) in [
            ("STANDARD_IA", ClassError::BadSetting("STANDARD_IA".into())),
            (
                "standard_ia=rs:4+2",
                ClassError::BadName("standard_ia".into()),
            ),
            ("STANDARD=rs:4+2", ClassError::StandardNotCopies),
            ("X=rs:4+1", ClassError::BadLayout("rs:4+1".into())),
        ] {
            assert_eq!(StorageClasses::with_settings([setting]), Err(expected));
        }
    }
}
