"""Print the README's set-up commands so CI runs exactly what users are told to run.

The README's first two ```bash blocks hold one command each: the install (+ main job) command, then the test command.
"""

import re
import sys
from pathlib import Path

blocks = re.findall(r"```bash\n(.*?)\n```", (Path(__file__).resolve().parents[1] / "README.md").read_text(), re.S)
which = {"install": 0, "test": 1}[sys.argv[1]]
print(blocks[which].strip())
