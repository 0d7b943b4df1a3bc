"""A quick linear probe on frozen encoder features.

The main job uses it to compare a pretrained encoder with a randomly
initialised one in seconds: features (the cls token after the final norm,
as the official linear probe) are extracted once, without augmentation,
then ``BatchNorm1d(affine=False) + Linear`` — the official probe head — is
trained on them with AdamW.  The full MMPretrain-runner protocol (LARS,
augmentation, 90 epochs) lives in the evaluation configs.
"""
import time
from typing import Dict, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ['extract_features', 'train_linear_probe']


@torch.no_grad()
def extract_features(encoder: nn.Module, dataset, batch_size: int = 128,
                     feature: str = 'cls',
                     mean=(123.675, 116.28, 103.53),
                     std=(58.395, 57.12, 57.375)) -> Tuple[torch.Tensor,
                                                            torch.Tensor]:
    """cls-token features and labels of an MMPretrain dataset.

    The dataset's pipeline must end with ``PackInputs`` (uint8 CHW RGB or
    BGR as loaded; ``LoadImageFromFile`` gives BGR, flipped here to RGB).

    Args:
        feature: ``'cls'`` (the official linear probe's cls token after the
            final norm), ``'mean'`` (mean of the patch tokens) or
            ``'cls+mean'`` (both, concatenated).
    """
    if feature not in ('cls', 'mean', 'cls+mean'):
        raise ValueError(f"feature must be 'cls', 'mean' or 'cls+mean', "
                         f'got {feature!r}')
    was_training = encoder.training
    encoder.eval()
    mean_t = torch.tensor(mean).view(1, 3, 1, 1)
    std_t = torch.tensor(std).view(1, 3, 1, 1)
    feats, labels = [], []
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start,
                                           min(start + batch_size,
                                               len(dataset)))]
        img = torch.stack([it['inputs'] for it in items]).float()
        img = img.flip(1)  # BGR (cv2) -> RGB
        img = (img - mean_t) / std_t
        tokens = encoder(img).float()
        parts = []
        if feature in ('cls', 'cls+mean'):
            parts.append(tokens[:, 0])
        if feature in ('mean', 'cls+mean'):
            parts.append(tokens[:, 1:].mean(1))
        feats.append(torch.cat(parts, 1))
        labels.append(
            torch.cat([it['data_samples'].gt_label for it in items]))
    encoder.train(was_training)
    return torch.cat(feats), torch.cat(labels)


def train_linear_probe(train_feats, train_labels, val_feats, val_labels,
                       num_classes: int, epochs: int = 100, lr: float = 1e-2,
                       batch_size: int = 256, seed: int = 0) -> Dict:
    """Train BN(affine=False)+Linear; return top-1 on val (in %)."""
    g = torch.Generator().manual_seed(seed)
    head = nn.Sequential(
        nn.BatchNorm1d(train_feats.shape[1], affine=False, eps=1e-6),
        nn.Linear(train_feats.shape[1], num_classes))
    nn.init.trunc_normal_(head[1].weight, std=0.01)
    nn.init.zeros_(head[1].bias)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * ((len(train_feats) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    t0 = time.time()
    head.train()
    for _ in range(epochs):
        perm = torch.randperm(len(train_feats), generator=g)
        for i in range(0, len(perm), batch_size):
            idx = perm[i:i + batch_size]
            if len(idx) < 2:
                continue
            loss = F.cross_entropy(head(train_feats[idx]), train_labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    head.eval()
    with torch.no_grad():
        pred = head(val_feats).argmax(1)
        train_acc = (head(train_feats).argmax(1) == train_labels).float()
    top1 = (pred == val_labels).float().mean().item() * 100
    return dict(
        top1=top1,
        train_top1=train_acc.mean().item() * 100,
        seconds=time.time() - t0)
