"""Test helper imported by training subprocesses (custom_imports): every
rank writes its final weights, so a test can compare ranks."""
import os

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmpretrain.registry import HOOKS


@HOOKS.register_module()
class DumpRankWeightsHook(Hook):

    def __init__(self, out_dir):
        self.out_dir = out_dir

    def after_train(self, runner):
        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        os.makedirs(self.out_dir, exist_ok=True)
        torch.save({k: v.detach().clone() for k, v in
                    model.state_dict().items()},
                   os.path.join(self.out_dir, f'rank{get_rank()}.pth'))
