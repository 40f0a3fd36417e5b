"""The task registry: task name -> Task class, imported on first use."""

from __future__ import annotations

import importlib

from envs.tasks.base import Task

TASKS: dict[str, str] = {  # name -> "module:Class"
    "press_button": "envs.tasks.press_button:PressButton",
    "lift_tray_dual": "envs.tasks.lift_tray_dual:LiftTrayDual",
    "pick_dual_cylinders": "envs.tasks.pick_dual_cylinders:PickDualCylinders",
    "place_cup_coaster": "envs.tasks.place_cup_coaster:PlaceCupCoaster",
    "handover_block": "envs.tasks.handover_block:HandoverBlock",
    "stack_blocks_two": "envs.tasks.stack_blocks_two:StackBlocksTwo",
}


def make_task(name: str) -> Task:
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; valid tasks: {', '.join(sorted(TASKS))}")
    module, cls = TASKS[name].split(":")
    return getattr(importlib.import_module(module), cls)()


def env_id(name: str) -> str:
    """Gymnasium id of a task, e.g. handover_block -> wmbench/HandoverBlock-v0."""
    return "wmbench/" + "".join(part.capitalize() for part in name.split("_")) + "-v0"
