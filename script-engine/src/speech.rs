//! Say-as: values spoken from a fixed set of recorded words.
//!
//! Owns the mapping from a value (digits, a whole number, an amount of money) to
//! the audio file names that speak it, in English word order. It does not own the
//! recordings: the loader checks through the caller that each name exists.
//!
//! Files: `digits/0.wav`…`digits/9.wav`, `digits/star.wav`, `digits/hash.wav`;
//! `numbers/0.wav`…`numbers/19.wav`, `numbers/20.wav`…`numbers/90.wav` (tens),
//! `numbers/hundred.wav`, `numbers/thousand.wav`, `numbers/million.wav`,
//! `numbers/billion.wav`, `numbers/minus.wav`, `numbers/and.wav`;
//! `currency/<code>.wav` and `currency/<code>-cents.wav` (e.g. `currency/eur.wav`).

/// Every file a say-as kind may need, so a missing word is found at load time.
pub(crate) fn files_for(kind: &str, currency: &str) -> Vec<String> {
    let mut out = Vec::new();
    match kind {
        "digits" => {
            out.extend((0..10).map(|d| format!("digits/{d}.wav")));
            out.push("digits/star.wav".into());
            out.push("digits/hash.wav".into());
        }
        "number" | "amount" => {
            out.extend((0..20).map(|n| format!("numbers/{n}.wav")));
            out.extend((2..10).map(|t| format!("numbers/{}.wav", t * 10)));
            for w in ["hundred", "thousand", "million", "billion", "minus"] {
                out.push(format!("numbers/{w}.wav"));
            }
            if kind == "amount" {
                out.push("numbers/and.wav".into());
                out.push(format!("currency/{currency}.wav"));
                out.push(format!("currency/{currency}-cents.wav"));
            }
        }
        _ => {}
    }
    out
}

/// Keypad characters one by one; other characters are skipped.
pub(crate) fn digits(s: &str, out: &mut Vec<String>) {
    for c in s.chars() {
        match c {
            '0'..='9' => out.push(format!("digits/{c}.wav")),
            '*' => out.push("digits/star.wav".into()),
            '#' => out.push("digits/hash.wav".into()),
            _ => {}
        }
    }
}

/// A whole number in words: 1234 → one thousand two hundred thirty four.
pub(crate) fn number(n: i64, out: &mut Vec<String>) {
    if n == 0 {
        out.push("numbers/0.wav".into());
        return;
    }
    if n < 0 {
        out.push("numbers/minus.wav".into());
    }
    let mut n = n.unsigned_abs();
    let scales = [
        (1_000_000_000u64, "billion"),
        (1_000_000, "million"),
        (1_000, "thousand"),
    ];
    for (scale, word) in scales {
        if n >= scale {
            // Above a thousand billion the count itself is spoken in groups again.
            let count = n / scale;
            if count >= 1000 {
                number(i64::try_from(count).unwrap_or(i64::MAX), out);
            } else {
                below_thousand(count, out);
            }
            out.push(format!("numbers/{word}.wav"));
            n %= scale;
        }
    }
    if n > 0 {
        below_thousand(n, out);
    }
}

fn below_thousand(n: u64, out: &mut Vec<String>) {
    let (hundreds, rest) = (n / 100, n % 100);
    if hundreds > 0 {
        out.push(format!("numbers/{hundreds}.wav"));
        out.push("numbers/hundred.wav".into());
    }
    if rest >= 20 {
        out.push(format!("numbers/{}.wav", rest / 10 * 10));
        if rest % 10 > 0 {
            out.push(format!("numbers/{}.wav", rest % 10));
        }
    } else if rest > 0 {
        out.push(format!("numbers/{rest}.wav"));
    }
}

/// An amount of money, rounded to cents: 12.5 EUR → twelve euros and fifty cents.
pub(crate) fn amount(value: f64, currency: &str, out: &mut Vec<String>) {
    let cents_total = (value * 100.0).round();
    // Saturating float-to-int casts: an absurd balance is still spoken, just capped.
    let cents_total = cents_total as i64;
    let (whole, cents) = (cents_total / 100, (cents_total % 100).abs());
    if whole == 0 && cents_total < 0 {
        out.push("numbers/minus.wav".into());
    }
    number(whole, out);
    out.push(format!("currency/{currency}.wav"));
    if cents > 0 {
        out.push("numbers/and.wav".into());
        number(cents, out);
        out.push(format!("currency/{currency}-cents.wav"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(n: i64) -> Vec<String> {
        let mut out = Vec::new();
        number(n, &mut out);
        out.iter()
            .map(|f| {
                f.trim_start_matches("numbers/")
                    .trim_end_matches(".wav")
                    .to_owned()
            })
            .collect()
    }

    #[test]
    fn numbers_read_in_english_order() {
        assert_eq!(words(0), ["0"]);
        assert_eq!(words(7), ["7"]);
        assert_eq!(words(40), ["40"]);
        assert_eq!(words(42), ["40", "2"]);
        assert_eq!(words(115), ["1", "hundred", "15"]);
        assert_eq!(words(1234), ["1", "thousand", "2", "hundred", "30", "4"]);
        assert_eq!(words(-3_000_005), ["minus", "3", "million", "5"]);
        assert!(!words(i64::MIN).is_empty());
    }

    #[test]
    fn amounts_have_currency_and_cents() {
        let mut out = Vec::new();
        amount(12.5, "eur", &mut out);
        assert_eq!(
            out,
            [
                "numbers/12.wav",
                "currency/eur.wav",
                "numbers/and.wav",
                "numbers/50.wav",
                "currency/eur-cents.wav"
            ]
        );
        let mut out = Vec::new();
        amount(-0.25, "eur", &mut out);
        assert_eq!(out[0], "numbers/minus.wav");
    }

    #[test]
    fn every_spoken_file_is_in_the_declared_set() {
        let set = files_for("amount", "eur");
        for n in [0, 1, 19, 20, 99, 100, 999, 1001, 123_456_789, -5] {
            let mut out = Vec::new();
            amount(n as f64 + 0.99, "eur", &mut out);
            for f in out {
                assert!(set.contains(&f), "{f} missing");
            }
        }
        let mut out = Vec::new();
        digits("0123456789*#x", &mut out);
        assert_eq!(out.len(), 12);
        assert!(out.iter().all(|f| files_for("digits", "").contains(f)));
    }
}
