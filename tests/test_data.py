import numpy as np
import pytest
import torch
from PIL import Image

from sslkit.data import DATASETS, DatasetNotFound, ImageData, is_available, load_dataset


def test_digits_is_always_there_as_uint8():
    d = load_dataset("digits")
    assert d.train_x.dtype == torch.uint8 and d.train_x.shape[1:] == (1, 8, 8)
    assert len(d.train_x) + len(d.test_x) == 1797 and len(d.test_x) == 360
    assert d.train_x.max() == 255 and set(d.train_y.unique().tolist()) == set(range(10))
    # train and test are disjoint images
    train = {bytes(x.numpy()) for x in d.train_x}
    assert sum(bytes(x.numpy()) in train for x in d.test_x) < 5   # a few digits are exact duplicates


def test_second_load_comes_from_the_cache(tmp_path, monkeypatch):
    first = load_dataset("digits")
    cached = list((tmp_path / "cache" / "datasets").glob("digits-*.pt"))
    assert len(cached) == 1
    import sslkit.data as data_mod
    monkeypatch.setitem(data_mod._LOADERS, "digits", lambda root: pytest.fail("decoded again"))
    again = load_dataset("digits")
    assert torch.equal(first.train_x, again.train_x) and torch.equal(first.test_y, again.test_y)


def make_folder(root, with_test=True, size=(12, 10)):
    rng = np.random.default_rng(0)
    for split in ["train", "test"] if with_test else ["train"]:
        for c, name in enumerate(["cat", "dog", "fox"]):
            (root / split / name).mkdir(parents=True)
            for i in range(6 if split == "train" else 2):
                arr = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
                arr[0, 0] = [c, i, 7]   # a fingerprint to check labels
                Image.fromarray(arr).save(root / split / name / f"{i}.png")
    return root


def test_image_folder_with_test_split(tmp_path):
    d = load_dataset(str(make_folder(tmp_path / "imgs")))
    assert d.classes == ["cat", "dog", "fox"]
    assert d.train_x.shape == (18, 3, 10, 12) and d.test_x.shape == (6, 3, 10, 12)
    assert torch.equal(d.train_x[:, 0, 0, 0].long(), d.train_y)   # red of pixel (0,0) is the class


def test_image_folder_without_test_split_is_split_by_seed(tmp_path):
    folder = make_folder(tmp_path / "imgs", with_test=False)
    a, b = load_dataset(str(folder), use_cache=False), load_dataset(str(folder), use_cache=False)
    assert len(a.train_x) + len(a.test_x) == 18 and len(a.test_x) > 0
    assert torch.equal(a.test_x, b.test_x)


def test_folder_with_mixed_sizes_is_refused(tmp_path):
    folder = make_folder(tmp_path / "imgs", with_test=False)
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(folder / "train" / "cat" / "odd.png")
    with pytest.raises(ValueError, match="different sizes"):
        load_dataset(str(folder))


def test_unknown_name_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown dataset 'imagenet9'"):
        load_dataset("imagenet9")


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10", "stl10", "svhn"])
def test_missing_offline_names_files_place_and_remedy(tmp_path, name):
    with pytest.raises(DatasetNotFound) as err:
        load_dataset(name, root=tmp_path)
    msg = str(err.value)
    assert name in msg and str(tmp_path) in msg and DATASETS[name].files[0] in msg and "download" in msg
    assert "\n" not in msg


def test_root_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SSLKIT_DATA", str(tmp_path))
    ok, where = is_available("mnist")
    assert not ok and where == tmp_path / "MNIST" / "raw"


def test_subset_is_stratified_and_seeded():
    d = load_dataset("digits")
    s = d.subset(100, 50, seed=3)
    assert len(s.train_x) == 100 and len(s.test_x) == 50
    assert torch.bincount(s.train_y).tolist() == [10] * 10
    assert torch.equal(s.train_x, d.subset(100, 50, seed=3).train_x)


def test_pretrain_images_include_unlabeled():
    x = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    d = ImageData("t", x, torch.zeros(4).long(), x, torch.zeros(4).long(), ["a"], unlabeled_x=torch.ones(6, 3, 8, 8, dtype=torch.uint8))
    assert len(d.pretrain_x) == 10


