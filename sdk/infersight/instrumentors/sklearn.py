"""scikit-learn: every estimator's predict, predict_proba, predict_log_proba, decision_function.

Usage:
    infersight.instrument()                           # before or after importing sklearn
    infersight.watch(model, name="churn", version="v3")   # optional: your name and version

One span per outer call: a Pipeline's predict is one span, and the estimator calls made inside
a traced call (the pipeline's final step, a voting ensemble's members, `predict` calling
`decision_function`) make none. The span carries the rows in the batch, the confidence from
predict_proba / predict_log_proba (mean of each row's max probability, and p10/p50/p90), and
the model version: the one given to `watch()`, else a fingerprint of the fitted parameters.

How the methods are found: sklearn defines them on many classes and mixins, so the
instrumentor walks the subclasses of `BaseEstimator` that exist when sklearn is imported and
wraps each method once on the class of the MRO that defines it (about 150 functions, well
under a millisecond); classes defined later (sklearn submodules imported afterwards, third-party
and user estimators) are wrapped as they are created, through `BaseEstimator.__init_subclass__`.
A call pays one context-variable read when nested, and one weak-dictionary lookup per call.
The fingerprint is computed once per estimator object and forgotten when it is fitted again.
"""

from __future__ import annotations

import contextvars
import hashlib
import weakref
from typing import Any

import wrapt

from .. import _state
from .. import attributes as A
from ..observe import guarded_confidence, model_attributes, outer_call, rows_of, watched
from . import Instrumentor

PROVIDER = "sklearn"
METHODS = ("predict", "predict_proba", "predict_log_proba", "decision_function")
# A refit makes the cached fingerprint stale: these methods forget it.
FIT_METHODS = ("fit", "partial_fit")

_in_call: contextvars.ContextVar[bool] = contextvars.ContextVar("infersight_sklearn_call",
                                                                default=False)
_fingerprints: "weakref.WeakKeyDictionary[Any, str]" = weakref.WeakKeyDictionary()


class SklearnInstrumentor(Instrumentor):
    module = "sklearn.base"

    def patches(self):
        return []  # found by walking the estimator classes, see `_on_import`

    def _on_import(self, module: Any) -> None:
        if not self._active or self._patched:
            return
        base = module.BaseEstimator
        try:
            for cls in _subclasses(base):
                self._wrap_class(cls)
            self._install_subclass_hook(base)
        except Exception as exc:
            _state.record_failure("patch sklearn", exc)

    def _wrap_class(self, cls: type) -> None:
        for name in METHODS + FIT_METHODS:
            owner = next((k for k in cls.__mro__ if name in k.__dict__), None)
            if owner is None or owner is object:
                continue
            if isinstance(owner.__dict__[name], wrapt.FunctionWrapper):
                continue  # wrapped through another class that shares this owner
            wrapt.wrap_function_wrapper(owner, name, _forget if name in FIT_METHODS else _predict)
            self._patched.append((owner, name))

    def _install_subclass_hook(self, base: type) -> None:
        instrumentor = self

        def __init_subclass__(cls, **kwargs):
            super(base, cls).__init_subclass__(**kwargs)
            if instrumentor._active:
                try:
                    instrumentor._wrap_class(cls)
                except Exception as exc:
                    _state.record_failure("patch sklearn subclass", exc)

        self._hook_owner = base
        self._previous_hook = base.__dict__.get("__init_subclass__")
        base.__init_subclass__ = classmethod(__init_subclass__)

    def uninstrument(self) -> None:
        owner = getattr(self, "_hook_owner", None)
        if owner is not None:
            if self._previous_hook is None:
                del owner.__init_subclass__
            else:
                owner.__init_subclass__ = self._previous_hook
            self._hook_owner = None
        super().uninstrument()


def _subclasses(base: type) -> list[type]:
    seen, stack = {base}, [base]
    while stack:
        for sub in stack.pop().__subclasses__():
            if sub not in seen:
                seen.add(sub)
                stack.append(sub)
    return list(seen)


# ---- pure extraction -------------------------------------------------------------------

