//! Answering-machine detection from the first seconds of audio after answer: an
//! energy/silence heuristic fed 20 ms frames of 8 kHz linear PCM.
//!
//! People answer with a short greeting ("Hello?") and then wait; machines talk on
//! ("Hi, you've reached ..., please leave a message after the tone"). So:
//!
//! - a greeting followed by `after_greeting` of silence, having lasted less than
//!   `max_greeting` and held fewer than `max_words` words → **human**;
//! - a greeting longer than `max_greeting`, or `max_words` words before a pause →
//!   **machine**;
//! - nothing decided within `max_analysis`, or silence for `initial_silence` from the
//!   start → **unsure** (treated as a person by the campaign: hanging up on a person is
//!   worse than connecting a machine).
//!
//! Speech is told from silence by frame energy against a threshold that follows the
//! line's noise floor. Accuracy on generated samples is measured in the tests below.

use std::time::Duration;

/// Samples per 20 ms frame at 8 kHz.
pub const FRAME: usize = 160;

/// The detector's tuning.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AmdParams {
    /// Silence from the start longer than this: unsure.
    pub initial_silence: Duration,
    /// A greeting longer than this: machine.
    pub max_greeting: Duration,
    /// Silence after speech that ends the greeting.
    pub after_greeting: Duration,
    /// A voiced run at least this long is a word.
    pub min_word: Duration,
    /// This many words before the greeting ends: machine.
    pub max_words: u32,
    /// Give up (unsure) after this much audio.
    pub max_analysis: Duration,
    /// Speech is this many times louder (in energy) than the noise floor.
    pub speech_over_noise: f64,
}

impl Default for AmdParams {
    fn default() -> Self {
        AmdParams {
            initial_silence: Duration::from_millis(2500),
            max_greeting: Duration::from_millis(1500),
            after_greeting: Duration::from_millis(800),
            min_word: Duration::from_millis(100),
            max_words: 4,
            max_analysis: Duration::from_millis(5000),
            speech_over_noise: 8.0,
        }
    }
}

/// What answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A person.
    Human,
    /// An answering machine or voicemail.
    Machine,
    /// Could not tell in time.
    Unsure,
}

/// The detector for one answered call.
#[derive(Debug, Clone)]
pub struct Detector {
    params: AmdParams,
    /// Audio seen so far, in frames.
    frames: u32,
    /// The line's noise floor (mean square of a sample): set by the first frame, then
    /// it falls at once to any quieter frame and rises slowly with silent ones.
    noise: Option<f64>,
    /// Frames since the greeting's first voiced frame (None before speech).
    greeting_frames: Option<u32>,
    /// Consecutive voiced / silent frames.
    voiced_run: u32,
    silent_run: u32,
    words: u32,
    verdict: Option<Verdict>,
}

/// The quietest noise floor assumed (mean square of a sample, i16 scale): about
/// -60 dBFS, so digital silence does not make every click speech.
const NOISE_FLOOR_MIN: f64 = 1100.0;

fn frames(d: Duration) -> u32 {
    (d.as_millis() / 20) as u32
}

impl Detector {
    /// A detector with these parameters.
    pub fn new(params: AmdParams) -> Detector {
        Detector {
            params,
            frames: 0,
            noise: None,
            greeting_frames: None,
            voiced_run: 0,
            silent_run: 0,
            words: 0,
            verdict: None,
        }
    }

    /// The verdict, once there is one.
    pub fn verdict(&self) -> Option<Verdict> {
        self.verdict
    }

    /// Feeds one 20 ms frame; returns the verdict when it is reached (once).
    pub fn push(&mut self, frame: &[i16]) -> Option<Verdict> {
        if self.verdict.is_some() || frame.is_empty() {
            return None;
        }
        let energy = frame
            .iter()
            .map(|&s| f64::from(s) * f64::from(s))
            .sum::<f64>()
            / frame.len() as f64;
        let noise = *self.noise.get_or_insert(energy.max(NOISE_FLOOR_MIN));
        let voiced = energy > noise * self.params.speech_over_noise;
        self.noise = Some(if energy < noise {
            energy.max(NOISE_FLOOR_MIN)
        } else if voiced {
            noise
        } else {
            noise * 0.95 + energy * 0.05
        });
        self.frames += 1;
        if voiced {
            if self.voiced_run + 1 == frames(self.params.min_word) {
                self.words += 1;
            }
            self.voiced_run += 1;
            self.silent_run = 0;
            self.greeting_frames.get_or_insert(0);
        } else {
            self.voiced_run = 0;
            self.silent_run += 1;
        }
        if let Some(g) = self.greeting_frames.as_mut() {
            *g += 1;
        }
        self.verdict = self.decide();
        self.verdict
    }

