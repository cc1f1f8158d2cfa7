"""The difficulty predictor inside a bundle: its files confined, its model checked.

:func:`check_predictor` runs inside :func:`allocator.bundle.read_bundle`, on the bytes
already read and hash-checked there: the predictor's files are plain names inside
``difficulty/`` listed in the manifest, ``difficulty.json`` names its model and text
basis among them (never a path such as ``../x`` or ``/etc/passwd``), and the LightGBM
model text passes :func:`allocator.lgbm_text.checked_model_text`. The predictor is later
built from these bytes (:meth:`allocator.predictor.DifficultyModel.from_files`), never
from the files on disk.

Pure Python: json and the model check only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from allocator.errors import BundleError
from allocator.lgbm_text import checked_model_text

__all__ = ["PREDICTOR_CONFIG", "PREDICTOR_DIR", "check_predictor"]

#: Sub-directory of the difficulty predictor's files.
PREDICTOR_DIR = "difficulty"
#: The difficulty predictor's settings file (:data:`allocator.predictor.CONFIG_FILE`).
PREDICTOR_CONFIG = "difficulty.json"


def check_predictor(manifest: Mapping[str, Any], contents: Mapping[str, bytes],
                    folder: Path, *, fix: str) -> dict[str, bytes]:
    """The predictor's verified files by name, with its model text checked (or {}).

    The manifest's ``difficulty`` lists plain file names inside ``difficulty/``;
    ``difficulty.json`` names its model and text basis among them (never a path: a name
    such as ``../x`` or ``/etc/passwd`` is refused), and the model text must pass
    :func:`allocator.lgbm_text.checked_model_text` for the predictor's feature count.

    Args:
        manifest: the bundle's manifest (its ``difficulty`` entry).
        contents: the bundle's files by relative path, read once and hash-checked.
        folder: the bundle directory (for messages).
        fix: what to do about a refused bundle (appended to messages).

    Returns:
        File name (in ``difficulty/``) -> bytes; the model's bytes are its checked text
        (trees only). Empty without a predictor.

    Raises:
        BundleError: a name outside the predictor's files, an unreadable
            ``difficulty.json`` or a malformed model.
    """
    entry = manifest.get("difficulty")
    if entry is None:
        return {}
    names = entry.get("files") if isinstance(entry, dict) else None
    if (not isinstance(entry, dict) or entry.get("dir") != PREDICTOR_DIR
            or not isinstance(names, list) or not all(_is_plain_name(n) for n in names)
            or PREDICTOR_CONFIG not in names):
        raise BundleError(f"manifest.json field 'difficulty' must be null or "
                          f"{{dir: {PREDICTOR_DIR!r}, files: [plain file names, "
                          f"{PREDICTOR_CONFIG!r} among them]}}, got {entry!r}; "
                          f"{fix}.", path=folder)
    files: dict[str, bytes] = {}
    for name in names:
        key = f"{PREDICTOR_DIR}/{name}"
        if key not in contents:
            raise BundleError(f"the predictor file {key!r} is not listed with a hash in "
                              f"manifest.json; {fix}.", path=folder)
        files[name] = contents[key]
    config = _predictor_config(files[PREDICTOR_CONFIG], folder, fix)
    model, width = _predictor_names(config, names, folder, fix)
    try:
        files[model] = checked_model_text(files[model], width).encode("ascii")
    except ValueError as error:
        raise BundleError(f"the difficulty model {PREDICTOR_DIR}/{model} is malformed "
                          f"({error}); {fix}.", path=folder) from None
    return files


def _is_plain_name(name: object) -> bool:
    """A file name without any directory part ('a.txt', not 'x/a.txt', '..', '/a')."""
    return (isinstance(name, str) and name not in ("", ".", "..") and "/" not in name
            and "\\" not in name and "\0" not in name)


def _predictor_config(data: bytes, folder: Path, fix: str) -> dict[str, Any]:
    try:
        config = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise BundleError(f"{PREDICTOR_DIR}/{PREDICTOR_CONFIG} is not valid JSON ({error}); "
                          f"{fix}.", path=folder) from None
    if not isinstance(config, dict) or not isinstance(config.get("files"), dict):
        raise BundleError(f"{PREDICTOR_DIR}/{PREDICTOR_CONFIG} has no 'files' object; "
                          f"{fix}.", path=folder)
    return config


def _predictor_names(config: dict[str, Any], names: list[str], folder: Path,
                     fix: str) -> tuple[str, int]:
    """The model's name (checked with the text basis's: files of the predictor) and the
    predictor's feature count."""
    model, basis = config["files"].get("model"), config["files"].get("text_basis")
    where = f"{PREDICTOR_DIR}/{PREDICTOR_CONFIG}"
    for key, value, optional in (("model", model, False), ("text_basis", basis, True)):
        if not (optional and value is None) and not (_is_plain_name(value)
                                                     and value in names):
            raise BundleError(f"{where} names the file {value!r} as its {key}: expected "
                              f"one of the predictor's own files {names} (a plain name in "
                              f"{PREDICTOR_DIR}/, never a path); {fix}.", path=folder)
    width = config.get("feature_names")
    if not isinstance(width, list) or not width or model == PREDICTOR_CONFIG:
        raise BundleError(f"{where} must list the predictor's feature_names and name a "
                          f"model file; {fix}.", path=folder)
    return model, len(width)
