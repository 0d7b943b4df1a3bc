"""Shapes of a detection / segmentation transfer config, checked from the
config before anything is built: the strides and channels that mmcae's
encoder and :class:`~mmcae.models.downstream.SimpleFeaturePyramid` produce
against what the detector's anchor generator and RoI extractors, or the
segmentor's decode heads, expect.

Neither toolbox compares them: a Mask R-CNN whose pyramid has strides
[8 ... 128] against anchors at [4 ... 64] trains and evaluates without a
word (anchors are laid at the wrong scale), and a channel mismatch fails
deep in a forward with tensor sizes only.  Every error here names the
config keys on both sides.  Only the chain mmcae knows is followed
(``CAEViT``-style backbone -> ``SimpleFeaturePyramid`` -> optionally
MMDetection's ``FPN``); any other neck stops the check where it starts.
"""
from numbers import Integral

__all__ = ['check_transfer_shapes', 'pyramid_strides']

_SUPPORTED_RESCALES = (4, 2, 1, 0.5, 0.25)
_ENCODERS = ('CAEViT', 'CMAEViT')


def _type_name(node):
    t = node.get('type') if isinstance(node, dict) else None
    if isinstance(t, type):
        return t.__name__
    return str(t).split('.')[-1] if t is not None else None


def _pair(v):
    if isinstance(v, Integral) and not isinstance(v, bool):
        return int(v), int(v)
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(
            isinstance(x, Integral) and not isinstance(x, bool) for x in v):
        return int(v[0]), int(v[1])
    return None


def _fmt_strides(strides):
    """[4, 8] for square strides, [(4, 8), ...] otherwise."""
    return '[' + ', '.join(
        str(s[0]) if s[0] == s[1] else f'({s[0]}, {s[1]})'
        for s in strides) + ']'


def _fmt(v):
    return list(v) if isinstance(v, tuple) else v


def _arch_value(backbone, name):
    """``embed_dims`` / ``depth`` of a CAEViT-style backbone config."""
    arch = backbone.get('arch', 'base')
    if isinstance(arch, dict):
        return arch.get(name)
    from mmcae.models.cae.encoder import CAE_ARCHS
    return CAE_ARCHS.get(arch, {}).get(name)


def pyramid_strides(patch_size, rescales):
    """Output strides ``(sh, sw)`` of the pyramid levels: the patch size
    divided by each level's rescale factor."""
    ph, pw = _pair(patch_size)
    return [(round(ph / r), round(pw / r)) for r in rescales]