    fn decide(&self) -> Option<Verdict> {
        let p = &self.params;
        match self.greeting_frames {
            None if self.frames >= frames(p.initial_silence) => return Some(Verdict::Unsure),
            None => {}
            Some(g) => {
                if self.words >= p.max_words {
                    return Some(Verdict::Machine);
                }
                let speaking = g.saturating_sub(self.silent_run);
                if speaking > frames(p.max_greeting) {
                    return Some(Verdict::Machine);
                }
                if self.silent_run >= frames(p.after_greeting) && self.words > 0 {
                    return Some(Verdict::Human);
                }
            }
        }
        if self.frames >= frames(p.max_analysis) {
            return Some(Verdict::Unsure);
        }
        None
    }
}

/// Runs a detector over a whole recording (any length; the tail is ignored).
pub fn classify(params: AmdParams, samples: &[i16]) -> Verdict {
    let mut d = Detector::new(params);
    for frame in samples.chunks(FRAME) {
        if let Some(v) = d.push(frame) {
            return v;
        }
    }
    d.verdict().unwrap_or(Verdict::Unsure)
}

/// Synthetic answers for measuring the detector: speech-like bursts (noise shaped by
/// a syllable envelope) over line noise. Deterministic for a seed.
pub mod samples {
    use crate::acd::Rng;

    fn ms(rng: &mut Rng, lo: u64, hi: u64) -> usize {
        ((lo + rng.below(hi - lo + 1)) * 8) as usize
    }

    fn silence(out: &mut Vec<i16>, rng: &mut Rng, n: usize, noise: f64) {
        for _ in 0..n {
            out.push(((rng.unit() - 0.5) * 2.0 * noise) as i16);
        }
    }

    fn burst(out: &mut Vec<i16>, rng: &mut Rng, n: usize, level: f64, noise: f64) {
        // Voiced sound: a few harmonics of a wandering pitch under a syllable envelope.
        let pitch = 90.0 + rng.unit() * 160.0;
        for i in 0..n {
            let t = i as f64 / 8000.0;
            let env = (std::f64::consts::PI * i as f64 / n as f64).sin().powf(0.6);
            let voice = (0..4)
                .map(|h| {
                    let f = pitch * f64::from(h + 1);
                    (2.0 * std::f64::consts::PI * f * t).sin() / f64::from(h + 1)
                })
                .sum::<f64>();
            let s = level * env * (0.8 * voice + 0.2 * (rng.unit() - 0.5));
            out.push((s + (rng.unit() - 0.5) * 2.0 * noise).clamp(-32768.0, 32767.0) as i16);
        }
    }

    /// A person: a moment of silence, "Hello?" (one or two short words), then waiting
    /// in silence for three seconds.
    pub fn human(seed: u64) -> Vec<i16> {
        let mut rng = Rng::new(seed);
        let noise = 30.0 + rng.unit() * 150.0;
        let level = 2000.0 + rng.unit() * 8000.0;
        let mut out = Vec::new();
        let n = ms(&mut rng, 150, 1200);
        silence(&mut out, &mut rng, n, noise);
        let words = 1 + rng.below(2);
        for w in 0..words {
            if w > 0 {
                let n = ms(&mut rng, 60, 250);
                silence(&mut out, &mut rng, n, noise);
            }
            let n = ms(&mut rng, 200, 550);
            burst(&mut out, &mut rng, n, level, noise);
        }
        silence(&mut out, &mut rng, 3 * 8000, noise);
        out
    }

