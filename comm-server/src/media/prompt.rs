//! Prompts: WAV files loaded once, shared by every call, played in sequences.
//!
//! Owns loading and converting audio to 8 kHz 16-bit mono, the [`PromptLibrary`] of
//! `sounds/`, the [`Playback`] cursor a session reads 20 ms frames from, and the
//! English number-to-prompt rules ("you are caller number" + "twenty" + "three").
//! Does not own timing: [`super::session`] asks for a frame when one is due.
//!
//! Samples live in `Arc<[i16]>`: a thousand callers hearing the welcome prompt share
//! one copy, and starting a playback never copies audio.
//!
//! ```text
//!   Playback: Playing(prompt i, offset) --end of last prompt--> Finished
//!             Looping(music, offset) --end--> offset 0 (never finishes)
//! ```

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use super::SAMPLE_RATE;

/// Why a prompt or prompt directory could not be used. Every variant names the file (or
/// prompt), so a bad `sounds/` directory is fixed from the startup log alone.
#[derive(Debug, Error)]
pub enum PromptError {
    #[error("{file}: {source}")]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: not a readable WAV file: {reason}")]
    Wav { file: PathBuf, reason: String },
    #[error("{file}: unsupported audio: {reason}")]
    Unsupported { file: PathBuf, reason: String },
    #[error("no prompt named {0:?} in the prompt library")]
    Missing(String),
}

/// Lowest and highest source rates we resample from; outside this a file is almost
/// certainly not speech meant for a phone call.
const MIN_SOURCE_RATE: u32 = 4_000;
const MAX_SOURCE_RATE: u32 = 192_000;

/// One prompt's audio: 8 kHz, 16-bit, mono, shared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    name: Arc<str>,
    samples: Arc<[i16]>,
}

impl Prompt {
    /// A prompt from samples already at 8 kHz (tones, tests, generated audio).
    pub fn from_samples(name: &str, samples: Vec<i16>) -> Self {
        Prompt {
            name: name.into(),
            samples: samples.into(),
        }
    }

    /// Loads a WAV file, converting it to 8 kHz 16-bit mono if needed.
    pub fn load(path: &Path, name: &str) -> Result<Self, PromptError> {
        let file = std::fs::File::open(path).map_err(|source| PromptError::Io {
            file: path.to_owned(),
            source,
        })?;
        Self::from_wav(std::io::BufReader::new(file), path, name)
    }

    /// Reads WAV data from `reader`; `file` is only used to name it in errors.
    pub fn from_wav<R: Read>(reader: R, file: &Path, name: &str) -> Result<Self, PromptError> {
        let wav_err = |e: hound::Error| PromptError::Wav {
            file: file.to_owned(),
            reason: e.to_string(),
        };
        let unsupported = |reason: String| PromptError::Unsupported {
            file: file.to_owned(),
            reason,
        };
        let mut reader = hound::WavReader::new(reader).map_err(wav_err)?;
        let spec = reader.spec();
        if spec.channels == 0 {
            return Err(unsupported("zero channels".into()));
        }
        if !(MIN_SOURCE_RATE..=MAX_SOURCE_RATE).contains(&spec.sample_rate) {
            return Err(unsupported(format!("sample rate {} Hz", spec.sample_rate)));
        }
        // Everything becomes 16-bit first: requantise integers by shifting, scale floats.
        let interleaved: Vec<i16> = match spec.sample_format {
            hound::SampleFormat::Int => {
                let bits = spec.bits_per_sample as i32;
                if !(8..=32).contains(&bits) {
                    return Err(unsupported(format!("{bits}-bit samples")));
                }
                reader
                    .samples::<i32>()
                    .map(|s| {
                        s.map(|v| {
                            if bits >= 16 {
                                (v >> (bits - 16)) as i16
                            } else {
                                (v << (16 - bits)) as i16
                            }
                        })
                    })
                    .collect::<Result<_, _>>()
                    .map_err(wav_err)?
            }
            hound::SampleFormat::Float => reader
                .samples::<f32>()
                .map(|s| s.map(|v| (v.clamp(-1.0, 1.0) * 32767.0) as i16))
                .collect::<Result<_, _>>()
                .map_err(wav_err)?,
        };
        let mono = downmix(&interleaved, spec.channels as usize);
        if mono.is_empty() {
            return Err(unsupported("no audio samples".into()));
        }
        let samples = resample(&mono, spec.sample_rate, SAMPLE_RATE);
        Ok(Prompt {
            name: name.into(),
            samples: samples.into(),
        })
    }

