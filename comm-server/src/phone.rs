//! Phone numbers in E.164 form (ITU-T E.164: `+`, a country calling code, the national
//! significant number; 15 digits at most), from what people type and what callers send.
//!
//! Owns: turning user input (`+44 20 7946 0958`, `0044 20…`, `020 7946 0958`) and caller
//! IDs (`sip:+442079460958@host;user=phone`, `tel:+44-20-7946-0958`, a bare SIP user
//! part) into one canonical string, so a customer's phone matches however it was
//! written. Must not own: storage, configuration files or any I/O; it is a pure function
//! of its input and a [`DialPlan`].
//!
//! Limits, on purpose (no numbering-plan database): a number is checked for shape only
//! (digits, 7 to 15 of them with the country code, a country code not starting with 0),
//! not against any country's real plan. A national number is the configured default
//! country's; one country's trunk prefix and international prefix are known. Digits
//! with neither `+` nor a prefix are a national number without its trunk prefix, so a
//! trunk that sends international numbers without `+` (`442079460958`) must be
//! configured to add it. URI parameters, extensions (`;ext=`) included, are dropped;
//! short codes and internal extensions are refused as too short.

use std::fmt;

/// E.164 allows at most 15 digits, country code included.
pub const MAX_DIGITS: usize = 15;
/// The shortest international numbers in use (small territories) have 7 digits with
/// their country code; anything shorter is an extension or a short code.
pub const MIN_DIGITS: usize = 7;
/// The trunk prefix most countries dial before a national number (UK, DE, FR, …).
pub const DEFAULT_TRUNK_PREFIX: &str = "0";
/// The international call prefix of most countries (ITU-T E.164 recommends 00).
pub const DEFAULT_INTERNATIONAL_PREFIX: &str = "00";

/// How national and international numbers are written where the call center is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialPlan {
    country_code: Option<String>,
    trunk_prefix: String,
    international_prefix: String,
}

impl Default for DialPlan {
    /// No default country (national numbers are refused), trunk prefix 0, international 00.
    fn default() -> Self {
        DialPlan {
            country_code: None,
            trunk_prefix: DEFAULT_TRUNK_PREFIX.into(),
            international_prefix: DEFAULT_INTERNATIONAL_PREFIX.into(),
        }
    }
}

impl DialPlan {
    /// `country_code` is the calling code without `+` (`"44"`, `"1"`); `None` refuses
    /// national numbers. Prefixes are digits; an empty trunk prefix means there is none.
    pub fn new(
        country_code: Option<&str>,
        trunk_prefix: &str,
        international_prefix: &str,
    ) -> Result<DialPlan, String> {
        if let Some(cc) = country_code {
            let cc = cc.strip_prefix('+').unwrap_or(cc);
            if cc.is_empty() || cc.len() > 3 || !cc.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "country code {cc:?}: expected 1 to 3 digits, such as \"44\" or \"1\""
                ));
            }
            if cc.starts_with('0') {
                return Err(format!(
                    "country code {cc:?}: country codes do not start with 0"
                ));
            }
        }
        if !trunk_prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("trunk prefix {trunk_prefix:?}: expected digits"));
        }
        if international_prefix.is_empty()
            || !international_prefix.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(format!(
                "international prefix {international_prefix:?}: expected digits, such as \"00\""
            ));
        }
        Ok(DialPlan {
            country_code: country_code.map(|c| c.trim_start_matches('+').to_owned()),
            trunk_prefix: trunk_prefix.into(),
            international_prefix: international_prefix.into(),
        })
    }

    pub fn country_code(&self) -> Option<&str> {
        self.country_code.as_deref()
    }

    /// The ways a table outside our control may hold `e164` (`+442079460958`): as is,
    /// without the `+`, after the international prefix, and, for the home country,
    /// in national form after the trunk prefix (`02079460958`). Spaces and
    /// punctuation are not guessed.
    pub fn written_forms(&self, e164: &E164) -> Vec<String> {
        let digits = e164.as_str().trim_start_matches('+');
        let mut forms = vec![
            e164.as_str().to_owned(),
            digits.to_owned(),
            format!("{}{digits}", self.international_prefix),
        ];
        if let Some(national) = self
            .country_code
            .as_deref()
            .and_then(|cc| digits.strip_prefix(cc))
        {
            forms.push(format!("{}{national}", self.trunk_prefix));
        }
        forms
    }
}

/// A phone number in E.164 form: `+` then 7 to 15 digits, the first not 0.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct E164(String);

impl E164 {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a text is not a phone number. The messages say what is wrong without repeating
/// the input, so callers can put the input (a CSV cell, a caller ID) in front.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("empty")]
    Empty,
    #[error("not a phone number: {found:?} is not a digit")]
    NotDigits { found: char },
    #[error("a SIP or tel URI without a number")]
    NoNumberInUri,
    #[error("too short: {digits} digits with the country code, at least {MIN_DIGITS} needed")]
    TooShort { digits: usize },
    #[error("too long: {digits} digits with the country code, E.164 allows {MAX_DIGITS}")]
    TooLong { digits: usize },
    #[error("country codes do not start with 0")]
    ZeroCountryCode,
    #[error(
        "a national number, but no default country code is configured ([customers] default-country-code)"
    )]
    NoDefaultCountry,
}

