"""Letterbox: identical to Ultralytics' LetterBox on real frames, and the mapping table for odd sizes."""

from __future__ import annotations

import numpy as np
import pytest

from edge_daemon.model.preprocess import letterbox, letterbox_meta, preprocess


@pytest.mark.parametrize(
    ("src_hw", "dst_hw", "gain", "pad"),
    [
        ((576, 768), (480, 576), (0.75, 0.75), (0, 24)),  # the demo clip into the demo model: bars top/bottom
        ((576, 768), (576, 576), (0.75, 0.75), (0, 72)),
        ((1080, 1920), (384, 640), (1 / 3, 360 / 1080), (0, 12)),  # 16:9 camera, 640x384 engine
        ((480, 640), (480, 640), (1.0, 1.0), (0, 0)),  # exact fit: no resize, no padding
        ((100, 50), (64, 64), (32 / 50, 64 / 100), (16, 0)),  # portrait: bars left/right
        (
            (7, 5),
            (64, 64),
            (46 / 5, 64 / 7),
            (9, 0),
        ),  # tiny frame: upscaled, odd padding rounds like Ultralytics
    ],
)
def test_letterbox_meta_table(src_hw, dst_hw, gain, pad) -> None:
    meta = letterbox_meta(src_hw, dst_hw)
    assert (meta.gain_x, meta.gain_y) == pytest.approx(gain)
    assert (meta.pad_x, meta.pad_y) == pad
    assert (meta.dst_h, meta.dst_w) == dst_hw


@pytest.mark.parametrize("bad", [((0, 10), (64, 64)), ((10, 10), (0, 64)), ((-1, 5), (64, 64))])
def test_letterbox_meta_rejects_empty_sizes(bad) -> None:
    with pytest.raises(ValueError, match="positive"):
        letterbox_meta(*bad)


@pytest.mark.parametrize("dst_hw", [(480, 576), (576, 576), (384, 640), (640, 640)])
def test_letterbox_equals_ultralytics_on_real_frames(frames, dst_hw) -> None:
    from ultralytics.data.augment import LetterBox

    ours_ref = LetterBox(new_shape=dst_hw, auto=False, stride=32)
    for img in frames[:4]:
        ours, meta = letterbox(img, dst_hw)
        theirs = ours_ref(image=img)
        assert ours.shape == theirs.shape == (*dst_hw, 3)
        np.testing.assert_array_equal(ours, theirs)
        assert ours[0, 0].tolist() == [114, 114, 114] or meta.pad_x == meta.pad_y == 0


def test_preprocess_tensor_layout(frames) -> None:
    tensor, meta = preprocess(frames[0], (480, 576))
    assert tensor.shape == (1, 3, 480, 576) and tensor.dtype == np.float32
    assert tensor.min() >= 0.0 and tensor.max() <= 1.0
    boxed, _ = letterbox(frames[0], (480, 576))
    # channel 0 is red: the BGR frame's channel 2, scaled to [0, 1]
    np.testing.assert_allclose(tensor[0, 0], boxed[:, :, 2] / 255.0, atol=1e-6)
    np.testing.assert_allclose(tensor[0, 2], boxed[:, :, 0] / 255.0, atol=1e-6)
    assert meta.src_w == 768 and meta.src_h == 576
