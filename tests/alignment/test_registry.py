"""The registries are literal dicts: importing one in a fresh interpreter gives every loss, with no other import needed."""

from __future__ import annotations

import subprocess
import sys


def test_alignment_registry_holds_the_zoo() -> None:
    code = "from lossbook.alignment.registry import PREFERENCE_LOSSES as R; print(' '.join(sorted(R)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120).stdout.split()
    assert {"dpo", "ipo", "hinge", "simpo", "nca", "apo_zero", "sppo_hard", "fdpo_reverse_kl", "rpo", "bco_pair", "kto_pair"} <= set(out)