def test_real_mnist_and_fashion_mnist(shared_data):
    for name in ["mnist", "fashion-mnist"]:
        d = load_dataset(name, root=shared_data)
        assert d.train_x.shape == (60000, 1, 28, 28) and d.test_x.shape == (10000, 1, 28, 28)
        assert d.train_x.dtype == torch.uint8 and len(d.classes) == 10


def test_real_cifar10_jpeg_folder(shared_data, tmp_path):
    import tarfile

    tar = shared_data / "cifar10-jpeg.tar.gz"
    if not tar.exists():
        pytest.skip(f"{tar} is not there")
    with tarfile.open(tar) as t:   # only the test split, to keep this test short
        members = [m for m in t.getmembers() if m.name.split("/")[0] == "test" or "/test/" in m.name]
        t.extractall(tmp_path / "c", members=members, filter="data")
    test_dir = next(p for p in (tmp_path / "c").rglob("test") if p.is_dir())
    (test_dir.parent / "train").symlink_to(test_dir)
    d = load_dataset(str(test_dir.parent))
    assert d.train_x.shape == (10000, 3, 32, 32) and len(d.classes) == 10 and d.classes[0] == "airplane"


def test_grey_colour_palette_and_rgba_files_load_as_one_shape(tmp_path):
    folder = make_folder(tmp_path / "imgs", with_test=False)
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (10, 12), dtype=np.uint8)).save(folder / "train" / "cat" / "grey.png")
    Image.fromarray(rng.integers(0, 255, (10, 12, 4), dtype=np.uint8)).save(folder / "train" / "dog" / "rgba.png")
    Image.fromarray(rng.integers(0, 255, (10, 12, 3), dtype=np.uint8)).convert("P").save(folder / "train" / "fox" / "p.gif")
    d = load_dataset(str(folder), use_cache=False)
    assert len(d.train_x) + len(d.test_x) == 21 and d.train_x.shape[1:] == (3, 10, 12)


def test_hidden_folders_and_non_image_files_are_ignored(tmp_path):
    folder = make_folder(tmp_path / "imgs")
    (folder / "train" / ".ipynb_checkpoints").mkdir()
    (folder / "train" / "cat" / "README.txt").write_text("about the cats")
    d = load_dataset(str(folder))
    assert d.classes == ["cat", "dog", "fox"] and len(d.train_x) == 18


def test_unreadable_images_are_refused_naming_each(tmp_path):
    folder = make_folder(tmp_path / "imgs")
    for i in range(5):
        (folder / "train" / "dog" / f"bad{i}.jpg").write_bytes(b"\xff\xd8\xff" + bytes(20))
    with pytest.raises(ValueError, match=r"5 of the 23 image files cannot be read as images: .*bad0\.jpg.* and 2 more"):
        load_dataset(str(folder))
    assert not list((tmp_path / "cache").glob("datasets/*"))


def test_a_damaged_dataset_cache_is_decoded_again(tmp_path, capsys):
    load_dataset("digits")
    (cached,) = (tmp_path / "cache" / "datasets").glob("digits-*.pt")
    cached.write_bytes(cached.read_bytes()[:100])
    d = load_dataset("digits")
    assert len(d.train_x) == 1437 and "is damaged; decoding the dataset again" in capsys.readouterr().err
    assert len(ImageData(**torch.load(cached, weights_only=True)).train_x) == 1437   # and rewritten whole


def test_an_unwritable_cache_is_a_note_not_a_failure(tmp_path, monkeypatch, capsys):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("SSLKIT_CACHE", str(tmp_path / "a-file" / "cache"))
    d = load_dataset("digits")
    assert len(d.train_x) == 1437
    err = capsys.readouterr().err
    assert "could not cache the decoded dataset" in err and "not a directory" in err


def test_as_images_like_makes_grey_digits_colour_32px():
    from sslkit.data import as_images_like, load_dataset

    d = load_dataset("digits")
    big = as_images_like(d, 3, 32)
    assert big.train_x.shape[1:] == (3, 32, 32) and big.train_x.dtype == torch.uint8
    assert torch.equal(big.train_x[:, 0], big.train_x[:, 2])            # grey: the same in every channel
    assert torch.equal(big.train_y, d.train_y) and len(big.test_x) == len(d.test_x)
    assert abs(float(big.train_x.float().mean()) - float(d.train_x.float().mean())) < 3   # same brightness
