"""How a run's steady state is shown: the period's interval, the window, the cool-down."""

from __future__ import annotations

from typing import Any


def interval_note(metrics: dict[str, Any]) -> str:
    """What ``period_ci_ms`` is, and whether the run met its precision target."""
    ci, period = metrics.get("period_ci_ms"), metrics.get("period_ms")
    win = metrics.get("window", {})
    if ci is None or not period:
        return (f"no interval: fewer than 16 batches of emit gaps in the window "
                f"({win.get('periods', 0)} gaps)")
    text = f"95% half-width, {ci / period:.2%} of the period (batch means)"
    converged = metrics.get("converged")
    if converged is True:
        text += f"; precise at {metrics.get('chunks_run'):,} chunks"
    elif converged is False:
        text += (f"; NOT CONVERGED: stopped at the cap, run.chunks = "
                 f"{metrics.get('chunks_run'):,}")
    return text


def window_text(win: dict[str, Any], warmup: Any) -> str:
    """``chunks a..b, n periods after warm-up w (how), before a cool-down of c``."""
    how = " (MSER-5)" if win.get("warmup_method") == "mser5" else ""
    cool = win.get("cooldown")
    tail = f", cool-down {cool} (in flight at the last input)" if cool else ""
    return (f"chunks {win['first_chunk']}..{win['last_chunk']}, "
            f"{win.get('periods', 0)} periods after warm-up {warmup}{how}{tail}")


def period_cell(rec: dict[str, Any]) -> str | None:
    """A sweep row's period with its half-width, ``*`` when it did not converge."""
    p, ci = rec.get("period_ms"), rec.get("period_ci_ms")
    if p is None or p != p:
        return None
    cell = f"{p:,.1f}" if abs(p) >= 10 else f"{p:,.3f}"
    if ci is not None and ci == ci:
        cell += f"±{ci:#.2g}"
    return cell + ("*" if rec.get("converged") is False else "")
