"""CIFAR-10/100 from a local file (or a download), splits, augmentation and fast batch loaders.

Where the data come from, in this order, for ``name`` in ``{"cifar10", "cifar100"}``:

1. ``<dir>/<name>.npz`` with keys ``x_train (N, 32, 32, 3) uint8``, ``y_train``, ``x_test``,
   ``y_test`` (integer labels ``0 .. num_classes - 1``) and optionally ``classes`` (one name a
   class);
2. torchvision's on-disk format in ``<dir>`` (``cifar-10-batches-py`` / ``cifar-100-python``);

where ``<dir>`` is the ``root`` argument alone when it is given (it may also name the ``.npz``
file or torchvision's folder itself), and otherwise each of: the ``DFKD_DATA`` environment
variable, the default data folder (:func:`local_data_dir`: the repository's ``data/`` in a
checkout, else ``./data``) and a ``shared/data`` folder beside the checkout. With
``download=True`` torchvision downloads, when nothing was found, into ``root`` if it is given
(creating it) and into the default data folder otherwise.

The whole data set is kept as one ``uint8`` tensor (150 MB for CIFAR, also on a GPU) and
:class:`BatchLoader` crops, flips and normalises a whole batch at once, which is several times
faster than per-image transforms on a small CPU.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "DATA_ENV",
    "DataNotFoundError",
    "DatasetArrays",
    "STATS",
    "stats_for",
    "normalise",
    "candidate_dirs",
    "local_data_dir",
    "load_cifar",
    "make_synthetic",
    "split_indices",
    "labelled_subset",
    "interleave_classes",
    "BatchLoader",
    "Loaders",
    "get_loaders",
]

DATA_ENV = "DFKD_DATA"
REPO_ROOT = Path(__file__).resolve().parent.parent
STATS = {  # per-channel mean and std of the training images, in [0, 1]
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def stats_for(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The per-channel mean and std (on the 0-1 scale) that a data set's images are normalised
    with: its own for CIFAR-10 and CIFAR-100, CIFAR-10's for generated data.

    >>> stats_for("synthetic") == STATS["cifar10"]
    True
    """
    return STATS.get(name, STATS["cifar10"])


def normalise(images: Tensor, mean: Sequence[float] | Tensor, std: Sequence[float] | Tensor) -> Tensor:
    """``(N, 3, H, W)`` ``uint8`` images as the networks take them: ``float32``, per channel
    ``(x / 255 - mean) / std`` with ``mean`` and ``std`` on the 0-1 scale (computed as
    ``(x - 255 mean) / (255 std)``). What :class:`BatchLoader` does to every batch.

    >>> normalise(torch.full((1, 3, 1, 1), 255, dtype=torch.uint8), (0.5,) * 3, (0.5,) * 3).flatten().tolist()
    [1.0, 1.0, 1.0]
    """
    m = torch.as_tensor(mean, dtype=torch.float32, device=images.device).view(1, -1, 1, 1) * 255
    sd = torch.as_tensor(std, dtype=torch.float32, device=images.device).view(1, -1, 1, 1) * 255
    return (images.float() - m) / sd


NUM_CLASSES = {"cifar10": 10, "cifar100": 100}
_TV_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


class DataNotFoundError(FileNotFoundError):
    """No copy of a data set was found (and none could be downloaded)."""


