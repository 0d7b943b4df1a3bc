# Attentive probing on the embedded scenes with the demo encoder (128-d,
# 4 blocks, 4 heads, 8x8 patches, 64 px): the official recipe (frozen
# encoder, every token after the final norm, learned query + one
# cross-attention block + BatchNorm1d(affine=False) + Linear, SGD momentum
# 0.9 lr 0.4 as given, wd 0, warmup + cosine, RandomResizedCrop + flip)
# sized for a few CPU minutes: 20 epochs at batch 256, crops keep 50-100 %.
#
#   python tools/train.py THIS_CONFIG              # the demo's encoder
#   python tools/train.py THIS_CONFIG \
#       --cfg-options model.backbone.init_cfg=None   # random init
# The embedded data and schedule of the linear probe; the attentive parts
# of ./cae_vit-base-p16_attentive-32xb256-sgd-coslr-90e_in1k.py.
_base_ = ['./cae_vit-demo-p8_linear-1xb256-lars-coslr-20e_embedded.py']

embed_dims = 128
model = dict(
    backbone=dict(out_type='raw'),
    neck=dict(
        _delete_=True,
        type='CAEAttentivePoolingNeck',
        embed_dims=embed_dims,
        num_heads=4))
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.4, momentum=0.9, weight_decay=0.0))
auto_scale_lr = dict(base_batch_size=256)
