"""Input limits, importable without numpy (the CLI's option defaults read them at ``--help`` time)."""

from __future__ import annotations

DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own default (MAX_IMAGE_PIXELS), as a per-call limit here
