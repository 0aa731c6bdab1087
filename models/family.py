"""The weight source of a shipped family's hypernetwork class, from one argument.

``HyperResNet``, ``HyperCharTransformer`` and ``StaticHyperLSTM`` are ``wrap(family, source)``
under a name that configs and checkpoints can use. Each takes ``source=`` (any weight source:
``Hyper(...)``, ``LowRank(...)``, ...) and, for the checkpoints and scripts written before that,
``Hyper``'s knobs by name. The knobs' defaults are ``Hyper``'s own, in one place
(``hyper.Hyper``); a class never restates them.
"""

from __future__ import annotations

from typing import Any

from hyper import Hyper, SourceSpec, source_from_name


def family_source(source: SourceSpec | str | None, **knobs: Any) -> SourceSpec:
    """``source`` (a spec or its name), or ``Hyper`` made from the ``knobs`` given (not None).

    Raises ValueError when both are given: the knobs would be silently ignored.
    """
    given = {name: value for name, value in knobs.items() if value is not None}
    if source is None:
        return Hyper(**given)
    if given:
        names = ", ".join(sorted(given))
        raise ValueError(
            f"{names}: a knob of the source, set it inside source= (on the command line "
            f"--model.network.source.{sorted(given)[0]}), not beside it"
        )
    return source_from_name(source) if isinstance(source, str) else source
