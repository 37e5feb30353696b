"""scikit-learn estimators traced by instrument(): real models fitted on small generated data."""

from __future__ import annotations

import numpy as np
import pytest
import wrapt
from opentelemetry.trace import StatusCode
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import VotingClassifier
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

import infersight
from infersight import _state
from infersight import attributes as A
from infersight.instrumentors import sklearn as sk

from test_instrument import run_app


@pytest.fixture(scope="module")
def data():
    rng = np.random.RandomState(0)
    X = rng.randn(200, 4)
    y = (X[:, 0] + 0.5 * rng.randn(200) > 0).astype(int)
    return X, y


def fitted_pipeline(X, y):
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)


# A batch of up to 64 rows (observe._SMALL_BATCH) is summarised in Python, a larger one in numpy.
@pytest.mark.parametrize("rows", [1, 50, 200])
def test_pipeline_is_one_span_with_rows_and_confidence(spans, data, rows):
    X, y = data
    pipe = fitted_pipeline(X, y)
    spans.clear()
    proba = pipe.predict_proba(X[:rows])
    [span] = spans.get_finished_spans()
    attrs = span.attributes
    assert attrs[A.PROVIDER] == "sklearn" and attrs[A.OPERATION] == "predict"
    assert attrs[A.REQUEST_MODEL] == "Pipeline" and attrs[A.MODEL_METHOD] == "predict_proba"
    assert attrs[A.BATCH_ROWS] == rows
    top = proba.max(axis=1)
    assert attrs[A.CONFIDENCE] == pytest.approx(top.mean())
    assert attrs[A.CONFIDENCE_METHOD] == "max_proba"
    for key, q in ((A.CONFIDENCE_P10, 10), (A.CONFIDENCE_P50, 50), (A.CONFIDENCE_P90, 90)):
        assert attrs[key] == pytest.approx(np.percentile(top, q))


def test_nested_estimator_calls_make_no_spans(spans, data):
    X, y = data
    vote = VotingClassifier([("lr", LogisticRegression()), ("nb", GaussianNB())],
                            voting="soft").fit(X, y)
    model = LogisticRegression().fit(X, y)
    spans.clear()
    vote.predict(X[:7])       # calls each member's predict_proba
    model.predict(X[:3])      # calls its own decision_function
    names = [(s.attributes[A.REQUEST_MODEL], s.attributes[A.MODEL_METHOD])
             for s in spans.get_finished_spans()]
    assert names == [("VotingClassifier", "predict"), ("LogisticRegression", "predict")]


@pytest.mark.parametrize("rows", [20, 200])
def test_log_proba_confidence_and_decision_function(spans, data, rows):
    X, y = data
    model = LogisticRegression().fit(X, y)
    spans.clear()
    log_proba = model.predict_log_proba(X[:rows])
    model.decision_function(X[:rows])
    log_span, decision_span = spans.get_finished_spans()
    assert log_span.attributes[A.CONFIDENCE] == pytest.approx(np.exp(log_proba).max(axis=1).mean())
    assert log_span.attributes[A.CONFIDENCE_P90] == pytest.approx(
        np.percentile(np.exp(log_proba).max(axis=1), 90))
    assert decision_span.attributes[A.BATCH_ROWS] == rows
    assert A.CONFIDENCE not in decision_span.attributes  # margins are not probabilities


def test_fingerprint_is_stable_cached_and_follows_refits(spans, data, monkeypatch):
    X, y = data
    calls = []
    real = sk.fingerprint
    monkeypatch.setattr(sk, "fingerprint", lambda est: calls.append(est) or real(est))
    a, b = fitted_pipeline(X, y), fitted_pipeline(X, y)
    other = fitted_pipeline(X[:100], y[:100])
    for model in (a, a, a, b, other):
        model.predict(X[:2])
    versions = [s.attributes[A.MODEL_VERSION] for s in spans.get_finished_spans()]
    assert versions[0] == versions[1] == versions[2] == versions[3]  # same fit, same version
    assert versions[4] != versions[0]
    assert len(calls) == 3  # once per estimator object, not per call
    a.fit(X[:100], y[:100])  # a refit is a new model
    spans.clear()
    a.predict(X[:2])
    assert spans.get_finished_spans()[0].attributes[A.MODEL_VERSION] == versions[4]


def test_fingerprint_is_equal_across_processes(data):
    code = """
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from infersight.instrumentors.sklearn import fingerprint
    rng = np.random.RandomState(0)
    X = rng.randn(200, 4)
    y = (X[:, 0] + 0.5 * rng.randn(200) > 0).astype(int)
    print(fingerprint(LogisticRegression().fit(X, y)))
    """
    first, second = run_app(code), run_app(code)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout and len(first.stdout.strip()) == 16
    X, y = data
    assert sk.fingerprint(LogisticRegression().fit(X, y)) == first.stdout.strip()


