"""Inference on a trained world model: one session engine for open loop and closed loop."""

from worldmodel.inference.rollout import RolloutResult, rollout_open_loop
from worldmodel.inference.session import MODES, InferenceSession, check_mode

__all__ = ["MODES", "InferenceSession", "RolloutResult", "check_mode", "rollout_open_loop"]