/// Separators people and RFC 3966 (§5.1.1 visual separators) put between digits.
fn is_separator(c: char) -> bool {
    matches!(c, ' ' | '\t' | '-' | '.' | '(' | ')' | '/' | '\u{a0}')
}

/// The number inside a SIP/SIPS URI (its user part) or a tel URI; other text as is.
/// A display name and angle brackets (`"Ann" <sip:…>`) are dropped first.
fn number_part(input: &str) -> Result<&str, PhoneError> {
    let mut s = input.trim();
    if let (Some(open), true) = (s.find('<'), s.ends_with('>')) {
        s = &s[open + 1..s.len() - 1];
    }
    let scheme = |name: &str| {
        s.get(..name.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(name))
    };
    let rest = if scheme("sips:") {
        Some((&s[5..], true))
    } else if scheme("sip:") {
        Some((&s[4..], true))
    } else if scheme("tel:") {
        Some((&s[4..], false))
    } else {
        None
    };
    let Some((rest, sip)) = rest else {
        return Ok(s);
    };
    let user = if sip {
        // RFC 3261 §19.1.1: the user part ends at '@'; no '@' means no user.
        rest.split_once('@')
            .map(|(user, _)| user)
            .ok_or(PhoneError::NoNumberInUri)?
    } else {
        rest
    };
    // RFC 3966 §3 parameters (`;phone-context=`, `;ext=`) and SIP user parameters.
    let number = user.split(';').next().unwrap_or_default();
    if number.is_empty() {
        return Err(PhoneError::NoNumberInUri);
    }
    Ok(number)
}

