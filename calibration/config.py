"""Load a TOML config file into pydantic models, with errors that name the file and the field.

Shared by every config file cellwatch reads (scenarios, node and service configs,
calibration files): ``tomllib`` parses, a pydantic model with ``extra="forbid"``
validates, and the first problem becomes one :class:`~dsp.errors.InputError` such as
``scenario.toml: phones[2].cell: unknown cell 'A-9-99'``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from dsp.errors import InputError

ModelT = TypeVar("ModelT", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for config sections: unknown keys are errors, values are immutable once read."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def field_path(loc: tuple[Any, ...]) -> str:
    """pydantic's ``('phones', 2, 'cell')`` as ``phones[2].cell``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + (str(part) or '""')  # an empty key must still show
    return out


def first_error(exc: ValidationError, source: str | None) -> InputError:
    err = exc.errors()[0]
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    message = err["msg"]
    if err["type"] == "extra_forbidden":
        message = "unknown key"
    elif err["type"] == "missing":
        message = "missing"
    elif message.startswith("Value error, "):
        message = message[len("Value error, "):]
    return InputError(source, field_path(loc) or None, message)


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file; a missing file or a syntax error is an InputError naming it."""
    path = Path(path)
    if "\x00" in str(path):
        raise InputError(str(path).replace("\x00", "\\0"), None, "not a usable file name (it holds a NUL byte)")
    try:
        with open(path, "rb") as stream:
            return tomllib.load(stream)
    except FileNotFoundError:
        raise InputError(str(path), None, "no such file") from None
    except IsADirectoryError:
        raise InputError(str(path), None, "is a directory, expected a TOML file") from None
    except OSError as exc:
        raise InputError(str(path), None, f"cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(str(path), None, f"invalid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise InputError(str(path), None, "not a UTF-8 text file") from None


def validate(model: type[ModelT], data: Any, source: str | None) -> ModelT:
    """``model`` built from ``data``; the first validation problem as an InputError."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise first_error(exc, source) from None


def load_toml(model: type[ModelT], path: str | Path) -> ModelT:
    return validate(model, read_toml(path), str(path))
