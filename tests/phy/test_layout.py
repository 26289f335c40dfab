"""The package's shape (issue #12): one receiver stage per file under phy/rx, the receiver's file short, and no
module importing another module's private names."""

from __future__ import annotations

import ast
from pathlib import Path

PHY = Path(__file__).resolve().parents[2] / "phy"


def test_no_private_name_crosses_a_module_boundary_in_phy():
    """No ``from phy.x import _name`` and no ``module._name`` on an imported module anywhere in phy."""
    found = []
    for path in sorted(PHY.rglob("*.py")):
        tree = ast.parse(path.read_text())
        modules = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("phy"):
                found += [(path.name, node.module, a.name) for a in node.names if a.name.startswith("_")]
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__") \
                    and isinstance(node.value, ast.Name) and node.value.id in modules:
                found.append((path.name, node.value.id, node.attr))
    assert found == []


def test_one_stage_per_file_and_a_short_receiver():
    stages = {"detection", "acquisition", "ofdm_demodulation", "channel_estimation", "header", "phase_tracking",
              "equalization", "demapping"}
    assert stages <= {p.stem for p in (PHY / "rx").glob("*.py")}
    assert len((PHY / "receiver.py").read_text().splitlines()) < 400
