//! Authenticated gossip: every datagram carries a MAC under the cluster
//! secret, so a process without the secret never reaches SWIM and so never
//! enters the membership.
//!
//! Wire format of an authenticated datagram:
//!
//! ```text
//! b"FDG1" | sent_at_ms: u64 BE | nonce: [u8; 12] | foca payload | tag: [u8; 16]
//! ```
//!
//! `tag` is HMAC-SHA256 over everything before it, truncated to 16 bytes,
//! keyed with SHA-256(`"flexdrive gossip v1\0"` || cluster secret): the label
//! keeps the gossip key apart from the other uses of the secret (SigV4 on
//! internal requests). `sent_at_ms` is the sender's wall clock; with the
//! random nonce it names the datagram for the replay cache.
//!
//! A receiver drops (and counts) a datagram that is oversized, unauthenticated
//! (unless legacy peers are accepted), too short, badly tagged, sent more than
//! [`MAX_CLOCK_SKEW`] away from its clock, or already seen.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::limits::{MAX_CLOCK_SKEW, MAX_FOCA_PACKET_SIZE, MAX_PACKET_SIZE, MAX_REPLAY_ENTRIES};
use crate::replay::{Refused, ReplayCache};
use crate::stats::{Dropped, GossipCounters};

/// Magic and format version: a 0.1 process fails to decode these bytes as
/// foca, and a future format gets a new value.
const MAGIC: [u8; 4] = *b"FDG1";
const NONCE_LEN: usize = 12;
/// 128 bits: forging needs about 2^128 tries, each one a datagram we count.
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = MAGIC.len() + size_of::<u64>() + NONCE_LEN;
/// Bytes an authenticated datagram adds to its foca payload.
pub(crate) const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
const KEY_LABEL: &[u8] = b"flexdrive gossip v1\0";

pub(crate) type Nonce = [u8; NONCE_LEN];

type HmacSha256 = Hmac<Sha256>;

/// The gossip MAC key, keyed once and cloned per datagram.
#[derive(Clone)]
pub(crate) struct GossipKey(HmacSha256);

impl GossipKey {
    pub(crate) fn derive(cluster_secret: &str) -> Self {
        let key = Sha256::new()
            .chain_update(KEY_LABEL)
            .chain_update(cluster_secret.as_bytes())
            .finalize();
        Self(HmacSha256::new_from_slice(&key).expect("HMAC takes keys of any length"))
    }

    /// `payload` in an authenticated datagram.
    pub(crate) fn seal(&self, payload: &[u8], sent_at_ms: u64, nonce: Nonce) -> Vec<u8> {
        let mut datagram = Vec::with_capacity(OVERHEAD + payload.len());
        datagram.extend_from_slice(&MAGIC);
        datagram.extend_from_slice(&sent_at_ms.to_be_bytes());
        datagram.extend_from_slice(&nonce);
        datagram.extend_from_slice(payload);
        let tag = self
            .0
            .clone()
            .chain_update(&datagram)
            .finalize()
            .into_bytes();
        datagram.extend_from_slice(&tag[..TAG_LEN]);
        datagram
    }

    /// Checks the tag of a datagram that starts with the magic, in constant
    /// time, and only then reads its header.
    fn open<'a>(&self, datagram: &'a [u8]) -> Result<Opened<'a>, Dropped> {
        if datagram.len() < OVERHEAD {
            return Err(Dropped::Malformed);
        }
        let (signed, tag) = datagram.split_at(datagram.len() - TAG_LEN);
        self.0
            .clone()
            .chain_update(signed)
            .verify_truncated_left(tag)
            .map_err(|_| Dropped::BadTag)?;
        let (header, payload) = signed.split_at(HEADER_LEN);
        let (_magic, rest) = header
            .split_first_chunk::<{ MAGIC.len() }>()
            .ok_or(Dropped::Malformed)?;
        let (sent_at, nonce) = rest
            .split_first_chunk::<{ size_of::<u64>() }>()
            .ok_or(Dropped::Malformed)?;
        Ok(Opened {
            sent_at_ms: u64::from_be_bytes(*sent_at),
            nonce: nonce.try_into().map_err(|_| Dropped::Malformed)?,
            payload,
        })
    }
}

