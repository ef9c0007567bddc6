"""Datasets and their signals (with their features: RMS, kurtosis, dominant frequency)."""
