"""Command-line words a user can paste: Hydra overrides quoted for Hydra and for the shell."""

from __future__ import annotations

import re
import shlex

HYDRA_PLAIN_VALUE = re.compile(r"[\w./:@+-]+")  # what Hydra's override grammar takes unquoted


def override(key: str, value: object) -> str:
    """``key=value`` as one shell word: the value in double quotes where Hydra's grammar needs
    them (a run folder's name holds ``,`` and ``=``; spaces, brackets), then shell-quoted."""
    text = str(value)
    if not HYDRA_PLAIN_VALUE.fullmatch(text):
        # Hydra escapes only quotes and the backslashes before a quote or the closing one
        escaped = re.sub(r'(\\*)"', lambda m: m.group(1) * 2 + '\\"', text)
        text = '"' + re.sub(r"(\\+)$", lambda m: m.group(1) * 2, escaped) + '"'
    return shlex.quote(f"{key}={text}")
