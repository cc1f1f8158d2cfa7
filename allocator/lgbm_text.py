"""A structural check of LightGBM's text model format, before LightGBM parses it.

LightGBM trusts its model text: a truncated file, a child index out of range or arrays of
the wrong length make its parser or its predictions abort or crash the process (C++
exceptions thrown inside OpenMP regions, reads past the end of arrays). A bundle's
difficulty model is therefore checked here, in pure Python (no LightGBM import), and only
the checked part is given to LightGBM (:func:`checked_model_text`, which lists the checks).
"""

from __future__ import annotations

import math

__all__ = ["MAX_LEAVES", "MAX_TREES", "checked_model_text"]

#: The most leaves per tree accepted (LightGBM's own limit is 131072).
MAX_LEAVES = 131_072
#: The most trees accepted.
MAX_TREES = 100_000

_END = "end of trees"
_NODE_ARRAYS = ("split_feature", "split_gain", "threshold", "decision_type", "left_child",
                "right_child", "internal_value", "internal_weight", "internal_count")
_LEAF_ARRAYS = ("leaf_value", "leaf_weight", "leaf_count")
#: The keys LightGBM writes in every tree (it aborts on some missing ones).
_TREE_KEYS = frozenset(("num_leaves", "num_cat", *_NODE_ARRAYS, *_LEAF_ARRAYS, "is_linear",
                        "shrinkage"))
_CATEGORY_KEYS = frozenset(("cat_boundaries", "cat_threshold"))
#: The header keys LightGBM writes and needs.
_HEADER_KEYS = ("version", "num_class", "num_tree_per_iteration", "label_index",
                "max_feature_idx", "objective", "feature_names", "feature_infos", "tree_sizes")
_CATEGORICAL = 1  # the decision_type bit of a categorical split



class _Refused(Exception):
    """Internal: the first problem found (turned into the caller's error)."""


def checked_model_text(data: bytes, n_features: int) -> str:
    """The model text up to ``end of trees``, after checking its structure.

    The checks:

    - the header: one class and one tree per iteration, ``max_feature_idx`` equal to the
      predictor's feature count, as many ``feature_names`` and ``feature_infos``, one
      ``tree_sizes`` entry per tree, each the exact length of its tree's text (LightGBM
      seeks to these offsets);
    - every tree: ``num_leaves`` in [1, :data:`MAX_LEAVES`], every per-node array of
      ``num_leaves - 1`` entries and per-leaf array of ``num_leaves`` entries, split
      features below the feature count, children that index existing nodes and leaves and
      form one tree (every node and leaf reached once from the root), categorical splits
      that index existing category sets, finite leaf values, no linear trees;
    - ``end of trees``; what follows it (importances, the training parameters such as
      ``num_threads``, pandas categories) is dropped: predictions do not use it.

    Args:
        data: the bytes of a LightGBM text model (``Booster.save_model``).
        n_features: the number of features the model must take.

    Returns:
        The text LightGBM may parse.

    Raises:
        ValueError: the first structural problem found, with the line it is on.
    """
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as error:
        raise ValueError(f"not a LightGBM text model (a non-ASCII byte at offset "
                         f"{error.start})") from None
    lines = text.split("\n")
    try:
        end = _check(lines, n_features)
    except _Refused as problem:
        raise ValueError(str(problem)) from None
    return "\n".join(lines[:end + 1]) + "\n"


def _check(lines: list[str], n_features: int) -> int:
    """Check the header and every tree; return the index of the ``end of trees`` line."""
    if not lines or lines[0] != "tree":
        raise _Refused("line 1 is not 'tree': not a LightGBM text model")
    header, position = _block(lines, 1)
    sizes = _check_header(header, n_features)
    position = _skip_blank(lines, position)
    for tree, size in enumerate(sizes):
        if position >= len(lines) or lines[position] != f"Tree={tree}":
            raise _Refused(f"line {position + 1}: expected 'Tree={tree}' (the header lists "
                           f"{len(sizes)} trees): the file is truncated or edited")
        fields, after = _block(lines, position + 1)
        _check_tree(tree, fields, n_features, position + 1)
        after = _skip_blank(lines, after)
        # LightGBM finds each tree at the offsets tree_sizes gives: they must be exact.
        if sum(len(line) + 1 for line in lines[position:after]) != size:
            raise _Refused(f"tree {tree} (line {position + 1}): its text is not the "
                           f"{size} characters tree_sizes says: the file is truncated or "
                           "edited")
        position = after
    if position >= len(lines) or lines[position] != _END:
        raise _Refused(f"line {position + 1}: expected '{_END}' after {len(sizes)} trees: "
                       "the file is truncated or edited")
    return position


