//! Calendar dates for the records the testnet writes (visit dates, meeting dates), computed from
//! the clock without a date library: a visit log is for one month and every visit date must fall
//! in it, so load and demo need "this month" and "day N of this month".

/// `(year, month, day)` of a UTC time in milliseconds since the epoch (Howard Hinnant's
/// `civil_from_days`).
pub fn ymd(ms: i64) -> (i64, u32, u32) {
    let z = ms.div_euclid(86_400_000) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
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
}
