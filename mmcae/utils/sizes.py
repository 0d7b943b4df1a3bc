"""Sizes given as an int or an (h, w) pair, parsed once for every caller."""
from numbers import Integral
from typing import Sequence, Tuple

__all__ = ['to_2tuple']


def _side(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f'{name} must be an int, got {value!r}')
    return int(value)


def to_2tuple(size, name: str = 'size') -> Tuple[int, int]:
    """``size`` as ``(h, w)``: an int is square; anything but an int or a
    pair of ints (a float, a string, a bool, three values) is refused,
    naming ``name``, instead of being truncated silently."""
    if isinstance(size, Integral) and not isinstance(size, bool):
        return int(size), int(size)
    if (isinstance(size, Sequence) and not isinstance(size, str)
            and len(size) == 2):
        return (_side(f'{name} height', size[0]),
                _side(f'{name} width', size[1]))
    raise TypeError(f'{name} must be an int or a (h, w) pair of ints, '
                    f'got {size!r}')
