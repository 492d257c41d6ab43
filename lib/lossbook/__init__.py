"""lossbook: a reproducible experiment book for research on training objectives."""

from pathlib import Path

__version__ = "0.1.0"

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The checkout's root (lib/lossbook/__init__.py -> repo). Runs, caches and the MLflow store live here."""
