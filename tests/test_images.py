"""helpers.images.as_images: the forms in which images may be passed, values untouched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers.images import as_images


def test_arrays_become_batches_and_keep_their_values_and_dtype():
    image = np.full((4, 5, 3), 7.5, np.float64)  # any range: no value check here
    batch = as_images(image)
    assert batch.shape == (1, 4, 5, 3) and batch.dtype == np.float64
    assert np.shares_memory(batch, image)  # no copy
    stacked = np.zeros((2, 4, 5, 1), np.int16)
    assert as_images(stacked) is stacked
    assert as_images(np.full((2, 2, 3), -300.0)).min() == -300.0  # preprocessed inputs pass


def test_lists_tuples_dicts_and_generators_become_lists():
    first, second = np.zeros((4, 5, 3), np.uint8), np.ones((6, 2, 3), np.uint8)
    for form in ([first, second], (first, second), {"b": first, "a": second},
                 (image for image in (first, second)), iter([first, second])):
        result = as_images(form)
        assert isinstance(result, list) and len(result) == 2
        assert result[0] is first and result[1] is second  # a dict gives its values, in order


@pytest.mark.parametrize("bad", ["chelsea.jpg", Path("chelsea.jpg"), b"chelsea.jpg"])
def test_paths_and_strings_are_refused_with_what_to_pass(bad):
    with pytest.raises(TypeError, match=r"not pixels; read the file first"):
        as_images(bad)
    with pytest.raises(TypeError, match=r"image 1 is a .*read the file first"):
        as_images([np.zeros((2, 2, 3)), bad])


@pytest.mark.parametrize(
    "empty, message",
    [([], "empty list"), ((), "empty tuple"), ({}, "empty dict"),
     ((i for i in []), "generator that yielded nothing"),
     (np.zeros((0, 4, 4, 3)), "batch of zero images"),
     (np.zeros((4, 0, 3)), "empty"), ([np.zeros((0, 4, 3))], "image 0 is empty")],
)
def test_empty_containers_are_refused(empty, message):
    with pytest.raises(ValueError, match=message):
        as_images(empty)


@pytest.mark.parametrize(
    "bad, error, message",
    [
        (np.array([["a"]]), TypeError, "dtype <U1"),
        (np.zeros((2, 2, 3), bool), TypeError, "dtype bool"),
        (np.zeros((2, 2, 3), complex), TypeError, "dtype complex128"),
        ([np.zeros((2, 2, 3)), [[1, 2], [3]]], TypeError, "ragged"),
        (None, TypeError, "None"),
        (3, TypeError, r"images is a int \(3\)"),
        ([None], TypeError, "image 0 is None"),
        (np.zeros((4, 4)), ValueError, r"grayscale image\? add a channel axis"),
        (np.zeros((1, 2, 4, 4, 3)), ValueError, r"expected one image \(H, W, C\)"),
        ([np.zeros((2, 4, 4, 3))], ValueError, r"a batch\? pass the batch array itself"),
    ],
)
def test_bad_forms_are_refused_with_what_was_given(bad, error, message):
    with pytest.raises(error, match=message):
        as_images(bad)


# -- load_image / load_images: files the tests write with Pillow ----------------------------------

from PIL import Image  # noqa: E402

from helpers.data.files import load_image, load_images  # noqa: E402

RGB = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]],
                [[0, 0, 0], [128, 128, 128], [255, 255, 255]]], np.uint8)  # (2, 3, 3)


def _check_rgb(array, shape):
    assert isinstance(array, np.ndarray) and array.dtype == np.uint8 and array.shape == shape


def test_png_jpeg_and_bytes_read_as_rgb_uint8(tmp_path):
    Image.fromarray(RGB).save(tmp_path / "colours.png")
    image = load_image(tmp_path / "colours.png")
    _check_rgb(image, (2, 3, 3))
    np.testing.assert_array_equal(image, RGB)  # PNG is lossless
    assert np.array_equal(load_image(str(tmp_path / "colours.png")), RGB)  # a str path too
    assert np.array_equal(load_image((tmp_path / "colours.png").read_bytes()), RGB)  # an upload
    Image.fromarray(np.full((16, 20, 3), 200, np.uint8)).save(tmp_path / "flat.jpg", quality=95)
    jpeg = load_image(tmp_path / "flat.jpg")
    _check_rgb(jpeg, (16, 20, 3))
    assert abs(int(jpeg.mean()) - 200) <= 2


def test_grayscale_palette_rgba_and_16_bit_are_converted(tmp_path):
    gray = np.array([[0, 100], [200, 255]], np.uint8)
    Image.fromarray(gray, mode="L").save(tmp_path / "gray.png")
    np.testing.assert_array_equal(load_image(tmp_path / "gray.png"), np.repeat(gray[..., None], 3, -1))

    Image.fromarray(RGB).convert("P", palette=Image.Palette.ADAPTIVE, colors=8).save(tmp_path / "pal.png")
    assert Image.open(tmp_path / "pal.png").mode == "P"
    np.testing.assert_array_equal(load_image(tmp_path / "pal.png"), RGB)  # 6 colours fit 8

    rgba = np.zeros((1, 2, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red
    rgba[0, 1] = (0, 0, 0, 0)  # fully transparent: shown on white
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "alpha.png")
    np.testing.assert_array_equal(load_image(tmp_path / "alpha.png")[0], [[255, 0, 0], [255, 255, 255]])

    deep = np.array([[0, 257 * 100], [257 * 200, 65535]], np.uint16)  # 257 * v maps back to v
    Image.fromarray(deep).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")  # really 16-bit on disk
    np.testing.assert_array_equal(load_image(tmp_path / "deep.png")[..., 0], gray)  # scaled, not clipped


def test_exif_orientation_is_applied(tmp_path):
    picture = Image.fromarray(np.zeros((10, 30, 3), np.uint8))  # stored landscape, 30 wide
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display": a phone held upright
    picture.save(tmp_path / "phone.jpg", exif=exif)
    assert Image.open(tmp_path / "phone.jpg").size == (30, 10)
    _check_rgb(load_image(tmp_path / "phone.jpg"), (30, 10, 3))  # shown portrait


def test_unreadable_and_missing_files_name_the_file(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff this is not really a JPEG")
    with pytest.raises(ValueError, match=r"cannot read '.*broken\.jpg' as an image"):
        load_image(broken)
    with pytest.raises(ValueError, match="the uploaded bytes"):
        load_image(b"not an image")
    with pytest.raises(FileNotFoundError, match=r"no such image file: '.*missing\.png'"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(IsADirectoryError, match="load_images"):
        load_image(tmp_path)
    with pytest.raises(TypeError, match="path .* or the bytes"):
        load_image(np.zeros((2, 2, 3)))
    with pytest.raises(ValueError, match=r"broken\.jpg"):  # in a folder too
        load_images(tmp_path)


def test_a_folder_gives_its_images_in_name_order(tmp_path):
    for name, value in (("b_second.png", 20), ("a_first.jpg", 10), ("C_third.PNG", 30)):
        Image.fromarray(np.full((4, 5, 3), value, np.uint8)).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub.png").mkdir()  # a folder, even with an image's name, is skipped
    images = load_images(tmp_path)
    assert list(images) == ["C_third", "a_first", "b_second"]  # name order, as sorted() gives
    for image in images.values():
        _check_rgb(image, (4, 5, 3))
    listed = load_images([tmp_path / "b_second.png", str(tmp_path / "a_first.jpg")])
    assert list(listed) == ["b_second", "a_first"]  # a list keeps its order
    assert len(as_images(images)) == 3  # what classifiers and CAM functions take


def test_empty_or_missing_folder_and_bad_lists_are_clear_errors(tmp_path):
    (tmp_path / "readme.txt").write_text("no photos here")
    with pytest.raises(ValueError, match=r"holds no image files"):
        load_images(tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_images(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="empty list"):
        load_images([])
    with pytest.raises(FileNotFoundError, match=r"gone\.png"):
        load_images([tmp_path / "gone.png"])
    with pytest.raises(TypeError, match="list of paths"):
        load_images(3)


@pytest.mark.parametrize("call", [lambda: load_images(""), lambda: load_images("  "),
                                  lambda: load_images(["", "x.png"]), lambda: load_image("")])
def test_an_empty_path_is_refused_not_read_as_the_current_folder(call, tmp_path, monkeypatch):
    Image.new("RGB", (8, 8)).save(tmp_path / "here.png")
    monkeypatch.chdir(tmp_path)  # Path("") is "."; it would find here.png
    with pytest.raises(ValueError, match=r"got an empty path \('\s*'\); pass a file or folder"):
        call()


def test_each_photo_is_checked_and_resized_once_per_call(lite0, samples, monkeypatch):
    """From class_activation_maps to the network, each photo's values are checked once and it
    is resized once (helpers.images), however the engine chunks the call."""
    import helpers
    from helpers import images as images_module

    counts = {"checks": 0, "resizes": 0}
    check, resize = images_module._check_one_image, images_module.resize_image

    def counted_check(*args, **kwargs):
        counts["checks"] += 1
        return check(*args, **kwargs)

    def counted_resize(*args, **kwargs):
        counts["resizes"] += 1
        return resize(*args, **kwargs)

    monkeypatch.setattr(images_module, "_check_one_image", counted_check)
    monkeypatch.setattr(images_module, "resize_image", counted_resize)
    photos = list(samples.values())
    result = helpers.class_activation_maps(lite0, photos, top_k=2)
    assert result.num_images == len(photos) == 7
    assert counts == {"checks": 7, "resizes": 7}


def test_photos_with_the_same_name_in_different_folders_are_all_kept(tmp_path):
    """A glob over one folder per class gives cat/001.jpg, dog/001.jpg, fox/001.jpg: three
    photos, three keys (before: two, one silently dropped)."""
    paths = []
    for value, label in enumerate(("cat", "dog", "fox")):
        (tmp_path / label).mkdir()
        Image.fromarray(np.full((4, 5, 3), 10 * value, np.uint8)).save(tmp_path / label / "001.png")
        paths.append(tmp_path / label / "001.png")
    images = load_images(paths)
    assert list(images) == ["cat/001", "dog/001", "fox/001"]
    assert [int(image[0, 0, 0]) for image in images.values()] == [0, 10, 20]
    # Same stem, one folder: the first keeps the stem, the next gets its ending; a list naming
    # one file twice gets a number, not a lost entry.
    Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(tmp_path / "cat" / "001.jpg")
    again = load_images([tmp_path / "cat" / "001.png", tmp_path / "cat" / "001.jpg",
                         tmp_path / "cat" / "001.png", tmp_path / "cat" / "001.png"])
    assert list(again) == ["001", "001.jpg", "001.png", "001.png (2)"]


def test_load_images_names_the_current_folder_by_its_name(tmp_path, monkeypatch):
    """A bare "001.jpg" beside "x/001.jpg": the current folder is named as it is called, never
    an empty name ("/001")."""
    (tmp_path / "x").mkdir()
    for path in (tmp_path / "001.jpg", tmp_path / "x" / "001.jpg"):
        Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(path)
    monkeypatch.chdir(tmp_path)
    images = load_images(["001.jpg", "x/001.jpg"])
    assert list(images) == [f"{tmp_path.name}/001", "x/001"]


def test_an_image_larger_than_the_pixel_limit_is_refused_before_decoding(tmp_path, monkeypatch):
    from helpers.data import files

    monkeypatch.setattr(files, "MAX_IMAGE_PIXELS", 64 * 64)
    Image.fromarray(np.zeros((65, 64), np.uint16)).save(tmp_path / "deep.png")  # 16-bit PNG
    decoded = []
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.append(self) or None)
    with pytest.raises(ValueError, match=r"'.*deep\.png' is 64 × 65 = 4,160 pixels; load_image "
                                         r"reads at most 4,096 .*MAX_IMAGE_PIXELS.*Resize it first"):
        load_image(tmp_path / "deep.png")
    assert decoded == [], "pixels were decoded before the size was checked"


def test_a_large_jpeg_is_decoded_at_a_fraction_of_its_size(tmp_path, monkeypatch):
    from helpers.data import files

    photo = np.zeros((80, 120, 3), np.uint8)
    photo[:, 60:] = 255  # right half white
    Image.fromarray(photo).save(tmp_path / "big.jpg", quality=95)
    monkeypatch.setattr(files, "MAX_IMAGE_PIXELS", 40 * 60)  # fits at 1/2
    half = load_image(tmp_path / "big.jpg")
    assert half.shape == (40, 60, 3)
    assert half[:, :28].max() < 30 and half[:, 32:].min() > 225  # the same picture, smaller
    monkeypatch.setattr(files, "MAX_IMAGE_PIXELS", 10 * 15)  # needs 1/8
    assert load_image(tmp_path / "big.jpg").shape == (10, 15, 3)
    monkeypatch.setattr(files, "MAX_IMAGE_PIXELS", 9 * 14)  # not even at 1/8
    with pytest.raises(ValueError, match="reads at most 126"):
        load_image(tmp_path / "big.jpg")


def test_a_decompression_bomb_and_formats_that_fail_to_decode_are_clear_errors(tmp_path):
    """Small files declaring 8000 × 8000 (the audit's 122 KB 16-bit PNG, +1.7 GB when decoded)
    and 100,000 × 100,000 pixels (above Pillow's own limit, whose DecompressionBombError escaped
    before) are refused from their headers; a decoder's own failure (e.g. DDS) is a ValueError
    naming the file."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(
        b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b"")
    with pytest.raises(ValueError, match=r"the uploaded bytes .* declares too many pixels .*"
                                         r"load_image reads at most 24,000,000"):
        load_image(bomb)
    modest = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 8000, 8000, 16, 0, 0, 0, 0))
    with pytest.raises(ValueError, match=r"is 8000 × 8000 = 64,000,000 pixels; load_image reads "
                                         r"at most 24,000,000"):
        load_image(modest + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b""))
    dds = b"DDS " + struct.pack("<I", 124) + b"\x00" * 120  # a header with no valid format
    with pytest.raises(ValueError, match=r"cannot read the uploaded bytes .* as an image"):
        load_image(dds)
