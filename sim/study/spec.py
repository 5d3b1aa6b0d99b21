"""A study as data: which points to run, which columns to compare and the verdict rules.

A study file (TOML) holds one :class:`StudySpec`. Points are the cartesian product of
the study's ``axes`` and each variant's own ``axes``, per variant; each point is the
user's scenario with the study's ``policy`` (and ``keep`` fields), the study's
``sets``, the variant's ``policy`` and ``sets`` and its axis values applied, in that
order. Derived columns are expressions (:mod:`pipefill.sim.study.expr`); rules come
from :data:`RULES`. The built-in studies (``fill``, ``coupling``, ``sessions``,
``stream-batch``) are files of this very format shipped beside this module.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipefill.sim.study.compare import Reach, Restore, Versus
from pipefill.sim.study.expr import ExprError, parse
from pipefill.sim.study.rule import RuleBase
from pipefill.sim.study.rules import Formula, Gate, Range, Trend

#: rule kind (a rule's ``rule`` key) -> its model
RULES: dict[str, type[RuleBase]] = {
    "gate": Gate, "reach": Reach, "versus": Versus, "restore": Restore, "trend": Trend,
    "formula": Formula, "range": Range,
}
Rule = Annotated[Gate | Reach | Versus | Restore | Trend | Formula | Range,
                 Field(discriminator="rule")]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _exprs(v: dict[str, str]) -> dict[str, str]:
    for name, text in v.items():
        if not name.isidentifier():
            raise ValueError(f"{name!r}: a derived column is named like a variable")
        try:
            parse(text)
        except ExprError as exc:
            raise ValueError(f"{name}: {exc}") from None
    return v


class AxisSpec(_Frozen):
    """One grid axis: a dotted scenario field and its values."""

    field: str = Field(pattern=r"^[a-z_]+(\.[A-Za-z0-9_]+)+$",
                       description="the scenario field, e.g. policy.d_out")
    values: list[Any] = Field(min_length=1, description="the values it takes, in order")
    label: str | None = Field(None, description="its name in verdicts (default: the "
                              "field's last part)")

    @property
    def name(self) -> str:
        return self.label or self.field.rsplit(".", 1)[-1]


class VariantSpec(_Frozen):
    """A named configuration compared with the others (``r0a``, ``stream_batch``)."""

    label: str = Field("", description="its name in verdicts and figures")
    policy: str | None = Field(None, description="switch to this policy (its defaults)")
    sets: dict[str, Any] = Field(default_factory=dict,
                                 description="dotted field -> value for its points")
    axes: list[AxisSpec] = Field(default_factory=list,
                                 description="its own axes, crossed with the study's")
    derived: dict[str, str] = Field(default_factory=dict,
                                    description="columns computed for its points only")

    _check = field_validator("derived")(_exprs)


class FigureSpec(_Frozen):
    """A figure of the study's report section (drawn by ``pipefill.reports.study``)."""

    kind: Literal["heatmap", "bars", "lines"] = Field(
        description="heatmap: the first two axes, one panel per variant; bars: one bar "
        "per point; lines: metric against x, one line per variant and other axes")
    metric: str = Field(description="the column shown")
    x: str | None = Field(None, description="lines: the column on the x axis")
    by: list[str] = Field(default_factory=lambda: ["variant"],
                          description="lines: one line per value of these columns")
    line: float | None = Field(None, description="a reference line (a gate, a target)")
    title: str | None = Field(None, description="the figure's title")


class ReplaySpec(_Frozen):
    """What ``--replay`` measures: the verdict's key points, short runs."""

    points: int = Field(3, ge=1, le=12, description="key points measured at most")
    chunks: int = Field(16, ge=4, description="chunks per measured run")
    warmup: int = Field(4, ge=1, description="warm-up chunks of a measured run")


class StudySpec(_Frozen):
    """One study (module docstring)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", description="its name")
    title: str = Field(description="a line saying what it studies")
    question: str = Field(description="the question its verdict answers")
    brief: str = Field("", description="the brief's experiment it runs")
    policy: str | None = Field(None, description="the policy its points run (a switch "
                               "keeps only the scenario's `keep` fields)")
    keep: list[str] = Field(default_factory=list, description="policy fields carried over "
                            "from the scenario's policy when it switches")
    sets: dict[str, Any] = Field(default_factory=dict, description="field -> value for "
                                 "every point")
    axes: list[AxisSpec] = Field(default_factory=list, description="axes of every variant")
    variants: list[VariantSpec] = Field(default_factory=lambda: [VariantSpec()],
                                        min_length=1, description="the configurations")
    derived: dict[str, str] = Field(default_factory=dict,
                                    description="column -> expression, for every point")
    show: list[str] = Field(min_length=1, description="the columns the summary table shows")
    rules: list[Rule] = Field(min_length=1, description="the verdict, one clause each")
    figures: list[FigureSpec] = Field(default_factory=list, description="report figures")
    replay: ReplaySpec = Field(default_factory=ReplaySpec, description="--replay's runs")

    _check = field_validator("derived")(_exprs)

    @field_validator("variants")
    @classmethod
    def _labels(cls, v: list[VariantSpec]) -> list[VariantSpec]:
        labels = [x.label for x in v]
        if len(v) > 1 and (len(set(labels)) != len(labels) or "" in labels):
            raise ValueError("several variants need distinct, non-empty labels")
        return v

    def axis_fields(self) -> list[str]:
        return list(dict.fromkeys([a.field for a in self.axes] +
                                  [a.field for v in self.variants for a in v.axes]))

    def derived_names(self) -> list[str]:
        return list(dict.fromkeys([*(n for v in self.variants for n in v.derived),
                                   *self.derived]))