@dataclass
class DatasetArrays:
    """A data set held as arrays: images ``(N, 32, 32, 3) uint8`` and integer labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]
    name: str
    source: str
    synthetic: bool = False

    @property
    def num_classes(self) -> int:
        """Number of classes (10 for CIFAR-10)."""
        return len(self.classes)


def _check_name(name: str) -> str:
    key = name.lower().replace("-", "")
    if key not in NUM_CLASSES:
        raise ValueError(f"unknown dataset {name!r}; choose 'cifar10' or 'cifar100'")
    return key


def local_data_dir() -> Path:
    """The default data folder: the repository's ``data/`` when the library runs from a checkout,
    else ``data/`` in the working directory (a pip-installed library, e.g. in Colab)."""
    return REPO_ROOT / "data" if (REPO_ROOT / "pyproject.toml").is_file() else Path.cwd() / "data"


def candidate_dirs(root: str | os.PathLike | None = None) -> list[Path]:
    """Folders searched for data, in order: ``root`` alone when it is given, else ``DFKD_DATA``,
    the default data folder and ``shared/data`` beside the checkout (see the module docstring)."""
    if root is not None:
        return [Path(root).expanduser().resolve()]
    dirs = []
    if os.environ.get(DATA_ENV):
        dirs.append(Path(os.environ[DATA_ENV]))
    dirs += [local_data_dir(), REPO_ROOT.parent / "shared" / "data"]
    seen, out = set(), []
    for d in dirs:
        d = d.expanduser().resolve()
        if d not in seen:
            seen.add(d)
            out.append(d)
    return out


def _check_labels(where: str | Path, name: str, labels: dict[str, np.ndarray], classes: list[str] | None) -> None:
    """Raise ValueError unless every label array holds whole numbers in ``0 .. n - 1``, the
    training labels hold all ``n`` classes, and ``classes`` (if given) has ``n`` names, ``n``
    being the number of classes of ``name``. Cheap for CIFAR's 60,000 labels."""
    n = NUM_CLASSES[name]
    for key, y in labels.items():
        if y.dtype.kind not in "iuf":
            raise ValueError(f"{where}: {key} must hold integer labels, got dtype {y.dtype}; save them as int64")
        if y.dtype.kind == "f":  # whole numbers stored as floats are read as before; 0.7 is not a label
            whole = np.isfinite(y) & (y == np.round(y))
            if not whole.all():
                bad = float(y[~whole][0])
                raise ValueError(f"{where}: {key} must hold integer labels, got {bad} ({y.dtype}); save them as int64")
        if y.size and (y.min() < 0 or y.max() > n - 1):
            lo, hi = int(y.min()), int(y.max())
            raise ValueError(
                f"{where}: {key} holds labels outside 0..{n - 1} (min {lo}, max {hi}); {name} has {n} classes "
                "(see data/README.md for the format)"
            )
    present = np.unique(labels["y_train"]).size if "y_train" in labels else n
    if present != n:  # a CIFAR-10 file saved as cifar100.npz has labels in range, of 10 classes only
        raise ValueError(
            f"{where}: y_train holds {present} distinct labels, but {name} has {n} classes; is it another data "
            "set's file?"
        )
    if classes is not None and len(classes) != n:
        raise ValueError(
            f"{where}: classes has {len(classes)} names, but {name} has {n} classes; save one name a class in "
            "label order (or leave classes out)"
        )


def _load_npz(path: Path, name: str) -> DatasetArrays:
    try:
        with np.load(path, allow_pickle=False) as d:
            files = set(d.files)
            arrays = {k: d[k] for k in ("x_train", "y_train", "x_test", "y_test") if k in files}
            names = d["classes"] if "classes" in files else None
    except Exception as e:  # not a zip, truncated, pickled objects, ...
        raise ValueError(f"cannot read {path} (corrupt or not an .npz archive): {e}") from e
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in arrays]
    if missing:
        raise ValueError(f"{path} lacks the arrays {missing}; see data/README.md for the format")
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 4 or x.shape[1:] != (32, 32, 3) or x.dtype != np.uint8:
            raise ValueError(f"{path}: x_{split} must be (N, 32, 32, 3) uint8, got {x.shape} {x.dtype}")
        if y.shape != (x.shape[0],):
            raise ValueError(f"{path}: y_{split} has shape {y.shape}, expected ({x.shape[0]},)")
    if names is not None and names.ndim != 1:
        raise ValueError(f"{path}: classes must be a 1-D array of names, got shape {names.shape}")
    classes = [str(c) for c in names] if names is not None and names.size else None  # empty: numbered
    classes = classes or [str(i) for i in range(NUM_CLASSES[name])]
    # the labels as stored: load_cifar checks them (whole numbers in range) and casts them to int64
    return DatasetArrays(
        arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], classes, name, str(path)
    )


