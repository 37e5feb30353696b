"""`infersight demo` fills the store with what every page needs."""

from __future__ import annotations

import os
import subprocess
import sys

from infersight_collector.demo import FEATURES, NEW_SNAPSHOT, OLD_SNAPSHOT


def test_demo_sends_features_two_versions_errors_and_a_less_confident_version(collector, store):
    result = subprocess.run(
        [sys.executable, "-m", "infersight_collector.cli", "demo",
         "--endpoint", f"http://{collector.endpoint}", "--duration", "4", "--rate", "60"],
        capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    table = f"{store.database}.otel_traces"
    per_feature = store.query(f"SELECT Feature, count() AS calls, sum(CostUsd) AS cost "
                              f"FROM {table} GROUP BY Feature")
    assert set(per_feature.Feature) == {f.name for f in FEATURES}
    assert (per_feature.cost > 0).all()
    versions = store.query(
        f"SELECT ModelVersion, avg(Confidence) AS confidence FROM {table} "
        f"WHERE RequestModel = 'gpt-4o-mini' AND StatusCode != 'Error' GROUP BY ModelVersion"
    ).set_index("ModelVersion").confidence
    assert set(versions.index) == {OLD_SNAPSHOT, NEW_SNAPSHOT}
    assert versions[NEW_SNAPSHOT] < versions[OLD_SNAPSHOT] - 0.1
    errors = store.query(f"SELECT count() AS n FROM {table} WHERE StatusCode = 'Error'").n[0]
    assert errors > 0
