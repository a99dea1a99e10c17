"""The Airflow UI plugin: a Models page on the API server, and the URLs operator extra links open.

The plugin class lives in :mod:`mlops_airflow.plugins.plugin` (the ``airflow.plugins`` entry
point); this package module stays empty so that :mod:`mlops_airflow.plugins.urls` can be
imported by operators without building the web app.
"""
