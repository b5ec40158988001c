"""What the bench/*_probe.py scripts share: their JSON results file."""
from __future__ import annotations

import json
import sys


def write_rows(path: str, device, rows: list[dict]) -> None:
    """``rows`` as JSON at ``path``, with the device and the command line that measured them."""
    with open(path, "w") as f:
        json.dump({"device": device.info.describe(), "command": " ".join(sys.argv), "rows": rows}, f, indent=1)
