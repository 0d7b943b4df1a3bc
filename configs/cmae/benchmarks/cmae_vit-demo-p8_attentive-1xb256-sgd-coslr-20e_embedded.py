# The embedded attentive protocol of CAE (same data, recipe and sizes; see
# the inherited config) on the encoder of the CMAE demo
# (configs/cmae/cmae_vit-demo-p8_1xb64-coslr-30e_embedded.py, written by
# `python tools/demo.py --algorithm cmae` into work_dirs/demo_cmae/).
# CMAE's encoder has no layer scale; the official CMAE (MAE) fine-tuning
# uses no relative-position bias.
#
#   python tools/train.py THIS_CONFIG              # the CMAE demo's encoder
#   python tools/train.py THIS_CONFIG \
#       --cfg-options model.backbone.init_cfg=None   # random init
_base_ = ['../../cae/benchmarks/cae_vit-demo-p8_attentive-1xb256-sgd-coslr-20e_embedded.py']

pretrained = 'work_dirs/demo_cmae/epoch_30.pth'
model = dict(
    backbone=dict(
        type='CMAEViT',
        layer_scale_init_value=None,
        use_rel_pos_bias=False,
        init_cfg=dict(type='CAEPretrained', checkpoint=pretrained)))
