"""WSGI entry point for running the dashboard under gunicorn (or any WSGI server):

    CLICKHOUSE_URL=http://user:pw@clickhouse:8123 \
        gunicorn -w 4 -b 0.0.0.0:8050 infersight_dashboard.wsgi:server

It reads the ClickHouse server the collector writes to. Without CLICKHOUSE_URL it opens the
embedded store in INFERSIGHT_DATA_DIR (default ./.infersight), which chDB lets only one process
hold: use one worker then, and no collector on that directory (`infersight serve` is the
embedded way). INFERSIGHT_DASHBOARD_TOKEN / INFERSIGHT_DASHBOARD_USERS protect it (`auth`).
"""

from __future__ import annotations

import os

from infersight_collector.store import open_store
from infersight_dashboard.app import create_app

store = open_store(url=os.environ.get("CLICKHOUSE_URL") or None,
                   data_dir=os.environ.get("INFERSIGHT_DATA_DIR", ".infersight"))
app = create_app(store)
server = app.server
