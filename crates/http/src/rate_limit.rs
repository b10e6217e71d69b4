//! Per-client token buckets (GCRA, by governor), one set per route group. A client is its
//! IP address, or its IPv6 /64: one host commonly holds a whole /64, so keying by single
//! IPv6 addresses would let it mint buckets at will.

use crate::routes::RouteGroup;
use governor::Quota;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use ipnet::IpNet;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::time::Duration;

/// Requests (events, for ingest) per second per client, by route group; `0` turns a
/// group's limit off.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimits {
    pub ingest_per_second: u32,
    pub query_per_second: u32,
    pub health_per_second: u32,
    pub admin_per_second: u32,
    /// A client may spend this many seconds' worth at once (at least 1).
    pub burst_factor: f64,
}

impl RateLimits {
    fn per_second(&self, group: RouteGroup) -> u32 {
        match group {
            RouteGroup::Ingest => self.ingest_per_second,
            RouteGroup::Query => self.query_per_second,
            RouteGroup::Health => self.health_per_second,
            RouteGroup::Admin => self.admin_per_second,
        }
    }
}

/// Who a bucket belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(IpAddr);

impl ClientKey {
    pub fn of(address: IpAddr) -> Self {
        match address.to_canonical() {
            IpAddr::V6(v6) => {
                let [a, b, c, d, ..] = v6.segments();
                Self(IpAddr::V6(Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0)))
            }
            v4 => Self(v4),
        }
    }
}

/// The client's address: the TCP peer, unless the peer is a trusted proxy; then the
/// right-most `X-Forwarded-For` entry that is not itself a trusted proxy (entries further
/// left were written by the client and prove nothing).
pub fn client_address(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |address: &IpAddr| trusted.iter().any(|net| net.contains(&address.to_canonical()));
    if !is_trusted(&peer) {
        return peer;
    }
    let Some(header) = forwarded_for else { return peer };
    let mut hops = header.rsplit(',').map(str::trim);
    let mut client = peer;
    for hop in hops.by_ref() {
        match hop.parse::<IpAddr>() {
            Ok(address) if is_trusted(&address) => client = address,
            Ok(address) => return address,
            // An unparsable hop ends the chain we can vouch for.
            Err(_) => return client,
        }
    }
    client
}

/// What a client has left after an allowed request, for the `RateLimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    pub limit: u32,
    pub remaining: u32,
    /// Until the bucket is full again.
    pub reset: Duration,
}

/// Why a request was not let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Over the limit now; the wait is until enough tokens are back.
    Exceeded { limit: u32, retry_after: Duration },
    /// More than a full bucket at once: it can never pass (a batch larger than the burst).
    LargerThanBurst { burst: u32 },
}

type Limiter<C> = governor::RateLimiter<ClientKey, DefaultKeyedStateStore<ClientKey>, C, StateInformationMiddleware>;

#[derive(Debug)]
struct Bucket<C: Clock> {
    limiter: Limiter<C>,
    burst: u32,
    /// Time to earn one token back.
    per_token: Duration,
}

/// The buckets of every route group whose limit is on. The clock is a parameter so tests
/// can move time instead of waiting for it.
#[derive(Debug)]
pub struct RateLimiter<C: Clock = DefaultClock> {
    buckets: [Option<Bucket<C>>; 4],
    clock: C,
}

impl RateLimiter {
    pub fn new(limits: &RateLimits) -> Self {
        Self::with_clock(limits, DefaultClock::default())
    }
}

impl<C: Clock + Clone> RateLimiter<C> {
    pub fn with_clock(limits: &RateLimits, clock: C) -> Self {
        let bucket = |group: RouteGroup| {
            let rate = NonZeroU32::new(limits.per_second(group))?;
            let burst = (f64::from(rate.get()) * limits.burst_factor.max(1.0)).ceil().min(f64::from(u32::MAX));
            // Within u32 by the clamp above; at least the rate, so non-zero.
            let burst = NonZeroU32::new(burst as u32).unwrap_or(rate);
            let quota = Quota::per_second(rate).allow_burst(burst);
            Some(Bucket {
                limiter: Limiter::new(quota, DefaultKeyedStateStore::default(), clock.clone()),
                burst: burst.get(),
                per_token: quota.replenish_interval(),
            })
        };
        Self { buckets: RouteGroup::ALL.map(bucket), clock }
    }

    /// Takes `cost` tokens (requests, or events for ingest) from `client`'s bucket for
    /// `group`. `None` when the group is not limited.
    pub fn check(&self, group: RouteGroup, client: ClientKey, cost: u32) -> Option<Result<Allowance, Refusal>> {
        let bucket = self.buckets[group as usize].as_ref()?;
        let Some(cost) = NonZeroU32::new(cost) else {
            return Some(Ok(Allowance { limit: bucket.burst, remaining: bucket.burst, reset: Duration::ZERO }));
        };
        Some(match bucket.limiter.check_key_n(&client, cost) {
            Err(_) => Err(Refusal::LargerThanBurst { burst: bucket.burst }),
            Ok(Err(not_until)) => {
                Err(Refusal::Exceeded { limit: bucket.burst, retry_after: not_until.wait_time_from(self.clock.now()) })
            }
            Ok(Ok(snapshot)) => {
                let remaining = snapshot.remaining_burst_capacity();
                Ok(Allowance { limit: bucket.burst, remaining, reset: bucket.per_token * (bucket.burst - remaining) })
            }
        })
    }

