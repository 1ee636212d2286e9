"""What the server's and the agent's config loaders say about a config they cannot use:
one line per problem, and for a key nobody knows, the known key it most looks like.

    unknown key 'limits_config.max_line_sise' (did you mean 'max_line_size'?)
    queue.capacity: Input should be greater than or equal to 1
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Callable, Iterable
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

Loc = tuple[str | int, ...]


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the closest known word, or `` when none is close."""
    close = difflib.get_close_matches(word, sorted(set(known)), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def unknown_key(path: str, known: Iterable[str]) -> str:
    """The message for key `path` (dotted, as the file spells it) that is not in `known`
    (the keys allowed where it stands)."""
    return f"unknown key '{path}'{did_you_mean(path.rpartition('.')[2], known)}"


def _unwrap(tp: Any) -> Any:
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return tp


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _union_member(members: tuple[Any, ...], part: str | int) -> Any:
    """The member of a union that pydantic names `part` in an error location: its class
    name, or the value of its discriminator field."""
    models = [m for m in map(_unwrap, members) if _is_model(m)]
    for m in models:
        if m.__name__ == part:
            return m
        for field in m.model_fields.values():
            if get_origin(field.annotation) is Literal and part in get_args(field.annotation):
                return m
    return None


def _step(tp: Any, part: str | int) -> Any:
    tp = _unwrap(tp)
    origin = get_origin(tp)
    if _is_model(tp):
        field = tp.model_fields.get(part) if isinstance(part, str) else None
        return None if field is None else field.annotation
    if origin in (list, tuple, set, frozenset) and isinstance(part, int):
        return get_args(tp)[0]
    if origin is dict:
        return get_args(tp)[1]
    if origin in (Union, types.UnionType):
        members = [m for m in get_args(tp) if m is not type(None)]
        if len(members) == 1:  # `Model | None`: pydantic names no member
            return _step(members[0], part)
        return _union_member(tuple(members), part)
    return None


def known_keys(model: type[BaseModel], loc: Loc) -> list[str]:
    """The field names of the model found at `loc` inside `model` ([] if none)."""
    tp: Any = model
    for part in loc:
        tp = _step(tp, part)
        if tp is None:
            return []
    tp = _unwrap(tp)
    return list(tp.model_fields) if _is_model(tp) else []


def validation_messages(exc: ValidationError, model: type[BaseModel],
                        name: Callable[[Loc], str] | None = None) -> list[str]:
    """One line per error of validating `model`; an extra (forbidden) key becomes
    `unknown key '<path>' (did you mean '<key>'?)`. `name` spells a location as the file
    does (default: dotted)."""
    spell = name or (lambda loc: ".".join(str(p) for p in loc))
    out = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        if err["type"] == "extra_forbidden" and loc:
            out.append(unknown_key(spell(loc), known_keys(model, loc[:-1])))
        else:
            msg = err["msg"].removeprefix("Value error, ")
            out.append(f"{spell(loc) or '(top level)'}: {msg}")
    return out


def config_error_text(what: str, lines: list[str]) -> str:
    """`what: problem` when there is one problem, else `what:` and one indented line each."""
    if len(lines) == 1:
        return f"{what}: {lines[0]}"
    return f"{what}:\n" + "\n".join(f"  {line}" for line in lines)
