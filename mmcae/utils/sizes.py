"""Integer arguments and sizes given as an int or an (h, w) pair, checked
once for every caller, naming the argument."""
from numbers import Integral
from typing import Optional, Sequence, Tuple

__all__ = ['check_int', 'to_2tuple']


def check_int(name: str, value, minimum: Optional[int] = None) -> int:
    """``value`` as an int; a bool, a float or a string is refused (not
    truncated), as is a value below ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f'{name} must be an int, got {value!r}')
    if minimum is not None and value < minimum:
        raise ValueError(f'{name}={value} must be >= {minimum}')
    return int(value)


def to_2tuple(size, name: str = 'size') -> Tuple[int, int]:
    """``size`` as ``(h, w)``: an int is square; anything but an int or a
    pair of ints (a float, a string, a bool, three values) is refused,
    naming ``name``, instead of being truncated silently."""
    if isinstance(size, Integral) and not isinstance(size, bool):
        return int(size), int(size)
    if (isinstance(size, Sequence) and not isinstance(size, str)
            and len(size) == 2):
        return (check_int(f'{name} height', size[0]),
                check_int(f'{name} width', size[1]))
    raise TypeError(f'{name} must be an int or a (h, w) pair of ints, '
                    f'got {size!r}')