def check_transfer_shapes(cfg):
    """Raise ``ValueError`` naming both config keys when the pyramid's
    levels, strides or channels disagree with what follows it.

    A no-op for configs without a ``SimpleFeaturePyramid`` first neck.
    """
    root = getattr(cfg, '_cfg_dict', cfg)
    model = root.get('model') or {}
    backbone = model.get('backbone') or {}
    neck = model.get('neck')
    necks = list(neck) if isinstance(neck, (list, tuple)) else [neck]
    listed = isinstance(neck, (list, tuple))
    if not necks or _type_name(necks[0]) != 'SimpleFeaturePyramid' or \
            _type_name(backbone) not in _ENCODERS:
        return  # strides and widths known only for mmcae's encoders
    pkey = 'model.neck.0' if listed else 'model.neck'
    pyramid = necks[0]
    rescales = tuple(pyramid.get('rescales', (4, 2, 1, 0.5)))
    if any(r not in _SUPPORTED_RESCALES for r in rescales):
        return  # the pyramid names the bad factor when it is built
    patch = backbone.get('patch_size', 16)
    if _pair(patch) is None:
        return  # check_config_types / the backbone name the bad value

    # backbone -> pyramid: one map per out_indices entry, embed_dims wide
    out_indices = backbone.get('out_indices', (-1, ))
    if isinstance(out_indices, Integral):
        out_indices = (out_indices, )
    if len(out_indices) != len(rescales):
        raise ValueError(
            f'model.backbone.out_indices={_fmt(tuple(out_indices))} gives '
            f'{len(out_indices)} feature map(s) but {pkey}.rescales='
            f'{_fmt(rescales)} (SimpleFeaturePyramid) takes '
            f'{len(rescales)}: give one rescale per map')
    width = _arch_value(backbone, 'embed_dims')
    if width is not None and pyramid.get('embed_dims') != width:
        raise ValueError(
            f'{pkey}.embed_dims={pyramid.get("embed_dims")} '
            f'(SimpleFeaturePyramid) but the backbone gives {width}-channel '
            f'maps (model.backbone.arch: embed_dims={width}); set '
            f'{pkey}.embed_dims={width}')
    channels = pyramid.get('embed_dims')
    strides = pyramid_strides(patch, rescales)
    source = (f'model.backbone.patch_size={_fmt(patch)} with '
              f'{pkey}.rescales={_fmt(rescales)}')
    levels_key = f'{pkey}.rescales'
    ch_key = f'{pkey}.embed_dims'

    # pyramid -> FPN (MMDetection), the only further neck followed
    if len(necks) > 1:
        fpn = necks[1]
        if _type_name(fpn) != 'FPN' or len(necks) > 2:
            return
        fkey = 'model.neck.1'
        in_ch = fpn.get('in_channels')
        if isinstance(in_ch, (list, tuple)):
            if len(in_ch) != len(strides):
                raise ValueError(
                    f'{fkey}.in_channels={_fmt(in_ch)} (FPN) lists '
                    f'{len(in_ch)} inputs but {levels_key}='
                    f'{_fmt(rescales)} makes {len(strides)} levels')
            bad = [c for c in in_ch if c != channels]
            if bad:
                raise ValueError(
                    f'{fkey}.in_channels={_fmt(in_ch)} (FPN) but '
                    f'{ch_key}={channels}: every pyramid level has '
                    f'{channels} channels; set {fkey}.in_channels='
                    f'{[channels] * len(strides)}')
        start = fpn.get('start_level', 0)
        end = fpn.get('end_level', -1)
        end = len(strides) if end == -1 else end
        num_outs = fpn.get('num_outs', end - start)
        used = strides[start:end]
        if not used or num_outs < len(used):
            return  # FPN's own assertions name these
        while len(used) < num_outs:  # extra levels: stride 2 each
            used.append((used[-1][0] * 2, used[-1][1] * 2))
        strides = used
        source += f' and {fkey} (FPN, num_outs={num_outs})'
        levels_key = f'{fkey}.num_outs'
        channels = fpn.get('out_channels')
        ch_key = f'{fkey}.out_channels'

    if model.get('decode_head') is not None:
        _check_segmentor(model, strides, channels, ch_key, source)
    else:
        _check_detector(model, strides, channels, ch_key, source,
                        levels_key, pkey, patch, rescales)


def _rescale_hint(pkey, patch, rescales, wanted):
    """``set {pkey}.rescales=[...]`` when the strides ``wanted`` for the
    pyramid's levels are reachable with supported factors."""
    ph, pw = _pair(patch)
    wanted = wanted[:len(rescales)]
    if len(wanted) < len(rescales) or any(w[0] != w[1] for w in wanted) \
            or ph != pw:
        return ''
    need = [ph / w[0] for w in wanted]
    need = [int(r) if float(r).is_integer() else r for r in need]
    if any(r not in _SUPPORTED_RESCALES for r in need):
        return (f'; no supported rescales {_SUPPORTED_RESCALES} give '
                f'strides {_fmt_strides(wanted)} at patch size {ph}')
    return (f'; for patch size {ph} set {pkey}.rescales={need} (strides '
            f'{_fmt_strides(wanted)})')


