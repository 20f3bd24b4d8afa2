"""Real photographs in the built-in train split: archive reading, box geometry, val untouched.

The geometry tests use made-up "photos" whose face boxes are white on black, so where the
generator says a face is can be checked against the pixels it wrote.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

from ainnoface_d2.builtin_faces import build as build_mod
from ainnoface_d2.builtin_faces import build_builtin_faces, package_files, photos, render

import numpy as np
import pytest
from _package_index import simple_index
from _scripts import load_script
from test_builtin_faces import file_digests, parse_wider_txt


def fake_photo(h=300, w=400, boxes=((60, 50, 80, 100), (250, 120, 60, 70))):
    img = np.zeros((h, w, 3), np.float32)
    for x, y, bw, bh in boxes:
        img[y : y + bh, x : x + bw] = 1.0
    return img, np.asarray(boxes, np.int64)


def brightness_inside_and_around(gray: np.ndarray, box) -> tuple[float, float]:
    """Mean of the box's inner half and of a 6 px ring just outside it (clipped to the image)."""
    x, y, w, h = box
    inner = gray[y + h // 4 : y + h - h // 4, x + w // 4 : x + w - w // 4]
    ring = np.zeros(gray.shape, bool)
    ring[max(0, y - 8) : y + h + 8, max(0, x - 8) : x + w + 8] = True
    ring[max(0, y - 2) : y + h + 2, max(0, x - 2) : x + w + 2] = False
    return float(inner.mean()), float(gray[ring].mean()) if ring.any() else 0.0


def test_read_member_from_wheel_and_sdist_and_checksum(tmp_path):
    payload = b"\xff\xd8 not really a jpeg"
    whl = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as zf:
        zf.writestr("pkg/data/a.jpg", payload)
    sdist = tmp_path / "pkg-1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as tf:
        info = tarfile.TarInfo("pkg-1.0/tests/a.jpg")
        info.size = len(payload)
        tf.addfile(info, io.BytesIO(payload))
    sha = hashlib.sha256(payload).hexdigest()
    assert package_files.checked_member(whl, "pkg/data/a.jpg", sha) == payload
    assert package_files.checked_member(sdist, "pkg-1.0/tests/a.jpg", sha) == payload
    with pytest.raises(ValueError, match="sha256"):
        package_files.checked_member(whl, "pkg/data/a.jpg", "0" * 64)
    with pytest.raises(FileNotFoundError, match="no file pkg/b.jpg"):
        package_files.read_member(whl, "pkg/b.jpg")
    # Found in the cache without pip; a missing one names the pip command.
    assert package_files.distribution_archive("pkg==1.0", tmp_path) == whl
    assert package_files.distribution_archive("pkg==1.0", tmp_path, sdist=True) == sdist
    with pytest.raises(FileNotFoundError, match="pip download --no-deps"):
        package_files.distribution_archive("other==2.0", tmp_path, download=False)
    with pytest.raises(ValueError, match="name==version"):
        package_files.distribution_archive("pkg>=1", tmp_path)


def test_source_archive_comes_from_the_index_page_checked(tmp_path, monkeypatch):
    """A source archive is fetched from pip's index without pip (whose metadata step runs the
    sdist's setup.py), under the name the page links, and checked against the page's sha256."""
    archive = b"not really a tar.gz"
    sha = hashlib.sha256(archive).hexdigest()
    index = simple_index(tmp_path / "good", "my-pkg", "My_Pkg-1.0.tar.gz", archive, sha)
    monkeypatch.setenv("PIP_INDEX_URL", index)
    cache = tmp_path / "cache"
    got = package_files.distribution_archive("my.pkg==1.0", cache, sdist=True)
    assert got == cache / "My_Pkg-1.0.tar.gz" and got.read_bytes() == archive
    # Now cached: found again without the index.
    monkeypatch.setenv("PIP_INDEX_URL", (tmp_path / "nowhere").as_uri())
    assert package_files.distribution_archive("my_pkg==1.0", cache, sdist=True) == got
    # An archive that is not what the index says is refused and not cached.
    index = simple_index(tmp_path / "bad", "my-pkg", "My_Pkg-1.0.tar.gz", archive, "0" * 64)
    monkeypatch.setenv("PIP_INDEX_URL", index)
    with pytest.raises(ValueError, match="sha256"):
        package_files.distribution_archive("my-pkg==1.0", tmp_path / "cache2", sdist=True)
    assert not (tmp_path / "cache2" / "My_Pkg-1.0.tar.gz").exists()
    with pytest.raises(FileNotFoundError, match="lists no"):
        package_files.distribution_archive("my-pkg==2.0", tmp_path / "cache2", sdist=True)


@pytest.mark.parametrize("seed", range(12))
def test_photo_image_boxes_lie_on_the_faces(seed):
    rng = np.random.default_rng(seed)
    backgrounds = [np.zeros((500, 500, 3), np.float32)]
    img, rec = render.render_photo_image(
        rng, fake_photo(), backgrounds, "train", "3--Photo", "3_Photo_1"
    )
    assert img.shape == (rec.height, rec.width, 3)
    gray = img.astype(np.float32).mean(axis=2) / 255.0
    checked = 0
    for face in rec.faces:
        x, y, w, h = face.box
        assert 0 <= x and 0 <= y and x + w <= rec.width and y + h <= rec.height
        if w < 12 or h < 12 or face.invalid or face.blur:
            continue  # too small, cut or blurred for a clean pixel check
        inside, around = brightness_inside_and_around(gray, face.box)
        assert inside > 0.35 and around < 0.5 * inside, (seed, face.box, inside, around)
        checked += 1
    # Every face that the canvas shows at a checkable size is recorded (none silently lost).
    assert checked > 0 or all(f.box[2] < 12 or f.blur or f.invalid for f in rec.faces)


def test_photo_image_scales_cover_small_to_large_faces():
    widths = []
    for seed in range(60):
        _, rec = render.render_photo_image(
            np.random.default_rng(seed),
            fake_photo(),
            [np.zeros((64, 64, 3), np.float32)],
            "train",
            "3--Photo",
            "x",
        )
        widths += [f.box[2] for f in rec.faces if not f.invalid]
    assert min(widths) < 20 and max(widths) > 150


def test_photo_faces_pasted_into_scenes_keep_their_boxes():
    patches = render.photo_face_patches([fake_photo()])
    assert len(patches) == 2
    for patch, (fx, fy, fw, fh) in patches:
        assert patch[fy : fy + fh, fx : fx + fw].min() == 1.0  # the face box is the white box
    crops = np.zeros((200, 25, 25), np.float32)
    backgrounds = [np.zeros((700, 900, 3), np.float32)]
    n_photo = 0
    for seed in range(6):
        img, rec = render.render_image(
            np.random.default_rng(seed),
            crops,
            backgrounds,
            "train",
            "0--Synthetic",
            "x",
            photo_faces=patches,
        )
        gray = img.astype(np.float32).mean(axis=2) / 255.0
        for face in rec.faces:
            if face.source_index < render.PHOTO_FACE_INDEX:
                continue
            n_photo += 1
            if face.box[2] >= 12 and not face.blur and face.occluder is None:
                inside, _ = brightness_inside_and_around(gray, face.box)
                assert inside > 0.35, (seed, face.box)
    assert n_photo > 0


def test_build_with_photos_leaves_val_and_test_unchanged(tmp_path, monkeypatch):
    monkeypatch.setattr(build_mod, "load_training_photos", lambda cache, download: [fake_photo()])
    counts = {"num_train": 4, "num_val": 3, "num_test": 1}
    plain = build_builtin_faces(tmp_path / "plain", seed=5, **counts)
    with_photos = build_builtin_faces(tmp_path / "photos", seed=5, photo_images=5, **counts)
    assert plain.built and with_photos.built
    a, b = file_digests(tmp_path / "plain"), file_digests(tmp_path / "photos")
    kept = [k for k in a if "train" not in k.split("/")[0] and "_train" not in k]
    assert kept and all(a[k] == b[k] for k in kept)
    entries = parse_wider_txt(tmp_path / "photos/wider_face_split/wider_face_train_bbx_gt.txt")
    names = [e[0] for e in entries]
    assert sum(n.startswith("3--Photo/") for n in names) == 5 and len(names) == 9
    # A build with another photo count is another dataset (stamp), rebuilt.
    assert build_builtin_faces(tmp_path / "photos", seed=5, photo_images=5, **counts).built is False
    assert build_builtin_faces(tmp_path / "photos", seed=5, photo_images=2, **counts).built
    # So is one whose photo set changed (a box moved): the stamp holds the photos and boxes.
    first = photos.TRAINING_PHOTOS[0]
    moved = dataclasses.replace(first, boxes=((1, 2, 3, 4),) + first.boxes[1:])
    monkeypatch.setattr(build_mod, "TRAINING_PHOTOS", (moved,) + photos.TRAINING_PHOTOS[1:])
    assert build_builtin_faces(tmp_path / "photos", seed=5, photo_images=2, **counts).built
    assert build_builtin_faces(tmp_path / "photos", seed=5, photo_images=2, **counts).built is False


def test_training_photos_are_not_in_the_check_set():
    real = load_script("datasets/prepare_real_photos.py")
    held_out_sha = {sha for _, _, sha in real.PHOTOS.values()}
    held_out_packages = {origin for origin, _, _ in real.PHOTOS.values()}
    for p in photos.TRAINING_PHOTOS:
        assert p.sha256 not in held_out_sha
        assert p.requirement.split("==")[0].replace("_", "-") not in held_out_packages
        assert all(w > 0 and h > 0 for _, _, w, h in p.boxes)
    assert sum(len(p.boxes) for p in photos.TRAINING_PHOTOS) == 18


CACHE = Path(__file__).resolve().parents[1] / "datasets" / "package_cache"


@pytest.mark.skipif(not CACHE.is_dir(), reason="the training photos' packages are not cached")
def test_training_photos_load_from_the_cache():
    loaded = photos.load_training_photos(CACHE, download=False)
    assert len(loaded) == len(photos.TRAINING_PHOTOS)
    for img, boxes in loaded:
        h, w = img.shape[:2]
        assert img.dtype == np.float32 and 0.0 <= img.min() and img.max() <= 1.0
        assert (boxes[:, 0] + boxes[:, 2] <= w).all() and (boxes[:, 1] + boxes[:, 3] <= h).all()
