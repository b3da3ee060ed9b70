//! Call recording: mixing one or both directions, and the WAV file writer.
//!
//! [`Mixer`] is pure: it places audio on the session's timeline by sample position,
//! so loss leaves silence and reordering (already undone by the jitter buffer) cannot
//! shift audio. [`RecordingWriter`] is the only file I/O in the media engine: it
//! writes to `<name>.part` and renames into place on [`RecordingWriter::finish`], so
//! a voicemail or call recording is either complete or absent, never truncated.
//!
//! ```text
//!   create() --> Writing(<name>.part) --finish()--> renamed to <name> (complete)
//!                        |
//!                        +--abort() / drop--> .part removed
//! ```

use std::collections::VecDeque;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::SAMPLE_RATE;

/// Which directions a recording holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordSides {
    /// What the remote party says (voicemail messages).
    Received,
    /// Both directions mixed (call recording for quality assurance).
    Both,
}

/// A direction of audio on a leg, as seen from the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Received,
    Sent,
}

/// How far ahead of the released position audio may be placed: 10 s. A packet with
/// a wild timestamp must not make us allocate minutes of silence.
pub const MAX_AHEAD_SAMPLES: u64 = 10 * SAMPLE_RATE as u64;

/// Mixes audio placed at absolute sample positions into one mono stream.
#[derive(Debug, Clone)]
pub struct Mixer {
    sides: RecordSides,
    /// Position of `pending[0]`; everything before it has been released.
    released: u64,
    pending: VecDeque<i32>,
}

impl Mixer {
    /// A mixer whose timeline starts at `start_position` (the session's sample clock).
    pub fn new(start_position: u64, sides: RecordSides) -> Self {
        Mixer {
            sides,
            released: start_position,
            pending: VecDeque::new(),
        }
    }

    /// Adds `samples` starting at `position`. Audio for already released positions or
    /// too far ahead is dropped; the sent direction is ignored for `Received` recordings.
    pub fn add(&mut self, side: Side, position: u64, samples: &[i16]) {
        if side == Side::Sent && self.sides == RecordSides::Received {
            return;
        }
        let skip = self.released.saturating_sub(position) as usize;
        let Some(samples) = samples.get(skip..) else {
            return;
        };
        let start = (position + skip as u64 - self.released) as usize;
        let end = start + samples.len();
        if end as u64 > MAX_AHEAD_SAMPLES {
            return;
        }
        if self.pending.len() < end {
            self.pending.resize(end, 0);
        }
        for (slot, &s) in self.pending.range_mut(start..end).zip(samples) {
            *slot += s as i32;
        }
    }

    /// Releases every position before `upto`, clipped to 16 bits, into `out`.
    pub fn release(&mut self, upto: u64, out: &mut Vec<i16>) {
        let n = upto.saturating_sub(self.released) as usize;
        let available = n.min(self.pending.len());
        out.extend(
            self.pending
                .drain(..available)
                .map(|s| s.clamp(i16::MIN as i32, i16::MAX as i32) as i16),
        );
        // Positions nobody wrote to are silence.
        out.extend(std::iter::repeat_n(0, n - available));
        self.released += n as u64;
    }

    /// Position up to which audio has been released.
    pub fn released(&self) -> u64 {
        self.released
    }

    /// Position just past the last audio placed so far.
    pub fn placed_end(&self) -> u64 {
        self.released + self.pending.len() as u64
    }
}

/// File errors while recording, naming the file. The call goes on; the CDR notes that
/// the recording failed.
#[derive(Debug, Error)]
pub enum RecordingError {
    #[error("{file}: {source}")]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: {source}")]
    Wav { file: PathBuf, source: hound::Error },
}

/// Writes an 8 kHz 16-bit mono WAV to a temporary name, renamed when complete.
pub struct RecordingWriter {
    target: PathBuf,
    temporary: PathBuf,
    writer: Option<hound::WavWriter<BufWriter<File>>>,
    samples: u64,
}

impl std::fmt::Debug for RecordingWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingWriter")
            .field("target", &self.target)
            .field("samples", &self.samples)
            .finish()
    }
}

