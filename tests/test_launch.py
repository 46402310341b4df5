"""The `leakscan` entry point's care of the garbage collector (see `leakscan/launch.py`)."""

from __future__ import annotations

import subprocess
import sys


def test_only_a_process_s_first_command_freezes_what_it_made(tmp_path):
    """What the first command's imports made is frozen and the collector is on again; a second
    command in the same process freezes nothing more (the frozen count can only fall, as frozen
    objects are freed), so its garbage is collected as usual."""
    probe = ("import gc, sys\nfrom leakscan.launch import main\n"
             "codes = [main(['scan', sys.argv[1]])]\nfirst = gc.get_freeze_count()\n"
             "codes.append(main(['scan', sys.argv[1]]))\n"
             "print(codes, first > 1000, gc.get_freeze_count() <= first, gc.isenabled())\n")
    proc = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.stdout.splitlines()[-1] == "[0, 0] True True True", (proc.stdout, proc.stderr)
