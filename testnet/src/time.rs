//! Calendar dates for the records the testnet writes (visit dates, meeting dates), computed from
//! the clock: a visit log is for one month and every visit date must fall in it, so load and
//! demo need "this month" and "day N of this month".

use chrono::{DateTime, Datelike};

/// `(year, month, day)` of a UTC time in milliseconds since the epoch.
///
/// Panics beyond chrono's range (about 262,000 years either side of the epoch), which no clock
/// reading reaches.
pub fn ymd(ms: i64) -> (i64, u32, u32) {
    let t = DateTime::from_timestamp_millis(ms).expect("a time within chrono's range");
    (i64::from(t.year()), t.month(), t.day())
}

/// `"YYYY-MM"` of a time.
pub fn month(ms: i64) -> String {
    let (y, m, _) = ymd(ms);
    format!("{y:04}-{m:02}")
}

/// `"YYYY-MM-DD"` of day `day` in the month of `ms`, never later than the day of `ms`.
pub fn day_of_month(ms: i64, day: u32) -> String {
    let (y, m, today) = ymd(ms);
    format!("{y:04}-{m:02}-{:02}", day.clamp(1, today))
}

/// `"YYYY-MM-DD"` of a time.
pub fn date(ms: i64) -> String {
    let (y, m, d) = ymd(ms);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_MS: i64 = 86_400_000;

    #[test]
    fn known_dates() {
        assert_eq!(ymd(0), (1970, 1, 1));
        // 2026-11-30T23:59:59Z and the next second.
        assert_eq!(date(1_796_083_199_000), "2026-11-30");
        assert_eq!(date(1_796_083_200_000), "2026-12-01");
        assert_eq!(date(951_782_400_000), "2000-02-29");
        assert_eq!(month(1_796_083_200_000), "2026-12");
        assert_eq!(day_of_month(1_796_083_200_000, 15), "2026-12-01");
    }

    /// The last millisecond of a day and the first of the next, at month ends, leap days and
    /// year boundaries, before the epoch too.
    #[test]
    fn day_boundaries() {
        let cases = [
            // 2026-01-31 → 2026-02-01: a 31-day month ends.
            (1_769_904_000_000, "2026-01-31", "2026-02-01"),
            // 2026-02-28 → 2026-03-01: no leap day in 2026.
            (1_772_323_200_000, "2026-02-28", "2026-03-01"),
            // 2024-02-28 → 2024-02-29 → 2024-03-01: a leap year.
            (1_709_164_800_000, "2024-02-28", "2024-02-29"),
            (1_709_251_200_000, "2024-02-29", "2024-03-01"),
            // 1900-02-28 → 1900-03-01: a century is not a leap year...
            (-2_203_891_200_000, "1900-02-28", "1900-03-01"),
            // ...unless it is divisible by 400: 2000-02-28 → 2000-02-29.
            (951_782_400_000, "2000-02-28", "2000-02-29"),
            // 2100-02-28 → 2100-03-01.
            (4_107_542_400_000, "2100-02-28", "2100-03-01"),
            // 2026-04-30 → 2026-05-01: a 30-day month ends.
            (1_777_593_600_000, "2026-04-30", "2026-05-01"),
            // 2025-12-31 → 2026-01-01: a year ends.
            (1_767_225_600_000, "2025-12-31", "2026-01-01"),
            // 1969-12-31 → 1970-01-01: the epoch.
            (0, "1969-12-31", "1970-01-01"),
            // 1999-12-31 → 2000-01-01.
            (946_684_800_000, "1999-12-31", "2000-01-01"),
        ];
        for (midnight, before, after) in cases {
            assert_eq!(date(midnight - 1), before, "{midnight} - 1 ms");
            assert_eq!(date(midnight), after, "{midnight}");
            assert_eq!(
                date(midnight + DAY_MS - 1),
                after,
                "{midnight} + a day - 1 ms"
            );
        }
        assert_eq!(ymd(-1), (1969, 12, 31));
        assert_eq!(month(1_767_225_600_000 - 1), "2025-12");
        assert_eq!(month(1_767_225_600_000), "2026-01");
    }

    #[test]
    fn day_of_month_is_clamped_to_the_month_so_far() {
        // 2024-02-29T12:00Z.
        let leap_day_noon = 1_709_208_000_000;
        assert_eq!(day_of_month(leap_day_noon, 0), "2024-02-01");
        assert_eq!(day_of_month(leap_day_noon, 28), "2024-02-28");
        assert_eq!(day_of_month(leap_day_noon, 29), "2024-02-29");
        assert_eq!(day_of_month(leap_day_noon, 31), "2024-02-29");
    }
}
