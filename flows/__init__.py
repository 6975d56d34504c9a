"""Prefect 3 flows of samgeo_pipeline (the library itself never imports Prefect)."""