    /// The library name, e.g. `general/welcome`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The audio, 8 kHz 16-bit mono.
    pub fn samples(&self) -> &[i16] {
        &self.samples
    }

    /// Playing time.
    pub fn duration(&self) -> Duration {
        Duration::from_micros(self.samples.len() as u64 * 1_000_000 / SAMPLE_RATE as u64)
    }
}

/// Averages the channels of each frame: summing would clip, and picking one channel
/// would lose speech panned to the other.
fn downmix(interleaved: &[i16], channels: usize) -> Vec<i16> {
    if channels == 1 {
        return interleaved.to_vec();
    }
    interleaved
        .chunks_exact(channels)
        .map(|f| (f.iter().map(|&s| s as i32).sum::<i32>() / channels as i32) as i16)
        .collect()
}

/// Converts between rates. Downsampling averages each output sample's span of input
/// (a box filter: crude, but it keeps speech intelligible and kills most aliasing);
/// upsampling interpolates linearly. Prompts meant for phones should be produced at
/// 8 kHz (`sounds/generate.sh` does), so this is a convenience, not a studio tool.
fn resample(input: &[i16], from: u32, to: u32) -> Vec<i16> {
    if from == to {
        return input.to_vec();
    }
    let out_len = (input.len() as u64 * to as u64 / from as u64) as usize;
    let ratio = from as f64 / to as f64;
    (0..out_len)
        .map(|j| {
            // Indices are clamped rather than trusted: float rounding must not be
            // able to index past the input (callers guarantee it is not empty).
            let last = input.len() - 1;
            if from > to {
                let start = ((j as f64 * ratio) as usize).min(last);
                let end = (((j + 1) as f64 * ratio) as usize)
                    .max(start + 1)
                    .min(input.len());
                let span = &input[start..end];
                (span.iter().map(|&s| s as i64).sum::<i64>() / span.len() as i64) as i16
            } else {
                let pos = j as f64 * ratio;
                let i = (pos as usize).min(last);
                let frac = pos - i as f64;
                let a = input[i] as f64;
                let b = input[(i + 1).min(last)] as f64;
                (a + (b - a) * frac).round() as i16
            }
        })
        .collect()
}

/// Every prompt under a directory, loaded once at startup and shared by all calls.
/// Names are paths relative to the directory, `/`-separated, without `.wav`.
#[derive(Debug, Clone, Default)]
pub struct PromptLibrary {
    prompts: BTreeMap<String, Prompt>,
}

impl PromptLibrary {
    /// Loads every `*.wav` under `dir` (recursively). Any bad file fails the load,
    /// naming the file: a prompt set is checked at startup, not mid-call.
    pub fn load_dir(dir: &Path) -> Result<Self, PromptError> {
        let mut library = PromptLibrary::default();
        library.load_tree(dir, dir)?;
        Ok(library)
    }

    fn load_tree(&mut self, root: &Path, dir: &Path) -> Result<(), PromptError> {
        let io = |source| PromptError::Io {
            file: dir.to_owned(),
            source,
        };
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(io)?;
        // Sorted so load errors and names come out in a stable order.
        entries.sort();
        for path in entries {
            if path.is_dir() {
                self.load_tree(root, &path)?;
            } else if path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("wav"))
            {
                // The name scripts use: `general/welcome` for general/welcome.wav,
                // with `/` on every platform.
                let relative = path.strip_prefix(root).unwrap_or(&path).with_extension("");
                let name = relative
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                let prompt = Prompt::load(&path, &name)?;
                self.prompts.insert(name, prompt);
            }
        }
        Ok(())
    }

    /// Adds or replaces a prompt (generated tones, per-tenant recordings).
    pub fn insert(&mut self, prompt: Prompt) {
        self.prompts.insert(prompt.name().to_owned(), prompt);
    }

    /// A prompt by name; a missing name is an error the script engine reports at load.
    pub fn prompt(&self, name: &str) -> Result<Prompt, PromptError> {
        self.prompts
            .get(name)
            .cloned()
            .ok_or_else(|| PromptError::Missing(name.to_owned()))
    }

    /// Resolves a sequence of names, failing on the first missing one.
    pub fn sequence<S: AsRef<str>>(&self, names: &[S]) -> Result<Vec<Prompt>, PromptError> {
        names.iter().map(|n| self.prompt(n.as_ref())).collect()
    }

    /// All names, sorted (for validating scripts against the shipped set).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.prompts.keys().map(String::as_str)
    }

    /// Number of prompts.
    pub fn len(&self) -> usize {
        self.prompts.len()
    }

    /// True when the directory had no WAV files.
    pub fn is_empty(&self) -> bool {
        self.prompts.is_empty()
    }
}