def _load_torchvision(folder: Path, name: str, download: bool) -> DatasetArrays:
    import torchvision

    cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    train = cls(str(folder), train=True, download=download)
    test = cls(str(folder), train=False, download=download)
    return DatasetArrays(
        np.asarray(train.data), np.asarray(train.targets, dtype=np.int64),
        np.asarray(test.data), np.asarray(test.targets, dtype=np.int64),
        list(train.classes), name, str(folder / _TV_FOLDERS[name]),
    )  # fmt: skip


def _read_torchvision(folder: Path, name: str) -> DatasetArrays:
    """Read torchvision's files in ``folder`` (no download), naming the folder if they are broken."""
    try:
        arrays = _load_torchvision(folder, name, download=False)
    except ImportError:
        raise
    except Exception as e:  # torchvision's "not found or corrupted", a truncated batch, ...
        raise ValueError(f"cannot read {folder / _TV_FOLDERS[name]} (corrupt or incomplete): {e}") from e
    return arrays


def load_cifar(name: str = "cifar10", root: str | os.PathLike | None = None, download: bool = False) -> DatasetArrays:
    """Load CIFAR-10 or CIFAR-100 as arrays from the first place that has it.

    Args:
        name: ``"cifar10"`` or ``"cifar100"``.
        root: the folder that holds the data (or the ``.npz`` file, or torchvision's folder,
            itself); when given, only there is looked (see the module docstring for the folders
            searched without it). With ``download=True``, where the download goes.
        download: download with torchvision when no copy is found.

    Raises:
        DataNotFoundError: nothing found (and no download asked for, or it failed), or ``root``
            does not exist (without ``download``) or holds no copy; the message lists the folders
            searched and says where to put the data.
        ValueError: a file was found but is corrupt, has the wrong shapes, labels outside
            ``0 .. num_classes - 1`` or a ``classes`` list of another length.
    """
    name = _check_name(name)
    arrays = _find_cifar(name, root, download)
    _check_labels(arrays.source, name, {"y_train": arrays.y_train, "y_test": arrays.y_test}, arrays.classes)
    return replace(arrays, y_train=arrays.y_train.astype(np.int64), y_test=arrays.y_test.astype(np.int64))


def _find_cifar(name: str, root: str | os.PathLike | None, download: bool) -> DatasetArrays:
    """The first copy of ``name`` in the places :func:`load_cifar` documents, labels unchecked."""
    hint = f"give the folder that holds {name}.npz"
    if root is not None:
        given = Path(root).expanduser()
        if given.is_file():
            if given.suffix != ".npz":
                raise DataNotFoundError(f"data folder {root} is a file, not a folder ({hint})")
            others = [n for n in NUM_CLASSES if n != name and given.stem == n]
            if others:
                raise ValueError(f"{root} holds {others[0]}, not {name}: pass {name}.npz or the folder that holds it")
            return _load_npz(given, name)
        if given.name == _TV_FOLDERS[name] and given.is_dir():  # torchvision's folder itself
            return _read_torchvision(given.parent, name)
        if not download and not given.exists():
            raise DataNotFoundError(f"data folder {root} does not exist ({hint})")
    dirs = candidate_dirs(root)
    for d in dirs:
        npz = d / f"{name}.npz"
        if npz.is_file():
            return _load_npz(npz, name)
        if (d / _TV_FOLDERS[name]).is_dir():
            return _read_torchvision(d, name)
    if download:
        target = Path(root).expanduser() if root is not None else local_data_dir()
        target.mkdir(parents=True, exist_ok=True)
        try:
            return _load_torchvision(target, name, download=True)
        except Exception as e:  # no network, server down, ...
            raise DataNotFoundError(f"could not download {name} into {target}: {e}") from e
    if root is not None:
        raise DataNotFoundError(f"no {name}.npz or {_TV_FOLDERS[name]}/ in {root} ({hint})")
    raise DataNotFoundError(
        f"{name} not found. Looked for {name}.npz or torchvision's {_TV_FOLDERS[name]}/ in: "
        + ", ".join(str(d) for d in dirs)
        + f". Put the data in one of them, point {DATA_ENV} at the folder that holds it, "
        "or pass download=True (--download) when online."
    )