struct Opened<'a> {
    sent_at_ms: u64,
    nonce: Nonce,
    payload: &'a [u8],
}

/// What a member sends and accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Only authenticated datagrams, both ways (the default).
    Strict,
    /// Rolling upgrade from 0.1: also accepts unauthenticated datagrams, and
    /// sends each one twice, authenticated and plain. A 0.1 process drops the
    /// authenticated copy as undecodable; a strict one drops the plain copy.
    AcceptLegacy,
    /// Flexdrive 0.1's gossip: plain foca both ways. Only for tests, as the
    /// stand-in for a 0.1 process or an impostor.
    Plain,
}

impl Mode {
    /// foca's packet size limit (for what it sends and what it accepts).
    pub(crate) fn foca_packet_size(self) -> usize {
        match self {
            // Every datagram we send is wrapped.
            Mode::Strict | Mode::AcceptLegacy => MAX_FOCA_PACKET_SIZE,
            Mode::Plain => MAX_PACKET_SIZE,
        }
    }
}

/// A datagram that may go to foca.
#[derive(Debug, PartialEq, Eq)]
enum Admitted<'a> {
    Authenticated(&'a [u8]),
    Legacy(&'a [u8]),
}

/// Wraps what foca sends and checks what it receives.
pub(crate) struct Guard {
    mode: Mode,
    key: GossipKey,
    window_ms: u64,
    seen: ReplayCache,
    counters: GossipCounters,
}

impl Guard {
    pub(crate) fn new(mode: Mode, cluster_secret: &str, counters: GossipCounters) -> Self {
        Self::with_replay_capacity(mode, cluster_secret, counters, MAX_REPLAY_ENTRIES)
    }

    fn with_replay_capacity(
        mode: Mode,
        cluster_secret: &str,
        counters: GossipCounters,
        capacity: usize,
    ) -> Self {
        let window_ms = u64::try_from(MAX_CLOCK_SKEW.as_millis()).unwrap_or(u64::MAX);
        Self {
            mode,
            key: GossipKey::derive(cluster_secret),
            window_ms,
            seen: ReplayCache::new(capacity, window_ms),
            counters,
        }
    }

    /// The foca payload of `datagram` if it may reach foca, or why not;
    /// counted either way.
    pub(crate) fn admit<'a>(
        &mut self,
        datagram: &'a [u8],
        now_ms: u64,
    ) -> Result<&'a [u8], Dropped> {
        let verdict = self.judge(datagram, now_ms);
        match verdict {
            Ok(Admitted::Authenticated(_)) => self.counters.accepted(false),
            Ok(Admitted::Legacy(_)) => self.counters.accepted(true),
            Err(reason) => self.counters.dropped(reason),
        }
        verdict.map(|(Admitted::Authenticated(payload) | Admitted::Legacy(payload))| payload)
    }

    fn judge<'a>(&mut self, datagram: &'a [u8], now_ms: u64) -> Result<Admitted<'a>, Dropped> {
        if datagram.len() > MAX_PACKET_SIZE {
            return Err(Dropped::Oversized);
        }
        if self.mode == Mode::Plain {
            return Ok(Admitted::Legacy(datagram));
        }
        if !datagram.starts_with(&MAGIC) {
            return match self.mode {
                // foca would refuse it anyway; counted here so the loss shows.
                Mode::AcceptLegacy if datagram.len() > MAX_FOCA_PACKET_SIZE => {
                    Err(Dropped::Oversized)
                }
                Mode::AcceptLegacy => Ok(Admitted::Legacy(datagram)),
                Mode::Strict | Mode::Plain => Err(Dropped::Unauthenticated),
            };
        }
        // Tag first: what an outsider sends is counted as a bad tag, and no
        // unauthenticated datagram ever touches the replay cache.
        let opened = self.key.open(datagram)?;
        if opened.sent_at_ms.abs_diff(now_ms) > self.window_ms {
            return Err(Dropped::StaleOrFuture);
        }
        match self.seen.insert(opened.sent_at_ms, opened.nonce, now_ms) {
            Ok(()) => Ok(Admitted::Authenticated(opened.payload)),
            Err(Refused::Replay) => Err(Dropped::Replay),
            Err(Refused::Full) => Err(Dropped::CacheFull),
        }
    }

    /// The datagrams to send for one foca message.
    pub(crate) fn outgoing<'a>(
        &self,
        payload: &'a [u8],
        now_ms: u64,
    ) -> impl Iterator<Item = Cow<'a, [u8]>> + use<'a> {
        debug_assert!(payload.len() <= self.mode.foca_packet_size());
        let sealed = (self.mode != Mode::Plain)
            .then(|| Cow::Owned(self.key.seal(payload, now_ms, rand::random())));
        let plain = (self.mode != Mode::Strict).then_some(Cow::Borrowed(payload));
        sealed.into_iter().chain(plain)
    }
}

