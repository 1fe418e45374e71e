"""The data check of a classification source: every image of an ImageFolder decoded (one job each);
in-memory sets (digits, MNIST, CIFAR-10) give their label counts."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..check import CheckPlan, ImageJob, Problem, SampleInfo, collect
from ..io import IMAGE_EXTENSIONS, list_image_files
from .sources import ImageFolderSource

if TYPE_CHECKING:
    from .datamodule import ClassificationDataModule


def _folder_split(plan: CheckPlan, folder: Path, split: str, classes: list[str] | None) -> list[ImageJob]:
    """The jobs of ``folder/<class>/<image>``, with every folder problem (missing classes, empty class
    folders, classes that differ from train's) added to ``plan``."""
    if not folder.is_dir():
        plan.problems.append(Problem("error", str(folder), "the folder does not exist", "fix data.root", split=split))
        return []
    found = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not found:
        plan.problems.append(Problem("error", str(folder), "no class sub-folders",
                                     f"put the images in {folder}/<class>/<image>", split=split))
        return []
    names = classes or found
    if classes is not None and found != classes:
        plan.problems.append(Problem(
            "error", str(folder), f"class folders {found} differ from train's {classes}",
            "use the same class folders in every split", split=split))
    jobs = []
    for label, name in enumerate(names):
        files = list_image_files(folder / name, recursive=True)
        if not files:
            plan.problems.append(Problem(
                "error", str(folder / name), "class folder with no images",
                f"add images ({', '.join(IMAGE_EXTENSIONS)}) or remove the folder", split=split))
        jobs += [ImageJob(split, str(f), label) for f in files]
    return jobs


def classification_plan(dm: ClassificationDataModule) -> CheckPlan:
    """Every file of an ImageFolder source (train, and val/test when they are folders; carved splits
    are parts of train), or the labels of an in-memory source."""
    reader = dm.reader
    if isinstance(reader, ImageFolderSource):
        if reader.name == "synthetic":
            reader.splits()  # writes the generated folder once
        root = reader.options.root
        plan = CheckPlan("classification", [], splits=["train"])
        plan.jobs += _folder_split(plan, reader.train_dir, "train", None)
        classes = sorted({Path(j.path).relative_to(reader.train_dir).parts[0] for j in plan.jobs})
        try:
            plan.class_names = dm.class_names
        except (ValueError, FileNotFoundError):
            plan.class_names = classes
        for split in ("val", "test"):
            if (root / split).is_dir():
                plan.splits.append(split)
                plan.jobs += _folder_split(plan, root / split, split, plan.class_names)
        return plan
    splits, problems = collect(reader.splits, str(dm.root), todo="check data.root and data.source")
    plan = CheckPlan("classification", dm.class_names, problems=problems, splits=["train", "val"])
    for split, (src, indices) in (splits or {}).items():
        labels = getattr(src, "labels", None)
        for i in indices:
            plan.samples.append(SampleInfo(split, f"{dm.source}:{split}:{i}",
                                           label=int(labels[i]) if labels is not None else None))
    return plan