def fingerprint(estimator: Any) -> str:
    """A stable hash of an estimator's hyperparameters and fitted attributes (those whose name
    ends in `_`, by sklearn's convention): equal for equal models, across processes."""
    digest = hashlib.blake2b(digest_size=8)
    _feed(digest, estimator, depth=0)
    return digest.hexdigest()


def _feed(digest: Any, value: Any, depth: int) -> None:
    if depth > 20:
        digest.update(b"<deep>")
        return
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        digest.update(repr(value).encode())
    elif hasattr(value, "get_params") and hasattr(value, "__dict__"):  # an estimator
        digest.update(type(value).__qualname__.encode())
        params = value.get_params(deep=False)
        fitted = {k: v for k, v in vars(value).items() if k.endswith("_") and not k.startswith("_")}
        for key in sorted(params):
            digest.update(key.encode())
            _feed(digest, params[key], depth + 1)
        for key in sorted(fitted):
            digest.update(key.encode())
            _feed(digest, fitted[key], depth + 1)
    elif hasattr(value, "dtype") and hasattr(value, "tobytes"):  # numpy array or scalar
        digest.update(f"{value.dtype}{getattr(value, 'shape', ())}".encode())
        if value.dtype.hasobject:
            for item in value.ravel().tolist():
                _feed(digest, item, depth + 1)
        else:
            digest.update(value.tobytes())
    elif hasattr(value, "tocsr"):  # scipy sparse
        csr = value.tocsr()
        for part in (csr.data, csr.indices, csr.indptr):
            _feed(digest, part, depth + 1)
    elif isinstance(value, dict):
        for key in sorted(value, key=repr):
            _feed(digest, key, depth + 1)
            _feed(digest, value[key], depth + 1)
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        digest.update(f"{type(value).__name__}{len(items)}".encode())
        for item in items:
            _feed(digest, item, depth + 1)
    else:  # functions, random states, ...: their type, never an address-bearing repr
        digest.update(f"{type(value).__module__}.{type(value).__qualname__}".encode())


def model_version(estimator: Any) -> str:
    try:
        cached = _fingerprints.get(estimator)
    except TypeError:  # an estimator class that made itself unhashable
        return fingerprint(estimator)
    if cached is None:
        cached = _fingerprints[estimator] = fingerprint(estimator)
    return cached


def request_attributes(estimator: Any, method: str) -> dict[str, Any]:
    user = watched(estimator)
    name = (user and user.name) or type(estimator).__name__
    version = (user and user.version) or model_version(estimator)
    attrs = model_attributes(PROVIDER, name, version)
    attrs[A.MODEL_METHOD] = method
    return attrs


def result_attributes(estimator: Any, method: str, X: Any, result: Any) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    rows = rows_of(X)
    if rows is None:
        rows = rows_of(result)
    if rows is not None:
        attrs[A.BATCH_ROWS] = rows
    user = watched(estimator)
    where = f"sklearn {method}"  # as the call's own failures are counted (`_predict`)
    if user is not None and user.confidence is not None:
        attrs.update(guarded_confidence(where, lambda: user.confidence(result), "user"))
    elif method in ("predict_proba", "predict_log_proba") and getattr(result, "ndim", 0) == 2:
        attrs.update(guarded_confidence(where, lambda: top_probability(result, method),
                                        "max_proba"))
    return attrs


def top_probability(result: Any, method: str) -> Any:
    """Each row's largest class probability (numpy's max, which keeps a NaN)."""
    top = result.max(axis=1)
    if method == "predict_log_proba":
        import numpy as np

        top = np.exp(top)
    return top


# ---- wrappers ----------------------------------------------------------------------------

def _predict(wrapped, instance, args, kwargs):
    if instance is None:
        return wrapped(*args, **kwargs)
    method = wrapped.__name__
    X = args[0] if args else kwargs.get("X")
    return outer_call(_in_call, f"sklearn {method}", lambda: request_attributes(instance, method),
                      lambda result: result_attributes(instance, method, X, result),
                      wrapped, args, kwargs)


def _forget(wrapped, instance, args, kwargs):
    result = wrapped(*args, **kwargs)
    try:
        _fingerprints.pop(instance, None)
    except TypeError:
        pass
    return result