def _block(lines: list[str], start: int) -> tuple[dict[str, tuple[str, int]], int]:
    """``key=value`` lines from ``start`` to the next blank line: {key: (value, line)}."""
    fields: dict[str, tuple[str, int]] = {}
    position = start
    while position < len(lines) and lines[position] != "":
        key, sign, value = lines[position].partition("=")
        if not sign or key in fields:
            raise _Refused(f"line {position + 1}: expected one 'key=value' line per key, got "
                           f"{lines[position][:60]!r}")
        fields[key] = (value, position + 1)
        position += 1
    return fields, position


def _skip_blank(lines: list[str], position: int) -> int:
    while position < len(lines) and lines[position] == "":
        position += 1
    return position


def _check_header(header: dict[str, tuple[str, int]], n_features: int) -> list[int]:
    missing = [key for key in _HEADER_KEYS if key not in header]
    if missing:
        raise _Refused(f"the header lacks {missing}: the file is truncated or edited")
    for key, expected in (("num_class", 1), ("num_tree_per_iteration", 1),
                          ("max_feature_idx", n_features - 1)):
        value = _int(header, key, 0)
        if value != expected:
            raise _Refused(f"line {header[key][1]}: {key}={value}, expected {expected} (a "
                           f"binary model over the predictor's {n_features} features)")
    for key in ("feature_names", "feature_infos"):
        count = len(_words(header, key))
        if count != n_features:
            raise _Refused(f"line {header[key][1]}: {key} lists {count} entries, expected "
                           f"{n_features}")
    sizes = [_parse_int(word, "tree_sizes", header["tree_sizes"][1])
             for word in _words(header, "tree_sizes")] if "tree_sizes" in header else None
    if not sizes or len(sizes) > MAX_TREES:
        raise _Refused(f"the header's tree_sizes must list 1 to {MAX_TREES} trees")
    return sizes


def _check_tree(tree: int, fields: dict[str, tuple[str, int]], n_features: int,
                line: int) -> None:
    categorical = _int(fields, "num_cat", line, default=0) > 0
    expected = _TREE_KEYS | (_CATEGORY_KEYS if categorical else frozenset())
    if set(fields) != expected:
        missing, unknown = sorted(expected - set(fields)), sorted(set(fields) - expected)
        raise _Refused(f"tree {tree} (line {line}): "
                       + (f"lacks {missing}" if missing else f"has unknown keys {unknown}")
                       + " (the file is truncated or edited)")
    leaves = _int(fields, "num_leaves", line)
    if not 1 <= leaves <= MAX_LEAVES:
        raise _Refused(f"tree {tree} (line {line}): num_leaves={leaves}, expected 1 to "
                       f"{MAX_LEAVES}")
    if _int(fields, "is_linear", line, default=0) != 0:
        raise _Refused(f"tree {tree} (line {line}): linear trees are not supported")
    _finite(fields, "shrinkage", tree, line, default="1")
    values = _numbers(fields, "leaf_value", tree, line)
    if len(values) != leaves or not all(math.isfinite(v) for v in values):
        raise _Refused(f"tree {tree}: leaf_value must hold {leaves} finite numbers")
    if leaves == 1:
        return
    for keys, count in ((_NODE_ARRAYS, leaves - 1), (_LEAF_ARRAYS, leaves)):
        for key in keys:
            if len(_words(fields, key)) != count:
                raise _Refused(f"tree {tree} (line {fields[key][1]}): {key} has "
                               f"{len(_words(fields, key))} entries, expected {count}")
    _check_splits(tree, fields, n_features, leaves)
    _check_children(tree, fields, leaves)


def _check_splits(tree: int, fields: dict[str, tuple[str, int]], n_features: int,
                  leaves: int) -> None:
    features = _ints(fields, "split_feature")
    if any(not 0 <= f < n_features for f in features):
        raise _Refused(f"tree {tree} (line {fields['split_feature'][1]}): a split feature "
                       f"outside 0..{n_features - 1}")
    kinds = _ints(fields, "decision_type")
    if any(not 0 <= k < 256 for k in kinds):
        raise _Refused(f"tree {tree} (line {fields['decision_type'][1]}): a decision_type "
                       "outside 0..255")
    thresholds = _numbers(fields, "threshold", tree, 0)
    if any(math.isnan(t) for t in thresholds):
        raise _Refused(f"tree {tree} (line {fields['threshold'][1]}): a NaN threshold")
    categories = _int(fields, "num_cat", fields["num_leaves"][1], default=0)
    if categories < 0 or categories > leaves:
        raise _Refused(f"tree {tree}: num_cat={categories}, expected 0 to {leaves}")
    if categories:
        _check_category_sets(tree, fields, categories)
    for kind, threshold in zip(kinds, thresholds, strict=True):
        if kind & _CATEGORICAL and not (threshold.is_integer() and 0 <= threshold < categories):
            raise _Refused(f"tree {tree}: a categorical split names category set "
                           f"{threshold:g}, the tree has {categories}")


