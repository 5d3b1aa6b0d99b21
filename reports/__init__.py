"""Figures and the HTML report built from traces and sweep tables (matplotlib, headless).

The Agg backend is selected here, before anything imports pyplot, so reports render
on machines without a display; figures are built on :class:`matplotlib.figure.Figure`
directly and never touch pyplot's global state.
"""

import matplotlib

matplotlib.use("Agg")
