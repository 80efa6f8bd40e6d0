"""A version folder's ``mapping_config.json``, OVMS' renaming of a model's tensors.

``{"inputs": {"tensor": "alias"}, "outputs": {"tensor": "alias"}}``; both keys are optional,
any other key is refused (OVMS' schema), and so are aliases that are not non-empty strings.
Whether the names exist in the model is the runtime's check, at load.
"""

from __future__ import annotations

from ._types import TensorMapping
from ._values import _json_at, _keys, _object, _str

__all__ = ["MAPPING_FILE", "parse_mapping_config"]

MAPPING_FILE = "mapping_config.json"
"""Its name in a version folder (OVMS')."""


def parse_mapping_config(text: str, where: str = MAPPING_FILE) -> TensorMapping:
    """Parse the content of a ``mapping_config.json``; messages start with ``where``.

    Raises:
        ConfigError: not JSON, not an object, an unknown key, or an alias that is not a
            non-empty string.
    """
    obj = _object(_json_at(text, where), where)
    _keys(obj, where, allowed=("inputs", "outputs"))
    return TensorMapping(
        inputs=_aliases(obj.get("inputs", {}), f"{where}: inputs"),
        outputs=_aliases(obj.get("outputs", {}), f"{where}: outputs"),
    )


def _aliases(value: object, where: str) -> dict[str, str]:
    return {name: _str(alias, f"{where}.{name}") for name, alias in _object(value, where).items()}
