"""splitcast: real-time split inference on video with delay-corrective fusion (Dedelayed)."""

__version__ = "0.1.0"
