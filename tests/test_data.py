import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dfkd_lib import data as D


def test_real_cifar10_loads_with_right_counts_and_range(cifar):
    assert cifar.x_train.shape == (50000, 32, 32, 3) and cifar.x_test.shape == (10000, 32, 32, 3)
    assert cifar.x_train.dtype == np.uint8
    assert np.bincount(cifar.y_train).tolist() == [5000] * 10
    assert np.bincount(cifar.y_test).tolist() == [1000] * 10
    assert cifar.classes[0] == "airplane" and cifar.classes[-1] == "truck"
    mean = cifar.x_train[::10].reshape(-1, 3).mean(0) / 255
    np.testing.assert_allclose(mean, D.STATS["cifar10"][0], atol=2e-3)


def test_real_cifar10_splits_are_disjoint_and_stratified(cifar):
    train, val = D.split_indices(cifar.y_train, 5000, seed=0)
    assert len(train) == 45000 and len(val) == 5000
    assert len(np.intersect1d(train, val)) == 0 and len(np.union1d(train, val)) == 50000
    assert np.bincount(cifar.y_train[val]).tolist() == [500] * 10
    # seeded: same seed same split, other seed other split
    assert np.array_equal(val, D.split_indices(cifar.y_train, 5000, seed=0)[1])
    assert not np.array_equal(val, D.split_indices(cifar.y_train, 5000, seed=1)[1])


def test_real_cifar10_loaders(cifar):
    loaders = D.get_loaders(cifar, batch_size=128, labelled_fraction=0.1)
    assert loaders.sizes == {"train": 45000, "val": 5000, "test": 10000, "labelled": 4500}
    assert len(loaders.train) == 45000 // 128
    x = torch.cat([x for x, _ in loaders.test])
    assert x.dtype == torch.float32 and x.shape == (10000, 3, 32, 32)
    # normalised with the training statistics: about zero mean and unit std on the test set
    assert abs(float(x.mean())) < 0.05 and 0.95 < float(x.std()) < 1.05
    ys = torch.cat([y for _, y in loaders.train])
    lab = ys[ys >= 0]
    assert len(lab) / len(ys) == pytest.approx(0.1, abs=0.01)
    assert torch.bincount(lab, minlength=10).min() > 0.08 * len(lab)


def test_the_first_validation_images_of_the_stored_file_are_two_classes_the_interleaved_all_ten(cifar):
    """Why the flow probe takes the classes in turn: cifar10.npz is stored class by class, so the
    first 1,000 validation images (what the probe read before, and in both protocols) are
    airplanes and automobiles; the first 1,000 of :func:`interleave_classes` are 100 of each."""
    loaders = D.get_loaders(cifar, batch_size=256)
    labels = loaders.val.labels.numpy()
    if np.all(np.diff(cifar.y_train) >= 0):  # the shipped .npz (torchvision's copy is not sorted)
        assert np.bincount(labels[:1000], minlength=10).tolist() == [500, 500] + [0] * 8
    order = D.interleave_classes(loaders.val.labels)
    assert np.bincount(labels[order[:1000]], minlength=10).tolist() == [100] * 10
    assert sorted(order.tolist()) == list(range(5000))  # a permutation


def test_interleave_classes_takes_each_class_in_turn_in_stored_order():
    y = np.array([2, 0, 0, 1, 2, 0, 1, 2, 2])
    order = D.interleave_classes(y)
    assert order.tolist() == [1, 3, 0, 2, 6, 4, 5, 7, 8]  # 0 1 2, 0 1 2, 0 2, 2: each class's in stored order
    assert np.array_equal(D.interleave_classes(torch.as_tensor(y)), order)  # a tensor of labels too
    # every prefix is as balanced as it can be: counts of any two classes differ by at most one
    for k in range(1, 7):
        counts = np.bincount(y[order[:k]], minlength=3)
        assert counts.max() - counts.min() <= 1, k
    assert D.interleave_classes(np.array([], dtype=np.int64)).tolist() == []


