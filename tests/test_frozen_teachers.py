"""Both frozen teachers (DALL-E tokenizer, CLIP) get their argument checks,
checkpoint refusals and freezing from ``FrozenTeacher``: the same behaviour
for each, with each teacher's converter named in its messages."""
import pytest
import torch

from mmcae.models import CLIPTeacher, DALLEEncoder
from mmcae.models.teachers.dalle import OPENAI_ENCODER_URL
from mmcae.utils import UnsafeCheckpointError, save_checkpoint_atomic

SMALL = {
    # small widths: the checks, not the weights, are under test
    DALLEEncoder: dict(n_hid=8, vocab_size=16),
    CLIPTeacher: dict(arch=dict(width=32, layers=1, heads=2, patch_size=8,
                                image_size=32, output_dim=16)),
}
CONVERTER = {
    DALLEEncoder: 'tools/model_converters/dalle_to_mmcae.py',
    CLIPTeacher: 'tools/model_converters/clip_to_mmcae.py',
}
# the released file the converter command names, and where it comes from
RELEASE = {
    DALLEEncoder: ('encoder.pkl', OPENAI_ENCODER_URL),
    CLIPTeacher: ('ViT-B-16.pt', 'open_clip'),
}
TEACHERS = pytest.mark.parametrize('cls', [DALLEEncoder, CLIPTeacher],
                                   ids=lambda c: c.__name__)


class _Opaque:
    """Not on any weights-only allow-list."""


@TEACHERS
def test_needs_exactly_one_weight_source(cls):
    with pytest.raises(ValueError) as e:
        cls(**SMALL[cls])
    msg = str(e.value)
    assert cls.__name__ in msg and 'random_init=True' in msg
    assert CONVERTER[cls] in msg
    with pytest.raises(ValueError, match='not both'):
        cls(checkpoint='x.pth', random_init=True, **SMALL[cls])


@TEACHERS
def test_random_init_is_frozen(cls):
    torch.manual_seed(0)
    t = cls(random_init=True, **SMALL[cls])
    assert t.checkpoint is None
    assert not t.training and not any(p.requires_grad
                                       for p in t.parameters())
    before = {k: v.clone() for k, v in t.state_dict().items()}
    t.train()
    t.init_weights()
    assert not t.training
    assert all(torch.equal(before[k], v) for k, v in t.state_dict().items())
    # the base adds nothing to the state dict
    assert set(before) == {n for n, _ in t.named_parameters()} | {
        n for n, _ in t.named_buffers()}


@TEACHERS
def test_converted_file_round_trips(cls, tmp_path):
    torch.manual_seed(0)
    src = cls(random_init=True, **SMALL[cls])
    path = save_checkpoint_atomic(
        {'state_dict': src.state_dict(), 'meta': {}}, tmp_path / 't.pth')
    t = cls(checkpoint=path, **SMALL[cls])
    assert t.checkpoint == path
    assert not any(p.requires_grad for p in t.parameters())
    assert all(torch.equal(src.state_dict()[k], v)
               for k, v in t.state_dict().items())


@TEACHERS
def test_refusals_name_file_and_converter(cls, tmp_path):
    t = cls(random_init=True, **SMALL[cls])

    missing = str(tmp_path / 'none' / 'w.pth')
    with pytest.raises(FileNotFoundError) as e:
        cls(checkpoint=missing, **SMALL[cls])
    release, origin = RELEASE[cls]
    assert f'python {CONVERTER[cls]} {release} {missing}' in str(e.value)
    assert origin in str(e.value)

    sd = dict(t.state_dict())
    first, second = list(sd)[:2]
    del sd[first]
    sd[second] = torch.zeros(7)
    sd['extra.weight'] = torch.zeros(1)
    wrong = str(tmp_path / 'wrong.pth')
    torch.save({'state_dict': sd}, wrong)
    with pytest.raises(ValueError) as e:
        cls(checkpoint=wrong, **SMALL[cls])
    msg = str(e.value)
    assert wrong in msg and CONVERTER[cls] in msg
    assert f'missing keys (1): [{first!r}]' in msg
    assert "unexpected keys (1): ['extra.weight']" in msg
    assert f'{second}: expected {tuple(t.state_dict()[second].shape)}, ' \
        'got (7,)' in msg

    unsafe = str(tmp_path / 'unsafe.pth')
    torch.save({'state_dict': {}, 'x': _Opaque()}, unsafe)
    with pytest.raises(UnsafeCheckpointError) as e:
        cls(checkpoint=unsafe, **SMALL[cls])
    msg = str(e.value)
    assert unsafe in msg and 'refusing' in msg and CONVERTER[cls] in msg

    script = str(tmp_path / 'script.pt')
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), script)
    with pytest.raises(ValueError, match='TorchScript') as e:
        cls(checkpoint=script, **SMALL[cls])
    assert script in str(e.value) and CONVERTER[cls] in str(e.value)


@TEACHERS
def test_meta_instance_checks_like_a_real_one(cls):
    # what the converters check their output with
    real = cls(random_init=True, **SMALL[cls]).state_dict()
    meta = cls.meta(**SMALL[cls])
    assert all(v.is_meta for v in meta.state_dict().values())
    meta.check_weights(real, 'ok')
    bad = dict(real)
    bad.pop(next(iter(bad)))
    with pytest.raises(ValueError, match='missing keys'):
        meta.check_weights(bad, 'bad')
