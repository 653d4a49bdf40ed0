"""Load and validate the linear model's weights (JSON or ``.npy``) for :class:`LinearModelAgent`."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from flowchain.trading.layout import FEATURE_NAMES, N_FEATURES

DEFAULT_WEIGHTS = "default_linear.json"


@dataclass(frozen=True)
class LinearWeights:
    """``signal = tanh(bias + sum(weights * (features - mean) / scale))``.

    Attributes
    ----------
    weights, mean, scale : numpy.ndarray
        float64 vectors of length :data:`flowchain.trading.layout.N_FEATURES`.
    bias : float
    source : str
        Where the weights came from (for messages).
    """

    weights: np.ndarray
    bias: float
    mean: np.ndarray
    scale: np.ndarray
    source: str


def _vector(value: object, name: str, source: str) -> np.ndarray:
    try:
        vec = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"linear model {source}: {name!r} must be a list of {N_FEATURES} "
                         f"numbers, got {value!r:.80}") from exc
    if vec.shape != (N_FEATURES,):
        raise ValueError(
            f"linear model {source}: {name!r} has shape {vec.shape} but the feature vector has "
            f"{N_FEATURES} entries ({', '.join(FEATURE_NAMES)}); give one value per feature")
    if not np.all(np.isfinite(vec)):
        raise ValueError(f"linear model {source}: {name!r} holds NaN or infinite values at "
                         f"{[FEATURE_NAMES[i] for i in np.flatnonzero(~np.isfinite(vec))]}")
    return vec


def _from_json(path: Path, text: str) -> LinearWeights:
    source = str(path)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"linear model {source}: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict) or "weights" not in doc:
        raise ValueError(f"linear model {source}: expected a JSON object with 'weights' (and "
                         "optional 'bias', 'mean', 'scale', 'features')")
    names = doc.get("features")
    if names is not None and tuple(names) != FEATURE_NAMES:
        raise ValueError(f"linear model {source}: its 'features' {names} do not match this "
                         f"version's feature vector {list(FEATURE_NAMES)}; retrain or reorder")
    weights = _vector(doc["weights"], "weights", source)
    mean = _vector(doc.get("mean", [0.0] * N_FEATURES), "mean", source)
    scale = _vector(doc.get("scale", [1.0] * N_FEATURES), "scale", source)
    if np.any(scale <= 0):
        raise ValueError(f"linear model {source}: 'scale' must be positive everywhere, got "
                         f"{scale.tolist()}")
    bias = doc.get("bias", 0.0)
    if not isinstance(bias, (int, float)) or not math.isfinite(bias):
        raise ValueError(f"linear model {source}: 'bias' must be a finite number, got {bias!r}")
    return LinearWeights(weights, float(bias), mean, scale, source)


def _from_npy(path: Path) -> LinearWeights:
    source = str(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise ValueError(f"linear model {source}: not a readable .npy array ({exc})") from exc
    if arr.shape not in ((N_FEATURES,), (N_FEATURES + 1,)):
        raise ValueError(
            f"linear model {source}: array shape {arr.shape}; expected ({N_FEATURES},) weights "
            f"or ({N_FEATURES + 1},) weights followed by the bias")
    vec = _vector(arr[:N_FEATURES], "weights", source)
    bias = float(arr[N_FEATURES]) if arr.shape[0] > N_FEATURES else 0.0
    if not math.isfinite(bias):
        raise ValueError(f"linear model {source}: the bias (last entry) is not finite")
    return LinearWeights(vec, bias, np.zeros(N_FEATURES), np.ones(N_FEATURES), source)


def load_linear_weights(path: str | Path | None = None) -> LinearWeights:
    """Load linear-model weights from ``path`` (``.json`` or ``.npy``); the packaged default when None.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file's format is unknown, or its vectors have the wrong length, hold NaN or
        infinite values, or name features in another order.
    """
    if path is None:
        res = resources.files("flowchain.trading.models").joinpath(DEFAULT_WEIGHTS)
        return _from_json(Path(str(res)), res.read_text(encoding="utf-8"))
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"linear model weights file {path} does not exist; pass the path "
                                "of a .json or .npy file")
    if path.suffix == ".npy":
        return _from_npy(path)
    if path.suffix == ".json":
        return _from_json(path, path.read_text(encoding="utf-8"))
    raise ValueError(f"linear model {path}: unknown format {path.suffix!r}; use .json or .npy")