def test_a_loaders_subset_keeps_its_normalisation_and_drops_shuffling_and_augmentation(synthetic):
    loaders = D.get_loaders(synthetic, batch_size=7, val_size=0)
    train = loaders.train
    sub = train.subset([5, 0, 3])
    x, y = next(iter(sub))
    assert y.tolist() == [int(train.labels[i]) for i in (5, 0, 3)] and len(sub) == 1
    mean, std = (v.view(1, 3, 1, 1) * 255 for v in (train.mean, train.std))
    want = (train.images[[5, 0, 3]].float() - mean) / std  # no crop, no flip
    assert torch.equal(x, want)
    assert train.shuffle and train.augment and len(train.images) == len(synthetic.y_train)  # unchanged


def test_labelled_subset_is_class_balanced_and_seeded():
    y = np.repeat(np.arange(5), 100)
    m = D.labelled_subset(y, 0.1, seed=3)
    assert m.sum() == 50 and all(m[y == c].sum() == 10 for c in range(5))
    assert np.array_equal(m, D.labelled_subset(y, 0.1, seed=3))
    assert D.labelled_subset(y, 1.0).all()
    assert D.labelled_subset(y, 0.001).sum() == 5  # at least one a class
    with pytest.raises(ValueError):
        D.labelled_subset(y, 0.0)


def test_synthetic_cifar100_code_path(tmp_path):
    arrays = D.make_synthetic(100, train_per_class=5, test_per_class=2, seed=0)
    np.savez_compressed(
        tmp_path / "cifar100.npz",
        x_train=arrays.x_train,
        y_train=arrays.y_train,
        x_test=arrays.x_test,
        y_test=arrays.y_test,
    )
    loaded = D.load_cifar("cifar100", root=tmp_path)
    assert loaded.num_classes == 100 and loaded.x_train.shape == (500, 32, 32, 3)
    loaders = D.get_loaders("cifar100", root=tmp_path, batch_size=50, val_size=100)
    assert loaders.num_classes == 100 and loaders.sizes["val"] == 100
    assert np.bincount(loaded.y_train).tolist() == [5] * 100
    torch.testing.assert_close(loaders.train.mean, torch.tensor(D.STATS["cifar100"][0]))


def test_torchvision_format(tmp_path, monkeypatch):
    """CIFAR-10 in torchvision's on-disk format (pickled batches) is found and read."""
    import torchvision

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)

    def batch(n):
        return {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": list(rng.integers(0, 10, n))}

    train_batches = [batch(20) for _ in range(5)]
    for i, b in enumerate(train_batches, 1):
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(b))
    test = batch(10)
    (folder / "test_batch").write_bytes(pickle.dumps(test))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)
    arrays = D.load_cifar("cifar10", root=tmp_path)
    assert arrays.x_train.shape == (100, 32, 32, 3) and arrays.x_test.shape == (10, 32, 32, 3)
    assert arrays.classes == [f"c{i}" for i in range(10)]
    # labels and pixels as stored: batches in order, each row 3 planes of 32 x 32 (channels last here)
    assert arrays.y_train.tolist() == [int(v) for b in train_batches for v in b["labels"]]
    assert arrays.y_test.tolist() == [int(v) for v in test["labels"]]
    assert np.array_equal(arrays.x_train[20], train_batches[1]["data"][0].reshape(3, 32, 32).transpose(1, 2, 0))
    assert np.array_equal(arrays.x_test[-1], test["data"][-1].reshape(3, 32, 32).transpose(1, 2, 0))
    assert D.load_cifar("cifar10", root=folder).y_train.tolist() == arrays.y_train.tolist()  # the folder itself


def test_missing_data_gives_one_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv(D.DATA_ENV, str(tmp_path))
    monkeypatch.setattr(D, "REPO_ROOT", tmp_path / "nowhere" / "repo")
    monkeypatch.chdir(tmp_path)  # outside a checkout the default data folder is ./data
    with pytest.raises(D.DataNotFoundError) as err:
        D.load_cifar("cifar10")
    msg = str(err.value)
    assert "cifar10 not found" in msg and str(tmp_path) in msg and D.DATA_ENV in msg and "download" in msg
    assert str(tmp_path / "data") in msg
    with pytest.raises(D.DataNotFoundError, match="does not exist"):
        D.load_cifar("cifar10", root=tmp_path / "missing")


