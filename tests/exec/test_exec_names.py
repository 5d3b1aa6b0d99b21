"""No module under exec/ names a policy or a stage: the executors learn stages, queues,
where inputs enter and what may run tensor-parallel from the policy's interface only
(``stages``, ``queues``, ``programs``, ``source_stage``, ``sharded_stages``,
``queue_role``, ``dist_refusal``)."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

from pipefill.sim.policies import POLICIES

EXEC = Path(__file__).resolve().parents[2] / "exec"
#: a stage named by the policies' convention (stage0, stage1, stage0.3, ...)
STAGE = re.compile(r"\bstage\d+\b")
POLICY = re.compile(r"\b(" + "|".join(map(re.escape, sorted(POLICIES))) + r")\b")
#: tokens that carry names: identifiers, strings (docstrings included) and comments
NAMED = (tokenize.NAME, tokenize.STRING, tokenize.COMMENT)


def named_in(source: str) -> list[tuple[int, str]]:
    """(line, text) of every token of ``source`` that names a stage or a policy."""
    found = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in NAMED and (STAGE.search(tok.string) or POLICY.search(tok.string)):
            found.append((tok.start[0], tok.string))
    return found


def test_the_rule_catches_a_stage_or_policy_name_in_code_strings_and_comments():
    src = ('QUEUE = "stage0"  # rank0 runs stage1\n'
           'def f(p):\n    """Only for phase_pp."""\n    return p.name == "stream_batch"\n')
    assert [line for line, _ in named_in(src)] == [1, 1, 3, 4]
    assert named_in('x = p.stages(sc)[0]  # the first stage\n') == []


def test_no_module_under_exec_names_a_policy_or_a_stage():
    hits = {str(path.relative_to(EXEC.parent)): named_in(path.read_text(encoding="utf-8"))
            for path in sorted(EXEC.rglob("*.py"))}
    assert len(hits) > 30  # every module was read
    assert {path: found for path, found in hits.items() if found} == {}
