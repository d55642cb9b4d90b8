"""The shape every dataset reader shares: a split file of ids, files per id, checked up front.

A subclass declares its name, its label sets (each with its class names), the input modalities it
holds and its default (train, val) splits, and says where an id's files are and how to read them.
``ds[i]`` is then ``(image, label)``:

* ``image``: float32 (C, H, W), the requested modalities preprocessed and concatenated along
  channels in the order asked for (colour 3, HHA 3, depth 1 channels);
* ``label``: int64 (H, W) for one label set, (T, H, W) for T label sets (SIFT Flow's semantic
  and geometric), values 0..n-1 or 255 (ignored).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, ClassVar, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .decode import check_label_values

__all__ = ["SegmentationDataset", "Transform", "PathLike"]

PathLike = Union[str, "os.PathLike[str]"]
Transform = Callable[[torch.Tensor, torch.Tensor], Tuple[torch.Tensor, torch.Tensor]]


class SegmentationDataset(torch.utils.data.Dataset):
    """One split of a dataset in its release layout (see the module docstring for what items are).

    Args:
        root: the dataset's directory.
        split: the split's name (default: the dataset's training split).
        modalities: the inputs to load, in channel order (default colour).
        labels: the label sets to load (default all of the dataset's).
        num_classes: classes per label set (an int for one; default the dataset's): label values
            must lie in {0..n-1, 255}.
        transform: optional ``f(image, label) -> (image, label)`` applied last (e.g.
            :class:`fcnfast.datasets.RandomFlipScale`).

    Errors (each message names the file): a missing root, split file, or file of a listed id ->
    FileNotFoundError at construction; at ``ds[i]``, an undecodable file, sizes that differ, or
    label values outside the allowed set -> ValueError.
    """

    #: Registry name ("voc", "nyud", ...).
    name: ClassVar[str]
    #: Label set -> class names (index = label value), in the order ``labels`` defaults to.
    label_classes: ClassVar[Mapping[str, Tuple[str, ...]]]
    #: The input modalities the dataset holds.
    modalities_available: ClassVar[Tuple[str, ...]] = ("color",)
    #: The release's (training, validation) split names.
    default_splits: ClassVar[Tuple[str, str]] = ("train", "val")

    def __init__(self, root: PathLike, split: Optional[str] = None, *, modalities: Sequence[str] = ("color",),
                 labels: Optional[Sequence[str]] = None, num_classes: Union[None, int, Sequence[int]] = None,
                 transform: Optional[Transform] = None) -> None:
        self.root = Path(root)
        self.split = split or self.default_splits[0]
        self.transform = transform
        self.modalities = tuple(modalities)
        self.labels = tuple(labels) if labels is not None else tuple(self.label_classes)
        unknown = [m for m in self.modalities if m not in self.modalities_available]
        if unknown or not self.modalities:
            raise ValueError(f"{self.name} holds the inputs {', '.join(self.modalities_available)}; "
                             f"cannot load {', '.join(unknown) or 'nothing'}")
        missing = [lab for lab in self.labels if lab not in self.label_classes]
        if missing or not self.labels:
            raise ValueError(f"{self.name} has the labels {', '.join(self.label_classes)}; "
                             f"cannot load {', '.join(missing) or 'none'}")
        self.class_counts = self._class_counts(num_classes)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.name} dataset root not found: {self.root}")
        self.split_file = self.split_path()
        if not self.split_file.is_file():
            raise FileNotFoundError(f"split file not found: {self.split_file}")
        self.ids: List[str] = [ln.strip() for ln in self.split_file.read_text().splitlines() if ln.strip()]
        if not self.ids:
            raise ValueError(f"split file {self.split_file} lists no image ids")
        self._check_files()

    def _class_counts(self, num_classes) -> Tuple[int, ...]:
        if num_classes is None:
            return tuple(len(self.label_classes[lab]) for lab in self.labels)
        counts = (num_classes,) if isinstance(num_classes, int) else tuple(int(n) for n in num_classes)
        if len(counts) != len(self.labels) or not all(1 <= n <= 255 for n in counts):
            raise ValueError(f"{type(self).__name__}: num_classes must be one count in 1..255 per label set "
                             f"({', '.join(self.labels)}), got {num_classes!r}")
        return counts

    # -- what a subclass says -----------------------------------------------------------------------

    def split_path(self) -> Path:
        """The file listing the split's ids."""
        raise NotImplementedError

    def files(self, image_id: str) -> Dict[str, Path]:
        """The files of one id, keyed by modality or label set (only the ones asked for are checked)."""
        raise NotImplementedError

    def load_input(self, modality: str, path: Path) -> torch.Tensor:
        """One modality of one id, preprocessed: float32 (C, H, W)."""
        raise NotImplementedError

    def load_label(self, label: str, path: Path) -> np.ndarray:
        """One label set of one id: H×W values 0..n-1 (classes) or 255 (ignored)."""
        raise NotImplementedError

    # -- the rest -----------------------------------------------------------------------------------

    @property
    def num_classes(self) -> Union[int, Tuple[int, ...]]:
        """Classes per label set: an int for one label set, a tuple for several."""
        return self.class_counts[0] if len(self.class_counts) == 1 else self.class_counts

    @property
    def class_names(self) -> Tuple[str, ...]:
        """Names of the first label set's classes (``class0``.. beyond the dataset's own)."""
        return self.names_of(self.labels[0])

    def names_of(self, label: str) -> Tuple[str, ...]:
        names = self.label_classes[label]
        n = self.class_counts[self.labels.index(label)]
        return tuple(names[:n]) + tuple(f"class{i}" for i in range(len(names), n))

    def path(self, i: int, key: str) -> Path:
        return self.files(self.ids[i])[key]

    def _wanted(self, files: Dict[str, Path]) -> Dict[str, Path]:
        return {key: p for key, p in files.items() if key in self.modalities or key in self.labels}

    def _check_files(self) -> None:
        # One directory listing per folder instead of a stat per file: cheap even for SBD's 11k ids.
        listings: Dict[Path, set] = {}
        missing: Dict[str, List[Path]] = {}
        for image_id in self.ids:
            for key, path in self._wanted(self.files(image_id)).items():
                if path.parent not in listings:
                    listings[path.parent] = set(os.listdir(path.parent)) if path.parent.is_dir() else set()
                if path.name not in listings[path.parent]:
                    missing.setdefault(key, []).append(path)
        for key, paths in missing.items():
            kind = "image" if key == "color" else "label" if key in self.labels else key
            more = f" (and {len(paths) - 3} more)" if len(paths) > 3 else ""
            raise FileNotFoundError(
                f"{kind} file not found: {', '.join(map(str, paths[:3]))}{more} (listed in {self.split_file})"
            )

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, torch.Tensor]:
        files = self.files(self.ids[i])
        inputs = [(files[m], self.load_input(m, files[m])) for m in self.modalities]
        first_path, first = inputs[0]
        size = tuple(first.shape[1:])
        for path, tensor in inputs[1:]:
            if tuple(tensor.shape[1:]) != size:
                raise ValueError(f"{path} is {tensor.shape[1]}x{tensor.shape[2]} (HxW) but {first_path} "
                                 f"is {size[0]}x{size[1]}")
        labels = []
        for label, n in zip(self.labels, self.class_counts):
            path = files[label]
            values = check_label_values(self.load_label(label, path), n, f"label image {path}")
            if values.shape != size:
                raise ValueError(f"label {path} is {values.shape[0]}x{values.shape[1]} (HxW) but image "
                                 f"{first_path} is {size[0]}x{size[1]}")
            labels.append(torch.from_numpy(values.astype(np.int64)))
        image = first if len(inputs) == 1 else torch.cat([t for _, t in inputs], dim=0)
        label = labels[0] if len(labels) == 1 else torch.stack(labels)
        if self.transform is not None:
            image, label = self.transform(image, label)
        return image, label

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, n={len(self)}, "
                f"modalities={self.modalities}, labels={self.labels}, num_classes={self.num_classes})")
