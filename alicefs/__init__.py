"""alicefs: one mounted tree over every storage location a media library lives in."""

__version__ = "0.1.0"