impl RecordingWriter {
    /// Starts `<target>.part` next to `target` (same directory, so the final rename is
    /// atomic on one file system).
    pub fn create(target: &Path) -> Result<Self, RecordingError> {
        let mut temporary = target.as_os_str().to_owned();
        temporary.push(".part");
        let temporary = PathBuf::from(temporary);
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: SAMPLE_RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer =
            hound::WavWriter::create(&temporary, spec).map_err(|source| RecordingError::Wav {
                file: temporary.clone(),
                source,
            })?;
        Ok(RecordingWriter {
            target: target.to_owned(),
            temporary,
            writer: Some(writer),
            samples: 0,
        })
    }

    /// Appends samples to the temporary file.
    pub fn write(&mut self, samples: &[i16]) -> Result<(), RecordingError> {
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        for &s in samples {
            writer
                .write_sample(s)
                .map_err(|source| RecordingError::Wav {
                    file: self.temporary.clone(),
                    source,
                })?;
        }
        self.samples += samples.len() as u64;
        Ok(())
    }

    /// Samples written so far.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Completes the file and moves it into place.
    pub fn finish(mut self) -> Result<PathBuf, RecordingError> {
        if let Some(writer) = self.writer.take() {
            writer.finalize().map_err(|source| RecordingError::Wav {
                file: self.temporary.clone(),
                source,
            })?;
        }
        std::fs::rename(&self.temporary, &self.target).map_err(|source| RecordingError::Io {
            file: self.target.clone(),
            source,
        })?;
        Ok(self.target.clone())
    }

    /// Throws the partial recording away.
    pub fn abort(mut self) {
        self.discard();
    }

    fn discard(&mut self) {
        if self.writer.take().is_some() {
            // Best effort: the file may already be gone; nothing else to do about it.
            let _ = std::fs::remove_file(&self.temporary);
        }
    }
}

impl Drop for RecordingWriter {
    fn drop(&mut self) {
        self.discard();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixes_both_directions_by_position() {
        let mut m = Mixer::new(1000, RecordSides::Both);
        m.add(Side::Received, 1000, &[100; 4]);
        m.add(Side::Sent, 1002, &[10; 4]);
        let mut out = Vec::new();
        m.release(1008, &mut out);
        assert_eq!(out, vec![100, 100, 110, 110, 10, 10, 0, 0]);
        // Late audio for released positions is dropped, the rest still placed.
        m.add(Side::Received, 1006, &[5; 4]);
        m.release(1010, &mut out);
        assert_eq!(&out[8..], &[5, 5]);
    }

    #[test]
    fn received_only_ignores_sent_and_clips() {
        let mut m = Mixer::new(0, RecordSides::Received);
        m.add(Side::Sent, 0, &[1; 4]);
        m.add(Side::Received, 0, &[i16::MAX; 2]);
        m.add(Side::Received, 0, &[i16::MAX; 2]);
        let mut out = Vec::new();
        m.release(4, &mut out);
        assert_eq!(out, vec![i16::MAX, i16::MAX, 0, 0]);
        // A wild position (garbage timestamp) allocates nothing.
        m.add(Side::Received, 1 << 40, &[1; 4]);
        assert!(m.pending.is_empty());
    }

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("media-recording-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("message.wav")
    }

    #[test]
    fn writer_renames_only_when_complete() {
        let target = scratch("finish");
        let mut w = RecordingWriter::create(&target).unwrap();
        w.write(&[1, 2, 3]).unwrap();
        assert!(!target.exists());
        assert!(target.with_extension("wav.part").exists());
        assert_eq!(w.finish().unwrap(), target);
        assert!(!target.with_extension("wav.part").exists());
        let mut r = hound::WavReader::open(&target).unwrap();
        assert_eq!(r.spec().sample_rate, 8000);
        assert_eq!(
            r.samples::<i16>().map(Result::unwrap).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        std::fs::remove_dir_all(target.parent().unwrap()).unwrap();
    }

    #[test]
    fn writer_abort_and_drop_leave_nothing() {
        let target = scratch("abort");
        let w = RecordingWriter::create(&target).unwrap();
        w.abort();
        {
            let mut w = RecordingWriter::create(&target).unwrap();
            w.write(&[1]).unwrap();
        }
        assert_eq!(
            std::fs::read_dir(target.parent().unwrap()).unwrap().count(),
            0
        );
        std::fs::remove_dir_all(target.parent().unwrap()).unwrap();
        assert!(RecordingWriter::create(Path::new("/nonexistent/dir/x.wav")).is_err());
    }
}
