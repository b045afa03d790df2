"""The Python snippets of datasets/README.md run and do what the text says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "datasets" / "README.md"


def test_readme_snippets_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    assert len(blocks) >= 2
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102 (our own documentation)
    x, y = namespace["x"], namespace["y"]
    assert tuple(x.shape) == (32, 1, 17, 17) and tuple(y.shape) == (32, 1, 17, 17)
    assert namespace["train"].meta["provenance"]["params"] == {"scale": 2}
    assert len(namespace["train"]) == 80
    assert (y - 2 * x).abs().max() == 0
