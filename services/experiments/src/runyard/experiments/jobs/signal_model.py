"""A simple, documented model of pump vibration, and the features the service stores per signal.

A healthy pump's accelerometer sees the shaft's rotation: harmonics of the shaft frequency
``f`` plus broadband noise::

    x(t) = 1.0·sin(2π·1f·t + φ1) + 0.3·sin(2π·2f·t + φ2) + 0.1·sin(2π·3f·t + φ3) + n(t)

with random phases ``φk`` and Gaussian noise ``n ~ N(0, noise_std²)``. A fault class adds its
signature, scaled by the severity ``s`` (mild 1, moderate 2, severe 3):

- ``imbalance``: a rotating heavy spot — the 1x amplitude grows by ``1.5·s`` (1x dominates).
- ``misalignment``: shaft bending at the coupling — 2x grows by ``1.2·s`` and 3x by ``0.4·s``
  (2x dominates).
- ``bearing_defect``: an outer-race spall — every ``1/BPFO`` seconds (``BPFO = 3.58·f``, a
  typical 9-ball bearing) an impact rings the housing's resonance (3 kHz, damping 500/s) with
  amplitude ``2·s``: short bursts that raise the kurtosis well above a sine's 1.5.
- ``cavitation``: collapsing vapour bubbles — band-limited noise (1.5-4.5 kHz) with standard
  deviation ``0.4·s``, amplitude-modulated at random (bursty), on top of a healthy spectrum.
- ``normal``: the healthy signal alone (severity ``none``).

Signal ``i`` of a job is drawn from ``numpy.random.default_rng([seed, i])``: a resumed job
regenerates exactly the signals it would have written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FAULT_CLASSES = ("normal", "imbalance", "misalignment", "bearing_defect", "cavitation")
SEVERITIES = {"mild": 1.0, "moderate": 2.0, "severe": 3.0}
HEALTHY_HARMONICS = (1.0, 0.3, 0.1)
BPFO_RATIO = 3.58
BEARING_RESONANCE_HZ = 3000.0
BEARING_DAMPING = 500.0
CAVITATION_BAND_HZ = (1500.0, 4500.0)

Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Spec:
    """One signal to generate."""

    index: int
    fault_class: str
    severity: str


def plan(
    fault_classes: Sequence[str], severities: Sequence[str], per_combination: int
) -> list[Spec]:
    """Every signal of a job in order: per class, per severity (``normal`` once, as ``none``)."""
    specs: list[Spec] = []
    for fault in fault_classes:
        levels = ["none"] if fault == "normal" else severities
        for level in levels:
            for _ in range(per_combination):
                specs.append(Spec(len(specs), fault, level))
    return specs


def generate(
    spec: Spec,
    *,
    seed: int,
    sample_rate_hz: float,
    duration_s: float,
    shaft_frequency_hz: float,
    noise_std: float,
) -> Array:
    rng = np.random.default_rng([seed, spec.index])
    n = round(sample_rate_hz * duration_s)
    t = np.arange(n) / sample_rate_hz
    amplitudes = list(HEALTHY_HARMONICS)
    s = SEVERITIES.get(spec.severity, 0.0)
    if spec.fault_class == "imbalance":
        amplitudes[0] += 1.5 * s
    elif spec.fault_class == "misalignment":
        amplitudes[1] += 1.2 * s
        amplitudes[2] += 0.4 * s
    phases = rng.uniform(0, 2 * np.pi, size=len(amplitudes))
    x = np.zeros(n)
    for k, (amplitude, phase) in enumerate(zip(amplitudes, phases, strict=True), start=1):
        x += amplitude * np.sin(2 * np.pi * k * shaft_frequency_hz * t + phase)
    x += rng.normal(0.0, noise_std, size=n)
    if spec.fault_class == "bearing_defect":
        x += bearing_impacts(t, rng, shaft_frequency_hz, amplitude=2.0 * s)
    elif spec.fault_class == "cavitation":
        x += cavitation_noise(n, sample_rate_hz, rng, std=0.4 * s)
    return x


def bearing_impacts(
    t: Array, rng: np.random.Generator, shaft_frequency_hz: float, *, amplitude: float
) -> Array:
    period = 1.0 / (BPFO_RATIO * shaft_frequency_hz)
    since_impact = (t + rng.uniform(0, period)) % period
    ring = np.exp(-BEARING_DAMPING * since_impact) * np.sin(
        2 * np.pi * BEARING_RESONANCE_HZ * since_impact
    )
    return np.asarray(amplitude * ring, dtype=np.float64)


def cavitation_noise(
    n: int, sample_rate_hz: float, rng: np.random.Generator, *, std: float
) -> Array:
    spectrum = np.fft.rfft(rng.normal(0.0, 1.0, size=n))
    freqs = np.fft.rfftfreq(n, d=1.0 / sample_rate_hz)
    low, high = CAVITATION_BAND_HZ
    spectrum[(freqs < low) | (freqs > high)] = 0
    band = np.fft.irfft(spectrum, n=n)
    band *= std / (band.std() or 1.0)
    bursts = np.repeat(rng.uniform(0.2, 1.8, size=n // 256 + 1), 256)[:n]
    return np.asarray(band * bursts, dtype=np.float64)


@dataclass(frozen=True)
class Features:
    rms: float
    kurtosis: float
    dominant_frequency: float


def features(x: npt.NDArray[Any], sample_rate_hz: float) -> Features:
    """RMS; kurtosis (Pearson's, not excess: a Gaussian has 3, a sine 1.5); the frequency of
    the largest FFT magnitude except DC."""
    x = np.asarray(x, dtype=np.float64)
    rms = float(np.sqrt(np.mean(x**2)))
    centred = x - x.mean()
    variance = float(np.mean(centred**2))
    kurtosis = float(np.mean(centred**4) / variance**2) if variance > 0 else 0.0
    magnitudes = np.abs(np.fft.rfft(centred))
    magnitudes[0] = 0.0
    peak = int(np.argmax(magnitudes)) if len(magnitudes) > 1 else 0
    dominant = float(peak * sample_rate_hz / len(x))
    return Features(rms=rms, kurtosis=kurtosis, dominant_frequency=dominant)
