"""Tests for the built-in face dataset generator (ainnoface_d2.builtin_faces).

The written files are read back with an independent minimal parser of the WIDER FACE txt format,
with scipy.io.loadmat, and compared with the official .mat files in ../shared when present.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ainnoface_d2.builtin_faces import FaceRecord, build_builtin_faces, eval_settings

import cv2
import numpy as np
import pytest
import scipy.io
import skimage.data
from _scripts import load_script

REPO = Path(__file__).resolve().parents[1]
SHARED_GT = Path(__file__).resolve().parents[2] / "shared" / "widerface" / "ground_truth"
LABEL_KEYS = ("blur", "expression", "illumination", "invalid", "occlusion", "pose")
COUNTS = {"num_train": 5, "num_val": 6, "num_test": 2}


def parse_wider_txt(path: Path) -> list[tuple[str, int, list[tuple[int, ...]]]]:
    """(file name, count, box rows) per image; a count of 0 is still followed by one row."""
    lines = path.read_text(encoding="ascii").split("\n")
    assert lines[-1] == "", f"{path} must end with a newline"
    entries, i = [], 0
    while i < len(lines) - 1:
        name, count = lines[i], int(lines[i + 1])
        assert name.endswith(".jpg") and name.count("/") == 1, f"{path}:{i + 1}: {name!r}"
        rows = []
        for k in range(max(count, 1)):
            line = lines[i + 2 + k]
            assert line.endswith(" ") and not line.endswith("  "), f"{path}:{i + 3 + k}: {line!r}"
            values = tuple(int(v) for v in line.split(" ")[:-1])
            assert len(values) == 10, f"{path}:{i + 3 + k}: {line!r}"
            rows.append(values)
        entries.append((name, count, rows))
        i += 2 + max(count, 1)
    return entries


def expected_settings(row: tuple[int, ...]) -> tuple[bool, bool, bool]:
    """The documented Easy/Medium/Hard rule, written out from the txt attributes."""
    h, blur, invalid, occlusion = row[3], row[4], row[7], row[8]
    hard = invalid == 0 and h >= 8
    medium = hard and h >= 16 and occlusion <= 1
    easy = medium and h >= 32 and blur <= 1 and occlusion == 0
    return easy, medium, hard


def inner_corr(crop: np.ndarray, source: np.ndarray, inner) -> float:
    """Pearson correlation of the inner part of a crop with the source resized to the crop."""
    ref = cv2.resize(source, (crop.shape[1], crop.shape[0]), interpolation=cv2.INTER_LINEAR)
    return float(np.corrcoef(crop[inner].ravel(), ref[inner].ravel())[0, 1])


def leaf_signatures(mat: dict, key: str) -> set:
    """The kinds of leaves of one cell-array key: dtype and shape pattern, nesting asserted."""
    top = mat[key]
    assert top.dtype == object and top.ndim == 2 and top.shape[1] == 1, key
    sigs = set()
    for event in top[:, 0]:
        if key == "event_list":
            sigs.add(("event", event.dtype.kind, event.shape))
            continue
        assert event.dtype == object and event.ndim == 2 and event.shape[1] == 1, key
        for leaf in event[:, 0]:
            if leaf.dtype.kind == "U":
                sigs.add(("U", leaf.shape))
            elif leaf.size == 0:
                sigs.add((leaf.dtype.str, leaf.shape))
            else:
                sigs.add((leaf.dtype.str, leaf.ndim, leaf.shape[1]))
    return sigs


def file_digests(root: Path, patterns=("**/*.txt", "**/*.mat", "**/*.jpg")) -> dict[str, str]:
    out = {}
    for pattern in patterns:
        for p in sorted(root.glob(pattern)):
            out[p.relative_to(root).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("bf") / "builtin_faces"
    summary = build_builtin_faces(root, seed=3, **COUNTS)
    return root, summary


def test_layout_and_txt(built):
    root, summary = built
    assert summary.built
    for split, key in (("train", "num_train"), ("val", "num_val")):
        entries = parse_wider_txt(root / "wider_face_split" / f"wider_face_{split}_bbx_gt.txt")
        images = sorted(
            p.relative_to(root / f"WIDER_{split}" / "images").as_posix()
            for p in (root / f"WIDER_{split}" / "images").glob("*/*.jpg")
        )
        assert sorted(e[0] for e in entries) == images
        assert len(entries) == COUNTS[key]
        for name, _, _ in entries:
            event, base = name.split("/")
            num, label = event.split("--")
            assert num.isdigit() and base.startswith(f"{num}_{label}_")

        faceless = [e for e in entries if all(v == 0 for row in e[2] for v in row)]
        assert faceless, f"{split} needs a faceless image"
        for _, count, rows in faceless:
            assert len(rows) == 1
            assert count == (0 if split == "train" else 1)
        real_faces = sum(e[1] for e in entries if e not in faceless)
        assert real_faces == summary.num_faces[split] > 0
        # The txt agrees with the generator's own records, box by box.
        records = {r.file_name: r for r in summary.images[split]}
        for name, count, rows in entries:
            if (name, count, rows) in faceless:
                assert records[name].faces == []
                continue
            assert [r[:4] for r in rows] == [f.box for f in records[name].faces]
            assert [r[4:] for r in rows] == [f.labels for f in records[name].faces]
            assert all(r[5] == 0 and r[9] == 0 for r in rows)  # expression, pose

    test_list = (root / "wider_face_split" / "wider_face_test_filelist.txt").read_text().split()
    assert len(test_list) == COUNTS["num_test"]
    assert all((root / "WIDER_test" / "images" / n).is_file() for n in test_list)


def test_boxes_inside_images_and_on_pasted_faces(built):
    root, summary = built
    lfw = np.asarray(skimage.data.lfw_subset(), dtype=np.float64)
    matched, mismatched, checked = [], [], 0
    for split in ("train", "val"):
        for rec in summary.images[split]:
            img = cv2.imread(str(root / f"WIDER_{split}" / "images" / rec.file_name))
            assert img is not None and img.shape[:2] == (rec.height, rec.width)
            gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float64)
            for face in rec.faces:
                x, y, w, h = face.box
                assert w > 0 and h > 0 and x >= 0 and y >= 0
                assert x + w <= rec.width and y + h <= rec.height
                assert face.source_index < 100, "a face box must come from an LFW face crop"
                if face.occlusion or h < 12:
                    continue
                # Compare the inner half (where the feathered rectangle or oval mask is fully
                # opaque) with the source face, which may have been mirrored.
                crop = gray[y : y + h, x : x + w]
                inner = (slice(h // 4, h - h // 4), slice(w // 4, w - w // 4))
                src = lfw[face.source_index]
                other = lfw[(face.source_index + 37) % 100]
                r = max(inner_corr(crop, src, inner), inner_corr(crop, src[:, ::-1], inner))
                r_other = max(
                    inner_corr(crop, other, inner), inner_corr(crop, other[:, ::-1], inner)
                )
                matched.append(r)
                mismatched.append(r_other)
                assert crop[inner].std() > 3.0, "a face crop should not be flat background"
                if h >= 16 and face.blur <= 1:
                    assert r > 0.6, (rec.file_name, face)
                checked += 1
    assert checked >= 10
    matched, mismatched = np.array(matched), np.array(mismatched)
    assert np.median(matched) > 0.85, np.median(matched)
    assert np.mean(matched - mismatched) > 0.25


def test_mat_files(built):
    root, _ = built
    entries = parse_wider_txt(root / "wider_face_split" / "wider_face_val_bbx_gt.txt")
    gt_dir = root / "eval_tools" / "ground_truth"
    ours = {
        s: scipy.io.loadmat(gt_dir / f"wider_{s}_val.mat")
        for s in ("face", "easy", "medium", "hard")
    }
    base_keys = {"event_list", "file_list", "face_bbx_list"} | {
        f"{k}_label_list" for k in LABEL_KEYS
    }
    for name, mat in ours.items():
        expected = base_keys | ({"gt_list"} if name != "face" else set())
        assert {k for k in mat if not k.startswith("__")} == expected

    # Flatten the .mat (event by event, image by image) and compare it with the txt.
    mat = ours["face"]
    flat = []
    for e, event in enumerate(mat["event_list"][:, 0]):
        for i, fname in enumerate(mat["file_list"][e, 0][:, 0]):
            boxes = mat["face_bbx_list"][e, 0][i, 0]
            labels = np.hstack([mat[f"{k}_label_list"][e, 0][i, 0] for k in LABEL_KEYS])
            flat.append((f"{event[0]}/{fname[0]}.jpg", boxes, labels, (e, i)))
    assert [f[0] for f in flat] == [e[0] for e in entries]
    for (_, boxes, labels, _), (_, _, rows) in zip(flat, entries):
        assert boxes.dtype == np.int32 and labels.dtype == np.uint8
        np.testing.assert_array_equal(boxes, np.array([r[:4] for r in rows]))
        np.testing.assert_array_equal(labels, np.array([r[4:] for r in rows]))

    # The three settings files carry the same arrays as wider_face_val.mat, plus gt_list.
    for name in ("easy", "medium", "hard"):
        for key in base_keys:
            for ev_a, ev_b in zip(ours[name][key][:, 0], mat[key][:, 0]):
                if key == "event_list":
                    assert ev_a == ev_b
                    continue
                for a, b in zip(ev_a[:, 0], ev_b[:, 0]):
                    assert a.dtype == b.dtype and np.array_equal(a, b)
    split_val = scipy.io.loadmat(root / "wider_face_split" / "wider_face_val.mat")
    for key in base_keys:
        assert leaf_signatures(split_val, key) == leaf_signatures(mat, key)

    # gt_list: 1-based, sorted, valid, nested Easy ⊆ Medium ⊆ Hard, and equal to the rule.
    n_kept = {}
    for (_, boxes, _, (e, i)), (_, _, rows) in zip(flat, entries):
        kept = {}
        for s in ("easy", "medium", "hard"):
            g = ours[s]["gt_list"][e, 0][i, 0]
            if g.size == 0:
                assert g.shape == ((0, 0) if len(boxes) == 1 else (0, 1))
            else:
                assert g.ndim == 2 and g.shape[1] == 1 and g.dtype.kind == "u"
            idx = [int(v) for v in g.ravel()]
            assert idx == sorted(set(idx)) and all(1 <= v <= len(boxes) for v in idx)
            kept[s] = set(idx)
            n_kept[s] = n_kept.get(s, 0) + len(idx)
        assert kept["easy"] <= kept["medium"] <= kept["hard"]
        for s_i, s in enumerate(("easy", "medium", "hard")):
            want = {j + 1 for j, r in enumerate(rows) if any(r) and expected_settings(r)[s_i]}
            assert kept[s] == want, (s, rows)
    assert n_kept["hard"] > n_kept["easy"] > 0
    # This instance has faces on both sides of the Hard threshold, so the rule is exercised.
    heights = [r[3] for _, _, rows in entries for r in rows if any(r)]
    assert any(h < 8 for h in heights) and any(8 <= h < 16 for h in heights)

    train_mat = scipy.io.loadmat(root / "wider_face_split" / "wider_face_train.mat")
    train_entries = parse_wider_txt(root / "wider_face_split" / "wider_face_train_bbx_gt.txt")
    n_boxes = sum(len(x[0]) for ev in train_mat["face_bbx_list"][:, 0] for x in ev)
    assert n_boxes == sum(len(rows) for _, _, rows in train_entries)

    if not SHARED_GT.is_dir():
        pytest.skip(f"{SHARED_GT} is absent: comparison with the official .mat files skipped")
    for name in ("face", "easy", "medium", "hard"):
        real = scipy.io.loadmat(SHARED_GT / f"wider_{name}_val.mat")
        assert {k for k in real if not k.startswith("__")} == {
            k for k in ours[name] if not k.startswith("__")
        }
        for key in ours[name]:
            if key.startswith("__"):
                continue
            # Every kind of leaf we write (dtype, shape pattern) also occurs in the real file.
            ours_sigs, real_sigs = leaf_signatures(ours[name], key), leaf_signatures(real, key)
            assert ours_sigs <= real_sigs, (name, key, ours_sigs - real_sigs)


def test_deterministic_and_seed_dependent(built, tmp_path):
    root, _ = built
    again = tmp_path / "again"
    build_builtin_faces(again, seed=3, **COUNTS)
    first, second = file_digests(root), file_digests(again)
    assert any(k.endswith(".mat") for k in first) and any(k.endswith(".jpg") for k in first)
    assert first == second

    other = tmp_path / "other"
    build_builtin_faces(other, seed=4, **COUNTS)
    third = file_digests(other)
    for name in (
        "wider_face_split/wider_face_train_bbx_gt.txt",
        "wider_face_split/wider_face_val_bbx_gt.txt",
        "eval_tools/ground_truth/wider_hard_val.mat",
    ):
        assert third[name] != first[name], name


def test_stamp_skip_force_and_foreign_dir(tmp_path, capsys):
    root = tmp_path / "bf"
    counts = {"num_train": 1, "num_val": 1, "num_test": 0}
    first = build_builtin_faces(root, seed=0, **counts)
    assert first.built
    jpg = next((root / "WIDER_val" / "images").glob("*/*.jpg"))
    mtime = jpg.stat().st_mtime_ns
    second = build_builtin_faces(root, seed=0, **counts)
    assert not second.built and second.num_faces == first.num_faces
    assert jpg.stat().st_mtime_ns == mtime
    assert build_builtin_faces(root, seed=0, force=True, **counts).built
    # Another seed is another dataset: rebuilt, and a stale converted annotation is removed.
    (root / "annotations").mkdir()
    (root / "annotations" / "wider_face_val.json").write_text("{}")
    assert build_builtin_faces(root, seed=1, **counts).built
    assert not (root / "annotations").exists()

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("not ours")
    with pytest.raises(FileExistsError, match="foreign"):
        build_builtin_faces(foreign, seed=0, **counts)

    # The CLI wrapper prints where it wrote and the sizes.
    cli = load_script("datasets/prepare_builtin_faces.py")
    out_root = tmp_path / "cli"
    argv = [
        "--root",
        str(out_root),
        "--train-images",
        "1",
        "--val-images",
        "1",
        "--test-images",
        "0",
    ]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert str(out_root.resolve()) in out and "val  :    1 images" in out and "MB" in out


@pytest.mark.parametrize(
    "h, blur, occlusion, invalid, expected",
    [
        (7, 0, 0, 0, (False, False, False)),
        (8, 2, 0, 0, (False, False, True)),
        (15, 0, 0, 0, (False, False, True)),
        (16, 2, 1, 0, (False, True, True)),
        (40, 0, 2, 0, (False, False, True)),
        (31, 0, 0, 0, (False, True, True)),
        (32, 1, 0, 0, (True, True, True)),
        (32, 2, 0, 0, (False, True, True)),
        (32, 0, 1, 0, (False, True, True)),
        (100, 0, 2, 1, (False, False, False)),
    ],
)
def test_eval_settings_boundaries(h, blur, occlusion, invalid, expected):
    face = FaceRecord(
        box=(0, 0, h, h),
        source_index=0,
        blur=blur,
        expression=0,
        illumination=0,
        invalid=invalid,
        occlusion=occlusion,
        pose=0,
    )
    assert eval_settings(face) == expected


def test_the_detector_package_does_not_need_the_generator_dependency():
    import subprocess
    import sys

    # The generator needs scikit-image; importing the detector package must not.

    code = "import sys, ainnoface_d2; print('skimage' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_real_photo_check_set_is_not_a_training_source():
    """The scikit-image photos of datasets/real_photos must never be pasted as backgrounds."""
    from ainnoface_d2.builtin_faces import sources

    real = load_script("datasets/prepare_real_photos.py")
    held_out = {inner for origin, inner, _ in real.PHOTOS.values() if origin == "skimage"}
    assert held_out == {"astronaut.png", "camera.png"}
    assert not held_out & set(sources._SKIMAGE_FILES)
    used = set(sources._COLOUR_BACKGROUNDS + sources._GRAY_BACKGROUNDS)
    assert not used & {"astronaut", "camera", "cat", "chelsea", "coins"}
