//! `GET /events/histogram`: how many events of one service fall in each bucket of a time
//! range. Buckets are whole minutes wide and aligned on the Unix epoch (so `1h` buckets
//! start on the hour, `1d` at UTC midnight), which lets the store answer from its
//! per-minute and per-hour counts and count row by row only the partial minutes at the
//! range's two ends.

use crate::validation::FieldError;
use chrono::{DateTime, Duration, Utc};

/// Most buckets one histogram may hold: each is a row of the answer and a slice of the
/// store's statement.
pub const MAX_BUCKETS: i64 = 1000;

/// A bucket width, in whole minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    minutes: i64,
}

impl Interval {
    pub fn duration(self) -> Duration {
        Duration::minutes(self.minutes)
    }

    /// The largest unit that divides it: `90m`, `6h`, `1d`.
    pub fn name(self) -> String {
        match self.minutes {
            m if m % 1440 == 0 => format!("{}d", m / 1440),
            m if m % 60 == 0 => format!("{}h", m / 60),
            m => format!("{m}m"),
        }
    }

    /// `<n>m`, `<n>h`, `<n>d`, or seconds that make whole minutes. Sub-minute buckets are
    /// refused: they would have to be counted row by row.
    pub fn parse(text: &str) -> Option<Self> {
        let (number, unit_minutes) = match text.as_bytes().last()? {
            b'm' => (&text[..text.len() - 1], 1),
            b'h' => (&text[..text.len() - 1], 60),
            b'd' => (&text[..text.len() - 1], 1440),
            _ => (text, 0),
        };
        let number: i64 = number.parse().ok().filter(|n| *n > 0)?;
        let minutes = match unit_minutes {
            0 if number % 60 == 0 => number / 60,
            0 => return None,
            unit => number.checked_mul(unit)?,
        };
        Some(Self { minutes })
    }

    /// The start of the bucket holding `instant`.
    fn floor(self, instant: DateTime<Utc>) -> DateTime<Utc> {
        let width = self.minutes * 60;
        let seconds = instant.timestamp();
        DateTime::from_timestamp(seconds - seconds.rem_euclid(width), 0).unwrap_or(instant)
    }
}

/// A validated `GET /events/histogram` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramQuery {
    pub service: String,
    /// Inclusive bounds on the event timestamp, as for `GET /events`.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub interval: Interval,
}

/// One bucket of a histogram and the part of it inside the query's range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketSpan {
    /// Where the bucket starts, aligned on the interval; the first may start before `from`.
    pub start: DateTime<Utc>,
    /// The instants it counts, `[from, until)`: the whole bucket, except the first and the
    /// last, clipped to the query's range.
    pub from: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

impl HistogramQuery {
    /// At most [`MAX_BUCKETS`] buckets between `from` and `to`.
    pub fn check(self) -> Result<Self, Vec<FieldError>> {
        let interval = self.interval;
        let buckets = (interval.floor(self.to) - interval.floor(self.from)).num_minutes() / interval.minutes + 1;
        if buckets > MAX_BUCKETS {
            return Err(vec![FieldError::new(
                "interval",
                "maxBuckets",
                format!(
                    "from/to and interval make {buckets} buckets, more than {MAX_BUCKETS}; \
                     widen interval or narrow from/to"
                ),
            )]);
        }
        Ok(self)
    }

    /// Every bucket from the one holding `from` to the one holding `to`, empty ones too.
    pub fn buckets(&self) -> Vec<BucketSpan> {
        let width = self.interval.duration();
        // `to` is inclusive; instants are microseconds.
        let end = self.to + Duration::microseconds(1);
        let mut start = self.interval.floor(self.from);
        let mut buckets = Vec::new();
        while start < end {
            buckets.push(BucketSpan { start, from: start.max(self.from), until: (start + width).min(end) });
            start += width;
        }
        buckets
    }
}

/// Events per bucket, in bucket order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    pub buckets: Vec<HistogramBucket>,
    /// The sum of the buckets: every event of the range, as `GET /events` totals it.
    pub total: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistogramBucket {
    pub start: DateTime<Utc>,
    pub count: u64,
}

impl Histogram {
    /// Pairs each bucket with its count.
    pub fn new(spans: &[BucketSpan], counts: impl IntoIterator<Item = u64>) -> Self {
        let buckets: Vec<HistogramBucket> =
            spans.iter().zip(counts).map(|(span, count)| HistogramBucket { start: span.start, count }).collect();
        let total = buckets.iter().map(|bucket| bucket.count).sum();
        Self { buckets, total }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_are_whole_minutes_in_any_unit() {
        for (text, minutes, name) in [
            ("1m", 1, "1m"),
            ("5m", 5, "5m"),
            ("90m", 90, "90m"),
            ("1h", 60, "1h"),
            ("1d", 1440, "1d"),
            ("3600", 60, "1h"),
        ] {
            assert_eq!(Interval::parse(text), Some(Interval { minutes }), "{text}");
            assert_eq!(Interval { minutes }.name(), name);
        }
        for text in ["", "m", "0m", "-5m", "30", "90s", "1.5h", "1w", "99999999999999999d"] {
            assert_eq!(Interval::parse(text), None, "{text}");
        }
    }
}