def make_synthetic(
    num_classes: int = 10, train_per_class: int = 100, test_per_class: int = 20, seed: int = 0
) -> DatasetArrays:
    """A small generated stand-in for CIFAR: each class is a random smooth colour pattern,
    shifted and flipped at random, with noise. Learnable by a small ResNet in a few epochs; used
    by the tests and by offline builds of the book."""
    rng = np.random.default_rng(seed)
    templates = rng.uniform(0, 1, size=(num_classes, 3, 6, 6)).astype(np.float32)
    templates = F.interpolate(torch.from_numpy(templates), size=40, mode="bicubic", align_corners=False).numpy()

    def draw(per_class: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.repeat(np.arange(num_classes), per_class)
        n = len(y)
        ox, oy = rng.integers(0, 9, n), rng.integers(0, 9, n)
        x = np.stack([templates[c, :, i : i + 32, j : j + 32] for c, i, j in zip(y, oy, ox)])
        flip = rng.random(n) < 0.5
        x[flip] = x[flip, :, :, ::-1]
        x = x + rng.normal(0, 0.15, size=x.shape).astype(np.float32)
        x = np.clip(x * 255, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
        return np.ascontiguousarray(x), y.astype(np.int64)

    x_tr, y_tr = draw(train_per_class)
    x_te, y_te = draw(test_per_class)
    name = "cifar10" if num_classes == 10 else "cifar100" if num_classes == 100 else f"synthetic{num_classes}"
    classes = [f"class{i}" for i in range(num_classes)]
    return DatasetArrays(x_tr, y_tr, x_te, y_te, classes, name, f"generated (seed {seed})", synthetic=True)


def split_indices(labels: np.ndarray, val_size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Class-stratified, seeded split of a training set into ``(train, val)`` index arrays."""
    n = len(labels)
    if not 0 <= val_size < n:
        raise ValueError(f"val_size must be in [0, {n}), got {val_size}")
    if val_size == 0:
        return np.arange(n), np.arange(0)
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per_class = np.full(len(classes), val_size // len(classes))
    per_class[: val_size % len(classes)] += 1
    val = []
    for c, k in zip(classes, per_class):
        idx = np.flatnonzero(labels == c)
        val.append(rng.choice(idx, size=min(k, len(idx) - 1), replace=False))
    val = np.sort(np.concatenate(val))
    train = np.setdiff1d(np.arange(n), val)
    return train, val


def labelled_subset(labels: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Boolean mask of a seeded, class-balanced labelled subset (at least one image a class)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"labelled fraction must be in (0, 1], got {fraction}")
    mask = np.zeros(len(labels), dtype=bool)
    if fraction == 1:
        mask[:] = True
        return mask
    rng = np.random.default_rng(seed + 1)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = max(1, round(fraction * len(idx)))
        mask[rng.choice(idx, size=k, replace=False)] = True
    return mask


def interleave_classes(labels: np.ndarray | Tensor) -> np.ndarray:
    """Indices of ``labels`` that take the classes in turn: the first image of every class (in
    stored order), then the second of every class, and so on.

    Any prefix of the result is as class-balanced as it can be, whatever the stored order: the
    first 1,000 of CIFAR-10's validation images stored class by class are all airplanes and
    automobiles; the first 1,000 of this order hold 100 of each class.

    >>> interleave_classes(np.array([0, 0, 0, 1, 1, 2])).tolist()
    [0, 3, 5, 1, 4, 2]
    """
    labels = np.asarray(labels.cpu() if isinstance(labels, Tensor) else labels)
    order = np.argsort(labels, kind="stable")  # grouped by class, stored order within each
    grouped = labels[order]
    first = np.searchsorted(grouped, grouped, side="left")  # where each image's class starts
    turn = np.arange(len(labels)) - first  # 0 for a class's first image, 1 for its second, ...
    return order[np.lexsort((grouped, turn))]  # by turn, then by class


class BatchLoader:
    """Batches of normalised ``float32`` images from a ``uint8`` tensor, augmented as a whole.

    Augmentation (training): zero-pad 4 pixels, random 32x32 crop, random horizontal flip. The
    order and the augmentation of epoch ``e`` depend only on ``(seed, e)`` (see :meth:`set_epoch`),
    so a resumed run sees exactly the batches an uninterrupted one would. With ``world_size > 1``
    each rank gets an equal, disjoint share of every epoch (for DistributedDataParallel).

    Args:
        images: ``(N, 3, H, W)`` ``uint8`` images; kept on ``device`` whole.
        labels: ``(N,)`` labels (``-1`` for an image whose label is withheld).
        batch_size: images per batch (per rank).
        mean, std: per-channel statistics on the 0-1 scale; a batch is ``(x / 255 - mean) / std``.
        shuffle: a new order every epoch (else the stored order).
        augment: pad, crop and flip as above.
        drop_last: drop a last, incomplete batch.
        seed: with the epoch, fixes the order and the augmentation.
        device: where the images live and batches are made.
        channels_last: give batches in the channels-last memory format.
        rank, world_size: this process's share of each epoch.
        max_batches: stop an epoch after this many batches (None: all).
        num_classes: classes of the data set the labels come from (None: not known), so that
            :func:`dfkd_lib.train.evaluate` can refuse a model with another number of outputs.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        shuffle: bool = False,
        augment: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        device: torch.device | str = "cpu",
        channels_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        max_batches: int | None = None,
        num_classes: int | None = None,
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be a (N, 3, H, W) uint8 tensor, got {tuple(images.shape)} {images.dtype}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        self.batch_size = batch_size
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device)
        self.shuffle, self.augment, self.drop_last = shuffle, augment, drop_last
        self.seed, self.epoch = seed, 0
        self.channels_last = channels_last
        self.rank, self.world_size = rank, world_size
        self.max_batches = max_batches
        self.num_classes = num_classes

    def subset(self, indices: np.ndarray | Tensor) -> BatchLoader:
        """The images at ``indices``, in that order, as a loader with this one's batch size,
        normalisation, memory format and class count, without shuffling, augmentation, sharding
        or a cap on the batches of an epoch."""
        sub = copy.copy(self)
        idx = torch.as_tensor(indices, dtype=torch.long, device=self.device)
        sub.images, sub.labels = self.images[idx], self.labels[idx]
        sub.shuffle = sub.augment = sub.drop_last = False
        sub.rank, sub.world_size, sub.max_batches, sub.epoch = 0, 1, None, 0
        return sub

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order and augmentation the next iteration uses."""
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.images) // self.world_size
        full = n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        return full if self.max_batches is None else min(full, self.max_batches)

    @property
    def num_samples(self) -> int:
        """Images this loader draws its batches from."""
        return len(self.images)

    def _order(self) -> Tensor:
        # the same permutation on every rank (seeded by seed and epoch only), then each rank's share
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch * 7919)
        n = len(self.images)
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        per_rank = n // self.world_size
        return order[self.rank * per_rank : (self.rank + 1) * per_rank] if self.world_size > 1 else order

    def _augment(self, x: Tensor, g: torch.Generator) -> Tensor:
        b, _, h, w = x.shape
        xp = F.pad(x, (4, 4, 4, 4))
        oy = torch.randint(0, 9, (b,), generator=g).to(self.device)
        ox = torch.randint(0, 9, (b,), generator=g).to(self.device)
        rows = (oy[:, None] + torch.arange(h, device=self.device))[:, None, :, None]
        cols = (ox[:, None] + torch.arange(w, device=self.device))[:, None, None, :]
        bi = torch.arange(b, device=self.device)[:, None, None, None]
        ci = torch.arange(3, device=self.device)[None, :, None, None]
        x = xp[bi, ci, rows, cols]
        flip = (torch.rand(b, generator=g) < 0.5).to(self.device)
        return torch.where(flip[:, None, None, None], x.flip(3), x)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        order = self._order().to(self.device)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch * 7919 + 104_729 * (self.rank + 1))
        for k in range(len(self)):
            idx = order[k * self.batch_size : (k + 1) * self.batch_size]
            x = self.images[idx]
            if self.augment:
                x = self._augment(x, g)
            x = normalise(x, self.mean, self.std)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[idx]


@dataclass
class Loaders:
    """Train, validation and test loaders of one data set, with what describes them."""

    train: BatchLoader
    val: BatchLoader | None
    test: BatchLoader
    classes: list[str]
    source: str
    synthetic: bool
    num_labelled: int
    sizes: dict[str, int] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        """Number of classes (10 for CIFAR-10)."""
        return len(self.classes)


def get_loaders(
    dataset: str | DatasetArrays = "cifar10",
    root: str | os.PathLike | None = None,
    batch_size: int = 128,
    eval_batch_size: int = 500,
    val_size: int = 5000,
    labelled_fraction: float = 1.0,
    split_seed: int = 0,
    seed: int = 0,
    device: torch.device | str = "cpu",
    channels_last: bool = False,
    download: bool = False,
    augment: bool = True,
    rank: int = 0,
    world_size: int = 1,
    max_train_batches: int | None = None,
) -> Loaders:
    """Loaders for training (shuffled, augmented), validation and test.

    Args:
        dataset: ``"cifar10"``, ``"cifar100"``, or a :class:`DatasetArrays` (e.g. from
            :func:`make_synthetic`).
        val_size: images held out of the training set for validation (stratified, chosen by
            ``split_seed`` so that runs with different ``seed`` share one split).
        labelled_fraction: fraction of the remaining training images that keep their label
            (class-balanced, chosen by ``split_seed``); the others get label ``-1``.
        seed: the run's seed for shuffling and augmentation.
        batch_size: global batch size; each of ``world_size`` ranks gets ``batch_size // world_size``.
        root, download: where to look for the data set, and whether to download it (see
            :func:`load_cifar`).
        eval_batch_size: batch size of the validation and test loaders.
        split_seed: seed of the validation split and of the labelled subset.
        device, channels_last: where batches are made, and in which memory format.
        augment: crop and flip the training batches.
        rank, world_size: this process's share of each training epoch (DistributedDataParallel).
        max_train_batches: batches per training epoch at most (None: all), for short runs.

    Returns:
        :class:`Loaders`: ``train``, ``val`` (None when ``val_size`` is 0) and ``test``, with the
        class names, where the data came from and the split sizes.

    Raises:
        DataNotFoundError: no copy of the data set found (see :func:`load_cifar`).
        ValueError: ``batch_size`` not divisible by ``world_size``, or a corrupt file.
    """
    arrays = dataset if isinstance(dataset, DatasetArrays) else load_cifar(dataset, root, download)
    mean, std = stats_for(arrays.name)
    train_idx, val_idx = split_indices(arrays.y_train, val_size, split_seed)
    y_train = arrays.y_train[train_idx].copy()
    mask = labelled_subset(y_train, labelled_fraction, split_seed)
    y_train[~mask] = -1

    def tensor(x: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))

    common = dict(mean=mean, std=std, device=device, channels_last=channels_last, num_classes=len(arrays.classes))
    if batch_size % world_size:
        raise ValueError(f"batch_size {batch_size} is not divisible by the number of processes {world_size}")
    train = BatchLoader(
        tensor(arrays.x_train[train_idx]), torch.from_numpy(y_train), batch_size // world_size,
        shuffle=True, augment=augment, drop_last=True, seed=seed, rank=rank, world_size=world_size,
        max_batches=max_train_batches, **common,
    )  # fmt: skip
    val = None
    if len(val_idx):
        val = BatchLoader(
            tensor(arrays.x_train[val_idx]), torch.from_numpy(arrays.y_train[val_idx]), eval_batch_size, **common
        )
    test = BatchLoader(tensor(arrays.x_test), torch.from_numpy(arrays.y_test), eval_batch_size, **common)
    sizes = {"train": len(train_idx), "val": len(val_idx), "test": len(arrays.y_test), "labelled": int(mask.sum())}
    return Loaders(train, val, test, arrays.classes, arrays.source, arrays.synthetic, int(mask.sum()), sizes)
