"""JSON Schemas of the files other programs read: bundle metadata.json, the bench report, and the
Android app's benchmark results. Shipped in the package (tinybert_edge/schemas/), validated on
write and on read; the Java core's example output is validated against them in the tests.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

import jsonschema

from .errors import KitError

SCHEMAS = {"bundle": "bundle.schema.json", "bench": "bench.schema.json", "bench-device": "bench-device.schema.json"}


class SchemaError(KitError, ValueError):
    """A JSON file does not follow its schema; the message names the field."""


@lru_cache(maxsize=None)
def load_schema(kind: str) -> dict:
    """The parsed JSON Schema of `kind` ("bundle", "bench", "bench-device")."""
    return json.loads(resources.files("tinybert_edge.schemas").joinpath(SCHEMAS[kind]).read_text(encoding="utf-8"))


def _field(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "required":  # the message names the missing key; the path is its parent
        missing = error.message.split("'")[1] if "'" in error.message else "?"
        return f"{path}.{missing}" if path else missing
    return path or "(top level)"


def validate(kind: str, obj: dict, where: str) -> None:
    """Check `obj` against the schema of `kind`.

    Args:
        kind: "bundle", "bench" or "bench-device".
        obj: the parsed JSON.
        where: the file (or what is being written), for the message.

    Raises:
        SchemaError: one message naming the first offending field and what is wrong with it.
    """
    validator = jsonschema.Draft202012Validator(load_schema(kind))
    error = jsonschema.exceptions.best_match(validator.iter_errors(obj))
    if error is not None:
        what = "is missing" if error.validator == "required" else f"is invalid: {error.message}"
        raise SchemaError(f"{where}: field '{_field(error)}' {what} (schema {SCHEMAS[kind]}); "
                          "regenerate the file with this version of tinybert-edge")
