"""The compiled mmcv ops that Mask R-CNN needs really run."""
import torch


def test_mmcv_nms_known_result():
    from mmcv.ops import nms
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.],
                          [50., 50., 60., 60.], [0., 0., 10., 9.]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    dets, keep = nms(boxes, scores, iou_threshold=0.5)
    # box 3 (0.95) suppresses 0 and 1 (IoU 0.9 and ~0.6); box 2 is apart
    assert keep.tolist() == [3, 2]
    torch.testing.assert_close(dets[:, 4], torch.tensor([0.95, 0.7]))


def test_mmcv_roi_align_known_result():
    from mmcv.ops import RoIAlign, roi_align
    feat = torch.arange(16.).view(1, 1, 4, 4)
    rois = torch.tensor([[0., 0., 0., 4., 4.]])
    out = roi_align(feat, rois, (2, 2), 1.0, 2, 'avg', True)
    assert out.flatten().tolist() == [2.5, 4.5, 10.5, 12.5]
    layer = RoIAlign((1, 1), spatial_scale=1.0, sampling_ratio=1,
                     aligned=False)
    # one sample at the roi centre (2, 2) of the ramp: value 10
    assert layer(feat, rois).item() == 10.0


def test_mmcv_has_compiled_ext():
    import importlib
    ext = importlib.import_module('mmcv._ext')
    assert hasattr(ext, 'nms')
