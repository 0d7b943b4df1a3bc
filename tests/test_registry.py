"""One registration serves MMPretrain, MMDetection and MMSegmentation."""
import mmcae  # noqa: F401
from mmcae.models import CAEViT, ContextAutoencoder


def test_encoder_reachable_by_plain_name_from_all_toolboxes():
    from mmdet.registry import MODELS as DET
    from mmpretrain.registry import MODELS as PRE
    from mmseg.registry import MODELS as SEG
    for reg in (PRE, DET, SEG):
        assert reg.get('CAEViT') is CAEViT, reg.scope
    enc = DET.build(dict(type='CAEViT', arch='tiny', img_size=32,
                         patch_size=16))
    assert isinstance(enc, CAEViT)


def test_pretraining_parts_live_in_mmpretrain_scope():
    from mmpretrain.registry import MODELS as PRE
    assert PRE.get('ContextAutoencoder') is ContextAutoencoder
    for name in ('LatentContextualRegressor', 'CAEDecoder', 'CAEAlignment',
                 'CAETokenPredictionHead', 'CAEPixelPredictionHead',
                 'DALLEEncoder'):
        assert PRE.get(name) is not None, name
    # MMPretrain's own CAE stays untouched next to ours
    assert PRE.get('CAE') is not ContextAutoencoder
