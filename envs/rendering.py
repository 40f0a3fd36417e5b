"""Headless OpenGL backend selection and fast offscreen rendering.

MuJoCo reads ``MUJOCO_GL`` when it is first imported, so :func:`select_gl_backend` must run
before any ``import mujoco``; ``envs/__init__.py`` calls it first thing.
"""

from __future__ import annotations

import os
import subprocess
import sys

GL_INSTALL_HINT = (
    "no headless OpenGL for MuJoCo: install Debian 'libegl1 libegl-mesa0 libgl1-mesa-dri' "
    "(MUJOCO_GL=egl) or 'libosmesa6' (MUJOCO_GL=osmesa)"
)
_PROBE = "import mujoco; ctx = mujoco.GLContext(8, 8); ctx.make_current(); ctx.free()"


class RenderingUnavailable(RuntimeError):
    """No OpenGL backend could render; the message says which Debian package to install."""


def _backend_works(backend: str) -> bool:
    env = {**os.environ, "MUJOCO_GL": backend, "PYOPENGL_PLATFORM": backend}
    probe = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, timeout=60, check=False
    )
    return probe.returncode == 0


_MUJOCO_IMPORTED_TOO_EARLY = False


def select_gl_backend() -> str | None:
    """Choose ``egl``, else ``osmesa``, unless the user set ``MUJOCO_GL``; cached in the env."""
    global _MUJOCO_IMPORTED_TOO_EARLY
    chosen = os.environ.get("MUJOCO_GL")
    _MUJOCO_IMPORTED_TOO_EARLY = not chosen and "mujoco" in sys.modules
    if chosen:
        return chosen
    if os.environ.get("DISPLAY"):
        return None
    for backend in ("egl", "osmesa"):
        if _backend_works(backend):
            os.environ["MUJOCO_GL"] = backend
            os.environ["PYOPENGL_PLATFORM"] = backend
            return backend
    # Leave MUJOCO_GL unset: physics still works; the first render raises GL_INSTALL_HINT.
    os.environ["MUJOCO_GL"] = "disabled"
    return None


def make_renderer(model, height: int, width: int):
    """A ``mujoco.Renderer`` with shadows and reflections off, or a one-line install hint."""
    import mujoco

    if os.environ.get("MUJOCO_GL") == "disabled":
        raise RenderingUnavailable(GL_INSTALL_HINT)
    try:
        renderer = mujoco.Renderer(model, height=height, width=width)
    except Exception as error:  # mujoco raises FatalError or an OpenGL error type
        if _MUJOCO_IMPORTED_TOO_EARLY:
            raise RenderingUnavailable(
                "mujoco was imported before envs chose MUJOCO_GL: import envs first, or set "
                f"MUJOCO_GL={os.environ.get('MUJOCO_GL')} in the environment"
            ) from error
        raise RenderingUnavailable(
            f"{GL_INSTALL_HINT} ({type(error).__name__}: {error})"
        ) from error
    renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
    renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
    return renderer