/// A cursor over a prompt sequence (or a looping prompt) that fills frames.
#[derive(Debug, Clone)]
pub struct Playback {
    prompts: Vec<Prompt>,
    index: usize,
    offset: usize,
    looping: bool,
}

impl Playback {
    /// Plays the prompts back to back, once.
    pub fn sequence(prompts: Vec<Prompt>) -> Self {
        Playback {
            prompts,
            index: 0,
            offset: 0,
            looping: false,
        }
    }

    /// Plays one prompt (music on hold) over and over until stopped.
    pub fn looping(prompt: Prompt) -> Self {
        let empty = prompt.samples().is_empty();
        Playback {
            prompts: if empty { Vec::new() } else { vec![prompt] },
            index: 0,
            offset: 0,
            looping: true,
        }
    }

    /// True once a sequence has played to its end (never for a non-empty loop).
    pub fn is_finished(&self) -> bool {
        self.index >= self.prompts.len()
    }

    /// Fills `frame`; returns how many samples were audio. The rest is silence
    /// (only in the frame where the sequence ends).
    pub fn fill(&mut self, frame: &mut [i16]) -> usize {
        // A frame may span the end of one prompt and the start of the next, so
        // "caller number" + "three" plays without a gap. Empty prompts are skipped.
        let mut written = 0;
        while written < frame.len() && !self.is_finished() {
            let samples = self.prompts[self.index].samples();
            let n = (samples.len() - self.offset).min(frame.len() - written);
            frame[written..written + n].copy_from_slice(&samples[self.offset..self.offset + n]);
            written += n;
            self.offset += n;
            if self.offset == samples.len() {
                self.offset = 0;
                if !self.looping {
                    self.index += 1;
                }
            }
        }
        frame[written..].fill(0);
        written
    }
}

/// English number words as prompt names under `numbers/` (0-20, tens, hundred,
/// thousand): 342 = three hundred forty two.
pub fn number_prompts(n: u32) -> Vec<String> {
    let mut out = Vec::new();
    push_number(n, &mut out);
    out
}

/// American style, without "and": the shipped `numbers/` set has no "and" prompt
/// in numbers, and queue positions rarely pass a hundred.
fn push_number(n: u32, out: &mut Vec<String>) {
    match n {
        0..=20 => out.push(format!("numbers/{n}")),
        21..=99 => {
            out.push(format!("numbers/{}", n / 10 * 10));
            if !n.is_multiple_of(10) {
                out.push(format!("numbers/{}", n % 10));
            }
        }
        100..=999 => {
            out.push(format!("numbers/{}", n / 100));
            out.push("numbers/hundred".into());
            if !n.is_multiple_of(100) {
                push_number(n % 100, out);
            }
        }
        _ => {
            push_number(n / 1000, out);
            out.push("numbers/thousand".into());
            if !n.is_multiple_of(1000) {
                push_number(n % 1000, out);
            }
        }
    }
}

/// "You are caller number" + position (queue announcements).
pub fn caller_position_prompts(position: u32) -> Vec<String> {
    let mut out = vec!["general/you-are-caller-number".to_owned()];
    push_number(position, &mut out);
    out
}

/// "Your estimated wait is" + minutes (EWT, estimated wait time, announcements).
pub fn estimated_wait_prompts(minutes: u32) -> Vec<String> {
    let mut out = vec!["general/your-estimated-wait-is".to_owned()];
    match minutes {
        0 => out.push("general/less-than-one-minute".into()),
        1 => out.extend(["numbers/1".to_owned(), "general/minute".to_owned()]),
        n => {
            push_number(n, &mut out);
            out.push("general/minutes".into());
        }
    }
    out
}

