"""Typed configs of the Hydra apps: ``base`` (the error and the choice check), then one module
per app; ``registry`` registers them all with Hydra's ConfigStore."""
