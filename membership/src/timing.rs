//! foca timings derived from the configured probe period.
//!
//! We start from foca's LAN preset (itself memberlist's `DefaultLANConfig`,
//! tuned for a 1 s probe period) and scale every failure-detection and
//! dissemination interval by `probe_period / 1 s`. Production keeps the preset
//! as is; tests run with 200 ms and detect a crash within about two seconds.

use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

use crate::limits::CLUSTER_SIZE_HINT;

/// The foca configuration for a cluster probed every `probe_period`, whose
/// messages (sent and received) are at most `max_packet_size` bytes.
pub(crate) fn foca_config(probe_period: Duration, max_packet_size: usize) -> foca::Config {
    let size = NonZeroU32::new(CLUSTER_SIZE_HINT).unwrap_or(NonZeroU32::MIN);
    let lan = foca::Config::new_lan(size);
    let base = lan.probe_period;
    let scaled = |d: Duration| scale(d, probe_period, base);
    let periodic = |p: Option<foca::PeriodicParams>| {
        p.map(|p| foca::PeriodicParams {
            frequency: scaled(p.frequency),
            num_members: p.num_members,
        })
    };
    foca::Config {
        probe_period,
        // Half the period, as in the preset: leaves the other half for the
        // indirect probe round.
        probe_rtt: scaled(lan.probe_rtt),
        suspect_to_down_after: scaled(lan.suspect_to_down_after),
        periodic_announce: periodic(lan.periodic_announce.clone()),
        periodic_announce_to_down_members: periodic(lan.periodic_announce_to_down_members.clone()),
        periodic_gossip: periodic(lan.periodic_gossip.clone()),
        max_packet_size: NonZeroUsize::new(max_packet_size).unwrap_or(lan.max_packet_size),
        // `remove_down_after` (24 h) is not scaled: it is how long foca
        // remembers a down address, not a detection delay. Our own view keeps
        // down members by id regardless.
        ..lan
    }
}

/// `d * probe_period / base`, never zero (foca rejects zero durations).
fn scale(d: Duration, probe_period: Duration, base: Duration) -> Duration {
    let nanos = d.as_nanos().saturating_mul(probe_period.as_nanos()) / base.as_nanos().max(1);
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)).max(Duration::from_millis(1))
}

/// `probe_period * periods`, saturating.
pub(crate) fn periods(probe_period: Duration, periods: u32) -> Duration {
    probe_period.saturating_mul(periods)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::MAX_FOCA_PACKET_SIZE;

    #[test]
    fn production_period_keeps_the_lan_preset() {
        let lan = foca::Config::new_lan(NonZeroU32::new(CLUSTER_SIZE_HINT).unwrap());
        let ours = foca_config(Duration::from_secs(1), MAX_FOCA_PACKET_SIZE);
        assert_eq!(ours.probe_period, lan.probe_period);
        assert_eq!(ours.probe_rtt, lan.probe_rtt);
        assert_eq!(ours.suspect_to_down_after, lan.suspect_to_down_after);
        assert_eq!(ours.max_packet_size.get(), MAX_FOCA_PACKET_SIZE);
    }

    #[test]
    fn short_period_scales_detection_down() {
        let ours = foca_config(Duration::from_millis(200), MAX_FOCA_PACKET_SIZE);
        assert_eq!(ours.probe_period, Duration::from_millis(200));
        assert_eq!(ours.probe_rtt, Duration::from_millis(100));
        assert!(ours.probe_rtt < ours.probe_period);
        // Suspicion lasts a few periods, so a crash is Down within seconds.
        assert!(ours.suspect_to_down_after >= Duration::from_millis(800));
        assert!(ours.suspect_to_down_after <= Duration::from_secs(2));
        let gossip = ours.periodic_gossip.expect("preset gossips periodically");
        assert_eq!(gossip.frequency, Duration::from_millis(40));
    }
}
