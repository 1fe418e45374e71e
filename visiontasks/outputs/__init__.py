from visiontasks.outputs.checkpoint import BestAndLastCheckpoint  # noqa: F401