def test_watch_names_versions_and_scores_a_model(spans, data):
    X, y = data
    model = infersight.watch(LogisticRegression().fit(X, y), name="churn", version="v3",
                             confidence=lambda labels: np.full(len(labels), 0.75))
    spans.clear()
    model.predict(X[:4])
    attrs = spans.get_finished_spans()[0].attributes
    assert (attrs[A.REQUEST_MODEL], attrs[A.MODEL_VERSION]) == ("churn", "v3")
    assert attrs[A.CONFIDENCE] == 0.75 and attrs[A.CONFIDENCE_METHOD] == "user"


def test_estimators_defined_after_instrument_are_traced(spans, data):
    X, y = data

    class Threshold(ClassifierMixin, BaseEstimator):
        def fit(self, X, y):
            self.classes_ = np.array([0, 1])
            return self

        def predict(self, X):
            return (np.asarray(X)[:, 0] > 0).astype(int)

    Threshold().fit(X, y).predict(X[:9])
    [span] = spans.get_finished_spans()
    assert span.attributes[A.REQUEST_MODEL] == "Threshold" and span.attributes[A.BATCH_ROWS] == 9


def test_sklearn_imported_after_instrument():
    result = run_app("""
    import infersight
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    infersight.instrument(tracer_provider=provider)
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier
    X = np.arange(40.0).reshape(20, 2); y = np.arange(20) % 2
    RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y).predict_proba(X)
    print([(s.attributes["gen_ai.request.model"], s.attributes["infersight.batch.rows"])
           for s in exporter.get_finished_spans()])
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[('RandomForestClassifier', 20)]"


def test_methods_keep_their_availability(spans, data):
    X, y = data
    assert not hasattr(make_pipeline(SVC()).fit(X, y), "predict_proba")
    assert hasattr(fitted_pipeline(X, y), "predict_proba")


def test_app_exceptions_pass_through_unchanged(spans):
    model = LogisticRegression()
    with pytest.raises(NotFittedError) as raised:
        model.predict([[0.0, 1.0]])
    [span] = spans.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes[A.ERROR_TYPE] == "NotFittedError"
    assert span.events[0].attributes["exception.message"] == str(raised.value)


def test_extraction_failures_are_counted_and_the_call_is_unaffected(spans, data, monkeypatch):
    X, y = data
    model = LogisticRegression().fit(X, y)
    expected = model.predict_proba(X[:5])

    def broken(*args):
        raise RuntimeError("injected")

    before = sum(_state.failures().values())
    monkeypatch.setattr(sk, "result_attributes", broken)
    np.testing.assert_array_equal(model.predict_proba(X[:5]), expected)
    monkeypatch.setattr(sk, "request_attributes", broken)
    np.testing.assert_array_equal(model.predict_proba(X[:5]), expected)
    assert sum(_state.failures().values()) == before + 2
    assert "sklearn predict_proba:RuntimeError" in _state.failures()


def test_uninstrument_restores_every_method(data):
    X, y = data
    infersight.instrument()
    assert isinstance(LogisticRegression.__dict__["predict_proba"], wrapt.FunctionWrapper)
    infersight.uninstrument()
    for cls in sk._subclasses(BaseEstimator):
        for klass in cls.__mro__:
            for name in sk.METHODS + sk.FIT_METHODS:
                assert not isinstance(klass.__dict__.get(name), wrapt.FunctionWrapper), (klass, name)
    assert "__init_subclass__" not in BaseEstimator.__dict__
    LogisticRegression().fit(X, y).predict(X[:1])


@pytest.mark.parametrize("rows", [1, 200])
def test_a_nan_probability_anywhere_in_a_row_leaves_only_confidence_out(spans, data, rows):
    """A row's maximum must propagate NaN wherever it sits (Python's `max` would not when it
    comes second), so the confidence check rejects it, for small batches and large alike."""
    class Broken(ClassifierMixin, BaseEstimator):
        def fit(self, X, y):
            self.classes_ = np.array([0, 1])
            return self

        def predict_proba(self, X):
            out = np.full((len(X), 2), 0.5)
            out[0, 1] = np.nan
            return out

    X, y = data
    before = sum(n for k, n in _state.failures().items() if k.endswith(":ValueError"))
    Broken().fit(X, y).predict_proba(X[:rows])
    [span] = spans.get_finished_spans()
    assert span.attributes[A.BATCH_ROWS] == rows  # the rest of the result's attributes stay
    assert A.CONFIDENCE not in span.attributes
    assert sum(n for k, n in _state.failures().items() if k.endswith(":ValueError")) == before + 1
