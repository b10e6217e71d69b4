//! Business figures for dashboards, from hourly counts per service: their cost does not
//! grow with the number of stored events.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use std::collections::BTreeMap;

/// Stored events at a glance, in the original service's shape. Counted by event
/// timestamp in whole UTC hours: the last hour is the current clock hour, the last
/// 24 hours are it and the 23 before.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BusinessMetrics {
    pub total_events: u64,
    pub events_by_service: std::collections::BTreeMap<String, u64>,
    pub events_last24_hours: u64,
    pub events_last_hour: u64,
    pub average_events_per_minute: f64,
    /// At most ten, most events first.
    pub top_services: Vec<ServiceCount>,
    /// Hours of the last 24 that hold events, oldest first.
    pub events_by_hour: Vec<HourCount>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceCount {
    pub service: String,
    pub count: u64,
}

/// A service that has stored events, as the rollups count them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSummary {
    pub service: String,
    pub events: u64,
    /// The start of the latest UTC hour holding its events.
    pub latest_hour: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourCount {
    /// `YYYY-MM-DD HH:00`, UTC.
    pub hour: String,
    pub count: u64,
}

/// Events of one service in one UTC hour (the hour's start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourlyCount {
    pub service: String,
    pub hour: DateTime<Utc>,
    pub events: u64,
}

const TOP_SERVICES: usize = 10;

impl BusinessMetrics {
    /// Builds the figures from all-time totals per service and the hourly counts of at
    /// least the last 24 hours; hours outside the window, or after `now`, are ignored.
    pub fn tally(totals: impl IntoIterator<Item = (String, u64)>, recent: &[HourlyCount], now: DateTime<Utc>) -> Self {
        let current_hour = now.duration_trunc(TimeDelta::hours(1)).unwrap_or(now);
        let day_start = current_hour - TimeDelta::hours(23);
        let events_by_service: BTreeMap<String, u64> = totals.into_iter().filter(|(_, count)| *count > 0).collect();
        let mut by_hour: BTreeMap<DateTime<Utc>, u64> = BTreeMap::new();
        for count in recent.iter().filter(|count| count.hour >= day_start && count.hour <= current_hour) {
            *by_hour.entry(count.hour).or_default() += count.events;
        }
        let events_last24_hours = by_hour.values().sum::<u64>();
        let events_last_hour = by_hour.get(&current_hour).copied().unwrap_or(0);
        let mut top_services: Vec<ServiceCount> = events_by_service
            .iter()
            .map(|(service, count)| ServiceCount { service: service.clone(), count: *count })
            .collect();
        top_services.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.service.cmp(&b.service)));
        top_services.truncate(TOP_SERVICES);
        Self {
            total_events: events_by_service.values().sum(),
            events_by_service,
            events_last24_hours,
            events_last_hour,
            average_events_per_minute: (events_last24_hours as f64 / 1440.0 * 100.0).round() / 100.0,
            top_services,
            events_by_hour: by_hour
                .into_iter()
                .map(|(hour, count)| HourCount { hour: hour.format("%Y-%m-%d %H:00").to_string(), count })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn count(service: &str, hour: DateTime<Utc>, events: u64) -> HourlyCount {
        HourlyCount { service: service.into(), hour, events }
    }

    #[test]
    fn windows_are_whole_hours_ending_with_the_current_one() {
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 10, 34, 59).unwrap();
        let hour = |h: i64| Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap() + TimeDelta::hours(h);
        let recent = [
            count("a", hour(0), 5),
            count("b", hour(0), 1),
            count("a", hour(-23), 7),
            count("a", hour(-24), 100),
            count("a", hour(1), 1000),
        ];
        let totals = [("a".to_owned(), 1112), ("b".to_owned(), 1), ("c".to_owned(), 0)];
        let metrics = BusinessMetrics::tally(totals, &recent, now);
        assert_eq!(metrics.total_events, 1113);
        assert_eq!(metrics.events_last_hour, 6);
        assert_eq!(metrics.events_last24_hours, 13, "the 24th hour back and the future hour are outside");
        assert_eq!(metrics.average_events_per_minute, 0.01);
        assert_eq!(
            metrics.events_by_hour,
            [
                HourCount { hour: "2026-11-21 11:00".into(), count: 7 },
                HourCount { hour: "2026-11-22 10:00".into(), count: 6 }
            ]
        );
        assert_eq!(metrics.top_services[0], ServiceCount { service: "a".into(), count: 1112 });
        assert_eq!(metrics.top_services.len(), 2, "services without events are left out");
    }

    #[test]
    fn at_most_ten_top_services_most_events_first() {
        let totals: Vec<(String, u64)> = (1..=12).map(|i| (format!("svc-{i:02}"), i)).collect();
        let metrics = BusinessMetrics::tally(totals, &[], Utc::now());
        assert_eq!(metrics.top_services.len(), 10);
        assert_eq!(metrics.top_services[0].service, "svc-12");
        assert_eq!(metrics.top_services[9].service, "svc-03");
        assert_eq!(metrics.events_by_service.len(), 12);
    }
}