/// Normalises `input` to E.164 under `plan`. Accepts `+CC…`, the international prefix
/// (`00CC…`), a national number with the trunk prefix (`0…`) or without it, SIP and tel
/// URIs, `%2B` for `+`, and visual separators.
pub fn normalise(input: &str, plan: &DialPlan) -> Result<E164, PhoneError> {
    let number = number_part(input)?;
    let (plus, body) = if let Some(rest) = number.strip_prefix('+') {
        (true, rest)
    } else if let Some(rest) = number
        .get(..3)
        .filter(|p| p.eq_ignore_ascii_case("%2b"))
        .map(|_| &number[3..])
    {
        (true, rest)
    } else {
        (false, number)
    };
    let mut digits = String::with_capacity(body.len());
    for c in body.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else if !is_separator(c) {
            return Err(PhoneError::NotDigits { found: c });
        }
    }
    if digits.is_empty() {
        return Err(if plus {
            PhoneError::TooShort { digits: 0 }
        } else {
            PhoneError::Empty
        });
    }
    let international = if plus {
        digits
    } else if let Some(rest) = digits.strip_prefix(plan.international_prefix.as_str()) {
        rest.to_owned()
    } else {
        let national = if plan.trunk_prefix.is_empty() {
            digits.as_str()
        } else {
            digits
                .strip_prefix(plan.trunk_prefix.as_str())
                .unwrap_or(&digits)
        };
        let cc = plan
            .country_code
            .as_deref()
            .ok_or(PhoneError::NoDefaultCountry)?;
        format!("{cc}{national}")
    };
    if international.starts_with('0') {
        return Err(PhoneError::ZeroCountryCode);
    }
    match international.len() {
        n if n < MIN_DIGITS => Err(PhoneError::TooShort { digits: n }),
        n if n > MAX_DIGITS => Err(PhoneError::TooLong { digits: n }),
        _ => Ok(E164(format!("+{international}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_number_is_tried_in_the_forms_tables_hold() {
        let uk = DialPlan::new(Some("44"), "0", "00").unwrap();
        let n = normalise("+442079460958", &uk).unwrap();
        assert_eq!(
            uk.written_forms(&n),
            [
                "+442079460958",
                "442079460958",
                "00442079460958",
                "02079460958"
            ]
        );
        let abroad = normalise("+15550100123", &uk).unwrap();
        assert_eq!(
            uk.written_forms(&abroad).len(),
            3,
            "no national form abroad"
        );
    }

    fn uk() -> DialPlan {
        DialPlan::new(Some("44"), "0", "00").unwrap()
    }

    fn n(input: &str) -> Result<String, PhoneError> {
        normalise(input, &uk()).map(E164::into_string)
    }

    #[test]
    fn the_ways_one_number_is_written_agree() {
        for input in [
            "+44 20 7946 0958",
            "+442079460958",
            "0044 20 7946 0958",
            "020 7946 0958",
            "(020) 7946-0958",
            "20 7946 0958",
            "sip:+442079460958@trunk.example;user=phone",
            "SIP:02079460958@10.0.0.1:5060",
            "sips:+442079460958;npdi@host",
            "<sip:+442079460958@host>",
            "\"Ann\" <sip:+442079460958@host>",
            "tel:+44-20-7946-0958",
            "tel:+44.20.7946.0958;ext=12",
            "%2B442079460958",
        ] {
            assert_eq!(n(input).as_deref(), Ok("+442079460958"), "{input}");
        }
    }

    #[test]
    fn garbage_is_refused_with_the_reason() {
        assert_eq!(n("abc"), Err(PhoneError::NotDigits { found: 'a' }));
        assert_eq!(
            n("sip:alice@host"),
            Err(PhoneError::NotDigits { found: 'a' })
        );
        assert_eq!(n("   "), Err(PhoneError::Empty));
        assert_eq!(n("+"), Err(PhoneError::TooShort { digits: 0 }));
        assert_eq!(n("sip:host.example"), Err(PhoneError::NoNumberInUri));
        assert_eq!(n("tel:;ext=1"), Err(PhoneError::NoNumberInUri));
        assert_eq!(n("1001"), Err(PhoneError::TooShort { digits: 6 }));
        assert_eq!(
            n("+1234567890123456"),
            Err(PhoneError::TooLong { digits: 16 })
        );
        assert_eq!(n("+0441234567"), Err(PhoneError::ZeroCountryCode));
        assert_eq!(n("*123#"), Err(PhoneError::NotDigits { found: '*' }));
        assert_eq!(
            n("abc").unwrap_err().to_string(),
            "not a phone number: 'a' is not a digit"
        );
    }

    #[test]
    fn national_numbers_need_a_default_country() {
        let none = DialPlan::default();
        assert_eq!(
            normalise("020 7946 0958", &none),
            Err(PhoneError::NoDefaultCountry)
        );
        assert_eq!(
            normalise("+44 20 7946 0958", &none).map(E164::into_string),
            Ok("+442079460958".into())
        );
    }

    #[test]
    fn north_american_plan_with_trunk_prefix_1() {
        let nanp = DialPlan::new(Some("1"), "1", "011").unwrap();
        for input in ["(202) 555-0123", "1 202 555 0123", "011 1 202 555 0123"] {
            assert_eq!(
                normalise(input, &nanp).map(E164::into_string),
                Ok("+12025550123".into()),
                "{input}"
            );
        }
    }

    #[test]
    fn dial_plans_are_checked() {
        assert!(DialPlan::new(Some("044"), "0", "00").is_err());
        assert!(DialPlan::new(Some("1234"), "0", "00").is_err());
        assert!(DialPlan::new(Some("4a"), "0", "00").is_err());
        assert!(DialPlan::new(Some("44"), "x", "00").is_err());
        assert!(DialPlan::new(Some("44"), "0", "").is_err());
        assert_eq!(
            DialPlan::new(Some("+49"), "", "00").unwrap().country_code(),
            Some("49")
        );
    }

    fn valid_e164() -> impl Strategy<Value = String> {
        "[1-9][0-9]{6,14}".prop_map(|d| format!("+{d}"))
    }

    proptest! {
        #[test]
        fn never_panics_and_output_is_e164(input in "\\PC{0,40}") {
            if let Ok(e) = normalise(&input, &uk()) {
                let digits = &e.as_str()[1..];
                prop_assert!(e.as_str().starts_with('+'));
                prop_assert!((MIN_DIGITS..=MAX_DIGITS).contains(&digits.len()));
                prop_assert!(digits.bytes().all(|b| b.is_ascii_digit()));
                prop_assert!(!digits.starts_with('0'));
            }
        }

        #[test]
        fn normalising_is_idempotent(input in "[+0-9 ()-]{0,24}") {
            if let Ok(e) = normalise(&input, &uk()) {
                prop_assert_eq!(normalise(e.as_str(), &uk()), Ok(e.clone()));
            }
        }

        #[test]
        fn separators_and_uris_do_not_change_the_number(
            number in valid_e164(),
            cuts in proptest::collection::vec((0usize..16, prop::sample::select(vec![" ", "-", ".", "(", ")"])), 0..4),
        ) {
            let mut spaced = number.clone();
            for (at, sep) in cuts {
                let at = 1 + at % (spaced.len() - 1);
                if spaced.is_char_boundary(at) {
                    spaced.insert_str(at, sep);
                }
            }
            let expected = Ok(number.clone());
            prop_assert_eq!(n(&spaced), expected.clone());
            prop_assert_eq!(n(&format!("sip:{number}@host;user=phone")), expected.clone());
            prop_assert_eq!(n(&format!("tel:{spaced}")), expected.clone());
            prop_assert_eq!(n(&format!("00{}", &number[1..])), expected);
        }

        #[test]
        fn a_letter_is_never_a_number(prefix in "[0-9]{0,8}", letter in "[a-zA-Z]", suffix in "[0-9]{0,8}") {
            let input = format!("{prefix}{letter}{suffix}");
            let refused = matches!(n(&input), Err(PhoneError::NotDigits { .. }));
            prop_assert!(refused, "{} was accepted", input);
        }

        #[test]
        fn national_and_international_forms_agree(national in "[1-9][0-9]{8,9}") {
            prop_assert_eq!(n(&format!("0{national}")), n(&format!("+44{national}")));
        }
    }
}
