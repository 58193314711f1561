"""``model.quick_init``: a frozen value built through its slots' descriptors is the value the generated
``__init__`` builds (same parameters, defaults, factories, ``__post_init__``), and as frozen after."""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field

import pytest

import dnsplane.execute
import dnsplane.model
import dnsplane.protocol.messages
from dnsplane.model import quick_init


def _sample(quick: bool) -> type:
    @dataclass(frozen=True, slots=True)
    class Sample:
        a: int
        b: str = "b"
        c: list[int] = field(default_factory=list)
        d: int = field(init=False, default=4)
        e: dict[str, int] = field(init=False, default_factory=dict)
        f: int = field(init=False)  # set by __post_init__

        def __post_init__(self) -> None:
            object.__setattr__(self, "f", self.a * 10)

    return quick_init(Sample) if quick else Sample


def _slots(value: object) -> dict[str, object]:
    return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}  # type: ignore[arg-type]


def test_quick_init_builds_what_the_generated_init_builds() -> None:
    generated, quick = _sample(False), _sample(True)
    assert quick.__init__.__code__.co_filename == "<string>"
    assert "_set_a" in quick.__init__.__code__.co_names  # the descriptors', not object.__setattr__
    assert str(inspect.signature(quick)) == str(inspect.signature(generated))
    for args, kwargs in (((1,), {}), ((2, "x"), {}), ((3,), {"c": [7]}), ((), {"a": 5, "b": "y", "c": []})):
        one, other = generated(*args, **kwargs), quick(*args, **kwargs)
        assert _slots(one) == _slots(other)
    assert quick(1).c is not quick(1).c and quick(1).e is not quick(1).e  # a fresh default each time
    value = quick(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        value.a = 2  # type: ignore[misc]
    assert _slots(dataclasses.replace(value, b="z")) == _slots(generated(1, "z"))
    with pytest.raises(TypeError):
        quick()


def test_every_quick_value_keeps_its_signature() -> None:
    """The values of the model and the actor contract that ``quick_init`` rebuilt take the parameters,
    in the order and with the defaults, their fields give."""
    quick = 0
    for module in (dnsplane.model, dnsplane.protocol.messages, dnsplane.execute):
        for cls in vars(module).values():
            if not (isinstance(cls, type) and dataclasses.is_dataclass(cls) and cls.__module__ == module.__name__
                    and cls.__init__.__code__.co_filename == "<string>"
                    and any(n.startswith("_set_") for n in cls.__init__.__code__.co_names)):
                continue
            quick += 1
            params = list(inspect.signature(cls).parameters.values())
            fields = [f for f in dataclasses.fields(cls) if f.init]
            assert [p.name for p in params] == [f.name for f in fields], cls
            for p, f in zip(params, fields, strict=True):
                if f.default is not dataclasses.MISSING:
                    assert p.default is f.default, (cls, f.name)
                elif f.default_factory is dataclasses.MISSING:
                    assert p.default is inspect.Parameter.empty, (cls, f.name)
    assert quick >= 40  # the events, the commands, markers, writes and their results