    /// Forgets clients whose buckets are full again: memory follows the clients active in
    /// the last `burst_factor` seconds, not every client ever seen.
    pub fn forget_idle_clients(&self) {
        for bucket in self.buckets.iter().flatten() {
            bucket.limiter.retain_recent();
            bucket.limiter.shrink_to_fit();
        }
    }

    /// Clients with a bucket, summed over groups.
    pub fn tracked_clients(&self) -> usize {
        self.buckets.iter().flatten().map(|bucket| bucket.limiter.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn limits(ingest: u32, query: u32) -> RateLimits {
        RateLimits {
            ingest_per_second: ingest,
            query_per_second: query,
            health_per_second: 0,
            admin_per_second: 1,
            burst_factor: 2.0,
        }
    }

    fn client(text: &str) -> ClientKey {
        ClientKey::of(text.parse().unwrap())
    }

    #[test]
    fn a_client_gets_its_burst_then_is_refused_with_a_wait() {
        let limiter = RateLimiter::new(&limits(5, 1));
        let first = limiter.check(RouteGroup::Ingest, client("10.0.0.1"), 4).unwrap().unwrap();
        assert_eq!((first.limit, first.remaining), (10, 6));
        assert_eq!(first.reset, Duration::from_millis(800));
        limiter.check(RouteGroup::Ingest, client("10.0.0.1"), 6).unwrap().unwrap();
        let Err(Refusal::Exceeded { limit, retry_after }) =
            limiter.check(RouteGroup::Ingest, client("10.0.0.1"), 1).unwrap()
        else {
            panic!("an empty bucket must refuse");
        };
        assert_eq!(limit, 10);
        assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_millis(200), "{retry_after:?}");
        // Another client and another group have their own buckets.
        assert!(limiter.check(RouteGroup::Ingest, client("10.0.0.2"), 1).unwrap().is_ok());
        assert!(limiter.check(RouteGroup::Query, client("10.0.0.1"), 1).unwrap().is_ok());
    }

    #[test]
    fn more_than_a_burst_at_once_can_never_pass_and_zero_turns_a_group_off() {
        let limiter = RateLimiter::new(&limits(5, 1));
        assert_eq!(
            limiter.check(RouteGroup::Ingest, client("10.0.0.1"), 11),
            Some(Err(Refusal::LargerThanBurst { burst: 10 }))
        );
        assert_eq!(limiter.check(RouteGroup::Health, client("10.0.0.1"), 1_000_000), None);
    }

    #[test]
    fn ipv6_clients_share_their_slash_64_and_mapped_ipv4_is_ipv4() {
        assert_eq!(client("2001:db8:1:2::1"), client("2001:db8:1:2:ffff::9"));
        assert_ne!(client("2001:db8:1:2::1"), client("2001:db8:1:3::1"));
        assert_eq!(client("::ffff:10.0.0.1"), client("10.0.0.1"));
    }

    #[test]
    fn tokens_come_back_with_time_and_idle_clients_are_forgotten() {
        let clock = FakeRelativeClock::default();
        let limiter = RateLimiter::with_clock(&limits(10, 1), clock.clone());
        for address in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
            limiter.check(RouteGroup::Ingest, client(address), 20).unwrap().unwrap();
        }
        assert!(limiter.check(RouteGroup::Ingest, client("10.0.0.1"), 1).unwrap().is_err());
        clock.advance(Duration::from_millis(500));
        assert_eq!(limiter.check(RouteGroup::Ingest, client("10.0.0.1"), 5).unwrap().unwrap().remaining, 0);
        limiter.forget_idle_clients();
        assert_eq!(limiter.tracked_clients(), 3, "buckets still refilling are kept");
        clock.advance(Duration::from_secs(3));
        limiter.forget_idle_clients();
        assert_eq!(limiter.tracked_clients(), 0, "full buckets are indistinguishable from new ones");
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer: IpAddr = "10.1.1.1".parse().unwrap();
        let stranger: IpAddr = "203.0.113.9".parse().unwrap();
        let forwarded = Some("198.51.100.7, 192.0.2.1, 10.2.2.2");
        assert_eq!(client_address(stranger, forwarded, &trusted), stranger);
        assert_eq!(client_address(peer, forwarded, &trusted), "192.0.2.1".parse::<IpAddr>().unwrap());
        assert_eq!(client_address(peer, None, &trusted), peer);
        assert_eq!(client_address(peer, Some("10.3.3.3"), &trusted), "10.3.3.3".parse::<IpAddr>().unwrap());
        assert_eq!(client_address(peer, Some("garbage, 10.3.3.3"), &trusted), "10.3.3.3".parse::<IpAddr>().unwrap());
    }
}