def _check_detector(model, strides, channels, ch_key, source, levels_key,
                    pkey, patch, rescales):
    got = _fmt_strides(strides)
    for hkey in ('rpn_head', 'bbox_head'):
        head = model.get(hkey)
        if not isinstance(head, dict):
            continue
        for gkey in ('anchor_generator', 'prior_generator'):
            gen = head.get(gkey)
            if not isinstance(gen, dict) or 'strides' not in gen:
                continue
            want = [_pair(s) for s in gen['strides']]
            if None in want:
                continue
            if want != strides:
                raise ValueError(
                    f'{source} give feature strides {got}, but '
                    f'model.{hkey}.{gkey}.strides={_fmt_strides(want)}: '
                    'the anchors would be laid at the wrong scale'
                    + (f' (a different number of levels: set '
                       f'{levels_key} or the strides)'
                       if len(want) != len(strides) else
                       _rescale_hint(pkey, patch, rescales, want)))
        in_ch = head.get('in_channels')
        if channels is not None and in_ch is not None and in_ch != channels:
            raise ValueError(
                f'model.{hkey}.in_channels={in_ch} but {ch_key}={channels} '
                f'feeds it; set model.{hkey}.in_channels={channels}')
    roi = model.get('roi_head')
    if not isinstance(roi, dict):
        return
    for ekey, hkey in (('bbox_roi_extractor', 'bbox_head'),
                       ('mask_roi_extractor', 'mask_head')):
        ext = roi.get(ekey)
        if not isinstance(ext, dict):
            continue
        fs = ext.get('featmap_strides')
        want = [_pair(s) for s in fs] if fs is not None else None
        if want is not None and None not in want and \
                want != strides[:len(want)]:
            raise ValueError(
                f'{source} give feature strides {got}, but '
                f'model.roi_head.{ekey}.featmap_strides='
                f'{_fmt_strides(want)} (the RoI extractor reads the first '
                f'{len(want)} levels): RoIs would be pooled at the wrong '
                'scale' + _rescale_hint(pkey, patch, rescales, want))
        out_ch = ext.get('out_channels')
        if channels is not None and out_ch is not None and \
                out_ch != channels:
            raise ValueError(
                f'model.roi_head.{ekey}.out_channels={out_ch} but '
                f'{ch_key}={channels}: RoI pooling keeps the channels; set '
                f'model.roi_head.{ekey}.out_channels={channels}')
        head = roi.get(hkey)
        if isinstance(head, dict) and out_ch is not None and \
                head.get('in_channels') not in (None, out_ch):
            raise ValueError(
                f'model.roi_head.{hkey}.in_channels='
                f'{head.get("in_channels")} but model.roi_head.{ekey}.'
                f'out_channels={out_ch} feeds it; set model.roi_head.'
                f'{hkey}.in_channels={out_ch}')


def _check_segmentor(model, strides, channels, ch_key, source):
    heads = [('model.decode_head', model.get('decode_head'))]
    aux = model.get('auxiliary_head')
    if isinstance(aux, (list, tuple)):
        heads += [(f'model.auxiliary_head.{i}', a) for i, a in enumerate(aux)]
    elif aux is not None:
        heads.append(('model.auxiliary_head', aux))
    levels = len(strides)
    for hkey, head in heads:
        if not isinstance(head, dict):
            continue
        index = head.get('in_index', -1)
        multi = isinstance(index, (list, tuple))
        indices = list(index) if multi else [index]
        bad = [i for i in indices
               if not isinstance(i, Integral) or not -levels <= i < levels]
        if bad:
            raise ValueError(
                f'{hkey}.in_index={_fmt(index)} but {source} make '
                f'{levels} levels (valid indices: {-levels} .. '
                f'{levels - 1})')
        in_ch = head.get('in_channels')
        if head.get('input_transform') == 'resize_concat' or \
                channels is None or in_ch is None:
            continue
        in_chs = list(in_ch) if isinstance(in_ch, (list, tuple)) else [in_ch]
        if len(in_chs) != len(indices):
            raise ValueError(
                f'{hkey}.in_channels={_fmt(in_ch)} lists {len(in_chs)} '
                f'input(s) but {hkey}.in_index={_fmt(index)} selects '
                f'{len(indices)}')
        if any(c != channels for c in in_chs):
            want = [channels] * len(in_chs) if multi else channels
            raise ValueError(
                f'{hkey}.in_channels={_fmt(in_ch)} but {ch_key}={channels} '
                f'(every level has {channels} channels); set '
                f'{hkey}.in_channels={want}')
