"""vitlight: a PyTorch Lightning experiment framework for Vision Transformers, ImageGPT and CNN baselines."""

__version__ = "0.1.0"
