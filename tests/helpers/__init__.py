"""Helpers shared by tests (no tests here): scenarios, strategies, trace checks."""

from pathlib import Path

#: the repository's root (examples/, README.md, the packages' folders)
ROOT = Path(__file__).resolve().parents[2]
