"""Datasets as uint8 tensors in memory.

Every dataset, named or a folder of images, is loaded into an :class:`ImageData`: uint8
images ``(N, C, H, W)`` with integer labels, a train and a test split, and for STL-10 the
100k-image unlabeled split. The decoded tensors are cached on disk (see :mod:`sslkit.cache`)
so that the second load of a dataset takes seconds, whatever its on-disk format.

The data root is, in order: the ``root`` argument, the ``SSLKIT_DATA`` environment variable,
``./data``, or ``../data`` when it exists (so a notebook in ``notebooks/`` finds the repo's
``data/``). Named datasets are read with torchvision's own classes, which also download them
when asked (``download=True``); a dataset that is missing raises :class:`DatasetNotFound` with
one sentence saying which files are expected where and how to get them.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sslkit.cache import WriteError, atomic_save, cache_root

_CACHE_FORMAT = 2   # bump when what is cached changes, so stale entries are not read
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


class DatasetNotFound(RuntimeError):
    """A dataset is not on disk (and was not, or could not be, downloaded)."""


@dataclass
class ImageData:
    """A dataset held in memory.

    Attributes:
        name: the dataset's name (a folder's own name for a folder of images).
        train_x: uint8 images ``(N, C, H, W)``.
        train_y: int64 labels ``(N,)``.
        test_x, test_y: the test split, same layout.
        classes: class names, indexed by label.
        unlabeled_x: extra unlabeled images (STL-10), or None.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]
    unlabeled_x: torch.Tensor | None = None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of every image."""
        return tuple(self.train_x.shape[1:])

    @property
    def pretrain_x(self) -> torch.Tensor:
        """The images self-supervised pre-training sees: train plus unlabeled, no labels."""
        if self.unlabeled_x is None:
            return self.train_x
        return torch.cat([self.train_x, self.unlabeled_x])

    def subset(self, n_train: int | None = None, n_test: int | None = None, seed: int = 0) -> ImageData:
        """A class-stratified random subset of each split (the quick profile's small data).

        Taking a train subset drops the unlabeled split too: the subset is the whole budget.
        """
        g = torch.Generator().manual_seed(seed)
        tr = _stratified(self.train_y, n_train, g) if n_train and n_train < len(self.train_y) else slice(None)
        te = _stratified(self.test_y, n_test, g) if n_test and n_test < len(self.test_y) else slice(None)
        return ImageData(self.name, self.train_x[tr], self.train_y[tr], self.test_x[te], self.test_y[te],
                         self.classes, None if n_train else self.unlabeled_x)

    def channel_stats(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of the train images in [0, 1] (for the encoder's input norm)."""
        x = self.train_x[:10000].float().div_(255)
        return x.mean(dim=(0, 2, 3)).tolist(), x.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist()


def as_images_like(data: ImageData, channels: int, size: int) -> ImageData:
    """``data`` with every image resized to ``size`` x ``size`` (bilinear) and grey images repeated
    to ``channels`` channels: MNIST as 3 x 32 x 32, to probe an encoder trained on CIFAR-10."""
    import torch.nn.functional as F

    def convert(x: torch.Tensor) -> torch.Tensor:
        out = []
        for i in range(0, len(x), 4096):
            b = x[i: i + 4096].float()
            if b.shape[-2:] != (size, size):
                b = F.interpolate(b, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
            if b.shape[1] != channels:
                if b.shape[1] != 1:
                    raise ValueError(f"cannot turn {b.shape[1]}-channel images into {channels} channels.")
                b = b.expand(-1, channels, -1, -1)
            out.append(b.round().clamp(0, 255).to(torch.uint8))
        return torch.cat(out)

    return ImageData(data.name, convert(data.train_x), data.train_y, convert(data.test_x), data.test_y, data.classes,
                     None if data.unlabeled_x is None else convert(data.unlabeled_x))


def _stratified(y: torch.Tensor, n: int, g: torch.Generator) -> torch.Tensor:
    """Indices of about n samples with the class proportions of y, in random order."""
    order = torch.randperm(len(y), generator=g)
    classes = y.unique()
    per_class = max(1, n // len(classes))
    picks = [order[y[order] == c][:per_class] for c in classes]
    idx = torch.cat(picks)
    return idx[torch.randperm(len(idx), generator=g)]


# --------------------------------------------------------------------------- named datasets

@dataclass(frozen=True)
class DatasetInfo:
    name: str
    description: str
    folder: str                 # where torchvision keeps it under the root
    files: tuple[str, ...]      # what must be there
    how_to_get: str


DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo(
        "digits", "8x8 grey handwritten digits, 1,797 images, bundled with scikit-learn (always offline)",
        "", (), "nothing to do: it ships with scikit-learn"),
    "mnist": DatasetInfo(
        "mnist", "28x28 grey handwritten digits, 60k train + 10k test", "MNIST/raw",
        ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
        "run `python -m sslkit download mnist` with a network connection"),
    "fashion-mnist": DatasetInfo(
        "fashion-mnist", "28x28 grey clothing items, 60k train + 10k test", "FashionMNIST/raw",
        ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
        "run `python -m sslkit download fashion-mnist` with a network connection"),
    "cifar10": DatasetInfo(
        "cifar10", "32x32 colour images of 10 classes, 50k train + 10k test", "cifar-10-batches-py",
        ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch", "batches.meta"),
        "run `python -m sslkit download cifar10` with a network connection (170 MB), "
        "or pass a folder of images laid out as train/<class>/*.jpg"),
    "stl10": DatasetInfo(
        "stl10", "96x96 colour images of 10 classes, 5k train + 8k test + 100k unlabeled", "stl10_binary",
        ("train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin", "unlabeled_X.bin", "class_names.txt"),
        "run `python -m sslkit download stl10` with a network connection (2.6 GB)"),
    "svhn": DatasetInfo(
        "svhn", "32x32 colour house-number digits, 73k train + 26k test", "",
        ("train_32x32.mat", "test_32x32.mat"),
        "run `python -m sslkit download svhn` with a network connection (600 MB)"),
}


def default_root() -> Path:
    """The data root when none is given: $SSLKIT_DATA, else ./data, else ../data if it exists."""
    env = os.environ.get("SSLKIT_DATA")
    if env:
        return Path(env).expanduser()
    here = Path("data")
    if not here.exists() and Path("../data").is_dir():
        return Path("../data")
    return here


def is_available(name: str, root: str | Path | None = None) -> tuple[bool, Path]:
    """Whether a named dataset (or image folder) is on disk, and where it is (or is expected)."""
    root = Path(root) if root is not None else default_root()
    if name == "digits":
        return True, Path("sklearn.datasets.load_digits")
    if name not in DATASETS:
        path = Path(name).expanduser()
        return (path / "train").is_dir(), path
    info = DATASETS[name]
    where = root / info.folder
    if not all((where / f).exists() for f in info.files) and name == "cifar10" and _cifar10_jpeg(root):
        return True, _cifar10_jpeg(root)
    return all((where / f).exists() for f in info.files), where


def _cifar10_jpeg(root: Path) -> Path | None:
    """The JPEG copy of CIFAR-10 (``<root>/cifar10-jpeg/{train,test}/<class>/*.jpg``) when it is
    there: the same 60k images and classes (in the same alphabetical order as torchvision's), so
    ``cifar10`` names one dataset wherever it was found and a run or a reference trained on one
    form evaluates on the other."""
    folder = root / "cifar10-jpeg"
    return folder if (folder / "train").is_dir() and (folder / "test").is_dir() else None


def missing_message(name: str, root: Path) -> str:
    info = DATASETS[name]
    where = root / info.folder
    return (f"dataset '{name}' is not in {where} (expected {', '.join(info.files)}); "
            f"{info.how_to_get}, or point --data-root / $SSLKIT_DATA at a folder that has it.")


def load_dataset(name: str, root: str | Path | None = None, download: bool = False,
                 use_cache: bool = True) -> ImageData:
    """Load a named dataset or a folder of images as uint8 tensors.

    Args:
        name: one of :data:`DATASETS`, or a path to a folder laid out as ``train/<class>/*.jpg``
            (and optionally ``test/<class>/*.jpg``; otherwise a seeded 80/20 split is made).
        root: the data root (see the module docstring).
        download: download a named dataset with torchvision if it is missing.
        use_cache: read and write the decoded-tensor cache.
    Raises:
        DatasetNotFound: the dataset is not there (and was not downloaded).
        ValueError: the name is neither a known dataset nor an existing folder.
    """
    root = Path(root) if root is not None else default_root()
    if name not in DATASETS:
        folder = Path(name).expanduser()
        if not folder.is_dir():
            known = ", ".join(DATASETS)
            raise ValueError(f"unknown dataset '{name}': use one of {known}, or the path of a folder of images.")
        return _cached(f"folder-{folder.resolve()}", _folder_signature(folder),
                       lambda: _load_folder(folder), use_cache)

    available, where = is_available(name, root)
    if name == "cifar10" and available and where == _cifar10_jpeg(root):
        data = _cached("cifar10-jpeg", _folder_signature(where), lambda: _load_folder(where), use_cache)
        data.name = "cifar10"
        return data
    if not available and name != "digits":
        if not download:
            raise DatasetNotFound(missing_message(name, root))
        _download(name, root)
    signature = "" if name == "digits" else str((root / DATASETS[name].folder).resolve())
    return _cached(name, signature, lambda: _LOADERS[name](root), use_cache)


def _download(name: str, root: Path) -> None:
    try:
        _LOADERS[name](root, download=True)
    except Exception as err:  # network errors come in many types; the message is what matters
        raise DatasetNotFound(f"could not download '{name}' into {root} ({type(err).__name__}: {err}); "
                              f"{DATASETS[name].how_to_get.replace('run', 'retry', 1)}.") from err


def _cached(key: str, signature: str, load, use_cache: bool) -> ImageData:
    digest = hashlib.sha1(f"{key}|{signature}|{_CACHE_FORMAT}".encode()).hexdigest()[:12]
    slug = Path(key).name if key.startswith("folder-") else key
    path = cache_root() / "datasets" / f"{slug}-{digest}.pt"
    if use_cache and path.exists():
        try:
            return ImageData(**torch.load(path, weights_only=True))
        except Exception:  # noqa: BLE001 -- a damaged cache entry (zip, pickle or field errors) is decoded again
            print(f"sslkit: note: the cached copy {path} is damaged; decoding the dataset again.", file=sys.stderr)
    data = load()
    if use_cache:
        try:
            atomic_save(vars(data), path)
        except WriteError as err:    # the cache only saves time: go on without it
            print(f"sslkit: note: could not cache the decoded dataset at {path} ({err.reason}); going on without "
                  "the cache (point $SSLKIT_CACHE at a folder you can write to).", file=sys.stderr)
    return data


# ----------------------------------------------------------------------------- loaders

def _as_nchw(x: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W) or (N, H, W, C) -> (N, C, H, W)."""
    t = torch.from_numpy(np.ascontiguousarray(x)).to(torch.uint8)
    if t.ndim == 3:
        return t.unsqueeze(1)
    return t.permute(0, 3, 1, 2).contiguous()


def _load_digits(root: Path, download: bool = False) -> ImageData:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # pixel values are 0..16: scale to the 0..255 range every other dataset uses
    x = torch.from_numpy((bunch.images * (255.0 / 16.0)).round().astype(np.uint8)).unsqueeze(1)
    y = torch.from_numpy(bunch.target).long()
    g = torch.Generator().manual_seed(0)
    test = _stratified(y, 360, g)  # the usual 80/20 split, fixed by seed 0
    train = torch.ones(len(y), dtype=torch.bool)
    train[test] = False
    return ImageData("digits", x[train], y[train], x[test], y[test], [str(i) for i in range(10)])


def _torchvision_split(cls, root: Path, download: bool, **kw) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    ds = cls(root=str(root), download=download, **kw)
    data = ds.data.numpy() if torch.is_tensor(ds.data) else np.asarray(ds.data)
    targets = ds.targets if hasattr(ds, "targets") else ds.labels
    labels = torch.as_tensor(np.asarray(targets)).long()
    classes = list(getattr(ds, "classes", [str(i) for i in range(int(labels.max()) + 1)]))
    return data, labels, classes


def _load_mnist_like(cls_name: str, name: str):
    def load(root: Path, download: bool = False) -> ImageData:
        import torchvision.datasets as tvd

        cls = getattr(tvd, cls_name)
        xtr, ytr, classes = _torchvision_split(cls, root, download, train=True)
        xte, yte, _ = _torchvision_split(cls, root, download, train=False)
        return ImageData(name, _as_nchw(xtr), ytr, _as_nchw(xte), yte, classes)
    return load


def _load_cifar10(root: Path, download: bool = False) -> ImageData:
    from torchvision.datasets import CIFAR10

    xtr, ytr, classes = _torchvision_split(CIFAR10, root, download, train=True)
    xte, yte, _ = _torchvision_split(CIFAR10, root, download, train=False)
    return ImageData("cifar10", _as_nchw(xtr), ytr, _as_nchw(xte), yte, classes)


def _load_stl10(root: Path, download: bool = False) -> ImageData:
    from torchvision.datasets import STL10

    splits = {s: STL10(root=str(root), split=s, download=download and s == "train") for s in ("train", "test", "unlabeled")}
    def x(s):  # STL10 already stores (N, C, H, W) uint8
        return torch.from_numpy(splits[s].data)
    def y(s):
        return torch.from_numpy(splits[s].labels).long()
    return ImageData("stl10", x("train"), y("train"), x("test"), y("test"), list(splits["train"].classes),
                     unlabeled_x=x("unlabeled"))


def _load_svhn(root: Path, download: bool = False) -> ImageData:
    from torchvision.datasets import SVHN

    tr, te = SVHN(str(root), "train", download=download), SVHN(str(root), "test", download=download)
    return ImageData("svhn", torch.from_numpy(tr.data), torch.from_numpy(tr.labels).long(),
                     torch.from_numpy(te.data), torch.from_numpy(te.labels).long(), [str(i) for i in range(10)])


_LOADERS = {
    "digits": _load_digits,
    "mnist": _load_mnist_like("MNIST", "mnist"),
    "fashion-mnist": _load_mnist_like("FashionMNIST", "fashion-mnist"),
    "cifar10": _load_cifar10,
    "stl10": _load_stl10,
    "svhn": _load_svhn,
}


# ----------------------------------------------------------------------------- image folders

def _image_files(split_dir: Path) -> tuple[list[Path], list[int], list[str]]:
    # hidden folders are no class: Jupyter's .ipynb_checkpoints, macOS's .DS_Store companions
    classes = sorted(d.name for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith("."))
    files, labels = [], []
    for label, cls in enumerate(classes):
        found = [f for f in sorted((split_dir / cls).iterdir())
                 if f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".") and f.is_file()]
        if not found:
            raise ValueError(f"the class folder {split_dir / cls} holds no images "
                             f"({', '.join(sorted(IMAGE_SUFFIXES))}): add images to it or remove it.")
        files += found
        labels += [label] * len(found)
    return files, labels, classes


def _folder_signature(folder: Path) -> str:
    """Changes when the folder's class folders change (a cheap guard for the decoded cache)."""
    parts = []
    for split in ("train", "test"):
        d = folder / split
        if d.is_dir():
            parts += [f"{c.name}:{c.stat().st_mtime_ns}" for c in sorted(d.iterdir())
                      if c.is_dir() and not c.name.startswith(".")]
    return "|".join(parts)


def _decode(files: list[Path]) -> torch.Tensor:
    """Decode every file to RGB uint8 ``(N, 3, H, W)``; grey, palette and RGBA images are
    converted, so a folder of mixed grey and colour images loads as one shape.

    A file that cannot be decoded (not an image, truncated, unreadable) is refused, naming it,
    rather than skipped: a dataset silently smaller than the folder would be a worse surprise.
    """
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    def read(f: Path) -> np.ndarray | str:
        try:
            with Image.open(f) as im:
                return np.asarray(im.convert("RGB"))
        except Exception as err:  # noqa: BLE001 -- Pillow's decoders raise many types; the reason is what matters
            return f"{f} ({str(err) or type(err).__name__})"

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:  # PIL releases the GIL
        arrays = list(pool.map(read, files, chunksize=256))
    bad = [a for a in arrays if isinstance(a, str)]
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise ValueError(f"{len(bad)} of the {len(files)} image files cannot be read as images: "
                         f"{'; '.join(bad[:3])}{more}; delete or replace them and run again.")
    by_shape: dict[tuple, Path] = {}
    for f, a in zip(files, arrays):
        by_shape.setdefault(a.shape[:2], f)
    if len(by_shape) != 1:
        examples = ", ".join(f"{f} is {w}x{h}" for (h, w), f in list(by_shape.items())[:2])
        raise ValueError(f"the images have {len(by_shape)} different sizes ({examples}): "
                         "resize them to one size first.")
    return _as_nchw(np.stack(arrays))


def _load_folder(folder: Path) -> ImageData:
    train_dir = folder / "train"
    if not train_dir.is_dir():
        raise ValueError(f"{folder} has no train/ folder: lay images out as {folder}/train/<class>/*.jpg.")
    files, labels, classes = _image_files(train_dir)
    if not files:
        raise ValueError(f"{train_dir} holds no images in class folders: lay them out as train/<class>/*.jpg.")
    x, y = _decode(files), torch.tensor(labels)
    if (folder / "test").is_dir():
        tfiles, tlabels, tclasses = _image_files(folder / "test")
        if tclasses != classes:
            raise ValueError(f"{folder}/test has classes {tclasses}, not the train classes {classes}.")
        tx = _decode(tfiles)
        if tx.shape[1:] != x.shape[1:]:
            raise ValueError(f"the test images are {tx.shape[3]}x{tx.shape[2]} but the train images "
                             f"{x.shape[3]}x{x.shape[2]}: resize them to one size first.")
        return ImageData(folder.name, x, y, tx, torch.tensor(tlabels), classes)
    if min(torch.bincount(y).tolist()) < 2:   # the seeded split keeps one image per class for the test
        raise ValueError(f"{train_dir} needs at least 2 images in every class folder to split off a test set: "
                         f"add images, or give a test/<class>/ folder.")
    test = _stratified(y, len(y) // 5, torch.Generator().manual_seed(0))
    train = torch.ones(len(y), dtype=torch.bool)
    train[test] = False
    return ImageData(folder.name, x[train], y[train], x[test], y[test], classes)
