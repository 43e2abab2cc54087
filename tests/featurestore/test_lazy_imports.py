"""`import featurestore` loads the store only: the importers and extraction load on first
use, so reading a store does not pay for every import format (or torch)."""

from __future__ import annotations

import subprocess
import sys


def test_import_featurestore_loads_neither_importers_nor_extraction_until_asked():
    code = (
        "import sys, featurestore\n"
        "print(sorted(m for m in sys.modules if m.startswith(('featurestore.importers', "
        "'featurestore.extract.'))))\n"
        "featurestore.import_dataset, featurestore.ImportSummary\n"
        "print('featurestore.importers' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert out[:2] == ["[]", "True"]
