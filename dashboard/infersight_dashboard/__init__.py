"""The Infersight dashboard: a Dash app whose pages read the span store through `queries`.

    app = create_app(store)          # infersight_dashboard.app; `app.server` is the WSGI app
    serve_dashboard(app, host, port)
"""
