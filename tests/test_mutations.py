"""scripts/mutations.py stays applicable: every snippet it breaks still occurs exactly once.

Running every mutation takes minutes (docs/testing.md); this check is instant, so CI
notices when a refactor moves code from under a mutation (which would otherwise stop
breaking anything, and stop proving anything).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_mutation_still_applies() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "mutations.py"), "--check"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_the_mutations_cover_every_spec_7_check_and_store_rule() -> None:
    listing = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "mutations.py"), "--list"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    for claim in ("§7.1", "§7.2", "§7.3", "§7.4", "§7.5", "§7.6", "§7.7", "§8", "§3", "§4"):
        assert claim in listing, f"no mutation breaks {claim}"