def _check_category_sets(tree: int, fields: dict[str, tuple[str, int]],
                         categories: int) -> None:
    for key in ("cat_boundaries", "cat_threshold"):
        if key not in fields:
            raise _Refused(f"tree {tree}: num_cat={categories} but no {key}")
    bounds = _ints(fields, "cat_boundaries")
    words = _ints(fields, "cat_threshold")
    if (len(bounds) != categories + 1 or bounds[0] != 0 or bounds[-1] != len(words)
            or any(b > a for a, b in zip(bounds[1:], bounds[:-1], strict=True))
            or any(not 0 <= w < 2**32 for w in words)):
        raise _Refused(f"tree {tree} (line {fields['cat_boundaries'][1]}): cat_boundaries "
                       f"must rise from 0 to the {len(words)} cat_threshold words in "
                       f"{categories + 1} steps")


def _check_children(tree: int, fields: dict[str, tuple[str, int]], leaves: int) -> None:
    """Children index nodes 0..L-2 or leaves ~0..~(L-1); all reached once from node 0."""
    left, right = _ints(fields, "left_child"), _ints(fields, "right_child")
    seen_nodes, seen_leaves = {0}, set()
    stack = [0]
    while stack:
        node = stack.pop()
        for child in (left[node], right[node]):
            if child >= 0:
                if child >= leaves - 1 or child in seen_nodes:
                    raise _Refused(f"tree {tree} (line {fields['left_child'][1]}): node "
                                   f"{node} has child {child}: not a node index below "
                                   f"{leaves - 1} reached once")
                seen_nodes.add(child)
                stack.append(child)
            elif ~child >= leaves or ~child in seen_leaves:
                raise _Refused(f"tree {tree} (line {fields['left_child'][1]}): node {node} "
                               f"has leaf {~child}: not a leaf index below {leaves} "
                               "reached once")
            else:
                seen_leaves.add(~child)
    if len(seen_nodes) != leaves - 1 or len(seen_leaves) != leaves:
        raise _Refused(f"tree {tree}: the children reach {len(seen_nodes)} of {leaves - 1} "
                       f"nodes and {len(seen_leaves)} of {leaves} leaves")


# ------------------------------------------------------------------ parsing helpers
def _words(fields: dict[str, tuple[str, int]], key: str) -> list[str]:
    if key not in fields:
        raise _Refused(f"no {key} line")
    return fields[key][0].split()


def _parse_int(word: str, key: str, line: int) -> int:
    try:
        return int(word)
    except ValueError:
        raise _Refused(f"line {line}: {key} holds {word[:30]!r}, expected integers") from None


def _int(fields: dict[str, tuple[str, int]], key: str, line: int,
         default: int | None = None) -> int:
    if key not in fields and default is not None:
        return default
    if key not in fields:
        raise _Refused(f"line {line}: no {key}")
    return _parse_int(fields[key][0].strip(), key, fields[key][1])


def _ints(fields: dict[str, tuple[str, int]], key: str) -> list[int]:
    return [_parse_int(word, key, fields[key][1]) for word in _words(fields, key)]


def _numbers(fields: dict[str, tuple[str, int]], key: str, tree: int,
             line: int) -> list[float]:
    if key not in fields:
        raise _Refused(f"tree {tree} (line {line}): no {key}")
    try:
        return [float(word) for word in fields[key][0].split()]
    except ValueError:
        raise _Refused(f"tree {tree} (line {fields[key][1]}): {key} holds a value that is "
                       "not a number") from None


def _finite(fields: dict[str, tuple[str, int]], key: str, tree: int, line: int,
            default: str) -> None:
    value = fields.get(key, (default, line))[0]
    try:
        ok = math.isfinite(float(value))
    except ValueError:
        ok = False
    if not ok:
        raise _Refused(f"tree {tree} (line {line}): {key}={value[:30]!r}, expected a finite "
                       "number")
