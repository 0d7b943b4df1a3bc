"""What every frozen teacher (DALL-E tokenizer, CLIP) shares."""

__all__ = ['keep_target_generator_out_of_checkpoints']


def _drop_target_generator(module, state_dict, prefix, local_metadata):
    for k in [k for k in state_dict
              if k.startswith(prefix + 'target_generator.')]:
        del state_dict[k]


def _keep_target_generator(module, state_dict, prefix, *args):
    # Checkpoints without the frozen tokenizer load strictly: its weights
    # stay those loaded from its own file.
    for k, v in module.target_generator.state_dict(
            prefix=prefix + 'target_generator.',
            keep_vars=True).items():
        state_dict.setdefault(k, v)


def keep_target_generator_out_of_checkpoints(model):
    """A frozen target generator (DALL-E 205 MiB, CLIP ViT-B/16 330 MiB) is
    loaded from its own file: leave it out of every training checkpoint,
    and let checkpoints without it load strictly."""
    model.register_state_dict_post_hook(_drop_target_generator)
    model.register_load_state_dict_pre_hook(_keep_target_generator)
