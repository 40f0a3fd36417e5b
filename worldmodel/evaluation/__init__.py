"""Evaluation: metrics, rollout drift, closed-loop success, statistics."""
