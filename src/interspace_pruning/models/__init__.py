"""Model zoo: ``models.get(name, num_classes, in_channels)``.

``name`` is a built-in architecture (:func:`names`) or an import path
``package.module:callable`` naming any function or class that returns an ``nn.Module``, such
as ``torchvision.models:resnet18``, ``timm:create_model`` or a builder of your own. For an
import path:

- ``num_classes`` is passed as ``num_classes=`` when the callable has that parameter or
  takes ``**kwargs`` (torchvision and timm builders do);
- ``in_channels`` is passed as ``in_channels=`` (or ``in_chans=``) only when the callable
  names that parameter: passing it blindly through ``**kwargs`` breaks builders that do not
  expect it. Give it yourself otherwise (timm: ``in_chans=1``); a model whose first conv does
  not take the data's channel count is refused with a one-line error that says so;
- arguments you give win over both;
- ``name=...`` fills the callable's first required parameter when the callable has no
  parameter called ``name`` (so ``timm:create_model`` with ``name=resnet50`` calls
  ``timm.create_model("resnet50", ...)``).

On the command line the arguments are repeated ``--model-arg key=value`` strings (see
:func:`parse_model_args`); a bare ``--model-arg value`` is a positional argument.

A name read from a file (a sparse file's header, a run's ``config.json``, a sweep file) is
data, never code: :func:`check_trusted` admits registered names only, and an import path only
when the caller vouches for it (``model=`` in Python, ``--model`` on the command line, or
``--trust-model-imports``). Nothing is imported before that check.

While an ``interspace`` command runs (:func:`command_line`), an import path finds its module
in the current directory too, as under ``python -m`` (:func:`search_cwd`): ``--model
mynets:build`` finds ``mynets.py`` (or the package ``mynets/``), and so does a name that a
run's ``config.json`` holds once ``--trust-model-imports`` admits it (``interspace report``,
``bench``, ``sweep`` after training your own model). A name nobody vouched for is refused by
:func:`check_trusted` before any import, so it never reaches a module by where the command
happens to run.

Lazy layers (``nn.LazyLinear``, ``nn.LazyConv2d``, ...) have no weights until they see an
input: :func:`materialize` gives them theirs with one forward pass on a zero batch (runs do
that when they build the model, knowing the data's image shape), and :func:`check_materialized`
refuses a model that still has some, in one line.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin

from .cifar_resnet import CifarResNet
from .convnet import ConvNet
from .imagenet_resnet import ImageNetResNet, resnet18, resnet50
from .vgg import VGG

_MODELS: dict[str, Callable[..., nn.Module]] = {
    "resnet20": partial(CifarResNet, 20),
    "resnet32": partial(CifarResNet, 32),
    "resnet56": partial(CifarResNet, 56),
    "vgg16": VGG,
    "resnet18": resnet18,
    "resnet50": resnet50,
    "convnet": ConvNet,
}

_IMPORT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_KEY = re.compile(r"^[A-Za-z_]\w*$")


def names() -> list[str]:
    """The built-in model names ``get`` accepts (besides ``package.module:callable``)."""
    return sorted(_MODELS)


def register(name: str, factory: Callable[..., nn.Module]) -> None:
    """Add ``factory(num_classes=..., in_channels=..., **kwargs)`` as model ``name``."""
    _MODELS[name] = factory


def is_import_path(name: str) -> bool:
    """Whether ``name`` looks like ``package.module:callable``."""
    return ":" in name


def check_name(name: str) -> str:
    """Validate a model name without importing anything (for configs)."""
    if name in _MODELS:
        return name
    if is_import_path(name):
        if not _IMPORT_PATH.match(name):
            raise ValueError(
                f"bad model import path {name!r}: write package.module:callable "
                "(e.g. torchvision.models:resnet18)"
            )
        return name
    raise ValueError(
        f"unknown model {name!r}; choose one of {names()} or give package.module:callable"
    )


class UntrustedModelError(ValueError):
    """A file names its model by an import path the caller did not vouch for."""


#: Which import paths a caller vouches for: all of them (True), none (False), or these names.
Trust = bool | Collection[str]


def trusts(trust: Trust, name: str) -> bool:
    """Whether ``trust`` admits the import path ``name``."""
    if isinstance(trust, bool):
        return trust
    return name in trust


def check_trusted(name: object, where: str, trust: Trust = False) -> str:
    """Admit a model name read from a file (``where`` names the file and field).

    A registered name passes; an import path passes only if ``trust`` admits it. Nothing is
    imported here, so a crafted ``os:abort`` is refused before it can run.
    """
    if isinstance(name, str) and name in _MODELS:
        return name
    if not isinstance(name, str) or not is_import_path(name):
        raise ValueError(
            f"{where} is {name!r:.60}, which is not a model of this library ({', '.join(names())})"
        )
    if not trusts(trust, name):
        vouch = (_command.vouch if _command is not None else _VOUCH).format(name=name[:60])
        raise UntrustedModelError(
            f"{where} is {name!r:.60}, an import path, and a name read from a file is never "
            f"imported: {vouch}"
        )
    return check_name(name)


#: How a Python caller vouches for an import path a file names (a command says its own flags).
_VOUCH = (
    "build the model yourself (model=...) or pass trust_model_imports={{'{name}'}}, or "
    "trust_model_imports=True if you wrote this file"
)


@dataclass(frozen=True)
class CommandLine:
    """What the running ``interspace`` command tells this module (see :func:`command_line`)."""

    #: The folder the command runs in: where an import path may find its top-level module.
    cwd: str
    #: How to vouch for an import path with this command's flags (``{name}``: the path).
    vouch: str


_command: CommandLine | None = None


@contextmanager
def command_line(vouch: str, cwd: str | None = None) -> Iterator[CommandLine]:
    """While a command runs: import paths also find their modules in ``cwd`` (default: the
    current directory; :func:`search_cwd`), and a refused import path is explained with
    ``vouch`` (the command's own flags, ``{name}`` standing for the path).

    Only names that may be imported reach the import (:func:`check_trusted` refuses the
    others first): the ones the user typed, and the ones a trust flag admits. The console
    script, unlike ``python -m``, does not put the current directory on ``sys.path``, so
    without this ``interspace report --trust-model-imports`` could not rebuild the
    ``--model mynet:build`` that ``interspace train`` trained from ``./mynet.py``.
    """
    global _command
    saved = _command
    _command = CommandLine(os.path.abspath(cwd if cwd is not None else os.getcwd()), vouch)
    try:
        yield _command
    finally:
        _command = saved


def parse_value(text: str) -> Any:
    """A ``--model-arg`` value: int, float, bool (true/false), none, or str.

    Quotes force a string: ``name='123'`` passes the string ``"123"``.
    """
    t = text.strip()
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "'\"":
        return t[1:-1]
    low = t.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for convert in (int, float):
        try:
            return convert(t)
        except ValueError:
            pass
    return t


def parse_model_args(items: Sequence[str]) -> tuple[list[Any], dict[str, Any]]:
    """``["name=resnet50", "drop_rate=0.1", "7"]`` -> ``([7], {"name": ..., ...})``."""
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep:
            if kwargs:
                raise ValueError(
                    f"--model-arg {item!r}: a positional value must come before key=value ones"
                )
            args.append(parse_value(item))
            continue
        key = key.strip()
        if not _KEY.match(key):
            raise ValueError(f"--model-arg {item!r}: expected key=value with a Python name as key")
        if key in kwargs:
            raise ValueError(f"--model-arg {key!r} is given twice")
        kwargs[key] = parse_value(value)
    return args, kwargs


def search_cwd(path: str, cwd: str | None = None) -> bool:
    """Let the import path ``path`` (given on the command line) find its module in the
    current directory, as ``python -m`` does: put ``cwd`` first on ``sys.path`` if the
    module's top-level package lies there (``mynets.py`` or ``mynets/``). Returns whether
    it does. Never for names read from files: those must not reach modules by where the
    command happens to run."""
    if not is_import_path(path) or not _IMPORT_PATH.match(path):
        return False
    cwd = os.path.abspath(cwd if cwd is not None else os.getcwd())
    top = path.partition(":")[0].split(".")[0]
    module = os.path.join(cwd, top)
    if not (os.path.isfile(f"{module}.py") or os.path.isdir(module)):
        return False
    here = {os.path.abspath(p or os.curdir) for p in sys.path}
    if cwd not in here:
        sys.path.insert(0, cwd)
        importlib.invalidate_caches()
    return True


def _resolve(path: str) -> Callable[..., Any]:
    check_name(path)
    module_name, _, attr = path.partition(":")
    if _command is not None:  # a command: ./mynet.py is found, as under python -m
        search_cwd(path, _command.cwd)
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as e:
        top = module_name.partition(".")[0]
        how = (  # PyPI's torchvision/timm pull a torch that is not this CPU build
            "install it beside this torch as docs/getting-started.md#torchvision-and-timm-"
            "beside-the-cpu-torch says"
            if top in ("torchvision", "timm")
            else "install it, run from the folder that holds it, or add that folder to PYTHONPATH"
        )
        raise ValueError(f"model {path}: cannot import {module_name!r} ({e}); {how}") from None
    except Exception as e:  # the module itself failed while importing
        raise ValueError(
            f"model {path}: importing {module_name!r} failed: {type(e).__name__}: {e}"
        ) from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"model {path}: {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(
            f"model {path}: {attr!r} is a {type(obj).__name__}, not a function or class "
            "that builds a model"
        )
    return obj


def _signature(fn: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins and C extensions have none
        return None


def _named(sig: inspect.Signature | None, name: str) -> bool:
    if sig is None or name not in sig.parameters:
        return False
    return sig.parameters[name].kind is not inspect.Parameter.POSITIONAL_ONLY


def _takes_kwargs(sig: inspect.Signature | None) -> bool:
    return sig is None or any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())


def build_from_path(
    path: str,
    num_classes: int,
    in_channels: int,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
) -> nn.Module:
    """Call ``package.module:callable`` (rules in the module docstring); check the result."""
    fn = _resolve(path)
    sig = _signature(fn)
    args, kwargs = list(args), dict(kwargs or {})
    if "name" in kwargs and sig is not None and not _named(sig, "name") and not args:
        required = [
            p
            for p in sig.parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
        ]
        if required and required[0].name not in kwargs:
            args.append(kwargs.pop("name"))
    if "num_classes" not in kwargs and (_named(sig, "num_classes") or _takes_kwargs(sig)):
        kwargs["num_classes"] = num_classes
    if not {"in_channels", "in_chans"} & set(kwargs):
        for key in ("in_channels", "in_chans"):
            if _named(sig, key):
                kwargs[key] = in_channels
                break
    if sig is not None:
        try:
            sig.bind(*args, **kwargs)
        except TypeError as e:
            raise ValueError(
                f"model {path}: {e} (its parameters: {sig}); set them with --model-arg key=value"
            ) from None
    model = fn(*args, **kwargs)
    if not isinstance(model, nn.Module):
        raise ValueError(
            f"model {path} returned an object of type {type(model).__name__}, not a torch.nn.Module"
        )
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)), None)
    if first is None:
        raise ValueError(f"model {path} built a model with no nn.Conv2d or nn.Linear layer")
    takes = first.in_channels if isinstance(first, nn.Conv2d) else None
    if takes is not None and takes != in_channels and not isinstance(first, LazyModuleMixin):
        raise ValueError(
            f"model {path}: its first conv takes {takes} input channels but the data has "
            f"{in_channels}; pass the builder's own argument, e.g. --model-arg "
            f"in_chans={in_channels} (timm)"
        )
    return model


def get(
    name: str,
    num_classes: int = 10,
    in_channels: int = 3,
    *args: Any,
    **kwargs: Any,
) -> nn.Module:
    """Build model ``name`` (freshly initialised): a built-in one or ``package.module:callable``.

    Extra ``args``/``kwargs`` go to the builder (built-in models take keyword options such
    as ``width=`` or ``shortcut=``).
    """
    if num_classes < 1 or in_channels < 1:
        raise ValueError(
            f"num_classes and in_channels must be >= 1, got {num_classes}, {in_channels}"
        )
    if name not in _MODELS and is_import_path(name):
        return build_from_path(name, num_classes, in_channels, args, kwargs)
    check_name(name)
    if args:
        raise ValueError(f"built-in model {name!r} takes only key=value options")
    builder = _MODELS[name]
    sig = _signature(builder)
    if sig is not None:
        try:
            sig.bind(num_classes=num_classes, in_channels=in_channels, **kwargs)
        except TypeError as e:
            options = [k for k in sig.parameters if k not in ("num_classes", "in_channels")]
            raise ValueError(
                f"model {name!r}: {e}; its options: {', '.join(options) or 'none'}"
            ) from None
    return builder(num_classes=num_classes, in_channels=in_channels, **kwargs)


def lazy_layers(model: nn.Module) -> list[str]:
    """The lazy layers of ``model`` that have no weights yet, as ``"name (LazyLinear)"``."""
    return [
        f"{name or '<model>'} ({type(m).__name__})"
        for name, m in model.named_modules()
        if isinstance(m, LazyModuleMixin) and m.has_uninitialized_params()
    ]


def check_materialized(model: nn.Module) -> None:
    """A one-line error if ``model`` has lazy layers without weights (nothing to prune yet)."""
    lazy = lazy_layers(model)
    if lazy:
        raise ValueError(
            f"the model has lazy layers whose weights do not exist yet: {', '.join(lazy[:3])}"
            f"{' ...' if len(lazy) > 3 else ''}; call it once on an example batch (model(x)) "
            "before pruning it, or give those layers their input sizes"
        )


def materialize(model: nn.Module, input_shape: Sequence[int]) -> nn.Module:
    """Give ``model``'s lazy layers their weights: one forward pass on a zero batch of
    images of ``input_shape`` (channels, height, width), in eval mode without gradients (so
    BatchNorm statistics stay as they were). A model without lazy layers is not touched.
    The new weights come from the global RNG, right after the model's own: seeded runs stay
    reproducible. Returns ``model``."""
    lazy = lazy_layers(model)
    if not lazy:
        return model
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros((2, *input_shape), device=device))
    except Exception as e:
        raise ValueError(
            f"the model has lazy layers ({', '.join(lazy[:3])}) and a forward pass on a "
            f"batch of shape {(2, *input_shape)} to size them failed: {type(e).__name__}: {e}"
        ) from None
    finally:
        model.train(training)
    check_materialized(model)  # a lazy layer the forward pass did not reach
    return model


def from_spec(
    name: str, num_classes: int, in_channels: int, model_args: Sequence[str] = ()
) -> nn.Module:
    """Build from a config: ``model_args`` are ``--model-arg`` strings."""
    args, kwargs = parse_model_args(model_args)
    if name not in _MODELS and is_import_path(name):  # kwargs may hold name=, num_classes=
        if num_classes < 1 or in_channels < 1:
            raise ValueError(
                f"num_classes and in_channels must be >= 1, got {num_classes}, {in_channels}"
            )
        return build_from_path(name, num_classes, in_channels, args, kwargs)
    return get(name, num_classes, in_channels, *args, **kwargs)


__all__ = [
    "CifarResNet",
    "ConvNet",
    "ImageNetResNet",
    "VGG",
    "CommandLine",
    "Trust",
    "UntrustedModelError",
    "build_from_path",
    "check_materialized",
    "check_name",
    "check_trusted",
    "command_line",
    "from_spec",
    "get",
    "is_import_path",
    "lazy_layers",
    "materialize",
    "names",
    "parse_model_args",
    "parse_value",
    "register",
    "search_cwd",
    "trusts",
]
