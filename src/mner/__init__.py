"""mner: multimodal named entity recognition (MAF, MOUSING, baselines)."""

__version__ = "0.1.0"
