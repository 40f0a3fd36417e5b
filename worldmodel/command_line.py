"""Command-line words a user can paste: Hydra overrides quoted for Hydra and for the shell."""

from __future__ import annotations

import re
import shlex

# what Hydra's override grammar takes unquoted: ASCII letters, digits and these marks only
# (its lexer refuses a non-ASCII letter such as "ü" in an unquoted value)
HYDRA_PLAIN_VALUE = re.compile(r"[\w./:@+-]+", re.ASCII)


def hydra_override(key: str, value: object) -> str:
    """``key=value`` as Hydra's override grammar reads it: the value in double quotes where it
    needs them (a run folder's name holds ``,`` and ``=``; spaces, brackets, non-ASCII)."""
    text = str(value)
    if not HYDRA_PLAIN_VALUE.fullmatch(text):
        # Hydra escapes only quotes and the backslashes before a quote or the closing one
        escaped = re.sub(r'(\\*)"', lambda m: m.group(1) * 2 + '\\"', text)
        text = '"' + re.sub(r"(\\+)$", lambda m: m.group(1) * 2, escaped) + '"'
    return f"{key}={text}"


def override(key: str, value: object) -> str:
    """``hydra_override`` as one shell word a user can paste."""
    return shlex.quote(hydra_override(key, value))
