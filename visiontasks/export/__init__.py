"""Exporting trained models: ONNX, TorchScript and ``torch.export`` files that take ``uint8`` images
and embed the normalisation, each with a JSON description (``visiontasks export``)."""

from .exporter import FORMATS, Exported, export_checkpoint, export_task, load_exported, load_task, wrap_task
from .spec import spec_path

__all__ = ["FORMATS", "Exported", "export_checkpoint", "export_task", "load_exported", "load_task", "spec_path",
           "wrap_task"]