def test_corrupt_and_misshapen_files_raise(tmp_path):
    (tmp_path / "cifar10.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match="cannot read"):
        D.load_cifar("cifar10", root=tmp_path)
    np.savez(
        tmp_path / "cifar10.npz",
        x_train=np.zeros((4, 28, 28), np.uint8),
        y_train=np.zeros(4),
        x_test=np.zeros((1, 32, 32, 3), np.uint8),
        y_test=np.zeros(1),
    )
    with pytest.raises(ValueError, match="x_train must be"):
        D.load_cifar("cifar10", root=tmp_path)
    np.savez(tmp_path / "cifar10.npz", x_train=np.zeros((4, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="lacks the arrays"):
        D.load_cifar("cifar10", root=tmp_path)
    with pytest.raises(ValueError, match="unknown dataset"):
        D.load_cifar("mnist")


def test_a_download_goes_into_root_even_a_new_one_and_a_broken_folder_is_named(tmp_path, monkeypatch):
    tried = []

    def offline(folder, name, download):
        tried.append((folder, download))
        raise OSError("no network")

    monkeypatch.setattr(D, "_load_torchvision", offline)
    monkeypatch.setattr(D, "candidate_dirs", lambda root=None: [Path(root)] if root else [])  # no other copy
    new = tmp_path / "new" / "data"
    with pytest.raises(D.DataNotFoundError, match=f"could not download cifar10 into {new}: no network"):
        D.load_cifar("cifar10", root=new, download=True)
    assert tried == [(new, True)] and new.is_dir()
    monkeypatch.undo()
    (tmp_path / "cifar-10-batches-py").mkdir()  # torchvision's folder, but empty
    with pytest.raises(ValueError, match="cifar-10-batches-py .corrupt or incomplete"):
        D.load_cifar("cifar10", root=tmp_path)


def test_an_npz_with_pickled_objects_is_refused_without_running_them(tmp_path, crafted_payload):
    marker = tmp_path / "ran"
    payload = np.empty(1, dtype=object)
    payload[0] = crafted_payload(marker)
    np.savez(tmp_path / "cifar10.npz", x_train=payload, y_train=np.zeros(1), x_test=np.zeros((1, 32, 32, 3), np.uint8),
             y_test=np.zeros(1))  # fmt: skip
    with pytest.raises(ValueError, match="cannot read"):
        D.load_cifar("cifar10", root=tmp_path)
    assert not marker.exists()


def test_augmentation_is_seeded_by_the_seed_and_the_epoch():
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.int64).remainder(251).to(torch.uint8).view(2, 3, 32, 32)
    loader = D.BatchLoader(
        x, torch.tensor([0, 1]), 2, mean=(0, 0, 0), std=(1 / 255,) * 3, shuffle=True, augment=True, seed=1
    )
    loader.set_epoch(0)
    a = next(iter(loader))[0]
    b = next(iter(loader))[0]
    torch.testing.assert_close(a, b)  # same (seed, epoch): same batch
    loader.set_epoch(1)
    assert not torch.equal(next(iter(loader))[0], a)
    assert a.shape == (2, 3, 32, 32)


def test_augmentation_is_a_padded_random_crop_with_a_random_flip():
    torch.manual_seed(0)
    img = torch.randint(1, 256, (3, 32, 32), dtype=torch.uint8)  # no zeros: padding is told apart
    n = 64
    loader = D.BatchLoader(img.expand(n, 3, 32, 32).clone(), torch.arange(n), n, mean=(0, 0, 0), std=(1, 1, 1),
                           shuffle=True, augment=True, seed=1)  # fmt: skip
    loader.set_epoch(0)
    ((out, _),) = list(loader)
    padded = F.pad(img.float(), (4, 4, 4, 4))
    candidates = {}  # every 32 x 32 window of the padded image, flipped or not
    for oy in range(9):
        for ox in range(9):
            crop = padded[:, oy : oy + 32, ox : ox + 32]
            candidates[(oy, ox, False)], candidates[(oy, ox, True)] = crop, crop.flip(2)
    seen = []
    for o in (out * 255).round():  # the loader scales to [0, 1] before mean and std
        match = [k for k, c in candidates.items() if torch.equal(o, c)]
        assert len(match) == 1
        seen.append(match[0])
    assert len({(oy, ox) for oy, ox, _ in seen}) >= 20  # of 81 offsets, drawn 64 times
    assert {flip for *_, flip in seen} == {False, True}


def test_distributed_shards_are_disjoint(synthetic):
    shards, orders = [], []
    for rank in range(2):
        loaders = D.get_loaders(synthetic, batch_size=20, val_size=60, rank=rank, world_size=2)
        orders.append(loaders.train._order())
        shards.append(torch.cat([x.flatten(1) for x, _ in loaders.train]))
    assert len(shards[0]) == len(shards[1])
    common = (torch.cdist(shards[0], shards[1]) < 1e-6).any()
    assert not bool(common)
    # the indices themselves (the images above are augmented, so equal images could still differ)
    per_rank = len(loaders.train.images) // 2
    assert len(orders[0]) == len(orders[1]) == per_rank
    assert len(set(orders[0].tolist()) | set(orders[1].tolist())) == 2 * per_rank


def test_default_data_folder_is_the_checkouts_or_the_working_directorys(tmp_path, monkeypatch):
    assert D.local_data_dir() == D.REPO_ROOT / "data"  # the tests run from a checkout
    monkeypatch.setattr(D, "REPO_ROOT", tmp_path / "site-packages")  # an installed library
    monkeypatch.chdir(tmp_path)
    assert D.local_data_dir() == tmp_path / "data"
    assert tmp_path / "data" in D.candidate_dirs()


def write_npz(path, n_classes=10, per_class=2, **arrays):
    """A small ``.npz`` in the data format (labels 0..n_classes-1 unless ``arrays`` replace them)."""
    y = np.repeat(np.arange(n_classes), per_class)
    x = np.zeros((len(y), 32, 32, 3), np.uint8)
    np.savez(path, **{"x_train": x, "y_train": y, "x_test": x, "y_test": y, **arrays})
    return path


@pytest.mark.parametrize(
    "labels, message",
    [
        (np.array([0, 19] + [1] * 18), r"y_train holds labels outside 0\.\.9 \(min 0, max 19\)"),
        (np.array([-1] + [0] * 19), r"y_train holds labels outside 0\.\.9 \(min -1, max 0\)"),
        (np.array([0.7] + [1.0] * 19), r"y_train must hold integer labels, got 0\.7 \(float64\)"),
        (np.array([np.nan] + [1.0] * 19), r"y_train must hold integer labels, got nan"),
        (np.array(["cat"] * 20), r"y_train must hold integer labels, got dtype <U3"),
    ],
)
def test_labels_outside_the_classes_are_refused(tmp_path, labels, message):
    path = write_npz(tmp_path / "cifar10.npz", y_train=labels)
    with pytest.raises(ValueError, match=message) as err:
        D.load_cifar("cifar10", root=tmp_path)
    assert str(err.value).startswith(f"{path}: ")


def test_label_range_and_class_names_follow_the_data_set(tmp_path):
    write_npz(tmp_path / "cifar10.npz", y_test=np.full(20, 10))
    with pytest.raises(ValueError, match=r"y_test holds labels outside 0\.\.9 \(min 10, max 10\)"):
        D.load_cifar("cifar10", root=tmp_path)
    write_npz(tmp_path / "cifar10.npz", classes=np.array([f"c{i}" for i in range(100)]))
    with pytest.raises(ValueError, match="cifar10.npz: classes has 100 names, but cifar10 has 10 classes"):
        D.load_cifar("cifar10", root=tmp_path)
    write_npz(tmp_path / "cifar100.npz", n_classes=100, per_class=1, y_test=np.arange(1, 101))
    with pytest.raises(ValueError, match=r"y_test holds labels outside 0\.\.99 \(min 1, max 100\)"):
        D.load_cifar("cifar100", root=tmp_path)


def test_whole_labels_stored_as_floats_or_small_ints_still_load(tmp_path):
    y = np.repeat(np.arange(10), 2)
    write_npz(tmp_path / "cifar10.npz", y_train=y.astype(np.float32), y_test=y.astype(np.uint8))
    arrays = D.load_cifar("cifar10", root=tmp_path)
    assert arrays.y_train.dtype == arrays.y_test.dtype == np.int64
    assert arrays.y_train.tolist() == arrays.y_test.tolist() == y.tolist()
    assert arrays.classes == [str(i) for i in range(10)]  # no classes array: the labels' numbers
    write_npz(tmp_path / "cifar10.npz", classes=np.array([], dtype=str))
    assert D.load_cifar("cifar10", root=tmp_path).classes == [str(i) for i in range(10)]  # an empty one too


def test_a_file_named_for_the_other_data_set_is_refused(tmp_path):
    path = write_npz(tmp_path / "cifar10.npz")
    with pytest.raises(ValueError, match="cifar10.npz holds cifar10, not cifar100"):
        D.load_cifar("cifar100", root=path)


def test_cifar10_arrays_saved_as_cifar100_are_refused(tmp_path):
    """Labels 0..9 are in range for CIFAR-100 too; only the number of classes present tells."""
    write_npz(tmp_path / "cifar100.npz", n_classes=10, per_class=2)
    with pytest.raises(ValueError, match="y_train holds 10 distinct labels, but cifar100 has 100 classes"):
        D.load_cifar("cifar100", root=tmp_path)


def test_a_given_root_is_the_only_place_looked(tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    write_npz(elsewhere / "cifar10.npz")
    monkeypatch.setenv(D.DATA_ENV, str(elsewhere))  # a copy the default search finds
    assert D.load_cifar("cifar10").source == str(elsewhere / "cifar10.npz")
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    assert D.candidate_dirs(empty) == [empty.resolve()]
    with pytest.raises(D.DataNotFoundError) as err:
        D.load_cifar("cifar10", root=empty)
    assert (
        str(err.value) == f"no cifar10.npz or cifar-10-batches-py/ in {empty} (give the folder that holds cifar10.npz)"
    )
    with pytest.raises(D.DataNotFoundError, match="no cifar100.npz or cifar-100-python/ in"):
        D.load_cifar("cifar100", root=str(empty))


def test_root_may_be_the_npz_file_itself_but_not_another_file(tmp_path, monkeypatch):
    monkeypatch.delenv(D.DATA_ENV, raising=False)
    path = write_npz(tmp_path / "my_copy.npz", classes=np.array([f"c{i}" for i in range(10)]))
    arrays = D.load_cifar("cifar10", root=path)
    assert arrays.source == str(path) and arrays.classes[3] == "c3" and len(arrays.y_train) == 20
    (tmp_path / "notes.txt").write_text("not data")
    with pytest.raises(
        D.DataNotFoundError, match=r"is a file, not a folder \(give the folder that holds cifar10.npz\)"
    ):
        D.load_cifar("cifar10", root=tmp_path / "notes.txt")


def test_normalise_is_what_a_loader_does_to_every_batch(synthetic):
    """The test loader (no augmentation, stored order) gives the images normalised by ``normalise``
    with the data set's statistics, to the bit; on the 0-1 scale that is (x / 255 - mean) / std."""
    loaders = D.get_loaders(synthetic, eval_batch_size=7, val_size=0)
    x, _ = next(iter(loaders.test))
    raw = torch.from_numpy(synthetic.x_test[:7]).permute(0, 3, 1, 2)
    mean, std = D.stats_for(synthetic.name)
    assert (mean, std) == D.STATS["cifar10"]  # generated data take CIFAR-10's statistics
    assert torch.equal(x, D.normalise(raw, mean, std))
    ref = (raw.double() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(x.double(), ref, atol=1e-5)
    assert D.stats_for("cifar100") == D.STATS["cifar100"]