/// Milliseconds since the Unix epoch on this machine's clock. A clock before
/// 1970 reads 0, which peers refuse as stale: gossip needs a sane clock.
pub(crate) fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "a cluster secret of some length";
    const NOW: u64 = 1_700_000_000_000;

    fn guard(mode: Mode) -> Guard {
        Guard::new(mode, SECRET, GossipCounters::new())
    }

    fn window_ms() -> u64 {
        u64::try_from(MAX_CLOCK_SKEW.as_millis()).unwrap()
    }

    fn sealed(payload: &[u8], sent_at_ms: u64) -> Vec<u8> {
        GossipKey::derive(SECRET).seal(payload, sent_at_ms, rand::random())
    }

    #[test]
    fn a_sealed_datagram_opens_to_its_payload() {
        let mut guard = guard(Mode::Strict);
        let datagram = sealed(b"foca bytes", NOW);
        assert_eq!(datagram.len(), OVERHEAD + b"foca bytes".len());
        assert!(datagram.starts_with(b"FDG1"));
        assert_eq!(guard.admit(&datagram, NOW), Ok(&b"foca bytes"[..]));
        assert_eq!(guard.counters.stats().accepted, 1);
    }

    #[test]
    fn the_largest_foca_message_fits_the_packet_size_once_sealed() {
        let mut guard = guard(Mode::Strict);
        let payload = vec![7; MAX_FOCA_PACKET_SIZE];
        let datagram = sealed(&payload, NOW);
        assert_eq!(datagram.len(), MAX_PACKET_SIZE);
        assert_eq!(guard.admit(&datagram, NOW), Ok(&payload[..]));
    }

    #[test]
    fn any_changed_byte_is_a_bad_tag() {
        let datagram = sealed(b"foca bytes", NOW);
        // Timestamp, nonce, payload and tag bytes alike; the magic is
        // covered too but a changed one no longer looks authenticated.
        for index in MAGIC.len()..datagram.len() {
            let mut guard = guard(Mode::Strict);
            let mut tampered = datagram.clone();
            tampered[index] ^= 0x01;
            assert_eq!(
                guard.judge(&tampered, NOW),
                Err(Dropped::BadTag),
                "byte {index}"
            );
        }
    }

    #[test]
    fn a_shifted_timestamp_is_a_bad_tag_not_a_fresh_datagram() {
        let old = sealed(b"foca bytes", NOW - 2 * window_ms());
        let mut refreshed = old.clone();
        refreshed[4..12].copy_from_slice(&NOW.to_be_bytes());
        let mut guard = guard(Mode::Strict);
        assert_eq!(guard.judge(&refreshed, NOW), Err(Dropped::BadTag));
        assert_eq!(guard.judge(&old, NOW), Err(Dropped::StaleOrFuture));
    }

    #[test]
    fn another_secret_is_a_bad_tag() {
        let other = GossipKey::derive("another cluster secret").seal(b"x", NOW, [0; 12]);
        assert_eq!(guard(Mode::Strict).judge(&other, NOW), Err(Dropped::BadTag));
    }

    #[test]
    fn the_clock_window_is_inclusive_either_way() {
        let window = window_ms();
        let mut guard = guard(Mode::Strict);
        for sent_at in [NOW - window, NOW + window] {
            let datagram = sealed(b"edge", sent_at);
            assert!(guard.judge(&datagram, NOW).is_ok(), "sent at {sent_at}");
        }
        for sent_at in [NOW - window - 1, NOW + window + 1] {
            let datagram = sealed(b"edge", sent_at);
            assert_eq!(
                guard.judge(&datagram, NOW),
                Err(Dropped::StaleOrFuture),
                "sent at {sent_at}"
            );
        }
    }

    #[test]
    fn a_datagram_is_accepted_once() {
        let mut guard = guard(Mode::Strict);
        let datagram = sealed(b"foca bytes", NOW);
        assert!(guard.admit(&datagram, NOW).is_ok());
        assert_eq!(guard.admit(&datagram, NOW + 1), Err(Dropped::Replay));
        let stats = guard.counters.stats();
        assert_eq!((stats.accepted, stats.replay), (1, 1));
    }

    #[test]
    fn a_full_replay_cache_drops_new_datagrams() {
        let mut guard = Guard::with_replay_capacity(Mode::Strict, SECRET, GossipCounters::new(), 2);
        for _ in 0..2 {
            assert!(guard.judge(&sealed(b"x", NOW), NOW).is_ok());
        }
        assert_eq!(
            guard.judge(&sealed(b"x", NOW), NOW),
            Err(Dropped::CacheFull)
        );
        // Entries expire with the window, and the cache takes new ones again.
        let later = NOW + window_ms() + 1;
        assert!(guard.judge(&sealed(b"x", later), later).is_ok());
    }

    #[test]
    fn short_and_oversized_datagrams_are_dropped() {
        let mut guard = guard(Mode::Strict);
        let short = sealed(b"", NOW)[..OVERHEAD - 1].to_vec();
        assert_eq!(guard.judge(&short, NOW), Err(Dropped::Malformed));
        assert_eq!(
            guard.judge(&vec![0; MAX_PACKET_SIZE + 1], NOW),
            Err(Dropped::Oversized)
        );
    }

    #[test]
    fn strict_members_drop_plain_foca_and_legacy_ones_take_it() {
        let plain = b"plain foca bytes";
        assert_eq!(
            guard(Mode::Strict).judge(plain, NOW),
            Err(Dropped::Unauthenticated)
        );
        let mut legacy = guard(Mode::AcceptLegacy);
        assert_eq!(legacy.judge(plain, NOW), Ok(Admitted::Legacy(plain)));
        // Authenticated datagrams are still checked in full.
        let datagram = sealed(b"x", NOW);
        assert_eq!(
            legacy.judge(&datagram, NOW),
            Ok(Admitted::Authenticated(b"x"))
        );
        assert_eq!(legacy.judge(&datagram, NOW), Err(Dropped::Replay));
        // A 0.1 packet too large for our foca limit is counted, not lost silently.
        let large = vec![1; MAX_FOCA_PACKET_SIZE + 1];
        assert_eq!(legacy.judge(&large, NOW), Err(Dropped::Oversized));
    }

    #[test]
    fn each_mode_sends_what_it_promises() {
        let sent = |mode| -> Vec<Vec<u8>> {
            guard(mode)
                .outgoing(b"foca", NOW)
                .map(Cow::into_owned)
                .collect()
        };
        let strict = sent(Mode::Strict);
        assert_eq!(strict.len(), 1);
        assert!(strict[0].starts_with(&MAGIC));
        let legacy = sent(Mode::AcceptLegacy);
        assert_eq!(legacy.len(), 2);
        assert!(legacy[0].starts_with(&MAGIC));
        assert_eq!(legacy[1], b"foca");
        assert_eq!(sent(Mode::Plain), [b"foca".to_vec()]);
        // Every copy gets its own nonce.
        assert_ne!(sent(Mode::Strict), strict);
        // What a strict member sends, another strict member accepts.
        assert_eq!(guard(Mode::Strict).admit(&strict[0], NOW), Ok(&b"foca"[..]));
    }
}