/// Reads digits one by one ("one two three four"), e.g. an account number back.
/// Characters that are not digits are skipped.
pub fn digit_prompts(digits: &str) -> Vec<String> {
    digits
        .chars()
        .filter(char::is_ascii_digit)
        .map(|d| format!("digits/{d}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn wav(
        spec: hound::WavSpec,
        write: impl FnOnce(&mut hound::WavWriter<&mut Cursor<Vec<u8>>>),
    ) -> Vec<u8> {
        let mut cursor = Cursor::new(Vec::new());
        let mut w = hound::WavWriter::new(&mut cursor, spec).unwrap();
        write(&mut w);
        w.finalize().unwrap();
        cursor.into_inner()
    }

    fn spec(channels: u16, rate: u32, bits: u16, format: hound::SampleFormat) -> hound::WavSpec {
        hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: format,
        }
    }

    fn load(bytes: Vec<u8>) -> Result<Prompt, PromptError> {
        Prompt::from_wav(Cursor::new(bytes), Path::new("sounds/test.wav"), "test")
    }

    #[test]
    fn native_format_loads_as_is() {
        let samples: Vec<i16> = (0..800).map(|i| (i * 37 % 2000 - 1000) as i16).collect();
        let bytes = wav(spec(1, 8000, 16, hound::SampleFormat::Int), |w| {
            samples.iter().for_each(|&s| w.write_sample(s).unwrap())
        });
        let p = load(bytes).unwrap();
        assert_eq!(p.samples(), &samples[..]);
        assert_eq!(p.duration(), Duration::from_millis(100));
    }

    #[test]
    fn stereo_other_depths_and_rates_are_converted() {
        // Stereo 8 kHz: averaged.
        let bytes = wav(spec(2, 8000, 16, hound::SampleFormat::Int), |w| {
            for _ in 0..10 {
                w.write_sample(1000i16).unwrap();
                w.write_sample(3000i16).unwrap();
            }
        });
        assert_eq!(load(bytes).unwrap().samples(), &[2000i16; 10]);
        // 8-bit and 24-bit: requantised to 16 bits.
        let bytes = wav(spec(1, 8000, 8, hound::SampleFormat::Int), |w| {
            w.write_sample(64i8).unwrap()
        });
        assert_eq!(load(bytes).unwrap().samples(), &[64 << 8]);
        let bytes = wav(spec(1, 8000, 24, hound::SampleFormat::Int), |w| {
            w.write_sample(-(1i32 << 20)).unwrap()
        });
        assert_eq!(load(bytes).unwrap().samples(), &[-(1i16 << 12)]);
        // Float.
        let bytes = wav(spec(1, 8000, 32, hound::SampleFormat::Float), |w| {
            w.write_sample(0.5f32).unwrap()
        });
        assert_eq!(load(bytes).unwrap().samples(), &[16383]);
        // 16 kHz: half as many samples, a 400 Hz tone keeps its frequency.
        let tone: Vec<i16> = (0..16000)
            .map(|i| {
                (8000.0 * (2.0 * std::f64::consts::PI * 400.0 * i as f64 / 16000.0).sin()) as i16
            })
            .collect();
        let bytes = wav(spec(1, 16000, 16, hound::SampleFormat::Int), |w| {
            tone.iter().for_each(|&s| w.write_sample(s).unwrap())
        });
        let p = load(bytes).unwrap();
        assert_eq!(p.samples().len(), 8000);
        let crossings = p
            .samples()
            .windows(2)
            .filter(|w| w[0] < 0 && w[1] >= 0)
            .count();
        assert!((399..=401).contains(&crossings), "{crossings}");
        // 4 kHz up to 8 kHz.
        let bytes = wav(spec(1, 4000, 16, hound::SampleFormat::Int), |w| {
            (0..400).for_each(|_| w.write_sample(100i16).unwrap())
        });
        assert_eq!(load(bytes).unwrap().samples().len(), 800);
    }

    #[test]
    fn bad_files_are_rejected_naming_the_file() {
        let e = load(b"RIFF....WAVEjunk".to_vec()).unwrap_err();
        assert!(e.to_string().starts_with("sounds/test.wav: "), "{e}");
        let bytes = wav(spec(1, 1000, 16, hound::SampleFormat::Int), |w| {
            w.write_sample(0i16).unwrap()
        });
        let e = load(bytes).unwrap_err();
        assert!(
            matches!(e, PromptError::Unsupported { .. })
                && e.to_string().contains("sounds/test.wav"),
            "{e}"
        );
        let empty = wav(spec(1, 8000, 16, hound::SampleFormat::Int), |_| {});
        assert!(matches!(load(empty), Err(PromptError::Unsupported { .. })));
        let e = Prompt::load(Path::new("/nonexistent/x.wav"), "x").unwrap_err();
        assert!(e.to_string().contains("/nonexistent/x.wav"));
    }

    #[test]
    fn sequences_play_back_to_back_and_music_loops() {
        let a = Prompt::from_samples("a", vec![1; 100]);
        let b = Prompt::from_samples("b", vec![2; 100]);
        let mut p = Playback::sequence(vec![a.clone(), b]);
        let mut frame = [0i16; 160];
        assert_eq!(p.fill(&mut frame), 160);
        assert_eq!(
            (&frame[..100], &frame[100..]),
            (&[1; 100][..], &[2; 60][..])
        );
        assert_eq!(p.fill(&mut frame), 40);
        assert_eq!(&frame[40..], &[0; 120][..]);
        assert!(p.is_finished());
        assert_eq!(p.fill(&mut frame), 0);

        let mut music = Playback::looping(a);
        for _ in 0..10 {
            assert_eq!(music.fill(&mut frame), 160);
        }
        assert!(!music.is_finished());
        // An empty loop ends at once instead of spinning.
        assert!(Playback::looping(Prompt::from_samples("e", vec![])).is_finished());
    }

    #[test]
    fn english_numbers() {
        let n = |x| {
            number_prompts(x)
                .iter()
                .map(|s| s.trim_start_matches("numbers/").to_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(n(0), "0");
        assert_eq!(n(13), "13");
        assert_eq!(n(40), "40");
        assert_eq!(n(42), "40 2");
        assert_eq!(n(100), "1 hundred");
        assert_eq!(n(342), "3 hundred 40 2");
        assert_eq!(n(2005), "2 thousand 5");
        assert_eq!(
            estimated_wait_prompts(0),
            vec![
                "general/your-estimated-wait-is",
                "general/less-than-one-minute"
            ]
        );
        assert_eq!(estimated_wait_prompts(1)[2], "general/minute");
        assert_eq!(
            caller_position_prompts(3),
            vec!["general/you-are-caller-number", "numbers/3"]
        );
        assert_eq!(
            digit_prompts("4-12"),
            vec!["digits/4", "digits/1", "digits/2"]
        );
    }

    /// Every shipped prompt loads, and every name the number
    /// helpers can produce exists (STYLE.md habit 6: load every shipped file).
    #[test]
    fn shipped_sounds_load_and_cover_the_helpers() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sounds");
        let library = PromptLibrary::load_dir(&dir).unwrap();
        assert!(library.len() > 80, "{}", library.len());
        for n in (0..=1000).chain([1999, 25_000]) {
            library.sequence(&caller_position_prompts(n)).unwrap();
            library.sequence(&estimated_wait_prompts(n)).unwrap();
        }
        library.sequence(&digit_prompts("0123456789")).unwrap();
        let music = library.prompt("music/hold").unwrap();
        assert_eq!(music.duration(), Duration::from_secs(20));
        for name in [
            "general/welcome",
            "voicemail/beep",
            "bank/your-balance-is",
            "utility/outage-reported",
            "general/goodbye",
        ] {
            assert!(
                !library.prompt(name).unwrap().samples().is_empty(),
                "{name}"
            );
        }
        assert!(matches!(
            library.prompt("nope"),
            Err(PromptError::Missing(_))
        ));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Any rate in range and any length: no panic, the expected length.
            #[test]
            fn resampling_never_panics(len in 1usize..3000, from in MIN_SOURCE_RATE..=MAX_SOURCE_RATE) {
                let input: Vec<i16> = (0..len).map(|i| (i as i16).wrapping_mul(31)).collect();
                let out = resample(&input, from, SAMPLE_RATE);
                prop_assert_eq!(out.len() as u64, len as u64 * 8000 / from as u64);
            }

            /// A prompt file is operator input: garbage is an error naming it, not a panic.
            #[test]
            fn arbitrary_files_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
                let mut riff = b"RIFF\x24\x00\x00\x00WAVEfmt ".to_vec();
                riff.extend(&bytes);
                let _ = load(riff);
                let _ = load(bytes);
            }
        }
    }
}
