"""The import rules of ARCHITECTURE.md, checked by reading every module's imports (lazy ones too).

stream/ is the bottom (spike format, protocol, errors); calibration/ sits on it; capture/ and
engine/ sit on both and never on each other; tools/ may import everything and nothing imports
tools/. torch stays out of capture/, stream/ and calibration/, so that a capture node or a
display starts without it. The modules are parsed, not imported: an import inside a function
(or behind ``TYPE_CHECKING``) counts the same as one at the top.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: What each folder may import from the project (itself included).
ALLOWED: dict[str, frozenset[str]] = {
    "stream": frozenset({"stream"}),
    "calibration": frozenset({"calibration", "stream"}),
    "capture": frozenset({"capture", "calibration", "stream"}),
    "engine": frozenset({"engine", "calibration", "stream"}),
    "tools": frozenset({"tools", "capture", "engine", "calibration", "stream"}),
}
#: Folders that must start without torch (not even lazily: a capture node never loads it).
TORCH_FREE = frozenset({"capture", "stream", "calibration"})
#: Top-level modules that load torch.
TORCH_MODULES = frozenset({"torch", "torchvision", "torchaudio"})


@dataclass(frozen=True)
class Edge:
    """One import statement: ``path:line`` (relative to the tree) of ``layer`` imports ``target``."""

    path: str
    line: int
    layer: str
    target: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.layer} -> {self.target}"


def _module_name(path: Path, root: Path) -> str:
    """``root/engine/backends/base.py`` -> ``"spikereveal.engine.backends.base"``."""
    parts = path.relative_to(root).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(("spikereveal", *parts))


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module a ``from ... import`` names (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    package = module.split(".")
    if not is_package:
        package = package[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(path: Path, root: Path) -> Iterator[tuple[int, str]]:
    """(line, module) for every import in ``path``: statements anywhere, and ``import_module("...")``."""
    module = _module_name(path, root)
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(node, module, path.name == "__init__.py")
            yield node.lineno, target
            for alias in node.names:  # `from spikereveal import capture` imports spikereveal.capture
                if target == "spikereveal":
                    yield node.lineno, f"spikereveal.{alias.name}"
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, (ast.Attribute, ast.Name))
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.lineno, node.args[0].value


def forbidden_edges(root: Path) -> list[Edge]:
    """Every import in the folders under ``root`` that breaks :data:`ALLOWED` or :data:`TORCH_FREE`."""
    bad: list[Edge] = []
    for layer in ALLOWED:
        for path in sorted((root / layer).rglob("*.py")):
            for line, target in imports_of(path, root):
                parts = target.split(".")
                crosses = parts[0] == "spikereveal" and len(parts) > 1 and parts[1] not in ALLOWED[layer]
                loads_torch = layer in TORCH_FREE and parts[0] in TORCH_MODULES
                if crosses or loads_torch:
                    bad.append(Edge(path.relative_to(root).as_posix(), line, layer, target))
    return bad


def test_every_import_points_down() -> None:
    bad = forbidden_edges(REPO)
    assert not bad, "forbidden imports (see ARCHITECTURE.md):\n" + "\n".join(map(str, bad))


def test_the_walk_sees_every_folder() -> None:
    """The checker reads real modules (so the test above cannot pass on an empty tree)."""
    for layer in ALLOWED:
        modules = list((REPO / layer).rglob("*.py"))
        assert modules, f"{layer}/ has no modules"
        assert any(target.startswith("spikereveal.") for m in modules for _, target in imports_of(m, REPO))


def _plant(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize(
    ("relative", "text", "edge"),
    [
        (
            "stream/bad.py",
            "from spikereveal.capture.dat import open_dat\n",
            "stream -> spikereveal.capture.dat",
        ),
        ("stream/bad.py", "import spikereveal.engine.ldn\n", "stream -> spikereveal.engine.ldn"),
        (
            "capture/bad.py",
            "def f():\n    from spikereveal.engine import ldn\n",
            "capture -> spikereveal.engine",
        ),
        (
            "calibration/bad.py",
            "from spikereveal.engine.tfp import tfp\n",
            "calibration -> spikereveal.engine.tfp",
        ),
        ("engine/bad.py", "from spikereveal.tools.cli import main\n", "engine -> spikereveal.tools.cli"),
        ("engine/sub/bad.py", "from ...tools import cli\n", "engine -> spikereveal.tools"),
        ("capture/bad.py", "def f():\n    import torch\n", "capture -> torch"),
        ("stream/bad.py", "import torch.nn as nn\n", "stream -> torch.nn"),
        (
            "calibration/bad.py",
            "import importlib\nimportlib.import_module('spikereveal.tools.cli')\n",
            "calibration -> spikereveal.tools.cli",
        ),
    ],
)
def test_a_planted_bad_edge_is_caught(tmp_path: Path, relative: str, text: str, edge: str) -> None:
    for layer in ALLOWED:
        _plant(tmp_path, f"{layer}/__init__.py", "")
    _plant(tmp_path, "engine/sub/__init__.py", "")
    _plant(
        tmp_path, "stream/good.py", "import numpy\nfrom spikereveal.stream.errors import SpikeRevealError\n"
    )
    _plant(tmp_path, "engine/good.py", "import torch\nfrom spikereveal.stream import spikes\n")
    _plant(tmp_path, relative, text)
    bad = forbidden_edges(tmp_path)
    assert [str(e) for e in bad] == [f"{relative}:{text.count(chr(10))}: {edge}"]


def test_allowed_edges_pass(tmp_path: Path) -> None:
    _plant(
        tmp_path,
        "tools/ok.py",
        "import torch\nfrom spikereveal.capture import dat\nfrom spikereveal.engine import ldn\n",
    )
    _plant(
        tmp_path,
        "capture/ok.py",
        "from spikereveal.calibration.model import Calibration\nfrom . import dat\n",
    )
    _plant(tmp_path, "engine/ok.py", "import torch\nfrom spikereveal.stream.spikes import unpack_frames\n")
    assert forbidden_edges(tmp_path) == []
