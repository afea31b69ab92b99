"""Registration of the public classes for Keras serialization, and their argument checks."""

import numbers

import keras

PACKAGE = "keras_rnnreg"


def serializable(obj):
    """Register ``obj`` with ``keras.saving`` under the ``keras_rnnreg>`` prefix."""
    return keras.saving.register_keras_serializable(package=PACKAGE)(obj)


def check_int(name, value, minimum=1, maximum=None):
    """``int(value)``; a ValueError in Keras' wording unless an integer in [minimum, maximum]."""
    integral = not isinstance(value, bool) and isinstance(value, numbers.Integral)
    if not integral or value < minimum or (maximum is not None and value > maximum):
        expected = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        if maximum is not None:
            expected = f"an int in [{minimum}, {maximum}]"
        raise ValueError(f"Invalid value for argument {name}={value!r}: expected {expected}.")
    return int(value)


def check_positive(name, value):
    """``float(value)``; a ValueError in Keras' wording unless it is a number > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ValueError(f"Invalid value for argument {name}={value!r}: expected a positive "
                         "number.")
    return float(value)


def check_real(name, value, minimum=None):
    """``float(value)``; a ValueError in Keras' wording unless it is a finite number >= minimum."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"Invalid value for argument {name}={value!r}: expected a real number.")
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"Invalid value for argument {name}={value!r}: expected a finite number.")
    if minimum is not None and value < minimum:
        raise ValueError(
            f"Invalid value for argument {name}={value!r}: expected {name} >= {minimum}."
        )
    return value


def check_rate(name, value):
    """``float(value)``; a ValueError in Keras' wording unless it is a number in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value < 1.0:
        raise ValueError(f"Invalid value for argument {name}={value!r}: expected 0 <= {name} < 1.")
    return float(value)


def check_choice(name, value, choices):
    """``value``; a ValueError in Keras' wording unless it is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"Invalid value for argument {name}={value!r}: expected one of "
                         f"{', '.join(map(repr, choices))}.")
    return value
