"""Benchmarks, one module per suite (``collect``, ``model``, ``train``, ``evaluate``,
``tolerance``); ``python -m experiments.bench <suite>`` runs one (``cli``)."""
