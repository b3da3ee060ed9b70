//! Raw input to an answer's value, by input kind and channel.
//!
//! Owns the rules a caller's keypad or a typed answer must meet (lengths, ranges,
//! keys, date forms). It does not own retries: the session decides what a
//! no-match leads to.

use serde_json::Value as Json;

use crate::model::{Channel, InputSpec};

pub(super) enum Parsed {
    Empty,
    NoMatch,
    Value(Json),
}

/// Turns raw input into the answer's value, by input kind and channel.
pub(super) fn parse_answer(input: &InputSpec, channel: Channel, raw: &str) -> Parsed {
    let raw = raw.trim();
    if raw.is_empty() {
        return Parsed::Empty;
    }
    let value = match input {
        InputSpec::Digits {
            min,
            max,
            terminator,
        } => {
            let digits = match terminator {
                Some(t) => raw.strip_suffix(*t).unwrap_or(raw),
                None => raw,
            };
            if digits.is_empty() {
                return Parsed::Empty;
            }
            let len = u32::try_from(digits.chars().count()).unwrap_or(u32::MAX);
            (digits.chars().all(|c| c.is_ascii_digit()) && (*min..=*max).contains(&len))
                .then(|| Json::String(digits.to_owned()))
        }
        // A single character is tried as a key first on every channel, so
        // web and agent screens can offer the same shortcuts as the phone.
        InputSpec::Choice(choices) => {
            let mut chars = raw.chars();
            let key = match (chars.next(), chars.next()) {
                (Some(k), None) => Some(k),
                _ => None,
            };
            choices
                .iter()
                .find(|c| key.is_some() && c.key == key)
                .or_else(|| {
                    (channel != Channel::Voice)
                        .then(|| {
                            choices
                                .iter()
                                .find(|c| c.value == raw || c.label.eq_ignore_ascii_case(raw))
                        })
                        .flatten()
                })
                .map(|c| Json::String(c.value.clone()))
        }
        // 1 and 2 are the keypad convention; screens send words or booleans.
        InputSpec::YesNo => match raw.to_ascii_lowercase().as_str() {
            "1" | "yes" | "y" | "true" => Some(Json::Bool(true)),
            "2" | "no" | "n" | "false" => Some(Json::Bool(false)),
            _ => None,
        },
        InputSpec::Number { min, max } => {
            let raw = raw.strip_suffix('#').unwrap_or(raw);
            raw.parse::<i64>()
                .ok()
                .filter(|n| min.is_none_or(|m| *n >= m) && max.is_none_or(|m| *n <= m))
                .map(Json::from)
        }
        InputSpec::Date => parse_date(raw, channel).map(Json::String),
        InputSpec::Text { max } => {
            (raw.chars().count() <= *max as usize).then(|| Json::String(raw.to_owned()))
        }
        InputSpec::Record { .. } => Some(Json::String(raw.to_owned())),
    };
    value.map_or(Parsed::NoMatch, Parsed::Value)
}

/// A calendar date as `YYYY-MM-DD`: typed that way on screens, or keyed as
/// `DDMMYYYY` on a phone.
fn parse_date(raw: &str, channel: Channel) -> Option<String> {
    let (y, m, d) = if channel == Channel::Voice {
        let raw = raw.strip_suffix('#').unwrap_or(raw);
        if raw.len() != 8 || !raw.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        (&raw[4..8], &raw[2..4], &raw[0..2])
    } else {
        let mut parts = raw.split('-');
        let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
            return None;
        }
        (y, m, d)
    };
    let (y, m, d): (u32, u32, u32) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    (1..=days)
        .contains(&d)
        .then(|| format!("{y:04}-{m:02}-{d:02}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_check_the_calendar() {
        assert_eq!(
            parse_date("2024-02-29", Channel::Web).as_deref(),
            Some("2024-02-29")
        );
        assert_eq!(parse_date("2023-02-29", Channel::Web), None);
        assert_eq!(parse_date("1900-02-29", Channel::Web), None);
        assert_eq!(
            parse_date("2000-02-29", Channel::Agent).as_deref(),
            Some("2000-02-29")
        );
        assert_eq!(parse_date("2024-04-31", Channel::Web), None);
        assert_eq!(parse_date("2024-13-01", Channel::Web), None);
        assert_eq!(
            parse_date("31122024#", Channel::Voice).as_deref(),
            Some("2024-12-31")
        );
        assert_eq!(parse_date("3112202", Channel::Voice), None);
        assert_eq!(parse_date("24-1-1", Channel::Web), None);
    }

    #[test]
    fn digits_without_a_terminator_keep_everything() {
        let spec = InputSpec::Digits {
            min: 1,
            max: 4,
            terminator: None,
        };
        assert!(matches!(
            parse_answer(&spec, Channel::Voice, "12#"),
            Parsed::NoMatch
        ));
        assert!(
            matches!(parse_answer(&spec, Channel::Voice, " 0042 "), Parsed::Value(v) if v == "0042")
        );
        assert!(matches!(
            parse_answer(&spec, Channel::Voice, "   "),
            Parsed::Empty
        ));
    }
}
