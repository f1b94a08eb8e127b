"""heygem.features: the Wav2Lip mel recipe against the original's golden output, and the per-frame windows."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO
from heygem.features import MelChunks, frame_count, mel_spectrogram
from heygem.media.audio import load_audio
from heygem.media.probe import probe

RATES = [Fraction(25), Fraction(30), Fraction(1350, 61)]


@pytest.fixture(scope="module")
def demo_mel(media: Path) -> np.ndarray:
    return mel_spectrogram(load_audio(media / "latentsync/demo1_audio.wav"))


def test_mel_matches_original_golden(demo_mel: np.ndarray, reference: Path) -> None:
    golden = np.load(reference / "golden_mel_demo1_audio.npy")
    assert demo_mel.dtype == np.float32
    assert demo_mel.shape == golden.shape == (80, 769)
    assert np.abs(demo_mel - golden).max() <= 1e-3


def test_mel_range_and_silence() -> None:
    silence = mel_spectrogram(np.zeros(16000, np.float32))
    assert silence.shape == (80, 81)  # 80 columns per second, centred frames
    assert np.all(silence == -4.0)  # silence is the bottom of the range: what short mels are padded with
    noise = mel_spectrogram(np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.1)
    assert noise.min() >= -4.0 and noise.max() <= 4.0


def test_mel_rejects_stereo() -> None:
    with pytest.raises(ValueError, match="mono"):
        mel_spectrogram(np.zeros((2, 1600), np.float32))


@pytest.mark.parametrize("fps", RATES)
def test_chunks_follow_original_indexing(demo_mel: np.ndarray, fps: Fraction) -> None:
    n = frame_count(153600, fps)  # 9.6 s at 16 kHz
    chunks = MelChunks(demo_mel, fps, n)
    assert len(chunks) == n
    last_full = None
    for i in range(n):
        start = int(i * 80 / fps)
        chunk = chunks[i]
        assert chunk.shape == (80, 16) and chunk.dtype == np.float32
        if start + 16 <= demo_mel.shape[1]:
            np.testing.assert_array_equal(chunk, demo_mel[:, start:start + 16])
            last_full = i
        else:
            # The original stops here; the rest of the frames reuse the final window so the audio is covered.
            np.testing.assert_array_equal(chunk, demo_mel[:, -16:])
    assert last_full is not None and last_full < n - 1  # the clamped tail was exercised
    np.testing.assert_array_equal(chunks[-1], chunks[n - 1])
    with pytest.raises(IndexError):
        chunks[n]


@pytest.mark.parametrize("fps", RATES)
def test_frame_count_covers_the_audio(media: Path, fps: Fraction) -> None:
    wav = load_audio(media / "latentsync/demo1_audio.wav")
    n = frame_count(len(wav), fps)
    assert abs(n / fps - probe(media / "latentsync/demo1_audio.wav").audio_duration) <= 1 / fps
    assert frame_count(1, fps) == 1  # even a click gets a frame


def test_frame_count_values() -> None:
    assert frame_count(16000 * 4, Fraction(25)) == 100
    assert frame_count(153600, Fraction(1350, 61)) == round(9.6 * 1350 / 61)
    assert frame_count(44100, Fraction(30000, 1001), sample_rate=44100) == 30


def test_batch_stacks_chunks(demo_mel: np.ndarray) -> None:
    chunks = MelChunks(demo_mel, Fraction(25), 240)
    batch = chunks.batch([0, 7, 239])
    assert batch.shape == (3, 80, 16) and batch.dtype == np.float32
    np.testing.assert_array_equal(batch[1], chunks[7])
    np.testing.assert_array_equal(chunks[0:4], chunks.batch(range(4)))
    assert chunks.batch([]).shape == (0, 80, 16)


def test_short_audio_padded_with_silence() -> None:
    mel = mel_spectrogram(np.random.default_rng(1).standard_normal(1600).astype(np.float32) * 0.1)  # 0.1 s
    assert mel.shape[1] < 16
    chunks = MelChunks(mel, Fraction(25), frame_count(1600, Fraction(25)))
    assert len(chunks) == 2
    first = chunks[0]
    assert first.shape == (80, 16)
    np.testing.assert_array_equal(first[:, :mel.shape[1]], mel)
    assert np.all(first[:, mel.shape[1]:] == -4.0)


def test_the_speech_cepstra_are_librosa_s_mfcc_without_loading_it(media: Path, tmp_path: Path) -> None:
    """The footage drive's spectral features: librosa.feature.mfcc's numbers, written out in NumPy, because its
    feature module loaded SciPy's signal and stats packages and Numba, about 4 s of every command-line job."""
    import subprocess
    import sys

    import librosa

    from heygem.media.audio import load_audio
    from heygem.speech.frames import _raw_cepstra

    for name, seconds in (("speechrecognition/english.wav", 3), ("long/french.mp4", 120)):
        speech = load_audio(media / name, 16000)[:16000 * seconds]  # 120 s: past one block of columns
        ours = _raw_cepstra(speech)
        theirs = librosa.feature.mfcc(y=speech, sr=16000, n_mfcc=13, n_fft=400, hop_length=160, n_mels=40,
                                      fmin=50.0, fmax=7600.0, center=True)[1:].T
        assert ours.shape == theirs.shape
        assert np.abs(ours - theirs).max() < 1e-3 * np.abs(theirs).max()  # float32 arithmetic on their side
    # A whole footage-drive job (its presenter's own speech studied, another voice chosen by) loads none of them.
    job = ("import sys; from heygem.pipeline import generate; from heygem.settings import EngineOptions, Settings; "
           "settings = Settings(engine=EngineOptions(engine='builtin')); settings.detection.cache_dir = None; "
           f"result = generate({str(media / 'speechrecognition/english.wav')!r}, "
           f"{str(media / 'videoretalking/2.mp4')!r}, {str(tmp_path / 'job.mp4')!r}, settings); "
           "print(result.engine); "
           "print(sorted(m for m in ('librosa', 'scipy.signal', 'scipy.stats', 'numba') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", job], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert "own mouths" in loaded.stdout and loaded.stdout.strip().endswith("[]"), loaded.stdout


@pytest.mark.parametrize("samples", [100, 400, 16000 * 3 + 37])
def test_the_spectrum_and_mel_filters_are_librosa_s(samples: int) -> None:
    # Written out in NumPy so a new process does not load librosa (and SciPy's signal package) for them.
    import librosa

    from heygem import features

    assert np.array_equal(features._mel_basis(), librosa.filters.mel(
        sr=16000, n_fft=800, n_mels=80, fmin=55.0, fmax=7600.0).astype(np.float64))
    wave = np.random.default_rng(samples).normal(0, 0.1, samples)
    if samples > 400:
        theirs = librosa.stft(y=wave, n_fft=800, hop_length=200, win_length=800, window="hann", center=False)
        ours = features._stft_magnitude(wave)
    else:  # the one-pass recipe for a few hundred samples, centred with reflected edges
        with pytest.warns(UserWarning):  # librosa: n_fft is too large for the input
            theirs = librosa.stft(y=wave, n_fft=800, hop_length=200, win_length=800, window="hann", center=True,
                                  pad_mode="reflect")
        ours = features._stft_magnitude(np.pad(wave, 400, mode="reflect"))
    assert ours.shape == theirs.shape and np.abs(ours - np.abs(theirs)).max() < 1e-9