    /// A machine: a short silence, then a long greeting of many words with short
    /// pauses between them.
    pub fn machine(seed: u64) -> Vec<i16> {
        let mut rng = Rng::new(seed ^ 0x5EED);
        let noise = 30.0 + rng.unit() * 150.0;
        let level = 2000.0 + rng.unit() * 8000.0;
        let mut out = Vec::new();
        let n = ms(&mut rng, 100, 900);
        silence(&mut out, &mut rng, n, noise);
        let end = out.len() + ms(&mut rng, 2500, 8000);
        while out.len() < end {
            let n = ms(&mut rng, 150, 500);
            burst(&mut out, &mut rng, n, level, noise);
            let n = ms(&mut rng, 40, 300);
            silence(&mut out, &mut rng, n, noise);
        }
        silence(&mut out, &mut rng, 8000, noise);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_is_unsure_and_a_hello_is_human() {
        let p = AmdParams::default();
        assert_eq!(classify(p, &vec![0; 8000 * 4]), Verdict::Unsure);
        assert_eq!(classify(p, &samples::human(1)), Verdict::Human);
        assert_eq!(classify(p, &samples::machine(1)), Verdict::Machine);
    }

    #[test]
    fn a_verdict_is_given_once() {
        let mut d = Detector::new(AmdParams::default());
        let audio = samples::machine(7);
        let verdicts: Vec<_> = audio.chunks(FRAME).filter_map(|f| d.push(f)).collect();
        assert_eq!(verdicts, vec![Verdict::Machine]);
    }

    /// Accuracy on 500 generated people and 500 generated machines. The figure is a
    /// property of the heuristic on this material (reported in the campaign notes),
    /// not a speed target; the bar below is what the heuristic must keep.
    #[test]
    fn accuracy_on_generated_samples() {
        let p = AmdParams::default();
        let n = 500u64;
        let mut human_ok = 0;
        let mut machine_ok = 0;
        let mut humans_called_machines = 0;
        for seed in 0..n {
            match classify(p, &samples::human(seed)) {
                Verdict::Human | Verdict::Unsure => human_ok += 1,
                Verdict::Machine => humans_called_machines += 1,
            }
            if classify(p, &samples::machine(seed)) == Verdict::Machine {
                machine_ok += 1;
            }
        }
        let human = f64::from(human_ok) / n as f64;
        let machine = f64::from(machine_ok) / n as f64;
        println!(
            "AMD on generated samples: people kept {:.1}%, machines detected {:.1}%, people cut off {}",
            human * 100.0,
            machine * 100.0,
            humans_called_machines
        );
        assert!(human >= 0.97, "people treated as people: {human}");
        assert!(machine >= 0.90, "machines detected: {machine}");
    }

    fn wav(path: &std::path::Path) -> Vec<i16> {
        let mut r = hound::WavReader::open(path).unwrap();
        r.samples::<i16>().map(|s| s.unwrap()).collect()
    }

    /// Real synthetic speech from `sounds/` (espeak-ng): people say one or two short
    /// words (digits) and wait; machines play a prompt longer than three seconds.
    #[test]
    fn accuracy_on_recorded_speech() {
        let sounds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sounds");
        let p = AmdParams::default();
        let words: Vec<Vec<i16>> = (0..10)
            .map(|d| wav(&sounds.join(format!("digits/{d}.wav"))))
            .collect();
        let (mut people, mut people_ok) = (0, 0);
        for (i, a) in words.iter().enumerate() {
            for (j, b) in words.iter().enumerate() {
                let mut audio = vec![0i16; 8 * (200 + 70 * i)];
                audio.extend_from_slice(a);
                if j % 2 == 0 {
                    audio.extend(std::iter::repeat_n(0, 8 * 120));
                    audio.extend_from_slice(b);
                }
                audio.extend(std::iter::repeat_n(0, 8000 * 3));
                people += 1;
                if classify(p, &audio) != Verdict::Machine {
                    people_ok += 1;
                }
            }
        }
        let (mut machines, mut machines_ok) = (0, 0);
        for dir in ["bank", "general", "utility", "voicemail"] {
            for entry in std::fs::read_dir(sounds.join(dir)).unwrap() {
                let audio = wav(&entry.unwrap().path());
                if audio.len() < 8000 * 3 {
                    continue;
                }
                let mut with_lead = vec![0i16; 8 * 300];
                with_lead.extend_from_slice(&audio);
                machines += 1;
                if classify(p, &with_lead) == Verdict::Machine {
                    machines_ok += 1;
                }
            }
        }
        println!(
            "AMD on recorded speech: people kept {people_ok}/{people}, machines detected {machines_ok}/{machines}"
        );
        assert!(machines >= 20, "enough long prompts to measure on");
        assert!(
            f64::from(people_ok) / f64::from(people) >= 0.97,
            "people kept {people_ok}/{people}"
        );
        assert!(
            f64::from(machines_ok) / f64::from(machines) >= 0.90,
            "machines detected {machines_ok}/{machines}"
        );
    }
}
